"""The numbers behind each figure's claim: a figure shows, these say how much and how sure.

An experiment declares its claims in the catalog (``Experiment.claims``: a claim's name here -> its options); the
aggregation computes them from the runs it read and writes ``NAME_claims.csv`` (one row per claim, cell and
quantity: n, mean, std, 95% t-interval, and Welch's test against the ``versus`` cell where the claim compares) and,
for claims measured run by run, ``NAME_claims_runs.csv`` (one row per run). Accuracies are in percent.

- ``stop_vs_overfitting`` (Fig. 5, "NeVe's stop comes where overfitting begins"): per run, the epoch of the minimum
  test loss and of the best test accuracy against the run's first V < epsilon, and their differences (stop minus
  that epoch: negative = the stop comes first).
- ``velocity_sets`` (Fig. 7, "velocity on the aux set tracks velocity on real data, and its plateau lines up with
  the losses' turn"): per run, Spearman's rank correlation over epochs of the aux-set velocity with the
  validation-set and training-set velocities, and of their epoch-to-epoch changes (two decaying series correlate in
  rank whatever else they do; their changes correlate only if they move together); and the lag from the epoch of
  the minimum validation (and test) loss to the aux velocity's plateau. The plateau is NeVe's own event, the first
  epoch with V < epsilon (the run's ``neve_stop`` marker): the one the method acts on, so the lag says whether it
  acts at the turn, and no second threshold is introduced. A run whose velocity never gets there has an empty
  plateau and lag: the claims CSV's ``n`` counts the runs that have a value, ``n_runs`` all of them.
- ``against_reference`` (Fig. 4b's sizes, the alpha/delta ablation): each cell's accuracy (its own number) and the
  epoch it was read (NeVe's stop) against the ``reference`` cell of its block, Welch.
- ``paired`` (Fig. 4b's types): at each value of the cell value ``by`` (``aux_size``), the cells that differ in
  ``across`` (``aux``), each against the first declared (Gaussian against real at each size), Welch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from experiments.aggregate import describe, welch
from experiments.results import CLAIM_COLUMNS, CLAIM_RUN_COLUMNS, FINISHED

Records = Sequence[Mapping[str, Any]]
#: Per-run quantities summarised per cell: ``NAME_runs.csv`` column -> the quantity's name in the claims CSV.
RUN_QUANTITIES = {"acc": "acc", "metric_epoch": "metric_epoch"}


# ------------------------------------------------------------------------------------------ per run
def stop_vs_overfitting(records: Records) -> dict[str, float]:
    """Fig. 5, one run: where NeVe's stop falls against the test loss's minimum and the test accuracy's best."""
    stop = _first(records, "neve_stop")
    min_loss = _arg(records, "test_loss", min)
    best_acc = _arg(records, "test_acc", max)
    return {"neve_stop_epoch": _epoch(stop), "min_test_loss_epoch": _epoch(min_loss),
            "best_test_acc_epoch": _epoch(best_acc),
            "stop_minus_min_test_loss_epoch": _epoch(stop) - _epoch(min_loss),
            "stop_minus_best_test_acc_epoch": _epoch(stop) - _epoch(best_acc),
            "test_acc_at_neve_stop": _percent(_get(stop, "test_acc")),
            "best_test_acc": _percent(_get(best_acc, "test_acc")),
            "test_loss_at_neve_stop": _float(_get(stop, "test_loss")),
            "min_test_loss": _float(_get(min_loss, "test_loss"))}


def velocity_sets(records: Records) -> dict[str, float]:
    """Fig. 7, one run: how the aux-set velocity tracks the validation- and training-set velocities, and the lag
    from the losses' minima to its plateau (its first V < epsilon)."""
    missing = [name for name in ("velocity_val", "velocity_train", "val_loss") if all(r.get(name) is None
                                                                                     for r in records)]
    if missing:
        raise ValueError(f"the run recorded no {', '.join(missing)}: Fig. 7's runs need --velocity-sets train,val "
                         "and a held-out validation split (--holdout)")
    aux = _series(records, "model_velocity")
    plateau = _epoch(_first(records, "neve_stop"))
    min_val, min_test = _epoch(_arg(records, "val_loss", min)), _epoch(_arg(records, "test_loss", min))
    out = {}
    for name in ("val", "train"):
        other = _series(records, f"velocity_{name}")
        out[f"spearman_aux_{name}"] = _spearman(aux, other)
        out[f"spearman_aux_{name}_changes"] = _spearman(np.diff(aux), np.diff(other))
    return out | {"plateau_epoch": plateau, "min_val_loss_epoch": min_val, "min_test_loss_epoch": min_test,
                  "plateau_minus_min_val_loss_epoch": plateau - min_val,
                  "plateau_minus_min_test_loss_epoch": plateau - min_test}


#: Claims measured run by run: name -> the function of one run's records.
PER_RUN: dict[str, Callable[[Records], dict[str, float]]] = {"stop_vs_overfitting": stop_vs_overfitting,
                                                             "velocity_sets": velocity_sets}


# ------------------------------------------------------------------------------------------ comparisons
def against_reference(runs: pd.DataFrame, reference: str) -> list[dict[str, Any]]:
    """Each cell's accuracy and reported epoch against the ``reference`` cell of its block (Welch); ``runs`` is
    the whole runs table, planned runs not finished included."""
    rows = []
    for block, cells in _cells(runs).items():
        for cell in cells:  # a block planned without its reference (--only) is described, not compared
            versus = reference if reference in cells and cell != reference else ""
            rows += _compare("against_reference", runs, block, cell, versus)
    return rows


