"""Run folders of one experiment -> the results CSVs and its table: ``python -m experiments.aggregate NAME``.

The runs come from the catalog through :func:`experiments.planning.plan` with the sweep's own options, so
``aggregate NAME`` reads exactly the runs ``sweep NAME`` trains, and each through :class:`RunFolder` (the one
reader of the trainer's files). It needs no scheduler: finished runs are read from their folders, and the SLURM
queue is asked only about submitted runs not finished; when it cannot be read those are listed as ``unknown``
with its error, and the rest is aggregated. What is written, and its columns, is :mod:`experiments.results`.

Each cell's number is its ``metric`` summary field (NeVe: the test accuracy at the first epoch with
V < epsilon; V.Loss and Label Wave: at the model they kept; Baseline and the Ultimate Optimizer: at the end).
When that field is empty (NeVe never reached V < epsilon within the budget, or a method kept nothing), the
run counts with its final test accuracy -- the model that run actually ended with -- and is marked
(``acc_fallback``, ``n_fallback``, a dagger in the table). Runs not finished are listed, never averaged; so are
diverged runs (the training loss became non-finite and the trainer halted them), which each cell also counts
(``n_diverged``, a column and a footnote in the table). A run whose summary or records are damaged is
``failed``, named with the fix (:func:`experiments.planning.read_finished`, the sweep's own test of "finished").

Partial results never replace complete ones: when the results folder already holds finished runs that are not
finished here (a sweep still under way, fewer seeds, another runs folder), nothing is written and the command
says how to get the rest; ``--partial`` writes the table anyway, into ``<results>/partial/``, marked partial
(the ``partial`` column and a line above the table).

Examples:
    python -m experiments.aggregate table2                   # results/table2.csv, table2_runs.csv; prints it
    python -m experiments.aggregate fig5 --miniature --seeds 2 --runs-dir /tmp/runs   # -> results/miniature/
    python -m experiments.aggregate table2 --partial         # while the sweep runs: results/partial/
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from experiments.catalog import MINIATURE_EPOCHS, Cell, Experiment, PlannedRun, get_experiment
from experiments.data import DATASETS
from experiments.planning import DONE, plan, statuses
from experiments.results import (
    CELL_COLUMNS,
    DIVERGED,
    DIVERGED_CELL_COLUMN,
    FINISHED,
    FLOAT_FORMAT,
    INTEGER,
    METHOD_TIME_CELL_COLUMN,
    METHOD_TIME_RUN_COLUMN,
    PARTIAL_COLUMN,
    RUN_COLUMNS,
    Results,
    markdown,
    resolve_results_dir,
    results_path,
)
from experiments.run_folder import RunFolderError
from experiments.time_to_target import first_reaching
from experiments.training.config import FIDELITIES, RESUMABLE_FIELDS
from neve.io import atomic_write_text

#: Summary fields that are accuracies (fractions in the run folder, percent in the results).
ACCURACIES = ("final_test_acc", "test_acc_at_stop", "test_acc_at_neve_stop", "test_acc_at_kept",
              "test_acc_at_best_val")
#: The epoch each accuracy field was read at.
EPOCH_OF = {"final_test_acc": "epochs_run", "test_acc_at_stop": "stop_epoch",
            "test_acc_at_neve_stop": "neve_stop_epoch", "test_acc_at_kept": "kept_epoch",
            "test_acc_at_best_val": "best_val_epoch"}
#: Record columns that are accuracies.
RECORD_ACCURACIES = ("train_acc", "val_acc", "test_acc")
#: Config fields never shown as varying: the seed has its own column, the rest do not change the training.
NOT_VARYING = RESUMABLE_FIELDS | {"seed"}


class NothingFinished(RuntimeError):
    """No run of the experiment has finished: there is nothing to average."""


@dataclass
class RunData:
    """One planned run as read from its folder (``summary``/``records`` only when finished and readable)."""

    run: PlannedRun
    state: str
    detail: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- reading
def read_runs(runs: Sequence[PlannedRun]) -> list[RunData]:
    """Each planned run's state (the sweep's, :func:`experiments.planning.run_status`), with the summary and
    records of the finished and diverged ones (read and checked once there). A run whose files are damaged is
    ``failed``, its detail naming the file and the fix."""
    out = []
    for status in statuses(runs):
        done = status.finished
        out.append(RunData(status.run, status.state, status.detail, done.summary if done else {},
                           done.records if done else []))
    return out


# ------------------------------------------------------------------------------------------ statistics
def describe(values: Sequence[float]) -> dict[str, float]:
    """n, mean, sample std (ddof 1, as the paper reports over seeds) and the 95% t-interval of the mean."""
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(data)
    mean = float(data.mean()) if n else math.nan
    std = float(data.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def welch(sample: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """Two-sided Welch t-test (t, p) of ``sample`` against ``reference``; NaN when a side has < 2 values or
    neither varies."""
    a, b = np.asarray(sample, dtype=float), np.asarray(reference, dtype=float)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


# -------------------------------------------------------------------------------------------- tables
def varying_fields(runs: Sequence[PlannedRun]) -> list[str]:
    """Config fields whose value differs between the experiment's runs (seed and output options aside)."""
    configs = [run.config.to_dict() for run in runs]
    names = [name for name in configs[0] if name not in NOT_VARYING and name not in ("dataset", "model")]
    return [name for name in names if len({_plain(c.get(name)) for c in configs}) > 1]


