"""The notebooks, generated from the catalog: one per experiment that declares one (``Experiment.notebook``).

``python -m experiments.notebooks`` (``make notebooks``) writes ``notebooks/NAME.ipynb`` and ``notebooks/README.md``
from the catalog, all from the one template below, and removes a generated notebook whose experiment no longer
declares one; ``--check`` writes nothing and fails when the committed files differ from what it would write (the
tests run it); ``--render`` also executes each notebook whose results exist into ``notebooks/rendered/`` (ignored
by git), to browse with its tables and figure.

A notebook holds its experiment's declarations as literals (its name, figure layout, ``make`` target, whether it
trains offline, the experiments its figure joins), so it needs neither the catalog nor torch to run: it reads the
results CSVs with :func:`experiments.results.load_results` and draws with :func:`experiments.plots.draw`, the
function ``python -m experiments.plots NAME`` calls. Notebooks are stored without outputs: readable diffs, and
nothing that depends on which results a machine holds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import nbformat

from experiments.catalog import Experiment, experiment_names, get_experiment
from experiments.results import resolve_results_dir, results_path
from neve.io import atomic_write_text

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
README = "README.md"
#: Where ``--render`` writes executed copies (ignored by git).
RENDERED = "rendered"
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def notebook_experiments() -> list[Experiment]:
    """The experiments that declare a notebook, in catalog order."""
    return [e for e in map(get_experiment, experiment_names()) if e.notebook]


def notebook(experiment: Experiment) -> nbformat.NotebookNode:
    """``experiment``'s notebook: its introduction, the parameters cell, its table, its figure, its numbers, and
    the numbers behind its claim where it declares one."""
    name = experiment.name
    intro = (f"# {experiment.title}\n\n{experiment.notebook}\n\n"
             f"Reads only the results CSVs of `{name}` (written by `python -m experiments.aggregate {name}`) and "
             f"draws the figure with its layout `{experiment.layout}`, as `python -m experiments.plots {name}` "
             "does. Generated from the catalog (`python -m experiments.notebooks`): change the experiment's entry "
             "in `experiments/catalog.py`, not this file. Run it from `notebooks/`.")
    parameters = (
        "import os\n\n"
        "from experiments.results import notebook_results\n\n"
        "# Parameters: the experiment, and where its results are (NEVE_RESULTS_DIR picks a folder: the tests point\n"
        "# it at a miniature pipeline's results; results/miniature holds the `--miniature` rehearsal).\n"
        f"NAME = {literal(name)}\n"
        f"RESULTS_DIR = notebook_results(NAME, os.environ.get(\"NEVE_RESULTS_DIR\"), make={literal(experiment.make)}, "
        f"offline={experiment.offline!r})")
    table = ("%matplotlib inline\n"
             "from IPython.display import Markdown\n\n"
             "from experiments.results import load_results, markdown\n\n"
             "results = load_results(NAME, RESULTS_DIR)\n"
             f"Markdown(markdown(results, {literal(experiment.kind)}))")
    if experiment.joins:
        figure = ("from experiments.plots import draw\n"
                  "from experiments.results import results_path\n\n"
                  "# These experiments' results join the figure where they are aggregated beside this one's.\n"
                  f"JOINS = {literal(experiment.joins)}\n"
                  "joined = [load_results(other, RESULTS_DIR) for other in JOINS "
                  "if results_path(RESULTS_DIR, other).is_file()]\n"
                  f"draw({literal(experiment.layout)}, results, *joined)")
    else:
        figure = f"from experiments.plots import draw\n\ndraw({literal(experiment.layout)}, results)"
    cells = [nbformat.v4.new_markdown_cell(intro),
             nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell(table),
             nbformat.v4.new_code_cell(figure),
             nbformat.v4.new_markdown_cell("Per cell (accuracies in %, wall times in seconds): the numbers behind "
                                           "the table and the figure."),
             nbformat.v4.new_code_cell("results.cells")]
    if experiment.claims:
        cells += [nbformat.v4.new_markdown_cell(
                      f"The numbers behind the figure's claim (`{name}_claims.csv`, `experiments.figure_claims`): per "
                      "claim, cell and quantity, the mean and 95% interval over the runs that have it (`n` of "
                      "`n_runs`) and, where the claim compares, Welch's test against the `versus` cell."),
                  nbformat.v4.new_code_cell('results.need_derived("claims")')]
    for index, cell in enumerate(cells):
        cell["id"] = f"{name}-{index}"
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})


def literal(value: str | tuple[str, ...]) -> str:
    """A string or a tuple of strings as Python source in the house style (double quotes)."""
    if isinstance(value, tuple):
        return "(" + ", ".join(map(literal, value)) + ("," if len(value) == 1 else "") + ")"
    return json.dumps(value, ensure_ascii=False)


def readme(experiments: Sequence[Experiment]) -> str:
    """``notebooks/README.md``: what the notebooks are, one line each, and how to run them."""
    rows = []
    for experiment in experiments:
        where = "offline, on a CPU" if experiment.offline else "a GPU cluster"
        make = f" (`make {experiment.make}`)" if experiment.make else ""
        rows.append(f"| [{experiment.name}]({experiment.name}.ipynb) | {experiment.title} | {where}{make} |")
    text = "\n\n".join([
        "# notebooks/",
        wrap("Generated from the catalog: one notebook per experiment whose entry in `experiments/catalog.py` "
             "declares one (`notebook=`, its introduction), all from one template in `experiments/notebooks.py`. "
             "Change the catalog entry (or the template), then run `make notebooks` (`python -m "
             "experiments.notebooks`); `tests/test_notebooks.py` fails when a file here differs from what the "
             "generator writes, and executes each notebook on results the real pipeline produced. This file is "
             "generated too."),
        "\n".join(["| notebook | experiment | trains |", "|---|---|---|", *rows]),
        wrap("Each loads the results CSVs of its experiment with `experiments.results.load_results` and draws the "
             "figure with `experiments.plots.draw` in the layout its catalog entry names, the function `python -m "
             "experiments.plots NAME` calls, so a notebook and `results/figures/NAME.png` never disagree. They read "
             "`results/*.csv` only, never run folders or W&B: run `python -m experiments.aggregate NAME` first."),
        "## Running them",
        wrap("The notebooks are stored without outputs, so that their diffs stay readable. To browse them with "
             "their tables and figures, render them, from the repo root (`jupyter execute` comes with the "
             "requirements; no Jupyter server is needed):"),
        "\n".join(["```",
                   "make notebooks    # regenerate them, and render each with results into notebooks/rendered/",
                   "mkdir -p notebooks/rendered    # or one by hand:",
                   "PYTHONPATH=$PWD .venv/bin/jupyter execute notebooks/fig5.ipynb --output 'rendered/{notebook_name}'",
                   "```"]),
        wrap("`notebooks/rendered/` is ignored by git. `PYTHONPATH` puts this checkout's `experiments/` on the "
             "kernel's path (`pip install` gives the library `neve` alone); a Jupyter front end started in "
             "`notebooks/` with the same `PYTHONPATH` runs them interactively."),
        wrap("The first code cell is the parameters cell: `RESULTS_DIR` is `../results` when it holds the "
             "experiment's CSVs, else the `--miniature` rehearsal's (`../results/miniature`, announced as a "
             "rehearsal); with neither, the first output prints what to run (the `make` target, the sweep on a CPU "
             "for an offline experiment, or the cluster command and the three rehearsal commands) before "
             "`load_results` raises its `ResultsError` (`experiments.results.notebook_results`). "
             "`NEVE_RESULTS_DIR` picks another results folder."),
    ])
    return text + "\n"


def wrap(paragraph: str) -> str:
    return textwrap.fill(paragraph, width=115, break_long_words=False, break_on_hyphens=False)


def expected_files(folder: Path = NOTEBOOKS) -> dict[Path, str]:
    """Every file the generator owns in ``folder``, with the text it writes there."""
    experiments = notebook_experiments()
    files = {folder / f"{e.name}.ipynb": nbformat.writes(notebook(e)) + "\n" for e in experiments}
    files[folder / README] = readme(experiments)
    return files


def stale(folder: Path, expected: dict[Path, str]) -> list[Path]:
    """Notebooks in ``folder`` no experiment declares any more (rendered copies are not looked at)."""
    return sorted(path for path in folder.glob("*.ipynb") if path not in expected)


def differences(folder: Path = NOTEBOOKS) -> list[str]:
    """What differs between ``folder`` and what the generator writes (empty: nothing)."""
    expected = expected_files(folder)
    problems = [f"{path.name} is missing" if not path.is_file() else f"{path.name} differs from the catalog's"
                for path, text in expected.items() if not path.is_file() or path.read_text() != text]
    problems += [f"{path.name} is not declared by any experiment" for path in stale(folder, expected)]
    return problems


def write(folder: Path = NOTEBOOKS) -> list[Path]:
    """Write the generated files that changed (atomically) and remove stale notebooks; returns what changed."""
    expected = expected_files(folder)
    changed = []
    for path, text in expected.items():
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)
            changed.append(path)
    for path in stale(folder, expected):
        path.unlink()
        changed.append(path)
    return changed


def render(folder: Path, results_dir: Path, timeout: int = 300) -> list[Path]:
    """Execute each notebook whose experiment has results in ``results_dir`` into ``folder/rendered/``."""
    from nbclient import NotebookClient

    out = folder / RENDERED
    out.mkdir(exist_ok=True)
    rendered = []
    os.environ["NEVE_RESULTS_DIR"] = str(results_dir.resolve())
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder.resolve().parent),
                                                             os.environ.get("PYTHONPATH")]))
    for experiment in notebook_experiments():
        if not results_path(results_dir, experiment.name).is_file():
            continue
        executed = notebook(experiment)
        NotebookClient(executed, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
        path = out / f"{experiment.name}.ipynb"
        atomic_write_text(path, nbformat.writes(executed) + "\n")
        rendered.append(path)
    return rendered


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    parser.add_argument("--render", action="store_true",
                        help=f"also execute each notebook with results into notebooks/{RENDERED}/")
    parser.add_argument("--results-dir", help="the results --render reads (default results/)")
    parser.add_argument("--folder", default=str(NOTEBOOKS), help=argparse.SUPPRESS)  # the tests' copy
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if args.check:
        problems = differences(folder)
        for problem in problems:
            print(f"{folder}: {problem}", file=sys.stderr)
        if problems:
            print("regenerate them with: make notebooks (python -m experiments.notebooks)", file=sys.stderr)
        return 1 if problems else 0
    for path in write(folder):
        print(f"{'wrote' if path.is_file() else 'removed'} {path}")
    if args.render:
        for path in render(folder, resolve_results_dir(args.results_dir)):
            print(f"rendered {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
