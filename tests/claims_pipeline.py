"""Small results for the stop-quality and figure-claims tests, made by the real pipeline: miniatures (digits,
ResNet-8, a few epochs) of the experiments that declare claims and of ``mnist1d-stop-quality``, planned as the sweep
plans them, trained by the sweep's job and aggregated by the command line.

Two runs train with an epsilon above every velocity, so NeVe's stop marker fires from epoch 1 (a few digits epochs
never bring V below 1e-3, and without them the tests would only see runs that never stop): the NeVe run at seed 1
(mnist1d-table2's, shared by Fig. 5 and the stop-quality experiment) and Fig. 7's run at seed 1. Their folders are
the planned ones; only their config.json says epsilon 10.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from results_pipeline import call

from experiments import aggregate
from experiments.catalog import PlannedRun
from experiments.job import train_run
from experiments.sweep import plan

#: (experiment, seeds, --only): the runs the tests read. Fig. 5 reads the stop-quality experiment's runs; Fig. 4b and
#: the ablation are cut to their references and one other value, Fig. 8 to NeVe with each optimizer.
PIPELINE: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("mnist1d-stop-quality", 2, ()),
    ("mnist1d-fig5", 2, ()),
    ("mnist1d-fig7", 2, ()),
    ("mnist1d-fig4b", 2, ("aux_size=10", "aux_size=100")),
    ("mnist1d-ablation-alpha-delta", 2, ("alpha=0.5", "patience=5", "patience=10")),
    ("mnist1d-fig8", 2, ("method=NeVe",)),
)
EPOCHS = 4
#: The runs whose NeVe stop marker fires at epoch 1, and the epsilon they train with.
STOPPED = (("mnist1d-fig5", "NeVe", 1), ("mnist1d-fig7", "constant lr", 1))
STOPPED_EPSILON = 10.0


@dataclass
class ClaimsBuild:
    runs_dir: Path
    results_dir: Path
    planned: dict[str, list[PlannedRun]] = field(default_factory=dict)
    stopped: list[PlannedRun] = field(default_factory=list)
    #: Per experiment: (exit code, stdout, stderr) of ``aggregate``.
    aggregated: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    def options(self, name: str) -> list[str]:
        """The sweep options of ``name`` in this build, as aggregate takes them."""
        seeds, only = next((s, o) for n, s, o in PIPELINE if n == name)
        return [name, "--miniature", "--miniature-epochs", str(EPOCHS), "--seeds", str(seeds),
                "--runs-dir", str(self.runs_dir), *(f"--only={item}" for item in only)]


def build(root: Path) -> ClaimsBuild:
    """Train and aggregate the :data:`PIPELINE` under ``root`` (runs/ and results/)."""
    made = ClaimsBuild(root / "runs", root / "results")
    for name, seeds, only in PIPELINE:
        made.planned[name] = plan(name, seeds=seeds, runs_dir=made.runs_dir, only=only, wandb="disabled",
                                  miniature=True, miniature_epochs=EPOCHS)
    made.stopped = [next(r for r in made.planned[name] if r.cell.label == label and r.seed == seed)
                    for name, label, seed in STOPPED]
    stopped = {run.name for run in made.stopped}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and spins nothing on a shared machine
    try:
        for run in {run.name: run for runs in made.planned.values() for run in runs}.values():
            config = run.config.to_dict()
            if run.name in stopped:
                config["epsilon"] = STOPPED_EPSILON
            train_run(config)
    finally:
        torch.set_num_threads(threads)
    for name, _, _ in PIPELINE:
        made.aggregated[name] = call(aggregate.main, [*made.options(name), "--results-dir", str(made.results_dir)])
    return made