def _plain(value: Any) -> Any:
    """A config value as one CSV cell: lists joined by commas (as ``--velocity-sets``), mappings as JSON."""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def _cell_columns(cell: Cell, values: Sequence[str]) -> dict[str, Any]:
    return {"block": cell.block, "cell": cell.label, **{v: cell.values.get(v) for v in values}}


def value_names(experiment_cells: Sequence[Cell]) -> list[str]:
    names = list(dict.fromkeys(key for cell in experiment_cells for key in cell.values))
    clash = set(names) & {"block", "cell", "seed", "run", "dataset", "model", "epoch", "state"}
    if clash:
        raise ValueError(f"cell value(s) {sorted(clash)} clash with a results column; rename them in the catalog")
    return names


def runs_table(data: Sequence[RunData], values: Sequence[str], varying: Sequence[str]) -> pd.DataFrame:
    """``NAME_runs.csv``: one row per (cell, seed), finished or not."""
    rows = []
    for item in data:
        run, config, summary = item.run, item.run.config, item.summary
        row = {**_cell_columns(run.cell, values), "seed": run.seed, "run": run.name, "state": item.state,
               "detail": item.detail, "dataset": config.dataset, "model": config.model,
               **{f"config.{name}": _plain(getattr(config, name)) for name in varying},
               "holdout_images": _holdout_images(config.dataset, config.holdout),
               "budget_epochs": config.epochs, "epsilon": config.epsilon, "metric": run.cell.metric}
        if item.state in DONE:
            value, fallback = summary.get(run.cell.metric), False
            if value is None:
                value, fallback = summary["final_test_acc"], True
            epoch_field = "epochs_run" if fallback else EPOCH_OF[run.cell.metric]
            reported_epoch = summary.get(epoch_field)
            row |= {"acc": _percent(value), "acc_fallback": int(fallback), "metric_epoch": reported_epoch,
                    **{name: _percent(summary.get(name)) for name in ACCURACIES},
                    **{name: summary.get(name) for name in EPOCH_OF.values()},
                    "lr_decay_epochs": " ".join(str(r["epoch"]) for r in item.records if r.get("lr_reduced")),
                    "wall_seconds": summary.get("wall_seconds"), "diverged": int(bool(summary.get("diverged"))),
                    METHOD_TIME_RUN_COLUMN: method_seconds(item.records, config.stop, reported_epoch)}
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=_ordered(frame.columns, values, varying, "runs"))


def method_seconds(records: Sequence[dict[str, Any]], stop: str, reported_epoch: int | None) -> float:
    """The wall seconds a method spends to the number it reports (``results.METHOD_TIME_RUN_COLUMN``): a
    ``--stop mark`` run trains on past its marked stop, so only its records up to the reported epoch count."""
    last = reported_epoch if stop == "mark" and reported_epoch is not None else math.inf
    return sum(float(record["seconds"]) for record in records if int(record["epoch"]) <= last)


