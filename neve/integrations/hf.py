"""NeVe as a Hugging Face ``transformers.Trainer`` callback: lr decay and stopping from the model's velocity.

Glue only: :class:`neve.NeVe` measures, decides and decays. Every process runs the callback; under DDP the
aux set is sharded and the sums reduced (see :mod:`neve.distributed`), so every process takes the same
decision, which the Trainer (it never reduces control flags) needs.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from neve.controller import NeVe, NeVeDecision
from neve.integrations._state import state_on_cpu
from neve.io import atomic_torch_save
from neve.resume import describe_changes
from neve.velocity import AuxSet, ModuleSelection

#: The file holding the callback's state inside each ``checkpoint-<step>`` folder.
STATE_FILE = "neve_callback.pt"


class NeVeTrainerCallback(TrainerCallback):
    """Measure velocity at every epoch end (or every ``every_n_steps`` optimizer steps, for ``max_steps`` or
    streaming datasets: patience then counts measurements); decay the lr on a plateau of the velocity
    change, set ``control.should_training_stop`` when the velocity is below ``epsilon`` (``stop=False``
    only marks it).

    A decay scales the optimizer's lr and the scheduler's ``base_lrs``, so the Trainer's default linear
    (LambdaLR) schedule keeps it. Metrics ``neve/velocity``, ``neve/velocity_change``, ``neve/lr`` go through
    ``trainer.log`` (every ``report_to`` integration and ``trainer_state.json``) once :meth:`attach` gave the
    callback its trainer, else into ``state.log_history`` only; either way every entry the Trainer logs on its
    own (loss, grad_norm, learning_rate) is kept. The state is written into each checkpoint folder
    (``neve_callback.pt``, tensors and plain values only: it is read back with ``weights_only=True``) and read
    back when training resumes from ``output_dir/checkpoint-<step>`` (``trainer.train(resume_from_checkpoint=True)``
    or that path); a checkpoint elsewhere also needs ``TrainingArguments(resume_from_checkpoint=path)``. A
    resume with other ``alpha``, ``patience``, ``epsilon``, ``mu`` or ``batch_size`` restores the state and
    uses the new values, with a warning that lists them. Other keyword arguments (``batch_size``,
    ``velocity_form``, ``plateau_rule``, ``verbose``, ``trainable``) go to :class:`neve.NeVe`.
    """

    def __init__(self, aux: AuxSet, alpha: float = 0.5, patience: int = 10, epsilon: float = 1e-3, mu: float = 0.5,
                 stop: bool = True, modules: ModuleSelection = None, every_n_steps: int | None = None,
                 **neve_options: Any) -> None:
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or every_n_steps < 1):
            raise ValueError(f"every_n_steps must be a positive number of optimizer steps or None (epoch ends), "
                             f"got {every_n_steps!r}")
        self.aux = aux
        self.options = {"alpha": alpha, "patience": patience, "epsilon": epsilon, "mu": mu, "modules": modules,
                        **neve_options}
        self.stop, self.every_n_steps = stop, every_n_steps
        self.trainer: Trainer | None = None
        self.neve: NeVe | None = None
        self.decisions: list[NeVeDecision] = []

    def attach(self, trainer: Trainer) -> NeVeTrainerCallback:
        """Add this callback to ``trainer`` and log through ``trainer.log`` (W&B, TensorBoard, ...)."""
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        self.trainer = trainer
        return self

    @property
    def stop_epoch(self) -> int | None:
        """The first measurement (1-based) whose velocity was below epsilon."""
        return self.neve.stop_epoch if self.neve is not None else None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: torch.nn.Module | None = None, optimizer: Any = None, lr_scheduler: Any = None,
                       **kwargs: Any) -> None:
        self.neve = NeVe(model, optimizer, self.aux, scheduler=lr_scheduler, **self.options)
        if state.global_step > 0:  # resumed: the Trainer restored weights, optimizer and scheduler already
            changed = self.neve.load_state_dict(read_state(self._resume_file(args, state)), settings="new")
            if changed:
                warnings.warn(f"NeVeTrainerCallback resumed its state with changed arguments "
                              f"({describe_changes(changed)}): the new ones are used from now on", stacklevel=2)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self._step(state, control)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.every_n_steps is None:
            self._step(state, control)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.neve is None or not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            state_dict = state_on_cpu(self.neve.state_dict())
            atomic_torch_save(folder / STATE_FILE, state_dict)

    def _step(self, state: TrainerState, control: TrainerControl) -> None:
        decision = self.neve.step()
        if not decision.measured:  # no optimizer step since the last measurement (NeVe warned)
            return
        self.decisions.append(decision)
        metrics = {"neve/velocity": decision.model_velocity, "neve/lr": decision.lr,
                   "neve/lr_reduced": float(decision.lr_reduced), "neve/stop": float(decision.stop)}
        if decision.velocity_change is not None:
            metrics["neve/velocity_change"] = decision.velocity_change
        if self.trainer is not None:
            # trainer.log runs the callbacks' on_log, whose first (DefaultFlowCallback's handler) clears
            # should_log: the Trainer's own entry for this step (loss, grad_norm, learning_rate) would be lost
            should_log = control.should_log
            self.trainer.log(metrics)
            control.should_log = control.should_log or should_log
        else:
            state.log_history.append({**metrics, "epoch": state.epoch, "step": state.global_step})
        if self.stop and decision.stop:  # the same on every process: the velocities are
            control.should_training_stop = True

    @staticmethod
    def _resume_file(args: TrainingArguments, state: TrainerState) -> Path:
        candidates = [Path(args.output_dir) / f"checkpoint-{state.global_step}"]
        if isinstance(args.resume_from_checkpoint, str):
            candidates.insert(0, Path(args.resume_from_checkpoint))
        for folder in candidates:
            if (folder / STATE_FILE).is_file():
                return folder / STATE_FILE
        raise FileNotFoundError(f"training resumed at step {state.global_step}, but no {STATE_FILE} is in "
                                f"{', '.join(map(os.fspath, candidates))}: resume from a checkpoint saved with "
                                "this callback, and if it is outside output_dir set "
                                "TrainingArguments(resume_from_checkpoint=<its folder>)")

def read_state(path: Path) -> dict[str, Any]:
    """A state this callback wrote: tensors and plain values, loaded without unpickling anything else."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path} is not a NeVe state this callback wrote: it holds objects other than tensors and "
                         f"plain values, which are not unpickled ({error}); resume from a checkpoint saved with "
                         "NeVeTrainerCallback") from error
