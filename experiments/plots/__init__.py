"""Results CSVs -> the paper's figures: ``python -m experiments.plots NAME`` (or ``--all``).

A figure *layout* is a function from loaded results (:class:`~experiments.results.Results`, pandas DataFrames)
to a matplotlib Figure, registered under its name with ``@layout`` in :data:`LAYOUTS`, the one way a figure is
found. An experiment names its layout in the catalog (``Experiment.layout``), so a new experiment drawn like an
existing one is its catalog entry alone, and a new kind of figure is one function here. The command line and
the notebooks call the same functions; neither reads run folders. Figures are built on
``matplotlib.figure.Figure`` (no pyplot state), and the command line renders with the Agg backend.

The modules: :mod:`~experiments.plots.panels` (style, colours and the panels every layout shares), then one per
figure family: :mod:`~experiments.plots.tables`, :mod:`~experiments.plots.accuracy` (Fig. 4a, 4b),
:mod:`~experiments.plots.curves` (Fig. 5, 7, 8 and the demo's curves), :mod:`~experiments.plots.sensitivity`
(Fig. 6, the α × δ ablation), :mod:`~experiments.plots.fidelity` (paper vs code) and
:mod:`~experiments.plots.profile` (AlgoPerf's performance profile) and :mod:`~experiments.plots.stop_quality` (regret
against epochs saved). Nothing here imports torch until a layout
reads a dataset's or a method's declaration (Fig. 4a's unit, the profile's line styles).

Examples:
    python -m experiments.plots fig5                  # results/figures/fig5.png and .pdf, then results/README.md
    python -m experiments.plots --all --miniature     # every aggregated experiment in results/miniature/
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from experiments.results import Results, figure_path

#: A figure layout: the loaded results of an experiment (and of those its figure joins) -> its figure.
Layout = Callable[..., Figure]
#: Layout name -> function; an experiment names one (``Experiment.layout``).
LAYOUTS: dict[str, Layout] = {}


def layout(name: str) -> Callable[[Layout], Layout]:
    """Register a figure function under ``name``."""

    def register(function: Layout) -> Layout:
        if name in LAYOUTS:
            raise ValueError(f"figure layout {name!r} is registered twice")
        LAYOUTS[name] = function
        return function

    return register


def draw(layout_name: str, *results: Results) -> Figure:
    """The figure of layout ``layout_name`` from loaded results (the experiment's, then any it joins)."""
    if layout_name not in LAYOUTS:
        raise ValueError(f"no figure layout {layout_name!r}; known: {', '.join(LAYOUTS)} (an experiment names one "
                         "of these in its catalog entry, or a new one registered with @layout in experiments/plots/)")
    return LAYOUTS[layout_name](*results)


def plot(name: str, results: Results, *joined: Results) -> Figure:
    """The figure of experiment ``name``, in the layout its catalog entry names."""
    from experiments.catalog import get_experiment  # the catalog (and torch): not for a notebook's draw()

    return draw(get_experiment(name).layout, results, *joined)


def save_figure(figure: Figure, results_dir: str | Path, name: str) -> list[Path]:
    """``figures/NAME.png`` (dpi 200) and ``.pdf``, each written atomically."""
    from experiments.plots.panels import DPI
    from neve.io import atomic_write

    paths = []
    for suffix, metadata in ((".png", {"Software": None}), (".pdf", {"CreationDate": None, "Producer": None})):
        path = figure_path(results_dir, name, suffix)
        atomic_write(path, lambda handle, s=suffix, m=metadata: figure.savefig(handle, format=s[1:], dpi=DPI,
                                                                               metadata=m))
        paths.append(path)
    return paths


# Each figure family registers its layouts; the command line is ``cli.main`` (``python -m experiments.plots``).
from experiments.plots import accuracy, curves, fidelity, profile, sensitivity, stop_quality, tables  # noqa: E402, F401
from experiments.plots.cli import main  # noqa: E402
from experiments.plots.panels import DPI  # noqa: E402

__all__ = ["DPI", "LAYOUTS", "Layout", "draw", "layout", "main", "plot", "save_figure"]
