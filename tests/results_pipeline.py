"""Small results made by the real pipeline: miniature sweeps planned as the sweep plans them, trained by the
sweep's job (:func:`experiments.job.train_run`, what a local or SLURM job runs), aggregated and plotted by the
command lines. The results tests (aggregation, plots, notebooks) all read one such build.

The runs train one after another in this process: a fresh process per run (the local executor) spends more
time importing torch than training two digits epochs.

The experiments are cut with ``--only`` to the fewest runs that still give every figure layout its data
(most share runs: Table II's four rows are Fig. 4a's, Fig. 5's and Fig. 8's SGD line). One run is made to fail
for real: its folder holds an unreadable checkpoint, so its job raises and leaves ``error.json``. One NeVe run
(:data:`STOPPED`) trains with an epsilon above every velocity, so its stop fires from epoch 1: two digits epochs
never bring V below 1e-3, and without it the aggregation would only ever read NeVe's fallback. Its folder is
the planned one (Table II's, Fig. 5's and Table I's NeVe at seed 1); only its config.json says epsilon 10.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from experiments import aggregate, plots
from experiments.catalog import PlannedRun, experiment_names, get_experiment
from experiments.job import train_run
from experiments.sweep import plan

#: (experiment, seeds, --only): what the tests build, as each experiment declares it (``Experiment.rehearsal``).
#: Grids the paper sweeps get one seed and a corner; most share runs (the miniature's MNIST-1D rows are digits
#: ResNet-8 runs, Table II's four rows are Fig. 4a's, Fig. 5's and Fig. 8's SGD line).
PIPELINE: tuple[tuple[str, int, tuple[str, ...]], ...] = tuple(
    (name, experiment.rehearsal.seeds, experiment.rehearsal.only)
    for name, experiment in ((name, get_experiment(name)) for name in experiment_names()) if experiment.rehearsal)
#: The run made to fail: Table II's (and Fig. 4a's) V.Loss 30% at seed 1.
BROKEN = ("table2", "V.Loss 30%", 1)
#: The NeVe run whose stop fires (--stop mark: it trains on), and the epsilon it trains with.
STOPPED = ("fig5", "NeVe", 1)
STOPPED_EPSILON = 10.0


@dataclass
class Build:
    runs_dir: Path
    results_dir: Path
    epochs: int
    planned: dict[str, list[PlannedRun]] = field(default_factory=dict)
    broken: PlannedRun | None = None
    stopped: PlannedRun | None = None
    #: Per experiment: (exit code, stdout, stderr) of ``aggregate``; and of one ``plots`` of them all.
    aggregated: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    plotted: tuple[int, str, str] = (0, "", "")

    def options(self, name: str) -> list[str]:
        """The sweep options of ``name`` in this build, as aggregate takes them."""
        seeds, only = next((s, o) for n, s, o in PIPELINE if n == name)
        return [name, "--miniature", "--miniature-epochs", str(self.epochs), "--seeds", str(seeds),
                "--runs-dir", str(self.runs_dir), *(f"--only={item}" for item in only)]


def call(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str, str]:
    """Run a command line's ``main`` here; its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def build(root: Path, epochs: int = 2) -> Build:
    """Train, aggregate and plot the :data:`PIPELINE` under ``root`` (runs/ and results/)."""
    made = Build(root / "runs", root / "results", epochs)
    for name, seeds, only in PIPELINE:
        made.planned[name] = plan(name, seeds=seeds, runs_dir=made.runs_dir, only=only, wandb="disabled",
                                  miniature=True, miniature_epochs=epochs)
    name, label, seed = BROKEN
    made.broken = next(r for r in made.planned[name] if r.cell.label == label and r.seed == seed)
    made.broken.run_dir.mkdir(parents=True, exist_ok=True)
    (made.broken.run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    name, label, seed = STOPPED
    made.stopped = next(r for r in made.planned[name] if r.cell.label == label and r.seed == seed)
    distinct = {run.name: run for runs in made.planned.values() for run in runs}
    failed = set()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and spins nothing on a shared machine
    try:
        for run in distinct.values():
            try:
                config = run.config.to_dict()
                if run.name == made.stopped.name:
                    config["epsilon"] = STOPPED_EPSILON
                train_run(config)
            except Exception:  # recorded in the run's error.json, as a job records it
                failed.add(run.name)
    finally:
        torch.set_num_threads(threads)
    assert failed == {made.broken.name}, f"runs failed unexpectedly: {failed - {made.broken.name}}"
    for name, _, _ in PIPELINE:
        made.aggregated[name] = call(aggregate.main, [*made.options(name), "--results-dir", str(made.results_dir)])
    made.plotted = call(plots.main, ["--all", "--results-dir", str(made.results_dir)])  # what make figures runs
    return made
