"""The results folder: which CSVs an experiment has, their columns, loading them back, and its markdown table.

``python -m experiments.aggregate NAME`` writes, per experiment, into the results folder (``results/``):

- ``NAME_runs.csv``: one row per planned run (a cell at a seed), finished or not (``state``);
- ``NAME.csv``: one row per cell: mean, std, 95% confidence interval over its finished seeds, the paper's number;
- ``NAME_epochs.csv``: every record of every finished run, for experiments that plot curves;
- ``NAME_<derived>.csv``: values computed from the records (Fig. 6: ``NAME_epsilon.csv``);
- ``NAME_claims.csv`` and ``NAME_claims_runs.csv``: the numbers behind a figure's claim, for experiments that
  declare ``claims`` (``experiments.figure_claims``), loaded with the derived values.

Every ``NAME_runs.csv`` and ``NAME.csv`` also carries each run's stop quality (:data:`STOP_QUALITY_RUN_COLUMNS`,
:data:`STOP_QUALITY_CELL_COLUMNS`; ``experiments.stop_quality``) after the fixed columns.

An experiment that asks for more reporting (the catalog's ``target_margin``, ``second_reference``,
``also_report``: the tuning-free comparison) has more columns after the fixed ones: :data:`TARGET_RUN_COLUMNS`
in ``NAME_runs.csv``; in ``NAME.csv`` :data:`TARGET_CELL_COLUMNS`, ``welch2_ref``/``welch2_t``/``welch2_p`` (the
second reference) and per reported field ``<field>_mean``, ``_std``, ``_n`` (runs that recorded it) and
``_epoch_mean``.

Plots, notebooks and the report read results through :func:`load_results` only, never run folders. Nothing
here imports torch, so a notebook starts in a second. Accuracies are in percent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

FIGURES = "figures"

#: ``NAME_runs.csv``: these columns, then the experiment's cell values after ``cell`` and its varying config
#: fields as ``config.<field>`` after ``model``.
RUN_COLUMNS = (
    "block", "cell", "seed", "run", "state", "detail", "dataset", "model", "holdout_images", "budget_epochs",
    "epsilon", "metric", "acc", "acc_fallback", "metric_epoch",
    "final_test_acc", "test_acc_at_stop", "test_acc_at_neve_stop", "test_acc_at_kept", "test_acc_at_best_val",
    "epochs_run", "stop_epoch", "neve_stop_epoch", "kept_epoch", "best_val_epoch", "lr_decay_epochs",
    "wall_seconds", "diverged",
)
#: ``NAME.csv``: one row per cell.
CELL_COLUMNS = (
    "block", "cell", "dataset", "model", "holdout_images", "budget_epochs", "epsilon", "metric",
    "n", "n_asked", "n_fallback", "mean", "std", "ci_low", "ci_high", "final_mean", "final_std",
    "metric_epoch_mean", "metric_epoch_std", "epochs_mean", "wall_hours_mean",
    "paper_mean", "paper_std", "diff", "welch_ref", "welch_t", "welch_p",
)
#: Time to target, per run: the block's target (%, its reference row's mean final accuracy minus the margin), the
#: first epoch reaching it up to the epoch the run reports, and the wall seconds of the records up to it (empty:
#: never).
TARGET_RUN_COLUMNS = ("target", "target_epoch", "target_seconds")
#: Time to target, per cell: over the runs that reached it (``n_target`` of ``n``).
TARGET_CELL_COLUMNS = ("target", "n_target", "target_epoch_mean", "target_epoch_std", "target_seconds_mean")
#: The wall time a method spends to the number it reports, per run (``method_seconds``) and per cell (its mean,
#: ``method_seconds_mean``): a ``--stop mark`` run's records up to the epoch it reports (a method that stops would
#: end there; NeVe's marked stop), any other run's whole training (V.Loss and Label Wave train their patience
#: past the model they keep). After the fixed columns; CSVs aggregated before it lack them.
METHOD_TIME_RUN_COLUMN = "method_seconds"
METHOD_TIME_CELL_COLUMN = "method_seconds_mean"
#: Runs halted by a non-finite training loss, per cell: reported beside the cell, never in its mean (state
#: ``diverged`` in ``NAME_runs.csv``). ``partial``: 1 in a table written with ``aggregate --partial``. After the
#: fixed columns; CSVs aggregated before them lack them.
DIVERGED_CELL_COLUMN = "n_diverged"
PARTIAL_COLUMN = "partial"
#: Stop quality (``experiments.stop_quality``), after the fixed columns of every ``NAME_runs.csv``: the oracle (best
#: test accuracy over the epochs the run trained, and its first epoch; ``oracle_whole_budget`` 0 for a halted run),
#: the regret (oracle minus the reported accuracy), the epochs the method trains and saves against the budget, both
#: again at the run's first V < epsilon, and the same seed's block Baseline oracle with the regret against it.
STOP_QUALITY_RUN_COLUMNS = ("oracle_epoch", "oracle_acc", "oracle_whole_budget", "regret", "epochs_spent",
                            "epochs_saved", "regret_at_neve_stop", "epochs_saved_at_neve_stop", "baseline_oracle_acc",
                            "baseline_oracle_epoch", "baseline_regret")
#: Stop quality per cell, after the fixed columns of every ``NAME.csv``: means, and 95% t-intervals of the regrets
#: and epochs saved over the runs that have them (``n_at_neve_stop``: runs whose velocity fell below epsilon).
STOP_QUALITY_CELL_COLUMNS = (
    "oracle_acc_mean", "oracle_epoch_mean", "n_oracle_whole_budget", "epochs_spent_mean",
    *(f"{name}_{stat}" for name in ("regret", "epochs_saved", "baseline_regret", "regret_at_neve_stop",
                                    "epochs_saved_at_neve_stop") for stat in ("mean", "ci_low", "ci_high")),
    "n_at_neve_stop")
#: ``NAME_claims.csv`` (``experiments.figure_claims``): one row per claim, cell and quantity: its statistics over the
#: cell's finished seeds and, where the claim compares, Welch's test against the ``versus`` cell.
CLAIM_COLUMNS = ("claim", "block", "cell", "quantity", "n", "n_runs", "mean", "std", "ci_low", "ci_high", "versus",
                 "versus_n", "versus_mean", "diff", "welch_t", "welch_p")
#: ``NAME_claims_runs.csv``: these columns, then each per-run quantity of the experiment's claims.
CLAIM_RUN_COLUMNS = ("block", "cell", "seed", "run")
#: ``NAME_epochs.csv``: these columns at least (then every record column the runs wrote).
EPOCH_COLUMNS = ("block", "cell", "seed", "run", "epoch", "lr", "test_acc", "model_velocity", "lr_reduced",
                 "neve_stop")
#: ``NAME_<derived>.csv``.
DERIVED_COLUMNS = {
    "epsilon": ("block", "cell", "epsilon", "n", "n_no_stop", "epochs_mean", "epochs_std", "acc_mean", "acc_std",
                "acc_ci_low", "acc_ci_high"),
    "claims": CLAIM_COLUMNS,
    "claims_runs": CLAIM_RUN_COLUMNS,
}
#: Columns that must hold numbers (a CSV edited by hand may not).
NUMERIC = {"acc", "mean", "std", "n", "n_asked", "n_fallback", "n_no_stop", "seed", "epoch", "test_acc",
           "model_velocity", "epsilon", "epochs_mean", "epochs_std", "acc_mean", "acc_std", "metric_epoch",
           "budget_epochs", "paper_mean", "diff", "welch_p", "welch2_p", "target", "target_epoch", "target_seconds",
           "n_target", "target_epoch_mean", "target_seconds_mean", "method_seconds", "method_seconds_mean",
           DIVERGED_CELL_COLUMN, PARTIAL_COLUMN, *STOP_QUALITY_RUN_COLUMNS, *STOP_QUALITY_CELL_COLUMNS, "versus_n",
           "versus_mean"}
#: Columns of whole numbers (epochs, counts, flags), written without a decimal point even when some are empty.
INTEGER = {"seed", "holdout_images", "budget_epochs", "acc_fallback", "metric_epoch", "epochs_run", "stop_epoch",
           "neve_stop_epoch", "kept_epoch", "best_val_epoch", "diverged", "n", "n_asked", "n_fallback", "n_no_stop",
           "epoch", "lr_reduced", "neve_stop", "method_stop", "kept_weights", "target_epoch", "n_target",
           DIVERGED_CELL_COLUMN, PARTIAL_COLUMN, "oracle_epoch", "oracle_whole_budget", "epochs_spent", "epochs_saved",
           "epochs_saved_at_neve_stop", "baseline_oracle_epoch", "n_oracle_whole_budget", "n_at_neve_stop", "versus_n",
           "n_runs"}
#: Significant digits of the floats in the CSVs: far below any difference that matters, and stable diffs.
FLOAT_FORMAT = "%.8g"
#: Columns that hold text, empty when absent ("" rather than NaN): no block, no detail, no lr decay.
TEXT = ("block", "detail", "lr_decay_epochs")
#: ``state`` of a run that counts; any other (failed, running, pending, missing, unknown) is listed, never averaged.
FINISHED = "finished"
#: ``state`` of a run halted by a non-finite training loss: counted per cell (``n_diverged``), never averaged.
DIVERGED = "diverged"


class ResultsError(ValueError):
    """A results CSV that is missing or malformed; the message says which file and how to rebuild it."""


def resolve_results_dir(results_dir: str | Path | None = None, miniature: bool = False) -> Path:
    """The folder asked for, else ``results/`` (``results/miniature/`` for miniature rehearsals, which must never
    overwrite the real results)."""
    return Path(results_dir) if results_dir else Path("results/miniature" if miniature else "results")


def results_path(results_dir: str | Path, name: str, part: str = "") -> Path:
    """``results_dir/NAME.csv`` (cells), or ``NAME_<part>.csv`` for part runs, epochs or a derived value."""
    return Path(results_dir) / (f"{name}_{part}.csv" if part else f"{name}.csv")


def figure_path(results_dir: str | Path, name: str, suffix: str = ".png") -> Path:
    return Path(results_dir) / FIGURES / f"{name}{suffix}"


@dataclass
class Results:
    """One experiment's aggregated results, as the CSVs hold them."""

    name: str
    cells: pd.DataFrame
    runs: pd.DataFrame
    epochs: pd.DataFrame | None = None
    derived: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def values(self) -> list[str]:
        """The experiment's cell coordinates (``method``, ``holdout``, ``aux``, ...): the columns between ``cell``
        and ``dataset`` in ``NAME.csv``."""
        columns = list(self.cells.columns)
        return columns[columns.index("cell") + 1:columns.index("dataset")]

    @property
    def finished_runs(self) -> pd.DataFrame:
        return self.runs[self.runs["state"] == FINISHED]

    @property
    def unfinished_runs(self) -> pd.DataFrame:
        return self.runs[self.runs["state"] != FINISHED]

    def need_epochs(self) -> pd.DataFrame:
        if self.epochs is None:
            raise ResultsError(f"{self.name}'s figure plots curves but {self.name}_epochs.csv is missing; run "
                               f"python -m experiments.aggregate {self.name} again")
        return self.epochs

    def need_derived(self, key: str) -> pd.DataFrame:
        if key not in self.derived:
            raise ResultsError(f"{self.name}'s figure needs {self.name}_{key}.csv, which is missing; run "
                               f"python -m experiments.aggregate {self.name} again")
        return self.derived[key]


