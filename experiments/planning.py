"""Which runs an experiment needs, and the state of each: the layer below both the sweep and the aggregation.

:func:`plan` resolves a catalog experiment into run folders with the sweep's options, so the aggregation reads
exactly the runs the sweep trains. :func:`statuses` reads each run's state from its folder
(:class:`RunFolder`); only for runs that have not finished and were submitted to SLURM does it ask the
scheduler's queue, and when the queue cannot be read those runs are ``unknown``, with the scheduler's error.

What "finished" means is :func:`read_finished`'s alone, so ``--status``, the sweep and the aggregation agree: a
``summary.json`` that is valid JSON, and a ``records.csv`` that is whole (it ends with a newline) and holds one
record per epoch the summary says the run trained. A run whose files fail that is ``failed``, with the file and
the fix; the sweep then sets its summary aside and the trainer rebuilds it from the run's checkpoint. A finished
run whose training loss became non-finite is ``diverged``: the trainer halted it, the sweep does not retrain it,
and the aggregation reports it beside the cell, never inside its mean.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.catalog import MINIATURE_EPOCHS, PlannedRun, get_experiment
from experiments.results import DIVERGED, FINISHED
from experiments.run_folder import ERROR, RECORDS, SUMMARY, RunFolder, RunFolderError
from experiments.slurm_queue import QueueUnavailable, all_submitted, queue_states

#: ``unknown``: submitted to SLURM, not finished, and the queue could not be read. ``diverged``: finished, halted
#: by a non-finite training loss.
STATES = ("finished", "running", "pending", "failed", "missing", "unknown", "diverged")
UNKNOWN = "unknown"
#: The states of a run that trained to its end and has a readable summary (both are reported, one is averaged).
DONE = (FINISHED, DIVERGED)
#: What the sweep does with a run whose summary or records are damaged (:func:`set_aside_damaged`).
REBUILD = ("python -m experiments.sweep with the same options sets its summary.json aside and rebuilds it from the "
           "run's checkpoint (or retrains the run if the checkpoint is gone)")
#: Where a damaged summary is moved, beside the run's other files, for inspection.
DAMAGED_SUMMARY = SUMMARY + ".damaged"


@dataclass
class FinishedRun:
    """A finished run's summary and records, checked against each other (:func:`read_finished`)."""

    summary: dict[str, Any]
    records: list[dict[str, Any]]

    @property
    def diverged(self) -> bool:
        """The trainer halted the run because its training loss became non-finite (NaN or infinite)."""
        last = self.records[-1].get("train_loss") if self.records else None
        return bool(self.summary.get("diverged")) or (isinstance(last, float) and not math.isfinite(last))

    def divergence(self) -> str:
        """What happened to a diverged run, in words ("" for one that did not diverge)."""
        if not self.diverged:
            return ""
        epoch = self.summary.get("epochs_run")
        lr = self.records[-1].get("lr") if self.records else None
        return (f"the training loss became non-finite at epoch {epoch}"
                + (f" (lr {lr:g})" if isinstance(lr, int | float) else "")
                + " and the trainer halted it there; not averaged (a smaller lr would train)")


@dataclass
class RunStatus:
    run: PlannedRun
    state: str
    epochs_done: int
    detail: str = ""
    finished: FinishedRun | None = None  # the summary and records of a finished or diverged run


