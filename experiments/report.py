"""``results/README.md``: the results folder as a report, rebuilt from whatever CSVs and figures it holds.

For each catalog experiment with results: its title, what its runs were, the table (ours beside the paper's),
the figure, and the runs not averaged. Rewritten (atomically) at the end of every ``aggregate`` and ``plots``,
or on its own: ``python -m experiments.report [--miniature | --results-dir DIR]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.catalog import MINIATURE_DATASET, Experiment, experiment_names, get_experiment
from experiments.results import (
    FINISHED,
    Results,
    ResultsError,
    figure_path,
    load_results,
    markdown,
    resolve_results_dir,
    results_path,
)
from neve.io import atomic_write_text

README = "README.md"

INTRO = """\
# Results

Written by `python -m experiments.report` from the CSVs and figures in this folder; do not edit by hand.
Per experiment `NAME` (see `python -m experiments.sweep --list`):

```
python -m experiments.sweep NAME          # train the missing runs (locally or on SLURM)
python -m experiments.aggregate NAME      # run folders -> NAME.csv, NAME_runs.csv (+ NAME_epochs.csv); this file
python -m experiments.plots NAME          # CSVs -> figures/NAME.png and .pdf; this file
python -m experiments.report              # this file alone
```

A rehearsal of any experiment on digits in minutes: the same commands with `--miniature` (results in
`results/miniature/`, a report of its own).

Numbers are test accuracy in percent, mean ± sample std over seeds with a 95% t-interval. Each cell reports
its method's own number: NeVe the accuracy at the first epoch with V < ε, V.Loss and Label Wave the model they
kept, Baseline and the Ultimate Optimizer the model after the whole budget. When a run has no such number
(NeVe never reached V < ε within the budget), it counts with its final test accuracy and the cell is marked †
with the count. Runs that failed or have not finished are listed under their table and never averaged.
"""


def write_report(results_dir: str | Path = "results") -> Path:
    """Rebuild ``results_dir/README.md`` from the results there; returns its path."""
    results_dir = Path(results_dir)
    sections, missing = [], []
    for name in experiment_names():
        if not results_path(results_dir, name).is_file():
            missing.append(name)
            continue
        sections.append(section(get_experiment(name), results_dir))
    parts = [INTRO]
    if sections:
        parts.append("Contents: " + ", ".join(f"[{name}](#{name})" for name in experiment_names()
                                              if name not in missing) + "\n")
        parts += sections
    else:
        parts.append("Nothing aggregated yet.\n")
    if missing:
        parts.append("Not aggregated yet: " + ", ".join(f"`{name}`" for name in missing) + ".\n")
    path = results_dir / README
    atomic_write_text(path, "\n".join(parts))
    return path


def section(experiment: Experiment, results_dir: Path) -> str:
    name = experiment.name
    lines = [f'<a id="{name}"></a>', f"## {name}: {experiment.title}", ""]
    try:
        results = load_results(name, results_dir, epochs=False)
    except ResultsError as error:
        return "\n".join([*lines, f"Unreadable results: {error}", ""])
    lines += [runs_line(experiment, results), "", markdown(results, experiment.kind)]
    if figure_path(results_dir, name).is_file():
        lines += [f"![{name}]({figure_path(Path('.'), name).as_posix()}) "
                  f"([PDF]({figure_path(Path('.'), name, '.pdf').as_posix()}))", ""]
    else:
        lines += [f"No figure yet: `python -m experiments.plots {name}`.", ""]
    return "\n".join(lines)


def runs_line(experiment: Experiment, results: Results) -> str:
    """What the runs were: data, model, budget, how many finished; and whether it is a miniature rehearsal."""
    runs = results.runs.drop_duplicates("run")
    datasets = ", ".join(sorted(set(runs["dataset"].astype(str))))
    models = ", ".join(sorted(set(runs["model"].astype(str))))
    budgets = ", ".join(str(int(b)) for b in sorted(set(runs["budget_epochs"].dropna())))
    finished = int((runs["state"] == FINISHED).sum())
    line = (f"Runs: {datasets} · {models} · budget {budgets} epochs · {finished} of {len(runs)} finished · "
            f"{experiment.reads}")
    if set(runs["dataset"]) == {MINIATURE_DATASET} and MINIATURE_DATASET not in experiment.datasets:
        line = ("**Miniature rehearsal** (the experiment's grid on digits with a ResNet-8 for a few epochs: the "
                "numbers mean nothing, the layout and pipeline are the real ones; the paper column is the real "
                "experiment's).\n\n" + line)
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", help="the results folder (default results/, results/miniature/ with "
                                              "--miniature)")
    parser.add_argument("--miniature", action="store_true", help="the miniature results (results/miniature/)")
    args = parser.parse_args(argv)
    print(f"wrote {write_report(resolve_results_dir(args.results_dir, args.miniature))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