def load_results(name: str, results_dir: str | Path = "results", *, epochs: bool = True) -> Results:
    """Read and check the CSVs of experiment ``name`` (what plots and notebooks start from); ``epochs=False``
    skips the per-epoch records (the largest file), for tables only."""
    cells = read_csv(results_path(results_dir, name), CELL_COLUMNS, name)
    runs = read_csv(results_path(results_dir, name, "runs"), RUN_COLUMNS, name)
    epochs_path = results_path(results_dir, name, "epochs")
    records = read_csv(epochs_path, EPOCH_COLUMNS, name) if epochs and epochs_path.is_file() else None
    derived = {key: read_csv(path, columns, name) for key, columns in DERIVED_COLUMNS.items()
               if (path := results_path(results_dir, name, key)).is_file()}
    return Results(name, cells, runs, records, derived)


def read_csv(path: Path, columns: Sequence[str], name: str) -> pd.DataFrame:
    """A results CSV with at least ``columns``, numbers where numbers belong, or a :class:`ResultsError`."""
    again = f"run python -m experiments.aggregate {name} (with the sweep's options) to write it again"
    if not path.is_file():
        raise ResultsError(f"{path} does not exist; {again}")
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(TEXT, str))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path} is not a readable CSV ({error}); {again}") from error
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ResultsError(f"{path} lacks the column(s) {', '.join(missing)} (is it a results CSV of the current "
                           f"format?); {again}")
    for column in set(TEXT) & set(frame.columns):
        frame[column] = frame[column].fillna("")
    for column in NUMERIC & set(frame.columns):
        try:
            frame[column] = pd.to_numeric(frame[column])
        except (ValueError, TypeError) as error:
            raise ResultsError(f"{path}: column {column!r} must hold numbers ({error}); {again}") from error
    return frame