# ----------------------------------------------------------------------------------------------- planning
def plan(name: str, *, seeds: int | None = None, runs_dir: str | Path = "runs", only: Sequence[str] = (),
         fidelity: str | None = None, wandb: str = "auto", data_root: str | None = None,
         miniature: bool = False, miniature_epochs: int = MINIATURE_EPOCHS) -> list[PlannedRun]:
    """The runs of experiment ``name``, resolved, restricted by ``only`` (``KEY=VALUE``, config fields).

    ``miniature``: the experiment's grid on digits for ``miniature_epochs`` epochs (:meth:`Experiment.miniature`).
    The aggregation plans with the same arguments, so it reads exactly the runs a sweep trains."""
    runs_dir = Path(runs_dir).resolve()
    overrides: dict[str, Any] = {"wandb": wandb, "progress": False, "wandb_group": name}
    if fidelity:
        overrides["fidelity"] = fidelity
    if data_root:
        overrides["data_root"] = str(Path(data_root).resolve())
    experiment = get_experiment(name)
    if miniature:
        experiment = experiment.miniature(miniature_epochs)
    runs = experiment.runs(seeds, runs_dir=runs_dir, overrides=overrides)
    if "data_root" not in overrides:  # jobs run elsewhere (a SLURM node's cwd): make the default absolute
        runs = [_with_absolute_data_root(run) for run in runs]
    return select(runs, only)


def _with_absolute_data_root(run: PlannedRun) -> PlannedRun:
    config = dataclasses.replace(run.config, data_root=str(Path(run.config.data_root).resolve()))
    return dataclasses.replace(run, config=config)


def select(runs: Sequence[PlannedRun], only: Sequence[str]) -> list[PlannedRun]:
    """Keep the runs whose config (or cell values) match every ``KEY=VALUE``; repeating a key means "or"."""
    wanted: dict[str, set[str]] = {}
    for item in only:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--only takes KEY=VALUE (e.g. dataset=cifar10), got {item!r}")
        wanted.setdefault(key.strip(), set()).add(value.strip())
    if not runs:
        return []
    fields = set(runs[0].config.to_dict()) | {k for run in runs for k in run.cell.values} | {"cell"}
    unknown = sorted(set(wanted) - fields)
    if unknown:
        raise ValueError(f"--only: unknown key(s) {', '.join(unknown)}; use a run config field (dataset, model, "
                         "method, seed, holdout, ...), a cell value, or cell=<label>")
    return [run for run in runs if all(_matches(run, key, values) for key, values in wanted.items())]


def _matches(run: PlannedRun, key: str, values: set[str]) -> bool:
    """The config field, the cell's value of that name (``method=V.Loss 30%``) or its label (``cell=``)."""
    candidates = [run.cell.label] if key == "cell" else []
    if key in run.cell.values:
        candidates.append(run.cell.values[key])
    if hasattr(run.config, key):
        candidates.append(getattr(run.config, key))
    return any(_same(actual, value) for actual in candidates for value in values)


def _same(actual: Any, text: str) -> bool:
    if isinstance(actual, bool):
        return text.lower() in (("true", "1", "yes") if actual else ("false", "0", "no"))
    if isinstance(actual, int | float):
        try:
            return float(text) == float(actual)
        except ValueError:
            return False
    if isinstance(actual, tuple | list):
        return text == ",".join(str(a) for a in actual)
    return str(actual) == text


# ------------------------------------------------------------------------------------------------- status
def statuses(runs: Sequence[PlannedRun]) -> list[RunStatus]:
    """Each run's state from its folder; the scheduler's queue is asked only about submitted runs not finished.

    An unreachable queue makes those runs ``unknown`` (detail: the scheduler's error); nothing raises."""
    if not runs:
        return []
    submitted = all_submitted(runs[0].run_dir.parent)
    queue: dict[str, str] = {}
    queue_error = ""
    if any(run.name in submitted and not RunFolder(run.run_dir).finished for run in runs):
        try:
            queue = queue_states()
        except QueueUnavailable as error:
            queue_error = str(error)
    return [run_status(run, submitted.get(run.name), queue, queue_error) for run in runs]