def cells_table(runs: pd.DataFrame, cells: Sequence[Cell], values: Sequence[str], varying: Sequence[str],
                kind: str, *, second_reference: str | None = None, also_report: Sequence[str] = (),
                partial: bool = False) -> pd.DataFrame:
    """``NAME.csv``: per cell, the statistics over its finished seeds (diverged ones counted apart, in
    ``n_diverged``); tables add Welch's test per block (against the Baseline, and against ``second_reference``
    when given); ``also_report`` summary fields and, when the runs have it, the time to target are summarised
    per cell too. ``partial``: written with ``--partial`` (the ``partial`` column)."""
    finished = runs[runs["state"] == FINISHED]
    rows = []
    for cell in cells:
        planned = runs[(runs["block"] == cell.block) & (runs["cell"] == cell.label)]
        done = finished[(finished["block"] == cell.block) & (finished["cell"] == cell.label)]
        first = planned.iloc[0]
        acc = describe(done["acc"].tolist())
        final = describe(done["final_test_acc"].tolist())
        epoch = describe(done["metric_epoch"].astype(float).tolist())
        paper_mean, paper_std = cell.paper if cell.paper else (math.nan, math.nan)
        rows.append({**_cell_columns(cell, values), "dataset": first["dataset"], "model": first["model"],
                     **{f"config.{name}": first[f"config.{name}"] for name in varying},
                     "holdout_images": first["holdout_images"], "budget_epochs": first["budget_epochs"],
                     "epsilon": first["epsilon"],
                     "metric": cell.metric, "n": acc["n"], "n_asked": len(planned),
                     "n_fallback": int(done["acc_fallback"].sum()) if len(done) else 0,
                     DIVERGED_CELL_COLUMN: int((planned["state"] == DIVERGED).sum()), PARTIAL_COLUMN: int(partial),
                     "mean": acc["mean"], "std": acc["std"], "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
                     "final_mean": final["mean"], "final_std": final["std"],
                     "metric_epoch_mean": epoch["mean"], "metric_epoch_std": epoch["std"],
                     "epochs_mean": done["epochs_run"].astype(float).mean() if len(done) else math.nan,
                     "wall_hours_mean": done["wall_seconds"].astype(float).mean() / 3600 if len(done) else math.nan,
                     "paper_mean": paper_mean, "paper_std": paper_std, "diff": acc["mean"] - paper_mean,
                     "welch_ref": None, "welch_t": math.nan, "welch_p": math.nan,
                     **({METHOD_TIME_CELL_COLUMN: done[METHOD_TIME_RUN_COLUMN].astype(float).mean()
                         if len(done) else math.nan} if METHOD_TIME_RUN_COLUMN in runs.columns else {}),
                     **{column: value for name in also_report for column, value in _also(name, done).items()},
                     **(_time_to_target(done) if "target_epoch" in runs.columns else {})})
    frame = pd.DataFrame(rows)
    if kind == "table":
        _add_welch(frame, finished, block_reference)
        if second_reference:
            frame = frame.assign(welch2_ref=None, welch2_t=math.nan, welch2_p=math.nan)
            _add_welch(frame, finished, lambda labels: second_reference if second_reference in labels else None,
                       prefix="welch2")
    return frame.reindex(columns=_ordered(frame.columns, values, varying, "cells"))


def block_reference(labels: Sequence[str]) -> str:
    """The row a block is compared with: its Baseline, or its first row."""
    return "Baseline" if "Baseline" in labels else labels[0]


def _add_welch(cells: pd.DataFrame, finished: pd.DataFrame, reference_of: Callable[[list[str]], str | None],
               prefix: str = "welch") -> None:
    """Each row against its block's reference row (``reference_of`` the block's labels; None: no test)."""
    for _, block in cells.groupby("block", sort=False):
        reference = reference_of(block["cell"].tolist())
        if reference is None:
            continue
        ref_block = block["block"].iloc[0]

        def accs(label: str, block_name: str = ref_block) -> list[float]:
            rows = finished[(finished["block"] == block_name) & (finished["cell"] == label)]
            return rows["acc"].dropna().tolist()

        for index, row in block.iterrows():
            cells.at[index, f"{prefix}_ref"] = reference
            if row["cell"] != reference:
                cells.at[index, f"{prefix}_t"], cells.at[index, f"{prefix}_p"] = welch(accs(row["cell"]),
                                                                                       accs(reference))


