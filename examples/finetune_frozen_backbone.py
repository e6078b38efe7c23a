"""NeVe on a fine-tune: a frozen pretrained backbone and a new trainable head, on scikit-learn's digits.

    python examples/finetune_frozen_backbone.py

A small CNN is pretrained on digits 0-4; its backbone is then frozen (``requires_grad_(False)``, kept in eval
mode) and a new head is trained on digits 5-9 with NeVe. The backbone computes the same function at every
epoch, so its neurons' velocity is 0. NeVe's default leaves such modules out (no trained parameter reaches
their output) and measures the head alone; averaging the backbone in, as neve 0.1 did, divides the head's
velocity by the share of head neurons and stops the fine-tune while the head still moves. Both are run here
(the old rule is ``modules=`` every Conv/Linear/BatchNorm), to the same epoch budget; the script prints
each one's stop epoch, the head's own velocity there and the test accuracy at the stop and at the end, and
writes them to <out>/decisions.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from digits_data import load_digits_tensors
from torch import nn

import neve

SEED = 0
PRETRAIN_EPOCHS = 10
EPOCHS = 30
LR = 0.05
AUX_SIZE = 64


def backbone() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def split(first: bool) -> dict[str, torch.Tensor]:
    """Digits 0-4 (``first``) or 5-9, relabelled 0-4, as float images in [0, 1]."""
    data = load_digits_tensors()
    out = {}
    for part in ("train", "test"):
        labels = data[f"{part}_labels"]
        keep = labels < 5 if first else labels >= 5
        out[f"{part}_x"] = data[f"{part}_images"][keep].float().div(255.0)
        out[f"{part}_y"] = labels[keep] - (0 if first else 5)
    return out


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, epoch: int,
                frozen: nn.Module | None = None) -> None:
    model.train()
    if frozen is not None:
        frozen.eval()  # a frozen backbone keeps its BatchNorm statistics
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED + epoch))
    for rows in order.split(64):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
        optimizer.step()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def pretrained_backbone() -> nn.Module:
    torch.manual_seed(SEED)
    data = split(first=True)
    model = nn.Sequential(backbone(), nn.Linear(64, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for epoch in range(PRETRAIN_EPOCHS):
        train_epoch(model, optimizer, data["train_x"], data["train_y"], epoch)
    return model[0]


def fine_tune(rule: str, pretrained: nn.Module, epochs: int = EPOCHS) -> dict:
    """Train a new head on digits 5-9 over the frozen backbone, NeVe marking its stop (the budget runs out)."""
    data = split(first=False)
    frozen = pretrained.requires_grad_(False)
    torch.manual_seed(SEED + 1)
    model = nn.Sequential(frozen, nn.Linear(64, 5))
    optimizer = torch.optim.SGD(model[1].parameters(), lr=LR, momentum=0.9)
    modules = None if rule == "default" else (lambda name, module: neve.is_default_module(module))
    aux = data["train_x"][:AUX_SIZE]  # real images: noise through a frozen backbone gives near-constant features
    controller = neve.NeVe(model, optimizer, aux, patience=5, modules=modules)
    velocities, head_velocities, accuracies = [], [], []
    for epoch in range(1, epochs + 1):
        train_epoch(model, optimizer, data["train_x"], data["train_y"], epoch, frozen=frozen)
        decision = controller.step()
        velocities.append(decision.model_velocity)
        head_velocities.append(float(decision.report.layers["1"].abs().mean()))
        accuracies.append(accuracy(model, data["test_x"], data["test_y"]))
    stop = controller.stop_epoch
    return {"rule": rule, "modules": list(controller.monitor.modules),
            "neurons": sum(controller.monitor.neurons.values()), "stop_epoch": stop,
            "velocity_at_stop": velocities[stop - 1] if stop else None,
            "head_velocity_at_stop": head_velocities[stop - 1] if stop else None,
            "accuracy_at_stop": accuracies[stop - 1] if stop else None, "accuracy_at_end": accuracies[-1],
            "velocity": velocities, "head_velocity": head_velocities, "accuracy": accuracies}


def main(out: Path, epochs: int = EPOCHS) -> dict[str, dict]:
    pretrained = pretrained_backbone()
    results = {rule: fine_tune(rule, copy.deepcopy(pretrained), epochs) for rule in ("default", "every module")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "decisions.json").write_text(json.dumps(results, indent=2))
    print(f"{'rule':14s} {'measured':>20s} {'stop':>5s} {'V at stop':>10s} {'head v':>9s} {'acc stop':>9s} "
          f"{'acc end':>8s}")
    for rule, r in results.items():
        stop = r["stop_epoch"]
        numbers = (f"{stop:5d} {r['velocity_at_stop']:10.5f} {r['head_velocity_at_stop']:9.5f} "
                   f"{100 * r['accuracy_at_stop']:8.1f}%" if stop else f"{'none':>5s} {'':10s} {'':9s} {'':9s}")
        measured = f"{len(r['modules'])} modules, {r['neurons']} n."
        print(f"{rule:14s} {measured:>20s} {numbers} {100 * r['accuracy_at_end']:7.1f}%")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=Path("runs/finetune_frozen_backbone"))
    cli = parser.parse_args()
    main(cli.out, cli.epochs)
