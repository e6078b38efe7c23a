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
failed runs resume from their last checkpoint. While squeue cannot be read, submitted runs not finished are
`unknown` and the sweep refuses to start anything; it also refuses when a dataset its runs need is not prepared
and verified at the data root (python -m experiments.data prepare ...), which --dry-run and --status report.
That refusal comes before the one for a missing --cluster (sbatch on PATH makes slurm the default executor; pass
--executor local to train here).

A run whose training loss became non-finite is `diverged`: halted by the trainer, shown by --status, never
retrained (the same config diverges again). A run whose summary.json or records.csv is damaged is `failed`
with the file named; the sweep sets its summary aside (summary.json.damaged) and the trainer rebuilds it from the
run's checkpoint. Planning, run status and what "finished" means live in experiments.planning.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.catalog import MINIATURE_EPOCHS, PlannedRun, experiment_names, get_experiment
from experiments.costs import run_hours
from experiments.data import dataset
from experiments.data.prepare import DataCheck, check_data, prepare_command
from experiments.executors import run_local, slurm_available, submit_slurm
from experiments.planning import (  # noqa: F401  (select: re-exported)
    DAMAGED_SUMMARY,
    STATES,
    UNKNOWN,
    RunStatus,
    plan,
    select,
    statuses,
)
from experiments.profiles import ClusterProfile, ProfileError, load_profile
from experiments.run_folder import SUMMARY, RunFolder, RunFolderError
from experiments.training.config import FIDELITIES, WANDB_MODES


# ------------------------------------------------------------------------------------------------- status
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
    paper = {run.name: run for name, runs in planned.items() if not get_experiment(name).offline for run in runs}
    hours, devices, _ = _hours(paper.values())
    print(f"\nthe paper (every experiment above but the offline ones): {len(paper)} distinct runs, "
          f"~{hours:,.0f} {devices} hours at most (each run's whole epoch budget)", file=file)
    if assumed:
        print("* includes epoch times assumed, not measured, or unknown and counted as 0 (each dataset's "
              "epoch_costs in experiments/data/)",
              file=file)


def print_interrupted(args: argparse.Namespace, stopped: Sequence[Any], signum: int) -> None:
    """The runs a signal stopped (each at its last checkpoint) or kept from starting, and how to resume."""
    print(f"{args.experiment}: stopped by {signal.Signals(signum).name}; {len(stopped)} run(s) interrupted:",
          file=sys.stderr)
    for result in stopped:
        epochs = RunFolder(result.run.run_dir).epochs_done() if result.returncode is not None else 0
        where = "not started" if result.returncode is None else f"stopped after epoch {epochs}"
        print(f"  {where:<24} {result.run.run_dir}", file=sys.stderr)
    print(f"resume them (finished runs are skipped): python -m experiments.sweep {shlex.join(args.argv)}",
          file=sys.stderr)


def data_checks(runs: Sequence[PlannedRun]) -> list[DataCheck]:
    """Whether each dataset the runs need is present and verified at its data root (those with something to
    check only: a dataset needing no preparation, such as digits, is left out)."""
    needed = sorted({(run.config.dataset, run.config.data_root) for run in runs})
    return [check_data(name, root) for name, root in needed if dataset(name).check]


def _data_missing(checks: Sequence[DataCheck]) -> str:
    """What is missing, and the one command per data root that prepares it."""
    missing = [check for check in checks if not check.ready]
    lines = [check.line() for check in missing]
    for root in sorted({check.root for check in missing}):
        names = [check.dataset for check in missing if check.root == root and dataset(check.dataset).prepare]
        if names:
            lines.append(f"prepare with: {prepare_command(names, root)} (or: make data DATA_ROOT={root})")
    return "data not ready, every run would fail on it:\n  " + "\n  ".join(lines)


def _profile(args: argparse.Namespace) -> ClusterProfile:
    """The ``--cluster`` profile; without one, the way to train here instead (sbatch makes slurm the default)."""
    if not args.cluster:
        default = "" if args.executor else " (the default where sbatch is on PATH)"
        raise ProfileError(f"--executor slurm{default} needs --cluster PROFILE (a file in slurm/, see "
                           "slurm/example.toml; make: CLUSTER=name); to train on this machine instead, pass "
                           "--executor local (make: EXECUTOR=local)")
    return load_profile(args.cluster)