def _also(name: str, done: pd.DataFrame) -> dict[str, float]:
    """A summary field beside the cell's own number: over the runs that recorded it (no fallback), and where."""
    acc = describe(done[name].astype(float).tolist())
    return {f"{name}_mean": acc["mean"], f"{name}_std": acc["std"], f"{name}_n": acc["n"],
            f"{name}_epoch_mean": done[EPOCH_OF[name]].astype(float).mean() if len(done) else math.nan}


# ------------------------------------------------------------------------------------------ time to target
def add_time_to_target(runs: pd.DataFrame, data: Sequence[RunData], margin: float) -> pd.DataFrame:
    """``runs`` with ``target`` (the block's reference mean final accuracy - ``margin``, %), and each finished
    run's ``target_epoch`` and ``target_seconds`` (empty: never reached up to the epoch it reports)."""
    targets = {}
    for block, rows in runs.groupby("block", sort=False):
        reference = rows[(rows["cell"] == block_reference(list(dict.fromkeys(rows["cell"]))))
                         & (rows["state"] == FINISHED)]
        targets[block] = reference["final_test_acc"].astype(float).mean() - margin if len(reference) else math.nan
    epochs, seconds = [], []
    for (_, row), item in zip(runs.iterrows(), data, strict=True):
        reached = None
        if item.state == FINISHED and not math.isnan(targets[row["block"]]):
            reached = first_reaching(item.records, targets[row["block"]], until=int(row["metric_epoch"]))
        epochs.append(reached[0] if reached else math.nan)
        seconds.append(reached[1] if reached else math.nan)
    return runs.assign(target=runs["block"].map(targets).astype(float), target_epoch=epochs, target_seconds=seconds)


def _time_to_target(done: pd.DataFrame) -> dict[str, float]:
    """Per cell: the target, how many runs reached it, and the mean epochs and wall seconds of those that did."""
    reached = done.dropna(subset=["target_epoch"])
    epoch = describe(reached["target_epoch"].astype(float).tolist())
    return {"target": done["target"].iloc[0] if len(done) else math.nan, "n_target": len(reached),
            "target_epoch_mean": epoch["mean"], "target_epoch_std": epoch["std"],
            "target_seconds_mean": reached["target_seconds"].astype(float).mean() if len(reached) else math.nan}


def epochs_table(data: Sequence[RunData], values: Sequence[str]) -> pd.DataFrame:
    """``NAME_epochs.csv``: every record of every finished run, accuracies in percent."""
    rows = []
    for item in data:
        if item.state != FINISHED:
            continue
        head = {**_cell_columns(item.run.cell, values), "seed": item.run.seed, "run": item.run.name}
        for record in item.records:
            rows.append({**head, **{key: _percent(value) if key in RECORD_ACCURACIES else value
                                    for key, value in record.items()}})
    return pd.DataFrame(rows)


def stops_by_epsilon(data: Sequence[RunData], values: Sequence[str], cells: Sequence[Cell],
                     epsilons: Sequence[float]) -> pd.DataFrame:
    """Fig. 6 from records: for each run and epsilon, the stop is the first epoch with V < epsilon and the
    accuracy is that epoch's; a run that never gets there stops at its last epoch (counted in ``n_no_stop``)."""
    rows = []
    for cell in cells:
        done = [item for item in data if item.state == FINISHED and item.records
                and (item.run.cell.block, item.run.cell.label) == (cell.block, cell.label)]
        for epsilon in epsilons:
            stops = [_stop_at(item.records, epsilon) for item in done]
            epochs = describe([float(epoch) for epoch, _, _ in stops])
            accs = describe([_percent(acc) for _, acc, _ in stops])
            rows.append({**_cell_columns(cell, values), "epsilon": epsilon, "n": accs["n"],
                         "n_no_stop": sum(not stopped for _, _, stopped in stops),
                         "epochs_mean": epochs["mean"], "epochs_std": epochs["std"], "acc_mean": accs["mean"],
                         "acc_std": accs["std"], "acc_ci_low": accs["ci_low"], "acc_ci_high": accs["ci_high"]})
    return pd.DataFrame(rows)


def _stop_at(records: Sequence[dict[str, Any]], epsilon: float) -> tuple[int, float, bool]:
    record = next((r for r in records if r["model_velocity"] < epsilon), None)
    return (record["epoch"], record["test_acc"], True) if record else (records[-1]["epoch"],
                                                                       records[-1]["test_acc"], False)


