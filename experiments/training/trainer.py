"""The one training loop: every method runs through it, checkpointed each epoch, resumable exactly.

Per epoch: the policy sets the lr, the model trains on the training stream, is evaluated on the
validation (if held out) and test sets, velocity is measured on the aux set (for every method),
the policy decides, one record is logged, and the run folder gets an atomic checkpoint with
everything needed to continue bit for bit: model, optimizer (stepper), policy, velocity monitor,
RNG states and the records so far, as tensors and plain values only (it is read back with
``torch.load(weights_only=True)``: a planted file cannot run code). A finished run has ``summary.json``. Only one
process writes a run folder at a time (:meth:`RunFolder.writer <experiments.run_folder.RunFolder.writer>`),
and it starts by removing the temporary files a killed write left. A stop requested through
:mod:`training.interrupt` (a signal, in a process that asked for that) is taken before a batch, never between an
epoch's record and its checkpoint, so the last checkpoint always matches the records.

What is evaluated is the stepper's to say, the same way for every method (``experiments.methods.base.Stepper``):
``stepper.train_mode()`` before the training batches and ``stepper.eval_mode()`` after them (schedule-free
moves the parameters from y to x and back); ``stepper.evaluated_model(model)`` is the model evaluated on the
validation and test sets, whose velocity is measured (aux set and ``--velocity-sets``) and which is saved as
``model.pt`` / ``kept_model.pt`` (DoG's averaged model; the trained model otherwise); if the stepper
``recalibrates_batchnorm``, that model's BatchNorm statistics are recomputed from 50 of the epoch's training
batches before it is evaluated and its velocity measured (``batchnorm``). The checkpoint is written in
eval mode, as the schedule-free README asks, and training resumes through the same ``train_mode()`` call a
straight run makes at every epoch start, so a resumed run is exact.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from experiments.data import DataSplits, load_data
from experiments.methods import Decision, EpochResult, Policy, Stepper, method_class
from experiments.models import create_model, model_variants
from experiments.models.registry import DEFAULT_VARIANT
from experiments.run_folder import RunFolder
from experiments.training import interrupt
from experiments.training.batchnorm import recalibrate_batchnorm
from experiments.training.config import RunConfig, config_differences
from experiments.training.precision import autocast_dtype
from experiments.training.records import RunLog
from experiments.training.summary import summarize
from neve import controller
from neve.aux_sets import gaussian_aux
from neve.io import atomic_torch_save
from neve.velocity import VelocityMonitor

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
#: Checkpoints written before they held only tensors and plain values kept numpy's RNG state as a uint32 array:
#: numpy's array reconstruction (under numpy 2's and numpy 1's module names), its ndarray and dtype classes are
#: all such a file needs beyond what ``weights_only`` allows. Nothing else is let in.
_RECONSTRUCT = (getattr(np, "_core", None) or np.core).multiarray._reconstruct
_NUMPY_ARRAY_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)),
                        (_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
                        (_RECONSTRUCT, "numpy.core.multiarray._reconstruct")]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed; it is left untouched for the user to inspect."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no GPU is visible; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every generator's state, as tensors and plain values (numpy's key array as a list of ints)."""
    name, key, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, key.tolist(), position, has_gauss, cached_gaussian),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, key, position, has_gauss, cached_gaussian = state["numpy"]  # key: a list, or an array (older files)
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_aux(config: RunConfig, data: DataSplits) -> Tensor:
    """The aux set the config names: Gaussian noise (N(0, 1), or the authors' uint8-wrapped kind), real
    train/val images, or an image folder."""
    if config.aux == "gaussian":
        return gaussian_aux(config.aux_size, data.image_shape, seed=config.seed, noise=config.aux_noise)
    if config.aux in ("train", "val"):
        return data.aux_images(config.aux, config.aux_size, seed=config.seed)
    from experiments.data.folder import folder_images

    path = config.aux.removeprefix("folder:")
    return folder_images(path, config.aux_size, data.image_shape, data.mean, data.std, seed=config.seed)


def build_model(config: RunConfig, data: DataSplits) -> nn.Module:
    """The config's model for the data, untrained; ``resnet_variant`` applies to the CIFAR ResNets (the
    only models with an authors' variant) and is ignored for the others."""
    variant = config.resnet_variant if config.resnet_variant in model_variants(config.model) else DEFAULT_VARIANT
    return create_model(config.model, data.num_classes, in_chans=data.image_shape[0],
                        image_size=data.image_shape[-1], variant=variant)


