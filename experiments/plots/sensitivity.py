"""How NeVe's stop depends on its settings: epochs to the stop and accuracy there against the threshold ε
(Fig. 6), and against the lr decay α and the plateau patience δ (the ablation's heatmaps)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from experiments.plots import layout
from experiments.plots.panels import (
    AUX_NAMES,
    GREY,
    SET_COLORS,
    STYLE,
    bottom_legend,
    color_of,
    mean_band,
    new_figure,
    note,
    seed_label,
    styled,
    title_panels,
)
from experiments.results import Results


@layout("fig6")
@styled
def plot_fig6(results: Results) -> Figure:
    """Fig. 6: epochs to NeVe's stop (a) and the test accuracy there (b) against ε (log axis), per aux type
    (MNIST-1D: per network)."""
    table = results.need_derived("epsilon")
    figure, axes = new_figure(2)
    budget = results.cells["budget_epochs"].max()
    default_epsilon = results.cells["epsilon"].iloc[0]
    notes = []
    group = "aux" if "aux" in table.columns else next(v for v in results.values if v in table.columns)
    for index, (aux, rows) in enumerate(table.groupby(group, sort=False)):
        color = color_of(str(aux), SET_COLORS, index)
        rows = rows.sort_values("epsilon")
        # Each later line dashed and smaller-marked: lines with equal numbers stay visible one over the other.
        size = max(1.0 - 0.3 * index, 0.4)
        for ax, column in zip(axes, ("epochs", "acc"), strict=True):
            mean_band(ax, rows.rename(columns={f"{column}_mean": "mean", f"{column}_std": "std"}), "epsilon", color,
                      AUX_NAMES.get(str(aux), str(aux)), marker="o", markersize=STYLE["lines.markersize"] * size,
                      linestyle=("-", "--", ":", "-.")[index % 4])
            none = rows[rows["n_no_stop"] > 0]
            ax.scatter(none["epsilon"], none[f"{column}_mean"], s=46 * size ** 2, facecolors="white",
                       edgecolors=color, linewidths=1.2, zorder=4 + index)
        if (rows["n_no_stop"] > 0).any():
            notes.append(f"{AUX_NAMES.get(str(aux), aux)}: no stop within the budget at "
                         f"ε ≤ {rows[rows['n_no_stop'] > 0]['epsilon'].max():g} in some runs")
    axes[0].axhline(budget, color=GREY, linestyle=":", linewidth=1, label=f"budget ({budget:g} epochs)")
    for ax in axes:
        ax.set_xscale("log")
        ax.axvline(default_epsilon, color=GREY, linestyle="--", linewidth=1, label=f"ε = {default_epsilon:g} (default)")
    axes[0].set_ylabel("epochs to NeVe's stop")
    axes[1].set_ylabel("test accuracy at the stop (%)")
    title_panels(axes, ("(a) epochs", "(b) accuracy"), xlabel="stop threshold ε (log scale)")
    hollow = Line2D([], [], marker="o", markerfacecolor="white", color=GREY, linestyle="none",
                    label="some runs never stopped: counted at the budget")
    bottom_legend(figure, axes[0], [hollow], ncols=3,
                  notes=[seed_label(results.runs), *notes])
    return figure


@layout("alpha-delta")
@styled
def plot_alpha_delta(results: Results) -> Figure:
    """The alpha x delta ablation: accuracy at NeVe's stop (a) and the stop epoch (b), as heatmaps. Where the
    aggregation tested each cell against the paper's defaults (``against_reference``), the defaults are boxed and a
    cell that differs from them at Welch p < 0.05 is starred."""
    cells = results.cells
    figure, axes = new_figure(2, height=3.0)
    reference, significant = ablation_claims(results)
    for ax, (column, std, quantity, title, fmt) in zip(axes, (
            ("mean", "std", "acc", "(a) test accuracy at NeVe's stop (%)", "{:.2f}"),
            ("metric_epoch_mean", "metric_epoch_std", "metric_epoch", "(b) epoch of NeVe's stop", "{:.0f}")),
            strict=True):
        means = cells.pivot_table(index="alpha", columns="patience", values=column, aggfunc="first")
        stds = cells.pivot_table(index="alpha", columns="patience", values=std, aggfunc="first", dropna=False)
        stds = stds.reindex_like(means)
        fallbacks = cells.pivot_table(index="alpha", columns="patience", values="n_fallback",
                                      aggfunc="first").reindex_like(means)
        labels = cells.pivot_table(index="alpha", columns="patience", values="cell",
                                   aggfunc="first").reindex_like(means)
        image = ax.imshow(means.to_numpy(float), cmap="viridis", aspect="auto", origin="lower")
        figure.colorbar(image, ax=ax, shrink=0.85)
        for (i, j), value in np.ndenumerate(means.to_numpy(float)):
            label = labels.to_numpy()[i, j]
            if label == reference:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=2.2))
            if math.isnan(value):
                ax.text(j, i, "n/a", ha="center", va="center", color=GREY)
                continue
            spread = stds.to_numpy(float)[i, j]
            text = fmt.format(value) + ("" if math.isnan(spread) else "\n± " + fmt.format(spread))
            text += " †" if fallbacks.to_numpy(float)[i, j] > 0 else ""
            text += " *" if (label, quantity) in significant else ""
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=_contrast(image, value))
        ax.set_xticks(range(len(means.columns)), [f"{c:g}" for c in means.columns])
        ax.set_yticks(range(len(means.index)), [f"{a:g}" for a in means.index])
        ax.set_xlabel("plateau patience δ (epochs)")
        ax.set_ylabel("lr decay factor α")
        ax.set_title(title)
        ax.grid(False)
    fallback = (cells["n_fallback"] > 0).any()
    accuracy = cells["mean"].dropna()
    note(figure, [seed_label(results.runs),
                  *([f"(a)'s colours span only the cells' means, {accuracy.min():.2f} to {accuracy.max():.2f}: compare "
                     "the differences with the ± std"] if len(accuracy) > 1 else []),
                  *(["† some runs never reached V < ε: their final accuracy and last epoch are used"] if fallback
                    else []),
                  *([f"boxed: {reference}, the paper's defaults; * Welch p < {SIGNIFICANT:g} against it"]
                    if reference else [])])
    return figure


#: The Welch p below which a cell is starred.
SIGNIFICANT = 0.05


def ablation_claims(results: Results) -> tuple[str, set[tuple[str, str]]]:
    """The reference cell of ``against_reference`` ("" where not computed) and the (cell, quantity) pairs that
    differ from it at p < :data:`SIGNIFICANT`."""
    claims = results.derived.get("claims")
    if claims is None:
        return "", set()
    against = claims[(claims["claim"] == "against_reference") & claims["versus"].notna()]
    if against.empty:
        return "", set()
    differ = against[against["welch_p"] < SIGNIFICANT]
    return str(against["versus"].iloc[0]), set(zip(differ["cell"], differ["quantity"], strict=True))


def _contrast(image: Any, value: float) -> str:
    red, green, blue, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