#: Values of ``Experiment.derived`` computed at aggregation: key -> function writing ``NAME_<key>.csv``.
DERIVED: dict[str, Callable[..., pd.DataFrame]] = {"epsilon": stops_by_epsilon}


def _holdout_images(dataset: str, holdout: float) -> float:
    """Training images moved to validation (Fig. 4a's x axis): the fraction of the size the dataset declares."""
    size = DATASETS[dataset].train_size if dataset in DATASETS else None
    return math.nan if size is None else round(holdout * size)


def _percent(value: Any) -> float:
    return math.nan if value is None else 100.0 * float(value)


def _ordered(columns: Any, values: Sequence[str], varying: Sequence[str], table: str) -> list[str]:
    """Fixed columns in the schema's order, the cell values after ``cell``, config fields after ``model``."""
    schema = list(RUN_COLUMNS if table == "runs" else CELL_COLUMNS)
    config = [f"config.{name}" for name in varying]
    ordered = schema[:2] + list(values) + schema[2:]
    at = ordered.index("model") + 1
    ordered = ordered[:at] + config + ordered[at:]
    return ordered + [column for column in columns if column not in ordered]  # an experiment's extra reporting


# ------------------------------------------------------------------------------------------ aggregate
class PartialResults(RuntimeError):
    """Fewer runs are finished than the results already in the folder hold: writing would replace them."""


#: Where ``--partial`` writes, inside the results folder: never over the complete results.
PARTIAL_DIR = "partial"


@dataclass
class Aggregated:
    experiment: Experiment
    results: Results
    written: list[Path]


def aggregate(name: str, *, seeds: int | None = None, runs_dir: str | Path = "runs", only: Sequence[str] = (),
              fidelity: str | None = None, miniature: bool = False, miniature_epochs: int = MINIATURE_EPOCHS,
              results_dir: str | Path | None = None, partial: bool = False) -> Aggregated:
    """Read the runs of experiment ``name`` (planned as the sweep plans them) and write its results CSVs.

    Raises :class:`PartialResults`, writing nothing, when the results folder holds finished runs that are not
    finished here; ``partial`` writes anyway, into ``<results>/partial/``, marked partial."""
    experiment = get_experiment(name)
    results_dir = resolve_results_dir(results_dir, miniature)
    if partial:
        results_dir = results_dir / PARTIAL_DIR
    planned = plan(name, seeds=seeds, runs_dir=runs_dir, only=only, fidelity=fidelity, wandb="disabled",
                   miniature=miniature, miniature_epochs=miniature_epochs)
    if not planned:
        raise ValueError(f"{name}: no run matches {' '.join(only)}")
    data = read_runs(planned)
    if not any(item.state in DONE for item in data):
        states = pd.Series([item.state for item in data]).value_counts().to_dict()
        raise NothingFinished(
            f"{name}: none of its {len({item.run.name for item in data})} runs in {Path(runs_dir).resolve()} has "
            f"finished ({', '.join(f'{n} {s}' for s, n in states.items())}); train them with python -m "
            f"experiments.sweep {name} (with the same --seeds/--only/--fidelity/--miniature/--runs-dir), or "
            f"check the options given here")
    cells = list({(run.cell.block, run.cell.label): run.cell for run in planned}.values())
    values = value_names(cells)
    varying = varying_fields(planned)
    runs = runs_table(data, values, varying)
    if not partial:
        check_complete(name, results_dir, runs, runs_dir)
    if experiment.target_margin is not None:
        runs = add_time_to_target(runs, data, experiment.target_margin)
    # Stop quality and the figures' claims, computed from what was read here (they use describe and welch above).
    from experiments import figure_claims, stop_quality

    runs = stop_quality.add_to_runs(runs, [item.records for item in data])
    table = cells_table(runs, cells, values, varying, experiment.kind, second_reference=experiment.second_reference,
                        also_report=experiment.also_report, partial=partial)
    table = stop_quality.add_to_cells(table, runs)
    frames: dict[str, pd.DataFrame] = {"": table, "runs": runs}
    if experiment.curves:
        frames["epochs"] = epochs_table(data, values)
    for key, options in experiment.derived.items():
        if key not in DERIVED:
            raise ValueError(f"{name}: derived value {key!r} has no aggregation; known: {', '.join(DERIVED)}")
        frames[key] = DERIVED[key](data, values, cells, options)
    claims = figure_claims.claim_tables(experiment.claims, runs, {item.run.name: item.records for item in data})
    frames |= claims
    written = [write_csv(frame, results_path(results_dir, name, part)) for part, frame in frames.items()]
    results = Results(name, frames[""], runs, frames.get("epochs"),
                      {key: frames[key] for key in [*experiment.derived, *claims]})
    return Aggregated(experiment, results, written)


