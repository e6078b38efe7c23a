"""Which runs an experiment needs, and the state of each: the layer below both the sweep and the aggregation.

:func:`plan` resolves a catalog experiment into run folders with the sweep's options, so the aggregation reads
exactly the runs the sweep trains. :func:`statuses` reads each run's state from its folder
(:class:`RunFolder`); only for runs that have not finished and were submitted to SLURM does it ask the
scheduler's queue, and when the queue cannot be read those runs are ``unknown``, with the scheduler's error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.catalog import MINIATURE_EPOCHS, PlannedRun, get_experiment
from experiments.run_folder import RunFolder, RunFolderError
from experiments.slurm_queue import QueueUnavailable, all_submitted, queue_states

#: ``unknown``: submitted to SLURM, not finished, and the queue could not be read.
STATES = ("finished", "running", "pending", "failed", "missing", "unknown")
UNKNOWN = "unknown"


@dataclass
class RunStatus:
    run: PlannedRun
    state: str
    epochs_done: int
    detail: str = ""


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


def run_status(run: PlannedRun, submission: dict[str, Any] | None, queue: dict[str, str],
               queue_error: str = "") -> RunStatus:
    """One run's state. ``queue_error``: why the queue could not be read (then ``queue`` is empty)."""
    folder = RunFolder(run.run_dir)
    try:
        epochs = folder.epochs_done()
    except RunFolderError as error:
        return RunStatus(run, "failed", 0, str(error))
    if folder.finished:
        return RunStatus(run, "finished", epochs)
    if submission and submission["job_id"] in queue:
        state = queue[submission["job_id"]]
        return RunStatus(run, state, epochs, f"SLURM job {submission['job_id']}; log {submission['stderr']}")
    marker = folder.running()
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
