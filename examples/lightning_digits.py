"""NeVe in PyTorch Lightning: lr decay and early stop on scikit-learn's digits, no validation set needed.

    python examples/lightning_digits.py                       # one CPU process
    python examples/lightning_digits.py --devices 2           # DDP (ddp_spawn) on 2 CPU processes

Velocity, velocity change and lr go to every configured logger (here a CSVLogger: <out>/lightning/metrics.csv);
the decisions (lr per epoch, stop epoch) are also written to <out>/decisions.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from digits_data import load_digits_tensors
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import neve
from neve.integrations.lightning import NeVeCallback

SEED = 0
TRAIN_SAMPLES = 1024  # a multiple of every world size used: DDP shards need no padding
GLOBAL_BATCH = 128
LR = 0.2
#: Small patience and a large epsilon so that decays and the stop happen within a few epochs.
NEVE = {"alpha": 0.5, "patience": 0, "epsilon": 1e-3}


def make_model(seed: int = SEED) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 32), nn.ReLU(), nn.Linear(32, 10))


def make_data() -> TensorDataset:
    data = load_digits_tensors()
    images = data["train_images"][:TRAIN_SAMPLES].float().div(255.0)
    return TensorDataset(images, data["train_labels"][:TRAIN_SAMPLES])


def make_aux() -> torch.Tensor:
    return neve.gaussian_aux(n=64, shape=(1, 16, 16), seed=1)


class DigitsClassifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)

    def train_dataloader(self) -> DataLoader:
        # In order, and each rank every world_size-th sample: step k then trains on the same GLOBAL_BATCH samples
        # as a plain loop would, which the exact comparison in tests/test_examples.py needs. Your own runs can
        # keep Lightning's default (a shuffling DistributedSampler).
        dataset, world = make_data(), self.trainer.world_size
        sampler = DistributedSampler(dataset, shuffle=False) if world > 1 else None
        return DataLoader(dataset, batch_size=GLOBAL_BATCH // world, shuffle=False, sampler=sampler)


def fit(out: Path, devices: int = 1, epochs: int = 12) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    strategy = "ddp_spawn" if devices > 1 else "auto"
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy=strategy, max_epochs=epochs,
                         use_distributed_sampler=False, callbacks=[NeVeCallback(make_aux(), **NEVE)],
                         logger=CSVLogger(out, name="lightning", version=""),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(DigitsClassifier())
    decisions = decisions_from_csv(Path(trainer.logger.log_dir) / "metrics.csv")
    (out / "decisions.json").write_text(json.dumps(decisions))
    return decisions


def decisions_from_csv(path: Path) -> dict:
    """lr after each epoch's decision and the first epoch flagged stop, from the logger's metrics.csv."""
    rows = [row for row in csv.DictReader(path.open()) if row.get("neve/lr")]
    lrs = [float(row["neve/lr"]) for row in rows]
    stops = [i + 1 for i, row in enumerate(rows) if float(row["neve/stop"]) == 1.0]
    velocities = [float(row["neve/velocity"]) for row in rows]
    return {"lr": lrs, "stop_epoch": stops[0] if stops else None, "velocity": velocities}


def plain_loop(epochs: int = 12) -> dict:
    """The same training written by hand with neve.NeVe: the decisions the callback must reproduce."""
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    controller = neve.NeVe(model, optimizer, make_aux(), **NEVE)
    lrs, velocities, stop_epoch = [], [], None
    for epoch in range(1, epochs + 1):
        for x, y in DataLoader(make_data(), batch_size=GLOBAL_BATCH, shuffle=False):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        decision = controller.step()
        lrs.append(decision.lr)
        velocities.append(decision.model_velocity)
        if decision.stop:
            stop_epoch = epoch
            break
    return {"lr": lrs, "stop_epoch": stop_epoch, "velocity": velocities}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("runs/lightning_digits"))
    args = parser.parse_args()
    result = fit(args.out, args.devices, args.epochs)
    print("lr per epoch:", result["lr"], "stop epoch:", result["stop_epoch"],
          "final velocity:", f"{result['velocity'][-1]:.4f}" if result["velocity"] else math.nan)
