"""What a run costs: seconds per epoch per dataset and model, and where each figure comes from.

``python -m experiments.sweep --list`` multiplies these by each distinct run's epoch budget, an upper bound
for methods that stop early (V.Loss, Label Wave, NeVe with ``--stop halt``). Figures marked not measured are
assumptions, printed with a ``*``, to be replaced by a measurement on the cluster's GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.catalog import PlannedRun


@dataclass(frozen=True)
class EpochCost:
    seconds: float
    device: str
    measured: bool
    source: str


EPOCH_COSTS: dict[tuple[str, str], EpochCost] = {
    ("cifar10", "resnet32"): EpochCost(8.0, "H100", True, "a real NeVe run: 50,000 train images, test and velocity, "
                                                           "eager, bf16 (issue 2-4 session)"),
    ("cifar100", "resnet32"): EpochCost(8.0, "H100", True, "as CIFAR-10 (same images and model; 100-way head)"),
    ("imagenet100", "resnet50"): EpochCost(90.0, "H100", False, "assumed ~1,500 images/s (PIL DataLoader bound) "
                                                                "over 126,689 images plus test; not measured"),
    ("imagenet100", "swinv2_tiny"): EpochCost(150.0, "H100", False, "assumed ~900 images/s at 256 px; not measured"),
    ("digits", "resnet8"): EpochCost(0.5, "CPU", True, "2-core CPU, fp32, 1,497 images, test and velocity"),
    ("mnist1d", "mnist1d_cnn"): EpochCost(0.15, "CPU", True, "median of 209 mnist1d-* runs' wall seconds per epoch, "
                                                            "2-core AMD EPYC, fp32, two runs at a time"),
    ("mnist1d", "mnist1d_resnet"): EpochCost(1.8, "CPU", True, "median of 53 mnist1d-* ResNet-1D runs, as the CNN's"),
    ("mnist1d", "mnist1d_mlp"): EpochCost(0.08, "CPU", True, "two 30-epoch runs of the published recipe at once, "
                                                            "wall seconds per epoch, same machine"),
}


def run_hours(run: PlannedRun) -> tuple[float, EpochCost | None]:
    """Upper-bound hours of one run (its whole epoch budget), and the cost figure used (None: unknown)."""
    cost = EPOCH_COSTS.get((run.config.dataset, run.config.model))
    if cost is None:
        return 0.0, None
    return run.config.epochs * cost.seconds / 3600.0, cost
