"""MNIST-1D: what the trainer's epoch costs over a bare loop, and what the whole mnist1d-table2 costs.

An MNIST-1D epoch is ~0.15 s of arithmetic, so per-epoch overheads (test evaluation bookkeeping, the velocity
pass on the aux set, the checkpoint, the records, the summary) show up here first. Target: the trainer's epoch
at most 1.3x a bare loop that does only the same training steps and the test evaluation.

- "trainer": ``training.trainer.train`` exactly as ``python -m experiments.train --dataset mnist1d`` runs it (fp32,
  one thread, no W&B, no progress bar). Its per-epoch cost is the marginal one, (T(long) - T(short)) /
  (long - short) epochs, so the set-up both runs share (imports, data, model) cancels.
- "bare": the same model (same init), optimizer, data tensors and batches, then the test evaluation; nothing
  else.

Rounds alternate the two so machine load hits both alike; the script prints medians and the ratio per setup,
then estimates the whole mnist1d-table2 (10 seeds, 2 runs at a time on 2 cores) from the measured epochs: V.Loss
runs halt early, so it reads their epochs from finished runs under ``--runs-dir`` when there are any, else it
counts the whole budget (an upper bound).

    python -m benchmarks.mnist1d_epoch                      # CNN (NeVe, Baseline) and ResNet-1D (NeVe), 3 rounds
    python -m benchmarks.mnist1d_epoch --rounds 5 --setups cnn-neve
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F

from experiments.data import load_data
from experiments.methods import make_optimizer
from experiments.training.config import RunConfig
from experiments.training.trainer import build_model, train

SETUPS = {"cnn-neve": ("mnist1d_cnn", "neve"), "cnn-baseline": ("mnist1d_cnn", "baseline"),
          "resnet-neve": ("mnist1d_resnet", "neve")}
TARGET = 1.3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of trainer and bare loop")
    parser.add_argument("--short", type=int, default=2, help="epochs of the short trainer run")
    parser.add_argument("--long", type=int, default=12, help="epochs of the long trainer run (and the bare loop)")
    parser.add_argument("--data-root", default="data", help="where MNIST-1D is cached (generated if missing)")
    parser.add_argument("--runs-dir", default="runs", help="finished mnist1d-table2 runs, for the estimate")
    return parser.parse_args()


def config(model: str, method: str, epochs: int, out: Path, data_root: str) -> RunConfig:
    return RunConfig(dataset="mnist1d", model=model, method=method, epochs=epochs, stop="mark", precision="fp32",
                     threads=1, num_workers=0, wandb="disabled", progress=False, data_root=data_root,
                     out=str(out)).resolved()


def trainer_seconds(model: str, method: str, epochs: int, scratch: Path, data_root: str) -> float:
    """Wall seconds of one fresh trainer run of ``epochs`` epochs, set-up included."""
    out = scratch / f"{model}-{method}-{epochs}-{time.monotonic_ns()}"
    started = time.perf_counter()
    train(config(model, method, epochs, out, data_root))
    return time.perf_counter() - started


def bare_epoch_seconds(model_name: str, epochs: int, data_root: str) -> float:
    """Seconds per epoch of the training steps and the test evaluation alone, as the trainer sets them up."""
    cfg = config(model_name, "baseline", epochs, Path("unused"), data_root)
    torch.manual_seed(cfg.seed)
    data = load_data("mnist1d", data_root, batch_size=cfg.batch_size, seed=cfg.seed, num_workers=0)
    model = build_model(cfg, data)
    optimizer = make_optimizer(model, cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for images, labels, _ in data.train.batches(epoch):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in data.test.batches(epoch):
                correct += int((model(images).argmax(1) == labels).sum())
    return (time.perf_counter() - started) / epochs


def table2_estimate(per_epoch: dict[str, float], runs_dir: Path) -> tuple[float, bool]:
    """Seconds for mnist1d-table2 at 10 seeds, 2 runs at a time, from the measured trainer epochs; and whether
    every V.Loss run's epochs were read from a finished run (else the whole budget counted)."""
    from experiments.catalog import get_experiment

    total, exact = 0.0, True
    for run in get_experiment("mnist1d-table2").runs(10, runs_dir=runs_dir):
        setup = "cnn" if run.config.model == "mnist1d_cnn" else "resnet"
        seconds = per_epoch.get(f"{setup}-neve") or per_epoch.get(f"{setup}-baseline")
        if seconds is None:
            return float("nan"), False
        epochs = run.config.epochs
        summary = run.run_dir / "summary.json"
        if run.config.stop == "halt":
            if summary.is_file():
                epochs = json.loads(summary.read_text())["epochs_run"]
            else:
                exact = False
        total += epochs * seconds
    return total / 2, exact


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    load_data("mnist1d", args.data_root, batch_size=100, num_workers=0)  # generate the cache outside the timing
    per_epoch: dict[str, float] = {}
    print(f"{'setup':<14}{'trainer s/epoch':>17}{'bare s/epoch':>14}{'ratio':>8}   (medians of {args.rounds} "
          f"rounds; trainer: ({args.long} - {args.short})-epoch difference)")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.setups:
            model, method = SETUPS[name]
            trainer, bare = [], []
            for _ in range(args.rounds):
                long = trainer_seconds(model, method, args.long, Path(scratch), args.data_root)
                short = trainer_seconds(model, method, args.short, Path(scratch), args.data_root)
                trainer.append((long - short) / (args.long - args.short))
                bare.append(bare_epoch_seconds(model, args.long, args.data_root))
            per_epoch[name] = median(trainer)
            ratio = median(trainer) / median(bare)
            print(f"{name:<14}{median(trainer):>17.3f}{median(bare):>14.3f}{ratio:>8.2f}   "
                  f"{'PASS' if ratio <= TARGET else 'FAIL'} (target <= {TARGET})")
    seconds, exact = table2_estimate(per_epoch, Path(args.runs_dir))
    if seconds == seconds:
        bound = "" if exact else " (an upper bound: V.Loss runs counted at the whole budget)"
        print(f"mnist1d-table2, 10 seeds, 2 runs at a time: about {seconds / 60:.0f} min of training{bound}; "
              f"target <= 20 min")


if __name__ == "__main__":
    main()