def check_complete(name: str, results_dir: Path, runs: pd.DataFrame, runs_dir: str | Path) -> None:
    """Refuse (:class:`PartialResults`) when ``results_dir/NAME_runs.csv`` holds finished runs that ``runs`` does
    not have finished: aggregating fewer runs than the results there would silently replace them."""
    path = results_path(results_dir, name, "runs")
    if not path.is_file():
        return
    partial_dir = results_dir / PARTIAL_DIR
    on_purpose = f"to write a partial table on purpose, add --partial (it goes to {partial_dir}/, marked partial)"
    try:
        before = pd.read_csv(path, usecols=["run", "state"])
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PartialResults(f"{name}: {path} cannot be read ({error}), so whether this aggregation holds every run "
                             f"it has is unknown; nothing was written. Move it away to write new results, or "
                             f"{on_purpose}") from error
    had = set(before.loc[before["state"] == FINISHED, "run"])
    now = dict(zip(runs["run"], runs["state"], strict=True))
    lost = sorted(run for run in had if now.get(run) not in DONE)
    if not lost:
        return
    why = Counter(now.get(run, "not planned with these options") for run in lost)
    raise PartialResults(
        f"{name}: {path} holds {len(had)} finished runs, and {len(lost)} of them are not finished in "
        f"{Path(runs_dir).resolve()} ({', '.join(f'{n} {state}' for state, n in why.most_common())}; e.g. "
        f"{lost[0]}). Writing now would replace complete results with partial ones, so nothing was written. To get "
        f"the rest, train them with python -m experiments.sweep {name} (with the options given here, those the "
        f"results were made with: python -m experiments.sweep {name} --status lists them), or point --runs-dir at "
        f"the folder that holds them; {on_purpose}.")


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Atomically: a reader sees the old CSV or the new one."""
    frame = frame.copy()
    for column in INTEGER & set(frame.columns):
        frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n", float_format=FLOAT_FORMAT)
    atomic_write_text(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.aggregate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a catalog experiment (python -m experiments.sweep --list)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1, as given to the sweep (default: the experiment's)")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                        help="only the runs matching, as given to the sweep")
    parser.add_argument("--fidelity", choices=FIDELITIES, help="as given to the sweep")
    parser.add_argument("--miniature", action="store_true", help="the miniature runs (sweep --miniature)")
    parser.add_argument("--miniature-epochs", type=int, default=MINIATURE_EPOCHS, metavar="N",
                        help=f"as given to the sweep (default {MINIATURE_EPOCHS})")
    parser.add_argument("--runs-dir", default="runs", help="where run folders live (default runs/)")
    parser.add_argument("--results-dir", help="where the CSVs go (default results/, results/miniature/ with "
                                              "--miniature); results/README.md there is regenerated")
    parser.add_argument("--partial", action="store_true",
                        help="write the table even though fewer runs are finished than the results there hold: "
                             f"into <results>/{PARTIAL_DIR}/, marked partial (a column and a note); the complete "
                             "results stay as they are")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        done = aggregate(args.experiment, seeds=args.seeds, runs_dir=args.runs_dir, only=args.only,
                         fidelity=args.fidelity, miniature=args.miniature, miniature_epochs=args.miniature_epochs,
                         results_dir=args.results_dir, partial=args.partial)
    except (NothingFinished, PartialResults) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ValueError, RunFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from experiments.report import write_report

    experiment, results = done.experiment, done.results
    print(f"# {experiment.title}\n")
    print(markdown(results, experiment.kind))
    for path in done.written:
        print(f"wrote {path}")
    readme = write_report(done.written[0].parent)
    print(f"wrote {readme}")
    unfinished = results.unfinished_runs.drop_duplicates("run")
    if len(unfinished):
        print(f"{args.experiment}: {len(unfinished)} run(s) not averaged (listed above)", file=sys.stderr)
    if args.partial:
        print(f"{args.experiment}: PARTIAL results, written to {readme.parent}; the complete ones are untouched",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
