"""Time to a target accuracy and AlgoPerf's performance profiles: the scoring of the tuning-free comparison.

AlgoPerf (Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms"; Kasimbeg et al. 2024) scores a
training algorithm by the time it takes to reach a fixed target on each workload, not by its final accuracy:
a method that gets there first and stops saves the rest of the budget. Here a workload is a table block (a
dataset and model), the target is the block's Baseline mean final test accuracy minus a margin, and the time is
counted in epochs and in wall seconds from the per-epoch records.

Per workload, a method's time is the median over its seeds with a seed that never reached the target counted as
infinite (AlgoPerf takes the median over its independent studies), so a method is "never" on a workload unless
more than half of its seeds got there. The performance ratio r = t / t_best and the profile
rho(tau) = fraction of workloads with r <= tau follow Dolan & Moré (2002) as AlgoPerf draws them, up to
r_max = 4; the score is the profile's normalised area, 1/(r_max - 1) * integral of rho from 1 to r_max.

Pure functions of numbers and tables: the aggregation calls :func:`first_reaching` on records, the plots the
rest on the results CSVs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: AlgoPerf's largest performance ratio drawn and integrated.
MAX_RATIO = 4.0


def first_reaching(records: Sequence[Mapping[str, Any]], target: float,
                   until: int | None = None) -> tuple[int, float] | None:
    """The first epoch whose test accuracy (a fraction, as records hold it) is at least ``target`` (percent),
    and the wall seconds of the records up to and including it; None when no epoch up to ``until`` gets there.

    ``until`` is the epoch the run reports (NeVe: its stop): a run marked with ``--stop mark`` trains on after
    it, but a method that stops would not have, so later epochs do not count."""
    elapsed = 0.0
    for record in records:
        if until is not None and record["epoch"] > until:
            return None
        elapsed += float(record["seconds"])
        if 100.0 * float(record["test_acc"]) >= target:
            return int(record["epoch"]), elapsed
    return None


def workload_times(runs: pd.DataFrame, column: str, workload: str = "block", method: str = "cell") -> pd.DataFrame:
    """Workloads x methods: the median over seeds of ``column`` (a run's time to target; NaN = never, counted as
    infinite). Rows and columns keep the order they first appear in."""
    times = runs.assign(_time=runs[column].astype(float).fillna(math.inf))
    table = times.groupby([workload, method], sort=False)["_time"].median().unstack(method)
    order = list(dict.fromkeys(runs[method]))
    return table.reindex(index=list(dict.fromkeys(runs[workload])), columns=order)


def performance_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """r = t / (the workload's best t), per workload (row); infinite where the method never reached the target,
    and for every method on a workload no method reached."""
    values = times.to_numpy(float)
    best = values.min(axis=1, keepdims=True) if values.size else values
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(np.isfinite(values) & np.isfinite(best), values / best, math.inf)
    return pd.DataFrame(ratios, index=times.index, columns=times.columns)


def performance_profile(ratios: pd.DataFrame, taus: Iterable[float]) -> pd.DataFrame:
    """rho_m(tau): per method (column), the fraction of workloads with r <= tau; rows are ``taus``."""
    taus = np.asarray(list(taus), dtype=float)
    values = ratios.to_numpy(float)
    fractions = (values[None, :, :] <= taus[:, None, None]).mean(axis=1)
    return pd.DataFrame(fractions, index=pd.Index(taus, name="tau"), columns=ratios.columns)


def profile_steps(ratios: pd.DataFrame, max_ratio: float = MAX_RATIO) -> np.ndarray:
    """The taus where some profile steps, from 1 to ``max_ratio``: what a step plot needs."""
    finite = ratios.to_numpy(float)
    inside = finite[np.isfinite(finite) & (finite >= 1) & (finite <= max_ratio)]
    return np.unique(np.concatenate([[1.0, max_ratio], inside]))


def profile_score(ratios: pd.DataFrame, max_ratio: float = MAX_RATIO) -> pd.Series:
    """AlgoPerf's score per method: the area under rho from 1 to ``max_ratio``, divided by ``max_ratio - 1``
    (1 = fastest on every workload, 0 = never within ``max_ratio`` of the fastest)."""
    taus = profile_steps(ratios, max_ratio)
    rho = performance_profile(ratios, taus)
    widths = np.diff(taus)  # rho is a right-continuous step function: constant on [tau_i, tau_i+1)
    area = (rho.iloc[:-1].to_numpy(float) * widths[:, None]).sum(axis=0)
    return pd.Series(area / (max_ratio - 1), index=ratios.columns, name="score")
