"""Run, submit or inspect a named experiment of the catalog: the runs it needs, and only the missing ones.

Examples:
    python -m experiments.sweep --list                               # every experiment, runs, shared, hours
    python -m experiments.sweep table2 --dry-run                     # what would train, and where
    python -m experiments.sweep demo --jobs 2                        # train the missing runs here, 2 at a time
    python -m experiments.sweep table2 --executor slurm --cluster mycluster   # one job array on SLURM
    python -m experiments.sweep table2 --status                      # finished / running / pending / failed / missing
    python -m experiments.sweep table2 --only dataset=cifar10 --seeds 3

Repeating a command is free: finished runs are skipped, runs pending or running on the cluster (as recorded
in runs/sweeps/<name>/submitted.json and checked with squeue) are not submitted twice, and interrupted or
failed runs resume from their last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.catalog import MINIATURE_EPOCHS, PlannedRun, experiment_names, get_experiment
from experiments.costs import run_hours
from experiments.executors import all_submitted, queue_states, run_local, slurm_available, submit_slurm
from experiments.profiles import ProfileError, load_profile
from experiments.run_folder import RunFolder, RunFolderError
from neve.config import FIDELITIES, WANDB_MODES

STATES = ("finished", "running", "pending", "failed", "missing")


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
    import dataclasses

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
    """Each run's state, from its folder and, for submitted runs, the scheduler's queue."""
    if not runs:
        return []
    runs_dir = runs[0].run_dir.parent
    submitted = all_submitted(runs_dir)
    queue = queue_states() if any(run.name in submitted for run in runs) else {}
    return [run_status(run, submitted.get(run.name), queue) for run in runs]


def run_status(run: PlannedRun, submission: dict[str, Any] | None, queue: dict[str, str]) -> RunStatus:
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
                                                 f"{marker.get('log') or run.run_dir / 'train.log'}")
    error = folder.error()
    if error:
        return RunStatus(run, "failed", epochs, f"{error['error']}; log {error.get('log') or run.run_dir}")
    if submission and shutil_has_squeue():
        return RunStatus(run, "failed", epochs, f"SLURM job {submission['job_id']} left the queue before the run "
                                                f"finished; log {submission['stderr']}")
    return RunStatus(run, "missing", epochs, f"resumes after epoch {epochs}" if epochs else "")


def shutil_has_squeue() -> bool:
    import shutil

    return shutil.which("squeue") is not None


def print_status(items: Sequence[RunStatus], file: Any = None) -> None:
    file = file or sys.stdout
    width = max((len(item.run.name) for item in items), default=10)
    for item in items:
        budget = item.run.config.epochs
        print(f"{item.state:<9} {item.epochs_done:>4}/{budget:<4} {item.run.name:<{width}}  {item.detail}", file=file)
    counts = Counter(item.state for item in items)
    print(", ".join(f"{counts.get(state, 0)} {state}" for state in STATES), file=file)


# --------------------------------------------------------------------------------------------------- list
def print_catalog(file: Any = None) -> None:
    """Every experiment: distinct runs, how many other experiments share, and the estimated hours."""
    file = file or sys.stdout
    planned = {name: get_experiment(name).runs(runs_dir="runs") for name in experiment_names()}
    owners: dict[str, set[str]] = {}
    for name, runs in planned.items():
        for run in runs:
            owners.setdefault(run.name, set()).add(name)
    print(f"{'experiment':<22} {'seeds':>5} {'runs':>5} {'shared':>6} {'new':>5} {'hours (budget)':>15}  title",
          file=file)
    assumed = False
    for name, runs in planned.items():
        distinct = {run.name: run for run in runs}
        shared = sum(1 for run_name in distinct if len(owners[run_name]) > 1)
        hours, devices, guess = _hours(distinct.values())
        assumed |= guess
        experiment = get_experiment(name)
        print(f"{name:<22} {experiment.seeds:>5} {len(distinct):>5} {shared:>6} {len(distinct) - shared:>5} "
              f"{hours:>9.1f} {devices:<5}{'*' if guess else ' '} {experiment.title}", file=file)
    paper = {run.name: run for name, runs in planned.items() if not _offline(runs) for run in runs}
    hours, devices, _ = _hours(paper.values())
    print(f"\nthe paper (every experiment above but the offline ones): {len(paper)} distinct runs, "
          f"~{hours:,.0f} {devices} hours at most (each run's whole epoch budget)", file=file)
    if assumed:
        print("* includes epoch times assumed, not measured (see experiments/costs.py)", file=file)


def _offline(runs: Sequence[PlannedRun]) -> bool:
    return all(run.config.dataset == "digits" for run in runs)


def _hours(runs: Any) -> tuple[float, str, bool]:
    total, devices, assumed = 0.0, set(), False
    for run in runs:
        hours, cost = run_hours(run)
        total += hours
        if cost:
            devices.add(cost.device)
            assumed |= not cost.measured
    return total, "/".join(sorted(devices)) or "?", assumed


# ---------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", help=f"one of: {', '.join(experiment_names())}")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list every experiment with its runs and estimated hours")
    what.add_argument("--status", action="store_true", help="show each run's state and epochs done; train nothing")
    what.add_argument("--dry-run", action="store_true", help="print what would be trained or submitted, and stop")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: the experiment's, 10 for the paper's)")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                        help="only the runs whose config field (or cell value) matches, e.g. dataset=cifar10; "
                             "repeat for several (same key: any of them)")
    parser.add_argument("--fidelity", choices=FIDELITIES,
                        help="run the experiment under this fidelity (the paper's tables default to code)")
    parser.add_argument("--executor", choices=("local", "slurm"),
                        help="local: train here; slurm: submit job arrays (default: slurm where sbatch exists)")
    parser.add_argument("--cluster", help="SLURM profile: a name in slurm/ (slurm/<name>.toml) or a .toml path")
    parser.add_argument("--jobs", type=int, default=1, help="local: runs trained at once (default 1)")
    parser.add_argument("--runs-per-gpu", type=int,
                        help="runs sharing one GPU: per SLURM job (default: the profile's), or per local GPU")
    parser.add_argument("--miniature", action="store_true",
                        help="rehearse the experiment offline: its grid on digits, ResNet-8, a few epochs (the numbers "
                             "mean nothing; the pipeline is the real one)")
    parser.add_argument("--miniature-epochs", type=int, default=MINIATURE_EPOCHS, metavar="N",
                        help=f"epochs of each miniature run (default {MINIATURE_EPOCHS})")
    parser.add_argument("--runs-dir", default="runs", help="where run folders live (default runs/)")
    parser.add_argument("--data-root", help="dataset folder handed to every run (default data/)")
    parser.add_argument("--wandb", default="auto", choices=WANDB_MODES, help="W&B mode of the runs")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print_catalog()
        return 0
    if not args.experiment:
        parser.error("name an experiment (or --list)")
    try:
        return _run(args)
    except (ValueError, ProfileError, RunFolderError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    runs = plan(args.experiment, seeds=args.seeds, runs_dir=args.runs_dir, only=args.only, fidelity=args.fidelity,
                wandb=args.wandb, data_root=args.data_root, miniature=args.miniature,
                miniature_epochs=args.miniature_epochs)
    if not runs:
        print(f"{args.experiment}: no run matches {' '.join(args.only)}", file=sys.stderr)
        return 2
    items = statuses(runs)
    if args.status:
        print_status(items)
        return 1 if any(item.state == "failed" for item in items) else 0
    executor = args.executor or ("slurm" if slurm_available() else "local")
    profile = None
    if executor == "slurm":
        if not args.cluster:
            raise ValueError("--executor slurm needs --cluster PROFILE (a file in slurm/, see slurm/example.toml)")
        profile = load_profile(args.cluster)
    # Two cells may read one run (a miniature caps aux sizes): train each folder once.
    todo = list({item.run.name: item for item in items if item.state in ("missing", "failed")}.values())
    skipped = Counter(item.state for item in {i.run.name: i for i in items}.values()
                      if item.state not in ("missing", "failed"))
    print(f"{args.experiment}: {len({run.name for run in runs})} runs; "
          + ", ".join(f"{n} {s}" for s, n in skipped.items())
          + f"{', ' if skipped else ''}{len(todo)} to {'submit' if executor == 'slurm' else 'train'}"
          + (f" ({retried} failed before, retried)" if (retried := sum(i.state == "failed" for i in todo)) else ""))
    if args.dry_run:
        for item in todo:
            print(f"  {item.state:<8} {item.epochs_done:>4}/{item.run.config.epochs:<4} {item.run.run_dir}")
        return 0
    if not todo:
        return 0
    to_train = [item.run for item in todo]
    if executor == "local":
        per_gpu = args.runs_per_gpu or 1
        results = run_local(to_train, jobs=args.jobs, runs_per_gpu=per_gpu, progress=args.progress)
        failed = [r for r in results if r.returncode != 0]
        for result in failed:
            print(f"failed: {result.run.run_dir} (log {result.log})", file=sys.stderr)
        print(f"{args.experiment}: {len(results) - len(failed)} trained, {len(failed)} failed")
        return 1 if failed else 0
    sweep_dir = Path(args.runs_dir).resolve() / "sweeps" / args.experiment
    new = submit_slurm(to_train, profile, sweep_dir, job_name=f"neve-{args.experiment}",
                       runs_per_gpu=args.runs_per_gpu)
    jobs = sorted({entry["job_id"].split("_")[0] for entry in new.values()})
    print(f"{args.experiment}: submitted {len(new)} runs as SLURM job(s) {', '.join(jobs)} on {profile.name}; "
          f"follow with: python -m experiments.sweep {args.experiment} --status")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
