"""Is a method's stop a good one? Accuracy regret against the epochs it saves, a point per method (beyond the paper;
the columns are ``experiments.stop_quality``'s)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from experiments.plots import layout
from experiments.plots.panels import GREY, bottom_legend, color_of, new_figure, seed_count, styled
from experiments.results import STOP_QUALITY_CELL_COLUMNS, Results, ResultsError

#: One marker per cell, in declaration order: methods that share a colour (Label Wave δ=5 and δ=10) stay apart.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
#: The row whose first V < ε is scored as the stop NeVe would have made in the same run.
WOULD_BE = "Baseline"
#: (a)'s and (b)'s regret: the run's own best epoch, and the same seed's Baseline's.
PANELS = (("regret", "(a) regret against the run's own best epoch", "accuracy regret (points)"),
          ("baseline_regret", "(b) against the same seed's Baseline's best", "points below the Baseline's best"))


@layout("stop-quality")
@styled
def plot_stop_quality(results: Results) -> Figure:
    """Regret against epochs saved, a point per method (mean, 95% t-interval over seeds both ways; small dots: single
    runs): (a) the best test accuracy over the epochs the run trained minus the one it reports, (b) the same seed's
    Baseline's best epoch over the whole budget minus it (one yardstick for halted and marked runs). The Baseline's
    first V < ε is drawn hollow: the stop NeVe would have made in the Baseline's own run."""
    cells, runs = results.cells, results.finished_runs
    missing = [column for column in STOP_QUALITY_CELL_COLUMNS if column not in cells.columns]
    if missing:
        raise ResultsError(f"{results.name}.csv has no stop-quality columns ({', '.join(missing[:3])}, ...); run "
                           f"python -m experiments.aggregate {results.name} again")
    figure, axes = new_figure(2, height=3.6)
    budget = cells["budget_epochs"].max()
    for ax, (column, title, ylabel) in zip(axes, PANELS, strict=True):
        for index, (_, cell) in enumerate(cells.iterrows()):
            color, marker = color_of(str(cell["cell"]), index=index), MARKERS[index % len(MARKERS)]
            mine = runs[(runs["block"] == cell["block"]) & (runs["cell"] == cell["cell"])]
            ax.scatter(mine["epochs_saved"], mine[column], s=9, color=color, marker=marker, alpha=0.3,
                       linewidths=0)
            point(ax, cell, column, "epochs_saved", color, marker, label=str(cell["cell"]))
            if cell["cell"] == WOULD_BE and cell["n_at_neve_stop"] > 0:
                # The Baseline's best epoch is its own oracle, so (b)'s regret there is (a)'s.
                ax.scatter(mine["epochs_saved_at_neve_stop"], mine["regret_at_neve_stop"], s=9, color=color,
                           marker=marker, alpha=0.3, linewidths=0)
                point(ax, cell, "regret_at_neve_stop", "epochs_saved_at_neve_stop", color, marker,
                      label=f"{WOULD_BE} at its first V < ε (NeVe's would-be stop)", hollow=True)
        ax.axhline(0, color=GREY, linewidth=0.8)
        ax.set_xlim(-0.03 * budget, 1.03 * budget)
        ax.set_xlabel(f"epochs saved of the {budget:g}-epoch budget")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    notes = [f"points: mean and 95% t-interval over {seed_count(results.runs)} seeds, both ways; small marks: single "
             "runs",
             "regret: the best test accuracy over the epochs a run trained (in hindsight: no method may use it) "
             "minus the accuracy it reports; V.Loss and Label Wave halt, so their own best covers only the epochs "
             "before the halt, and (b) scores every run against the same seed's Baseline, which trains the whole "
             "budget", *label_wave_note(cells)]
    bottom_legend(figure, axes[0], ncols=3, notes=notes)
    return figure


def point(ax: Axes, cell: pd.Series, y: str, x: str, color: str, marker: str, label: str,
          hollow: bool = False) -> None:
    """One cell's mean (``x``, ``y``) with its 95% t-intervals as bars; no bar where one seed gives none."""
    ax.errorbar(cell[f"{x}_mean"], cell[f"{y}_mean"], xerr=bars(cell, x), yerr=bars(cell, y), fmt=marker,
                color=color, markerfacecolor="white" if hollow else color, capsize=2.5, markersize=6.5,
                label=label, zorder=5)


def bars(cell: pd.Series, name: str) -> np.ndarray | None:
    """Asymmetric error bars from a cell's ``NAME_ci_low``/``_ci_high`` (None where they are not known)."""
    mean, low, high = (float(cell[f"{name}_{stat}"]) for stat in ("mean", "ci_low", "ci_high"))
    if any(math.isnan(value) for value in (mean, low, high)):
        return None
    return np.array([[mean - low], [high - mean]])


def label_wave_note(cells: pd.DataFrame) -> list[str]:
    """Label Wave trains on 40% noisy labels, which (b) prices along with its stop."""
    if cells["cell"].astype(str).str.startswith("Label Wave").any():
        return ["Label Wave trains on 40% noisy labels (its authors' setting): (b) prices the noise with the stop"]
    return []