def paired(runs: pd.DataFrame, by: str, across: str) -> list[dict[str, Any]]:
    """At each value of cell value ``by``, the cells that differ in ``across``, each against the first (Welch)."""
    for name in (by, across):
        if name not in runs.columns:
            raise ValueError(f"paired: the experiment's cells have no value {name!r}")
    rows = []
    cells = runs.drop_duplicates(["block", "cell"])
    for (block, _), group in cells.groupby(["block", by], sort=False):
        if group[across].nunique() < 2:
            continue
        first, *others = group["cell"].tolist()
        rows += _compare("paired", runs, block, first, "")
        for label in others:
            rows += _compare("paired", runs, block, label, first)
    return rows


#: Claims that compare cells: name -> the function of the runs table and the claim's options.
COMPARISONS: dict[str, Callable[..., list[dict[str, Any]]]] = {"against_reference": against_reference,
                                                               "paired": paired}
#: Every claim an experiment may declare.
CLAIMS = (*PER_RUN, *COMPARISONS)


# ------------------------------------------------------------------------------------------ tables
def claim_tables(claims: Mapping[str, Mapping[str, Any]], runs: pd.DataFrame,
                 records: Mapping[str, Records]) -> dict[str, pd.DataFrame]:
    """``{"claims": NAME_claims.csv, "claims_runs": NAME_claims_runs.csv}`` for the declared ``claims``, from the
    runs table (``NAME_runs.csv``) and each finished run's records by run name; {} when none is declared."""
    unknown = [name for name in claims if name not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; known: {', '.join(CLAIMS)}")
    finished = runs[runs["state"] == FINISHED]
    summary: list[dict[str, Any]] = []
    per_run: pd.DataFrame | None = None
    for name, options in claims.items():
        if name in COMPARISONS:
            summary += COMPARISONS[name](runs, **options)
            continue
        measured = pd.DataFrame([{**{c: row[c] for c in CLAIM_RUN_COLUMNS}, **PER_RUN[name](records[row["run"]])}
                                 for _, row in finished.iterrows()])
        measured = measured.reindex(columns=list(dict.fromkeys([*CLAIM_RUN_COLUMNS, *measured.columns])))
        summary += _summarise(name, measured)
        per_run = measured if per_run is None else per_run.merge(measured, on=list(CLAIM_RUN_COLUMNS), how="outer")
    if not claims:
        return {}
    tables = {"claims": pd.DataFrame(summary, columns=list(CLAIM_COLUMNS))}
    if per_run is not None:
        tables["claims_runs"] = per_run
    return tables


def _summarise(claim: str, measured: pd.DataFrame) -> list[dict[str, Any]]:
    quantities = [c for c in measured.columns if c not in CLAIM_RUN_COLUMNS]
    return [_row(claim, block, cell, quantity, group[quantity].astype(float).tolist())
            for (block, cell), group in measured.groupby(["block", "cell"], sort=False) for quantity in quantities]


def _compare(claim: str, runs: pd.DataFrame, block: str, cell: str, versus: str) -> list[dict[str, Any]]:
    rows = []
    for column, quantity in RUN_QUANTITIES.items():
        values = _values(runs, block, cell, column)
        row = _row(claim, block, cell, quantity, values)
        if versus:
            reference = _values(runs, block, versus, column)
            known = describe(reference)
            t, p = welch(_finite(values), _finite(reference))
            row |= {"versus": versus, "versus_n": known["n"], "versus_mean": known["mean"],
                    "diff": row["mean"] - known["mean"], "welch_t": t, "welch_p": p}
        rows.append(row)
    return rows


def _row(claim: str, block: str, cell: str, quantity: str, values: Sequence[float]) -> dict[str, Any]:
    """Statistics of one quantity over a cell's runs: ``n`` of the ``n_runs`` have it (NeVe's stop: reached)."""
    return {"claim": claim, "block": block, "cell": cell, "quantity": quantity, **describe(values),
            "n_runs": len(values), "versus": "",
            "versus_n": math.nan, "versus_mean": math.nan, "diff": math.nan, "welch_t": math.nan,
            "welch_p": math.nan}


def _values(runs: pd.DataFrame, block: str, cell: str, column: str) -> list[float]:
    """A cell's finished runs' values of ``column``."""
    rows = runs[(runs["block"] == block) & (runs["cell"] == cell) & (runs["state"] == FINISHED)]
    return rows[column].astype(float).tolist()


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def _cells(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Each block's cells, in the order they were declared."""
    pairs = runs[["block", "cell"]].drop_duplicates()
    return {block: group["cell"].tolist() for block, group in pairs.groupby("block", sort=False)}


# ------------------------------------------------------------------------------------------ records
def _first(records: Records, marker: str) -> Mapping[str, Any] | None:
    return next((r for r in records if r.get(marker)), None)


def _arg(records: Records, column: str, pick: Callable[..., Any]) -> Mapping[str, Any] | None:
    """The first record with the smallest/largest finite ``column``; None if none is finite (a diverged run)."""
    known = [r for r in records if r.get(column) is not None and math.isfinite(float(r[column]))]
    if not known:
        return None
    best = pick(float(r[column]) for r in known)
    return next(r for r in known if float(r[column]) == best)


def _get(record: Mapping[str, Any] | None, column: str) -> Any:
    return None if record is None else record.get(column)


def _epoch(record: Mapping[str, Any] | None) -> float:
    return math.nan if record is None else float(record["epoch"])


def _series(records: Records, column: str) -> np.ndarray:
    return np.array([_float(r.get(column)) for r in records], dtype=float)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho over the epochs where both are finite; NaN below 3 such epochs or when one is constant."""
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.spearmanr(a[keep], b[keep]).statistic)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _percent(value: Any) -> float:
    return math.nan if value is None else 100.0 * float(value)
