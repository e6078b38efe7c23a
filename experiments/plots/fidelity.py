"""NeVe as the paper writes it against NeVe as the authors' code runs it, one difference at a time: accuracy per
setting and the velocity curves."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from experiments.plots import layout
from experiments.plots.panels import (
    FALLBACK_NOTE,
    GEOMETRIC_NOTE,
    SETTING_COLORS,
    bottom_legend,
    color_of,
    curve_notes,
    curves,
    marked_stops,
    new_figure,
    seed_label,
    spread,
    styled,
    velocity_axis,
)
from experiments.results import Results


@layout("paper-vs-code")
@styled
def plot_paper_vs_code(results: Results) -> Figure:
    """NeVe as the paper writes it vs as the authors' code runs it: accuracy per setting (a), velocity (b)."""
    cells, runs = results.cells, results.finished_runs
    epochs = results.need_epochs()
    figure, axes = new_figure(2, height=3.3)
    labels = cells["setting"].astype(str).tolist()
    ys = np.arange(len(labels))[::-1]
    for index, (y, (_, cell)) in enumerate(zip(ys, cells.iterrows(), strict=True)):
        color = color_of(str(cell["setting"]), SETTING_COLORS, index)
        seeds = runs[runs["setting"] == cell["setting"]]["acc"]
        axes[0].scatter(seeds, np.full(len(seeds), y), s=10, color=color, alpha=0.4, linewidths=0)
        axes[0].errorbar(cell["mean"], y, xerr=spread(cell["std"]), fmt="o", color=color, capsize=2.5)
        if cell["n_fallback"] > 0:
            axes[0].scatter([cell["mean"]], [y], s=60, facecolors="none", edgecolors=color, linewidths=1.1)
    axes[0].set_yticks(ys, labels)
    axes[0].set_xlabel("test accuracy at NeVe's stop (%)")
    axes[0].grid(axis="y", visible=False)
    axes[0].set_title("(a) accuracy")
    stops = marked_stops(results.runs)
    curves(axes[1], epochs, "model_velocity", "setting", SETTING_COLORS, stops=stops)
    velocity_axis(axes[1], cells)
    axes[1].set_xlabel("epoch")
    axes[1].set_title("(b) velocity")
    fallback = (cells["n_fallback"] > 0).any()
    bottom_legend(figure, axes[1], ncols=4,
                  notes=[seed_label(results.runs), GEOMETRIC_NOTE, *curve_notes(epochs, "setting", stops),
                         *([FALLBACK_NOTE] if fallback else [])])
    return figure
