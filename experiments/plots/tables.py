"""Tables as figures (Tables I and II, the MNIST-1D tables, the demo's numbers): per block, our mean ± std and
each seed beside the paper's number."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from experiments.plots import layout
from experiments.plots.panels import BLACK, GREY, WIDTH, color_of, seed_label, spread, styled
from experiments.results import Results


@layout("table")
@styled
def plot_table(results: Results) -> Figure:
    """Tables I and II (and the demo's numbers): per block, our mean ± std and each seed beside the paper's."""
    cells, runs = results.cells, results.finished_runs
    blocks = list(dict.fromkeys(cells["block"]))
    columns = min(len(blocks), 2)
    rows_n = math.ceil(len(blocks) / columns)
    per_row = max(len(cells[cells["block"] == b]) for b in blocks)
    figure = Figure(figsize=(WIDTH, 0.9 + rows_n * (0.45 + 0.28 * per_row)), layout="constrained")
    grid = figure.subplots(rows_n, columns, squeeze=False)
    for ax in grid.flat[len(blocks):]:
        ax.set_visible(False)
    for ax, block in zip(grid.flat, blocks, strict=False):
        table_panel(ax, cells[cells["block"] == block], runs[runs["block"] == block])
        ax.set_title(block or results.name)
    extra = [Line2D([], [], marker="o", color=GREY, linestyle="none", label=f"ours ({seed_label(results.runs)})"),
             Line2D([], [], marker="o", color=GREY, alpha=0.6, markersize=3, linestyle="none", label="one seed")]
    paper = cells[cells["paper_mean"].notna()]
    if len(paper):
        given = paper["paper_std"].notna()
        spread = "mean ± std" if given.all() else "no spread given" if not given.any() else "± std where given"
        extra.append(Line2D([], [], marker="D", markerfacecolor="white", color=BLACK, linestyle="none",
                            label=f"paper ({spread})"))
    if (cells["n_fallback"] > 0).any():
        extra.append(Line2D([], [], marker="o", markerfacecolor="none", color=GREY, markersize=7, linestyle="none",
                            label="final accuracy used (no stop)"))
    figure.legend(handles=extra, loc="outside lower center", ncols=min(len(extra), 4))
    return figure


def table_panel(ax: Axes, cells: pd.DataFrame, runs: pd.DataFrame) -> None:
    labels = cells["cell"].tolist()
    ys = np.arange(len(labels))[::-1]
    for y, (_, cell) in zip(ys, cells.iterrows(), strict=True):
        color = color_of(cell["cell"])
        seeds = runs[runs["cell"] == cell["cell"]]["acc"]
        ax.scatter(seeds, np.full(len(seeds), y - 0.36), s=10, color=color, alpha=0.6, linewidths=0)
        ax.errorbar(cell["mean"], y - 0.15, xerr=spread(cell["std"]), fmt="o", color=color, capsize=2.5)
        if cell["n_fallback"] > 0:
            ax.scatter([cell["mean"]], [y - 0.15], s=60, facecolors="none", edgecolors=color, linewidths=1.1)
        if not math.isnan(cell["paper_mean"]):
            ax.errorbar(cell["paper_mean"], y + 0.15, xerr=spread(cell["paper_std"]), fmt="D",
                        markerfacecolor="white", color=BLACK, capsize=2.5, markersize=4)
    ax.set_yticks(ys, labels)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="y", visible=False)