# ------------------------------------------------------------------------------------------- markdown
def fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return fmt(mean, digits) if std is None or math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def p_value(p: float) -> str:
    if p is None or math.isnan(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def markdown(results: Results, kind: str = "table") -> str:
    """The experiment's table in the paper's layout (one block per dataset/model), ours beside the paper's.

    ``kind`` "table" adds the Welch test column (p of ours against the block's reference row)."""
    cells = results.cells
    values = results.values
    welch = kind == "table" and cells["welch_ref"].notna().any()
    paper = cells["paper_mean"].notna().any()
    timed = METHOD_TIME_CELL_COLUMN in cells.columns
    diverged = _flagged(cells, DIVERGED_CELL_COLUMN)
    header = [*(_title(v) for v in values), "ours", "95% CI", "seeds", *(("diverged",) if diverged else ()), "epoch",
              *(("wall time",) if timed else ()), *(("paper", "Δ") if paper else ())]
    also = [column.removesuffix("_mean") for column in cells.columns
            if column.endswith("_mean") and f"{column.removesuffix('_mean')}_n" in cells.columns]
    target = "target" in cells.columns
    second = welch and "welch2_ref" in cells.columns and cells["welch2_ref"].notna().any()
    header += [f"at {ALSO_TITLES.get(name, name)} (epoch)" for name in also]
    header += ["final", "epochs to target", "wall time to target"] if target else []
    if welch:
        header.append("p (Welch)")
    if second:
        header.append(f"p (Welch) vs {cells['welch2_ref'].dropna().iloc[0]}")
    out: list[str] = [partial_note(results), ""] if _flagged(cells, PARTIAL_COLUMN) else []
    blocks = list(dict.fromkeys(cells["block"]))
    for block in blocks:
        rows = cells[cells["block"] == block]
        if block:
            goal = rows["target"].iloc[0] if target else math.nan
            out += [f"**{block}**" + ("" if math.isnan(goal) else f" (target {goal:.2f}%)"), ""]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in rows.iterrows():
            ours = mean_std(row["mean"], row["std"]) + (" †" if row["n_fallback"] > 0 else "")
            seeds = f"{int(row['n'])}" if row["n"] == row["n_asked"] else f"{int(row['n'])} of {int(row['n_asked'])}"
            ci = "–" if math.isnan(row["ci_low"]) else f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
            cols = [_cell_value(row[v]) for v in values]
            cols += [ours, ci, seeds, *([f"{int(row[DIVERGED_CELL_COLUMN])}"] if diverged else []),
                     mean_std(row["metric_epoch_mean"], row["metric_epoch_std"], 0)]
            cols += [duration(row[METHOD_TIME_CELL_COLUMN])] if timed else []
            if paper:
                cols += [mean_std(row["paper_mean"], row["paper_std"]),
                         "–" if math.isnan(row["diff"]) else f"{row['diff']:+.2f}"]
            cols += [_also_cell(row, name) for name in also]
            cols += _target_cells(row) if target else []
            if welch:
                cols.append(_welch_cell(row, "welch"))
            if second:
                cols.append(_welch_cell(row, "welch2"))
            out.append("| " + " | ".join(cols) + " |")
        out.append("")
    extra = [*([ALSO_NOTE] if "test_acc_at_neve_stop" in also else []), *([TARGET_NOTE] if target else []),
             *([SECOND_WELCH_NOTE] if second else []), *([METHOD_TIME_NOTE] if timed else [])]
    out += _notes(results, welch, paper, extra)
    if "epsilon" in results.derived:
        out += [*([""] if out[-1] else []), *epsilon_markdown(results)]
    return "\n".join(out).rstrip() + "\n"


#: How a reported field is named in a table header.
ALSO_TITLES = {"test_acc_at_neve_stop": "NeVe's stop", "test_acc_at_stop": "own stop",
               "test_acc_at_best_val": "best validation", "test_acc_at_kept": "kept model"}


def _welch_cell(row: pd.Series, prefix: str) -> str:
    ref = row[f"{prefix}_ref"]
    if not isinstance(ref, str) or math.isnan(row[f"{prefix}_p"]):
        return "(reference)" if ref == row["cell"] else "–"
    return f"{p_value(row[f'{prefix}_p'])} vs {ref}"


def _also_cell(row: pd.Series, name: str) -> str:
    """``mean ± std (epoch)``, and how many runs recorded it when not all did."""
    n = row[f"{name}_n"]
    if not n:
        return f"never (0 of {int(row['n'])})"
    text = f"{mean_std(row[f'{name}_mean'], row[f'{name}_std'])} ({fmt(row[f'{name}_epoch_mean'], 0)})"
    return text if n == row["n"] else f"{text}, {int(n)} of {int(row['n'])}"


def _target_cells(row: pd.Series) -> list[str]:
    """Final accuracy, then epochs and wall time to target over the runs that reached it (k of n), or never."""
    final = mean_std(row["final_mean"], row["final_std"])
    if math.isnan(row["target"]):
        return [final, "–", "–"]
    reached = int(row["n_target"])
    if not reached:
        return [final, f"never (0 of {int(row['n'])})", "never"]
    count = "" if reached == row["n"] else f", {reached} of {int(row['n'])}"
    return [final, mean_std(row["target_epoch_mean"], row["target_epoch_std"], 0) + count,
            duration(row["target_seconds_mean"])]


def duration(seconds: float) -> str:
    """Wall time, in the unit that reads best."""
    if seconds is None or math.isnan(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def epsilon_markdown(results: Results) -> list[str]:
    """Fig. 6's numbers: per cell and ε, the epochs to NeVe's stop and the accuracy there."""
    table = results.derived["epsilon"]
    values = [v for v in results.values if v in table.columns]
    header = [*(_title(v) for v in values), "ε", "epochs to stop", "accuracy at stop", "runs never stopped"]
    out = ["Stop read off the same runs at each ε (the first epoch with V < ε; a run that never gets there counts "
           "at its last epoch):", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cols = [_cell_value(row[v]) for v in values]
        cols += [f"{row['epsilon']:g}", mean_std(row["epochs_mean"], row["epochs_std"], 1),
                 mean_std(row["acc_mean"], row["acc_std"]), f"{int(row['n_no_stop'])} of {int(row['n'])}"]
        out.append("| " + " | ".join(cols) + " |")
    return out


def _notes(results: Results, welch: bool, paper: bool, extra: Sequence[str] = ()) -> list[str]:
    cells = results.cells
    notes = ["ours: test accuracy (%) as mean ± std over finished seeds (sample std); 95% CI: t-interval of the "
             "mean; epoch: where the reported number was read (mean ± std)" + ("; Δ: ours − paper." if paper else
                                                                              ".")]
    if welch:
        notes.append("p (Welch): two-sided Welch t-test of the row's seeds against the reference row of the block "
                     "(Baseline, or the block's first row); – where a side has fewer than 2 seeds.")
    fallback = cells[cells["n_fallback"] > 0]
    if len(fallback):
        counts = ", ".join(f"{row['cell']}{f' ({row.block})' if row.block else ''}: "
                           f"{int(row['n_fallback'])} of {int(row['n'])}" for _, row in fallback.iterrows())
        notes.append(f"† the cell's own number was missing in some runs (NeVe never reached V < ε, or the method "
                     f"kept no model within the budget); those runs count with their final test accuracy "
                     f"({counts}).")
    notes += extra
    diverged = results.runs[results.runs["state"] == DIVERGED]
    if len(diverged):
        where = ", ".join(f"{row['cell']}{f' ({row.block})' if row.block else ''} seed {int(row['seed'])} at epoch "
                          f"{_cell_value(row['epochs_run'])}" for _, row in diverged.drop_duplicates("run").iterrows())
        notes.append(f"diverged: runs whose training loss became non-finite (NaN or infinite); the trainer halted each "
                     f"at that epoch, and they are counted apart, not in the row's mean ± std ({where}). A smaller "
                     f"learning rate trains them.")
    short = cells[cells["n"] < cells["n_asked"]]
    if len(short):
        notes.append(f"{len(short)} cell(s) have fewer finished seeds than asked; the missing runs are listed below.")
    return [f"- {note}" for note in notes] + [""] + unfinished_markdown(results)


def _flagged(cells: pd.DataFrame, column: str) -> bool:
    """Whether the optional count or flag ``column`` is there and non-zero in some row."""
    return column in cells.columns and bool(pd.to_numeric(cells[column]).fillna(0).gt(0).any())


def partial_note(results: Results) -> str:
    """The line above a table written with ``aggregate --partial``."""
    runs = results.runs.drop_duplicates("run")
    done = int((runs["state"] == FINISHED).sum())
    return (f"**PARTIAL RESULTS** (`aggregate --partial`): {done} of the {len(runs)} planned runs finished; not the "
            f"complete table, which stays in `{results.name}.csv` of the results folder above this one.")


METHOD_TIME_NOTE = ("wall time: per run, the seconds the method spends to the number it reports (NeVe to its stop, "
                    "V.Loss and Label Wave their whole run, patience included; the rest the whole budget), mean over "
                    "seeds, on the machine that trained it.")
ALSO_NOTE = ("at NeVe's stop: the row's test accuracy at the first epoch with V < ε, which every method records "
             "(mean ± std over the runs that got there, and that epoch's mean in brackets).")
SECOND_WELCH_NOTE = "the last column tests each row the same way against the second reference row of its block."
TARGET_NOTE = ("to target: per run, the first epoch whose test accuracy reaches the block's target (its Baseline's "
               "mean final accuracy minus the margin, given beside the block), counting only epochs up to the one the "
               "row reports (NeVe: its stop); epochs: mean ± std over the runs that reached it (k of n when not all); "
               "wall time: the mean cumulative seconds of the records up to it; never: no run reached it.")


def unfinished_markdown(results: Results) -> list[str]:
    """The runs not averaged (failed, running, pending, missing, unknown), one line each, by folder."""
    runs = results.unfinished_runs.drop_duplicates("run")
    if runs.empty:
        return []
    lines = [f"Not averaged ({len(runs)} run{'s' if len(runs) > 1 else ''}):", ""]
    for _, run in runs.iterrows():
        detail = f": {run['detail']}" if isinstance(run["detail"], str) and run["detail"] else ""
        lines.append(f"- `{run['run']}` {run['state']}{detail}")
    return [*lines, ""]


def _title(value: str) -> str:
    return {"aux_size": "|D_aux|", "alpha": "α", "patience": "δ"}.get(value, value)


def _cell_value(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:g}"
    return str(value)


# ---------------------------------------------------------------------------------------------- notebooks
def notebook_results(name: str, results_dir: str | Path | None = None, root: str | Path = "../results", *,
                     make: str = "", offline: bool = False) -> Path:
    """The results folder a notebook reads, saying first what to run when nothing is there yet.

    ``results_dir`` given: that. Else ``root`` if it holds the experiment's CSVs, else the ``--miniature``
    rehearsal's (``root/miniature``), announced as a rehearsal; else ``root``, after printing the commands that
    make the results (``load_results`` then raises its ``ResultsError``). ``make`` and ``offline`` are the
    experiment's declarations (its ``make`` target; whether it trains on a CPU), which the generated notebook
    passes: this module reads no catalog, so a notebook starts without torch."""
    if results_dir:
        return Path(results_dir)
    root = Path(root)
    if results_path(root, name).is_file():
        return root
    rehearsal = root / "miniature"
    if results_path(rehearsal, name).is_file():
        print(f"REHEARSAL: no results of {name} in {root}; showing the --miniature rehearsal's from {rehearsal} "
              "(digits, ResNet-8, a few epochs: the layout is the experiment's, the numbers mean nothing).")
        return rehearsal
    print(f"No results of {name} in {root} yet. {how_to_make(name, make=make, offline=offline)}")
    return root


def how_to_make(name: str, *, make: str = "", offline: bool = False) -> str:
    """The commands that make an experiment's results, run from the repo root: on a CPU for real where it trains
    offline; on a GPU cluster otherwise, or as an offline rehearsal on digits."""
    if offline and make:
        return f"Make them offline on a CPU: make {make} (from the repo root)."
    if offline:  # trained on a CPU, for real, in minutes to hours
        return (f"Make them on a CPU, from the repo root:\n"
                f"    python -m experiments.sweep {name} --executor local --jobs 2\n"
                f"    python -m experiments.aggregate {name}\n"
                f"    python -m experiments.plots {name}")
    cluster = (f"make {make} EXECUTOR=slurm CLUSTER=<profile in slurm/> SEEDS=10" if make else
               f"python -m experiments.sweep {name} --executor slurm --cluster <profile in slurm/>, then "
               f"python -m experiments.aggregate {name} and python -m experiments.plots {name}")
    return (f"Make them from the repo root, either\n"
            f"  on a GPU cluster:  {cluster}\n"
            f"  or as an offline rehearsal on digits (minutes on a CPU; the numbers mean nothing):\n"
            f"    python -m experiments.sweep {name} --miniature --seeds 2 --jobs 2 --executor local --wandb disabled\n"
            f"    python -m experiments.aggregate {name} --miniature --seeds 2\n"
            f"    python -m experiments.plots {name} --miniature\n"
            f"  (this notebook then shows the rehearsal, labelled as such).")