def set_aside_damaged(items: Sequence[RunStatus]) -> list[Path]:
    """Move each damaged ``summary.json`` of the runs about to train to ``summary.json.damaged``.

    A run whose summary or records :func:`read_finished` refused is ``failed`` with its summary still there, and
    the trainer skips a run with a summary: set aside, the trainer resumes the run from its checkpoint, which
    rewrites ``records.csv`` from the checkpoint's records and the summary from them (no epoch is trained
    again), or retrains the run when the checkpoint is gone."""
    moved = []
    for item in items:
        summary = item.run.run_dir / SUMMARY
        if item.state == "failed" and summary.is_file():
            summary.replace(item.run.run_dir / DAMAGED_SUMMARY)
            moved.append(summary)
    return moved


def _queue_unknown(unknown: Sequence[RunStatus]) -> str:
    """Why a sweep will not submit while the queue is unknown: it could start a run that is still queued."""
    names = ", ".join(item.run.name for item in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
    return (f"{len(unknown)} submitted run(s) not finished ({names}) may still be queued or running, and the "
            f"SLURM queue cannot be read: {unknown[0].detail}. Run this where squeue answers; if those jobs are "
            "gone for good (the cluster with them), remove their entries from runs/sweeps/*/submitted.json")


def _hours(runs: Any) -> tuple[float, str, bool]:
    total, devices, assumed = 0.0, set(), False
    for run in runs:
        hours, cost = run_hours(run)
        total += hours
        if cost:
            devices.add(cost.device)
        assumed |= cost is None or not cost.measured  # unknown: counted as 0 hours, and starred
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
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
    unknown = [item for item in items if item.state == UNKNOWN]
    # Only the data of runs still to train matters; a dataset with nothing to prepare is always ready.
    data = data_checks([item.run for item in items if item.state in ("missing", "failed")])
    if args.status:
        print_status(items)
        for check in data:
            print(f"data: {check.line()}")
        if unknown:
            print(f"{len(unknown)} run(s) unknown: {unknown[0].detail}", file=sys.stderr)
        return 1 if any(item.state == "failed" for item in items) else 0
    executor = args.executor or ("slurm" if slurm_available() else "local")
    # Two cells may read one run (a miniature caps aux sizes): train each folder once.
    verb = "submit" if executor == "slurm" else "train"
    todo = list({item.run.name: item for item in items if item.state in ("missing", "failed")}.values())
    skipped = Counter(item.state for item in {i.run.name: i for i in items}.values()
                      if item.state not in ("missing", "failed"))
    print(f"{args.experiment}: {len({run.name for run in runs})} runs; "
          + ", ".join(f"{n} {s}" for s, n in skipped.items())
          + f"{', ' if skipped else ''}{len(todo)} to {verb}"
          + (f" ({retried} failed before, retried)" if (retried := sum(i.state == "failed" for i in todo)) else ""))
    # Refusals in a helpful order: what makes every run fail (the data) before what the command line lacks.
    refusals = [*([_queue_unknown(unknown)] if unknown else []),
                *([_data_missing(data)] if not all(check.ready for check in data) else [])]
    profile = None
    if executor == "slurm" and todo:
        try:
            profile = _profile(args)
        except ProfileError as error:
            refusals.append(str(error))
    if args.dry_run:
        for item in todo:
            print(f"  {item.state:<8} {item.epochs_done:>4}/{item.run.config.epochs:<4} {item.run.run_dir}")
        for check in data:
            print(f"data: {check.line()}")
        for refusal in refusals:
            print(f"would refuse to {verb}: {refusal}")
        return 0
    if refusals:
        raise RuntimeError(f"refusing to {verb}: {refusals[0]}")
    if not todo:
        return 0
    for path in set_aside_damaged(todo):
        print(f"set aside {path} (damaged); the run's summary is rebuilt from its checkpoint")
    to_train = [item.run for item in todo]
    if executor == "local":
        per_gpu = args.runs_per_gpu or 1
        done = run_local(to_train, jobs=args.jobs, runs_per_gpu=per_gpu, progress=args.progress)
        results = done.results
        stopped = [r for r in results if done.stopped_by and r.interrupted]
        failed = [r for r in results if r.returncode and r not in stopped]
        for result in failed:
            print(f"failed: {result.run.run_dir} (log {result.log})", file=sys.stderr)
        trained = len(results) - len(failed) - len(stopped)
        print(f"{args.experiment}: {trained} trained, {len(failed)} failed"
              + (f", {len(stopped)} interrupted" if done.stopped_by else ""))
        if done.stopped_by:
            print_interrupted(args, stopped, done.stopped_by)
            return 128 + done.stopped_by
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