@dataclass
class EvalMetrics:
    loss: float
    acc: float


class Trainer:
    """Runs one configured experiment in ``config.out``, resuming it if a checkpoint is there."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config.resolved()
        self.folder = RunFolder(Path(self.config.out))
        self.run_dir = self.folder.path
        self.device = pick_device(self.config.device)
        # bf16 autocast where the hardware has it (GPUs, CPUs with AVX512-BF16/AMX); never for velocity,
        # which the monitor measures with autocast off.
        self.autocast_dtype = autocast_dtype(self.device, self.config.precision)

    # ----------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        if self.folder.finished:
            self._check_same_experiment(self.folder.config(), self.folder.summary_file)
            log.warning("%s is finished (%s exists); not running it again", self.run_dir,
                        self.folder.summary_file.name)
            return self.folder.summary()
        checkpoint = self._read_checkpoint()
        c = self.config
        policy_cls = method_class(c.method)
        if policy_cls.needs_holdout and not c.holdout:
            raise ValueError(f"method {c.method!r} needs a validation split: pass --holdout 0.1 (or 0.3)")

        if c.threads:
            torch.set_num_threads(c.threads)
        seed_everything(c.seed)
        data = load_data(c.dataset, c.data_root, batch_size=c.batch_size, holdout=c.holdout,
                         label_noise=c.label_noise, seed=c.seed, device=self.device, download=c.download,
                         num_workers=c.num_workers, image_size=c.image_size,
                         test_augmentation=c.test_augmentation, options=c.data_options,
                         train_order=c.train_order)
        if c.test_augmentation:
            log.warning("the test set is evaluated WITH the training augmentation (random crop/flip), as the "
                        "authors' Label Wave loader did: test accuracies of this run are not clean ones")
        model = build_model(c, data)
        model.to(self.device, memory_format=torch.channels_last)
        if checkpoint:
            model.load_state_dict(checkpoint["model"])
        policy = policy_cls(c)
        policy.start_training(data.train.num_samples)
        stepper = policy.build_stepper(model)
        evaluated = stepper.evaluated_model(model)  # velocity is measured on the model that is evaluated
        monitor = VelocityMonitor(evaluated, build_aux(c, data), mu=c.mu, batch_size=c.aux_batch_size,
                                  velocity_form=c.velocity_form)
        # Fig. 7: the same velocity measured on real training / validation images, recorded beside the aux set's.
        set_monitors = {name: VelocityMonitor(evaluated, data.aux_images(name, c.aux_size, seed=c.seed), mu=c.mu,
                                              batch_size=c.aux_batch_size, velocity_form=c.velocity_form)
                        for name in c.velocity_sets}
        records: list[dict[str, Any]] = []
        start_epoch, wandb_id = 0, None
        if checkpoint:
            stepper.load_state_dict(checkpoint["stepper"])
            policy.load_state_dict(checkpoint["policy"])
            monitor.load_state_dict(checkpoint["monitor"])
            for name, set_monitor in set_monitors.items():
                set_monitor.load_state_dict(checkpoint["set_monitors"][name])
            set_rng_state(checkpoint["rng"])
            records, start_epoch, wandb_id = checkpoint["records"], checkpoint["epoch"], checkpoint["wandb_id"]
            log.info("resuming %s after epoch %d", self.run_dir, start_epoch)

        runlog = RunLog(self.run_dir, c.to_dict(), wandb_mode=c.wandb, run_name=self.run_dir.name,
                        records=records, wandb_id=wandb_id, group=c.wandb_group)
        finished_early = bool(records) and _halted(records[-1], c)
        for epoch in range(start_epoch + 1, c.epochs + 1):
            if finished_early:
                break
            interrupt.check()  # a requested stop (interrupt) is taken between epochs or batches, never mid-write
            record, decision = self._epoch(epoch, model, data, policy, stepper, monitor, set_monitors)
            if decision.keep_weights:
                atomic_torch_save(self.folder.kept_model_file, {"epoch": epoch, "model": evaluated.state_dict()})
            runlog.log(record)
            self._write_checkpoint(epoch, model, stepper, policy, monitor, set_monitors, runlog)
            finished_early = _halted(record, c)
            if not np.isfinite(record["train_loss"]):
                log.warning("%s diverged: training loss %s at epoch %d (lr %g); halted here", self.run_dir,
                            record["train_loss"], epoch, record["lr"])
        summary = summarize(runlog.records, c.to_dict())
        atomic_torch_save(self.folder.model_file, evaluated.state_dict())
        runlog.finish(summary)
        return summary

    # --------------------------------------------------------------------------------------- epoch
    def _epoch(self, epoch: int, model: nn.Module, data: DataSplits, policy: Policy, stepper: Stepper,
               monitor: VelocityMonitor, set_monitors: dict[str, VelocityMonitor],
               ) -> tuple[dict[str, Any], Decision]:
        started = time.perf_counter()
        policy.start_epoch(epoch, stepper)
        lr = stepper.lr
        train = self._train_epoch(epoch, model, data, policy, stepper)
        stepper.eval_mode()
        evaluated = stepper.evaluated_model(model)
        if stepper.recalibrates_batchnorm:  # before evaluation and velocity alike
            recalibrate_batchnorm(evaluated, data.train.batches(epoch), self._forward)
        val = self._evaluate(evaluated, data.val.batches(epoch)) if data.val is not None else None
        test = self._evaluate(evaluated, data.test.batches(epoch))  # the same batches each epoch, unless augmented
        report = monitor.measure()
        set_velocities = {f"velocity_{name}": m.measure().model_velocity for name, m in set_monitors.items()}
        result = EpochResult(epoch, train.loss, train.acc, test.loss, test.acc,
                             val.loss if val else None, val.acc if val else None, report)
        decision = policy.end_epoch(result, stepper)
        record: dict[str, Any] = {
            "epoch": epoch, "lr": lr, "train_loss": train.loss, "train_acc": train.acc,
            "val_loss": result.val_loss, "val_acc": result.val_acc, "test_loss": test.loss, "test_acc": test.acc,
            "model_velocity": report.model_velocity, "velocity_change": report.velocity_change, **set_velocities,
            "lr_reduced": int(decision.lr_reduced),
            "neve_stop": int(controller.neve_stops(report.model_velocity, self.config.epsilon)),
            "method_stop": int(decision.stop), "kept_weights": int(decision.keep_weights),
            **decision.extra, **stepper.record(),
            "seconds": time.perf_counter() - started,
        }
        return record, decision

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _forward(self, model: nn.Module, images: Tensor) -> Tensor:
        """One batch through the model as training runs it (memory layout, autocast)."""
        with self._autocast():
            return model(_channels_last(images))

    def _train_epoch(self, epoch: int, model: nn.Module, data: DataSplits, policy: Policy,
                     stepper: Stepper) -> EvalMetrics:
        model.train()
        stepper.train_mode()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        batches = tqdm(data.train.batches(epoch), total=len(data.train), desc=f"epoch {epoch}/{self.config.epochs}",
                       leave=False, disable=not self.config.progress, mininterval=1.0)
        for images, labels, indices in batches:
            interrupt.check()
            images = _channels_last(images)
            stepper.zero_grad()
            with self._autocast():
                logits = model(images)
                loss = F.cross_entropy(logits, labels)
            stepper.backward(loss)
            stepper.step()
            logits = logits.detach()
            policy.observe_batch(logits, labels, indices)
            loss_sum += loss.detach().double() * labels.numel()
            correct += (logits.argmax(1) == labels).sum()
            seen += labels.numel()
        return EvalMetrics(float(loss_sum) / seen, float(correct) / seen)

    @torch.no_grad()
    def _evaluate(self, model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> EvalMetrics:
        model.eval()
        # Summed on the device, read once: no GPU sync per batch.
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        for images, labels in batches:
            interrupt.check()
            images = _channels_last(images)
            with self._autocast():
                logits = model(images)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
            correct += (logits.argmax(1) == labels).sum()
            seen += labels.numel()
        return EvalMetrics(float(loss_sum) / seen, float(correct) / seen)

    # ---------------------------------------------------------------------------------- checkpoint
    def _write_checkpoint(self, epoch: int, model: nn.Module, stepper: Stepper, policy: Policy,
                          monitor: VelocityMonitor, set_monitors: dict[str, VelocityMonitor],
                          runlog: RunLog) -> None:
        atomic_torch_save(self.folder.checkpoint_file, {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "epoch": epoch,
            "model": model.state_dict(), "stepper": stepper.state_dict(), "policy": policy.state_dict(),
            "monitor": monitor.state_dict(),
            "set_monitors": {name: m.state_dict() for name, m in set_monitors.items()},
            "rng": rng_state(), "records": runlog.records,
            "wandb_id": runlog.wandb_id,
        })

    def _read_checkpoint(self) -> dict[str, Any] | None:
        path = self.folder.checkpoint_file
        if not path.exists():
            return None
        try:  # tensors and plain values only: a file that holds anything else is refused, nothing in it runs
            with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # each part moves itself
        except pickle.UnpicklingError as error:
            refused = re.search(r"WeightsUnpickler error:\s*([^\n]*)", str(error))
            if refused is None:
                raise CheckpointError(
                    f"the checkpoint {path} cannot be read (UnpicklingError: {error}). It was left as it is: move "
                    "it away to start this run over, or point --out to a new folder") from error
            what = refused.group(1).split(" was not an allowed global")[0].strip() or "an unknown instruction"
            raise CheckpointError(
                f"the checkpoint {path} cannot be read: it holds more than tensors and plain values ({what}), so it "
                "is corrupt or this trainer did not write it; it was refused, and nothing in it ran. It was left as "
                "it is: move it away to start this run over, or point --out to a new folder") from None
        except Exception as error:
            raise CheckpointError(
                f"the checkpoint {path} cannot be read ({type(error).__name__}: {error}). It was left as it is: "
                f"move it away to start this run over, or point --out to a new folder") from error
        if (not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT
                or not isinstance(checkpoint.get("config"), dict)):
            raise CheckpointError(f"{path} is not a neve checkpoint of format {CHECKPOINT_FORMAT}; it was left "
                                  "as it is: move it away to start over, or use another --out")
        self._check_same_experiment(checkpoint["config"], path)
        return checkpoint

    def _check_same_experiment(self, saved: dict[str, Any], path: Path) -> None:
        differences = config_differences(saved, self.config.to_dict())
        if differences:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(self.config, k, None)!r}" for k in differences)
            raise CheckpointError(f"{path} belongs to a different run ({details}). It was left as it is: "
                                  "rerun with the same options, or choose another --out")


def _channels_last(images: Tensor) -> Tensor:
    """Image batches in channels_last (faster convolutions); 1-D sequences (N, C, L) have no such layout."""
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images


def _halted(record: dict[str, Any], config: RunConfig) -> bool:
    diverged = not np.isfinite(record["train_loss"])
    return diverged or (config.stop == "halt" and bool(record["method_stop"]))


def train(config: RunConfig, *, lock_wait_s: float = 0.0, log_path: str | None = None) -> dict[str, Any]:
    """Run (or resume, or skip if finished) one experiment as its folder's only writer; returns its summary.

    Another process training the same folder makes it wait up to ``lock_wait_s`` seconds, then raise
    :class:`~experiments.run_folder.RunFolderBusy` naming that process. While it trains, ``running.json`` says
    where (and ``log_path``, the log its output goes to); an error leaves ``error.json`` (not an interruption:
    the last checkpoint is intact and the same command resumes).
    """
    config = config.resolved()
    folder = RunFolder(Path(config.out))
    with folder.writer(lock_wait_s):
        folder.remove_stale_temporaries()
        folder.clear_error()
        folder.mark_running(log=log_path)
        try:
            return Trainer(config).run()  # its errors too (no GPU for --device cuda, ...) go to error.json
        except BaseException as error:
            if not isinstance(error, KeyboardInterrupt | SystemExit | interrupt.RunInterrupted):
                _record_failure(folder, error, log_path)
            raise
        finally:
            folder.clear_running()


def _record_failure(folder: RunFolder, error: BaseException, log_path: str | None) -> None:
    try:
        folder.mark_failed(error, traceback.format_exc(), log_path)
    except OSError as cannot:  # the disk that failed the run may refuse error.json too
        log.warning("could not write %s (%s)", folder.error_file, cannot)
