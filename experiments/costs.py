"""What a run costs: its epoch budget times the seconds per epoch its dataset declares for its model.

Each dataset registers its epoch costs (``register_dataset(epoch_costs={model: EpochCost(...)})``, in
``experiments/data/``), with the device, whether the figure was measured, and where it comes from.
``python -m experiments.sweep --list`` multiplies them by each distinct run's epoch budget, an upper bound for
methods that stop early (V.Loss, Label Wave, NeVe with ``--stop halt``). Figures not measured are assumptions,
printed with a ``*``, to be replaced by a measurement on the cluster's GPU.
"""

from __future__ import annotations

from experiments.catalog import PlannedRun
from experiments.data import EpochCost, dataset


def epoch_cost(dataset_name: str, model: str) -> EpochCost | None:
    """The declared cost of one epoch of ``model`` on ``dataset_name`` (None: nobody measured or guessed it)."""
    return dataset(dataset_name).epoch_costs.get(model)


def run_hours(run: PlannedRun) -> tuple[float, EpochCost | None]:
    """Upper-bound hours of one run (its whole epoch budget), and the cost figure used (None: unknown)."""
    cost = epoch_cost(run.config.dataset, run.config.model)
    if cost is None:
        return 0.0, None
    return run.config.epochs * cost.seconds / 3600.0, cost
