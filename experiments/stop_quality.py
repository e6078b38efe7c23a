"""Stop quality, beyond the paper: is the epoch a method stops at (or keeps) a good one, in hindsight?

Per run, from its per-epoch records (accuracies in percent, as in the results):

- **oracle**: the best test accuracy over the epochs the run trained and the first epoch that reached it. No method
  may use it (it reads the test set); it is what the best possible stop on this run's trajectory would report. A
  ``--stop mark`` run (NeVe, the Baseline, the Ultimate Optimizer) trains the whole budget, so its oracle is over
  the whole budget; a halted run (V.Loss and Label Wave, ``--stop halt``) has no epochs after its halt, so its
  oracle is over the epochs it trained only, and ``oracle_whole_budget`` is 0. For a yardstick common to every
  method, each run is also scored against its block's Baseline at the same seed, which always trains the whole
  budget (``baseline_oracle_*``, ``baseline_regret``): that one can be negative, and for Label Wave (trained on
  40% noisy labels) it also prices the noise.
- **regret**: the oracle minus the accuracy the run reports: its cell's metric at the epoch it was read (NeVe at its
  first V < epsilon, V.Loss and Label Wave their kept model, the Baseline and the Ultimate Optimizer their final
  model; a run whose own number is missing falls back to its final model, as the aggregation does). Never negative.
- **epochs saved**: the budget minus the epoch where the method's training ends: its own stop (the first epoch with
  ``method_stop``: NeVe's V < epsilon, V.Loss's and Label Wave's patience run out after their kept model), or the
  budget. V.Loss and Label Wave are charged for the patience they train past the model they keep.
- **at NeVe's stop**: the same two numbers at the first epoch whose velocity fell below epsilon (the ``neve_stop``
  marker every run records), for every method: the Baseline's would-be NeVe stop. Empty where it never fell.

:func:`add_to_runs` adds these columns to ``NAME_runs.csv``, :func:`add_to_cells` their means and 95% t-intervals to
``NAME.csv`` (:data:`experiments.results.STOP_QUALITY_RUN_COLUMNS` and ``STOP_QUALITY_CELL_COLUMNS``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from experiments.aggregate import describe
from experiments.results import FINISHED

#: The block row every run of the block is also scored against, at the same seed.
BASELINE = "Baseline"
#: Per-run quantities summarised per cell (mean and 95% t-interval); NaN where a run has none.
SUMMARISED = ("regret", "epochs_saved", "baseline_regret", "regret_at_neve_stop", "epochs_saved_at_neve_stop")


def stop_quality(records: Sequence[Mapping[str, Any]], *, budget: int, reported_epoch: int) -> dict[str, float]:
    """One run's oracle, regret and epochs saved (module docstring), from its records; ``reported_epoch`` is the
    epoch of the number the run reports (``metric_epoch`` in ``NAME_runs.csv``)."""
    accuracy = {int(r["epoch"]): _percent(r.get("test_acc")) for r in records}
    known = {epoch: acc for epoch, acc in accuracy.items() if not math.isnan(acc)}
    if not known:
        raise ValueError("no epoch of the run recorded a test accuracy; there is no oracle to score against")
    if reported_epoch not in accuracy:
        raise ValueError(f"the run reports epoch {reported_epoch}, which its records do not hold "
                         f"(epochs {min(accuracy)}-{max(accuracy)})")
    oracle_acc = max(known.values())
    oracle_epoch = min(epoch for epoch, acc in known.items() if acc == oracle_acc)  # the cheapest best epoch
    trained = max(accuracy)
    stopped = _first_epoch(records, "method_stop")
    spent = stopped if stopped is not None else trained
    neve = _first_epoch(records, "neve_stop")
    return {"oracle_epoch": oracle_epoch, "oracle_acc": oracle_acc, "oracle_whole_budget": int(trained >= budget),
            "regret": oracle_acc - accuracy[reported_epoch], "epochs_spent": spent, "epochs_saved": budget - spent,
            "regret_at_neve_stop": math.nan if neve is None else oracle_acc - accuracy[neve],
            "epochs_saved_at_neve_stop": math.nan if neve is None else budget - neve}


def add_to_runs(runs: pd.DataFrame, records: Sequence[Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """``NAME_runs.csv`` with every finished run's stop quality; ``records`` are the runs' records, row by row
    (empty for a run not finished). Then each run against its block's Baseline at the same seed."""
    rows = []
    for (_, row), run_records in zip(runs.iterrows(), records, strict=True):
        if row["state"] != FINISHED or not run_records:
            rows.append({})
            continue
        try:
            rows.append(stop_quality(run_records, budget=int(row["budget_epochs"]),
                                     reported_epoch=int(row["metric_epoch"])))
        except ValueError as error:
            raise ValueError(f"run {row['run']}: {error}; its records.csv and summary.json disagree, so train it "
                             "again (delete its folder and rerun the sweep)") from error
    quality = pd.DataFrame(rows, index=runs.index)
    runs = runs.assign(**{column: quality[column] if column in quality else math.nan for column in _RUN_QUALITY})
    return add_baseline_oracle(runs)


