"""``python -m experiments.plots NAME... | --all``: each experiment's figure from its results CSVs, in the layout its
catalog entry names, then ``results/README.md``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import matplotlib as mpl

from experiments.results import ResultsError, load_results, resolve_results_dir, results_path


def main(argv: Sequence[str] | None = None) -> int:
    from experiments import plots
    from experiments.catalog import experiment_names, get_experiment

    parser = argparse.ArgumentParser(prog="python -m experiments.plots", description=plots.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help=f"one or more of: {', '.join(experiment_names())}")
    parser.add_argument("--all", action="store_true", help="every experiment aggregated in the results folder")
    parser.add_argument("--results-dir", help="where the CSVs are (default results/, results/miniature/ with "
                                              "--miniature); figures go to its figures/")
    parser.add_argument("--miniature", action="store_true", help="the miniature results (results/miniature/)")
    args = parser.parse_args(argv)
    mpl.use("Agg")
    results_dir = resolve_results_dir(args.results_dir, args.miniature)
    names = list(args.experiments)
    if args.all:
        names += [name for name in experiment_names()
                  if name not in names and results_path(results_dir, name).is_file()]
    if not names:
        parser.error("name an experiment, or --all")
    failed = 0
    for name in names:
        try:
            experiment = get_experiment(name)
            joined = [load_results(other, results_dir) for other in experiment.joins
                      if results_path(results_dir, other).is_file()]
            figure = plots.draw(experiment.layout, load_results(name, results_dir), *joined)
        except (ResultsError, ValueError) as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            failed += 1
            continue
        for path in plots.save_figure(figure, results_dir, name):
            print(f"wrote {path}")
    from experiments.report import write_report

    print(f"wrote {write_report(results_dir)}")
    return 2 if failed else 0