def read_finished(folder: RunFolder) -> FinishedRun | None:
    """The summary and records of a finished run; None when it has not finished (no ``summary.json``).

    Raises :class:`RunFolderError` naming the file and the fix when the summary is not a JSON summary, or the
    records are cut short: mid-line (the trainer ends every line with a newline) or at a line boundary (fewer
    records than the epochs the summary says the run trained)."""
    path = folder.path / SUMMARY
    if not path.is_file():
        return None
    damaged = f"the run is not counted as finished; {REBUILD}"
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path} is not valid JSON ({error}): {damaged}") from error
    epochs = summary.get("epochs_run") if isinstance(summary, dict) else None
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1 or "final_test_acc" not in summary:
        raise RunFolderError(f"{path} is not a run summary (no epochs_run and final_test_acc): {damaged}")
    records_path = folder.path / RECORDS
    try:
        text = records_path.read_bytes()
    except FileNotFoundError:
        raise RunFolderError(f"{records_path} is missing but {path} says the run trained {epochs} epochs: "
                             f"{damaged}") from None
    except OSError as error:
        raise RunFolderError(f"{records_path} cannot be read ({error}): {damaged}") from error
    if text and not text.endswith(b"\n"):
        raise RunFolderError(f"{records_path} ends mid-line (the file was cut short): {damaged}")
    try:
        records = folder.records()
    except RunFolderError as error:
        raise RunFolderError(f"{records_path} cannot be read ({error.__cause__ or error}): {damaged}") from error
    found = [record.get("epoch") for record in records]
    if found != list(range(1, epochs + 1)):
        raise RunFolderError(f"{records_path} holds {len(records)} epoch record(s) but {path} says the run trained "
                             f"{epochs} epochs (the records were cut short or edited): {damaged}")
    return FinishedRun(summary, records)


def _since(folder: RunFolder, name: str, submission: dict[str, Any]) -> bool:
    """Whether ``folder/name`` was written after the run was submitted (not left by an earlier attempt)."""
    try:
        return (folder.path / name).stat().st_mtime >= float(submission.get("submitted", 0))
    except OSError:
        return False


def run_status(run: PlannedRun, submission: dict[str, Any] | None, queue: dict[str, str],
               queue_error: str = "") -> RunStatus:
    """One run's state. ``queue_error``: why the queue could not be read (then ``queue`` is empty)."""
    folder = RunFolder(run.run_dir)
    try:
        finished = read_finished(folder)
        epochs = len(finished.records) if finished else folder.epochs_done()
    except RunFolderError as error:
        return RunStatus(run, "failed", 0, str(error))
    if finished:
        return RunStatus(run, DIVERGED if finished.diverged else FINISHED, epochs, finished.divergence(), finished)
    marker = folder.running()
    if submission and submission["job_id"] in queue:
        job = f"SLURM job {submission['job_id']}"
        state = queue[submission["job_id"]]
        if state == "running" and marker:  # this run's own process, beside any others of its pack
            return RunStatus(run, state, epochs, f"{job}, pid {marker.get('pid')} on {marker.get('host')}; "
                                                 f"log {submission['stderr']}")
        error = folder.error() if state == "running" and _since(folder, ERROR, submission) else None
        if error:  # it raised in this job, which goes on training the other runs of its pack
            return RunStatus(run, "failed", epochs, f"{error['error']} ({job} still runs the rest of its pack); "
                                                    f"log {error.get('log') or submission['stderr']}")
        return RunStatus(run, state, epochs, f"{job}; log {submission['stderr']}")
    if marker and not marker.get("slurm_job_id"):
        return RunStatus(run, "running", epochs, f"pid {marker.get('pid')} on {marker.get('host')}; log "
                                                 f"{marker.get('log') or folder.train_log}")
    if submission and queue_error:  # queued, running, requeued after a failure or gone: the scheduler knows
        return RunStatus(run, UNKNOWN, epochs, f"SLURM job {submission['job_id']} not finished; {queue_error}; "
                                               f"log {submission['stderr']}")
    error = folder.error()
    if error:
        return RunStatus(run, "failed", epochs, f"{error['error']}; log {error.get('log') or run.run_dir}")
    if submission:
        return RunStatus(run, "failed", epochs, f"SLURM job {submission['job_id']} left the queue before the run "
                                                f"finished; log {submission['stderr']}")
    return RunStatus(run, "missing", epochs, f"resumes after epoch {epochs}" if epochs else "")