def add_baseline_oracle(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's block Baseline oracle at the same seed (only a Baseline that trained its whole budget), and the
    run's reported accuracy below it; NaN in blocks without a Baseline row."""
    acc, epoch = [], []
    finished = runs[runs["state"] == FINISHED]
    baselines = finished[(finished["cell"] == BASELINE) & (finished["oracle_whole_budget"] == 1)]
    oracle = {(row["block"], row["seed"]): (row["oracle_acc"], row["oracle_epoch"]) for _, row in baselines.iterrows()}
    for _, row in runs.iterrows():
        found = oracle.get((row["block"], row["seed"])) if row["state"] == FINISHED else None
        acc.append(found[0] if found else math.nan)
        epoch.append(found[1] if found else math.nan)
    runs = runs.assign(baseline_oracle_acc=acc, baseline_oracle_epoch=epoch)
    return runs.assign(baseline_regret=runs["baseline_oracle_acc"] - runs["acc"].astype(float))


def add_to_cells(cells: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``NAME.csv`` with, per cell, the mean oracle and, for each of :data:`SUMMARISED`, the mean and 95% t-interval
    over its finished runs that have it (``n_at_neve_stop``: how many runs' velocity fell below epsilon)."""
    finished = runs[runs["state"] == FINISHED]
    rows = []
    for _, cell in cells.iterrows():
        done = finished[(finished["block"] == cell["block"]) & (finished["cell"] == cell["cell"])]
        row: dict[str, float] = {"oracle_acc_mean": _mean(done, "oracle_acc"),
                                 "oracle_epoch_mean": _mean(done, "oracle_epoch"),
                                 "n_oracle_whole_budget": int(done["oracle_whole_budget"].sum()) if len(done) else 0,
                                 "epochs_spent_mean": _mean(done, "epochs_spent")}
        for name in SUMMARISED:
            stats = describe(done[name].astype(float).tolist() if len(done) else [])
            row |= {f"{name}_mean": stats["mean"], f"{name}_ci_low": stats["ci_low"],
                    f"{name}_ci_high": stats["ci_high"]}
        row["n_at_neve_stop"] = int(done["epochs_saved_at_neve_stop"].notna().sum()) if len(done) else 0
        rows.append(row)
    return pd.concat([cells, pd.DataFrame(rows, index=cells.index)], axis=1)


#: The columns :func:`stop_quality` returns, in order.
_RUN_QUALITY = ("oracle_epoch", "oracle_acc", "oracle_whole_budget", "regret", "epochs_spent", "epochs_saved",
                "regret_at_neve_stop", "epochs_saved_at_neve_stop")


def _first_epoch(records: Sequence[Mapping[str, Any]], marker: str) -> int | None:
    return next((int(r["epoch"]) for r in records if r.get(marker)), None)


def _percent(value: Any) -> float:
    return math.nan if value is None else 100.0 * float(value)


def _mean(done: pd.DataFrame, column: str) -> float:
    return float(done[column].astype(float).mean()) if len(done) else math.nan
