"""Results CSVs -> the paper's figures: ``python -m experiments.plots NAME`` (or ``--all``).

One function per figure layout, registered by experiment name in :data:`PLOTS`; each takes the loaded results
(:class:`~experiments.results.Results`, pandas DataFrames) and returns a matplotlib Figure. The command line and
the notebooks call the same functions; neither reads run folders. Figures are built on
``matplotlib.figure.Figure`` (no pyplot state), and the command line renders with the Agg backend.

Examples:
    python -m experiments.plots fig5                  # results/figures/fig5.png and .pdf, then results/README.md
    python -m experiments.plots --all --miniature     # every aggregated experiment in results/miniature/
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from experiments.results import (
    FINISHED,
    TARGET_RUN_COLUMNS,
    Results,
    ResultsError,
    figure_path,
    load_results,
    resolve_results_dir,
    results_path,
)
from experiments.time_to_target import (
    MAX_RATIO,
    performance_profile,
    performance_ratios,
    profile_score,
    profile_steps,
    workload_times,
)

# Okabe-Ito: distinguishable with every common colour-vision deficiency, and in greyscale by line style.
BLACK, ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILLION, PURPLE, GREY = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")
#: One colour per method, the same in every figure (matched by the label's start: "NeVe (δ=5)" is NeVe's).
METHOD_COLORS = {"Baseline": BLACK, "NeVe": BLUE, "V.Loss 30%": ORANGE, "V.Loss 10%": VERMILLION, "V.Loss": ORANGE,
                 "Ultimate Optimizer": GREEN, "Label Wave": PURPLE, "constant lr": GREY}
#: Velocity measured on / aux images drawn from: Gaussian noise, training, validation images.
SET_COLORS = {"gaussian": BLUE, "aux": BLUE, "train": GREEN, "val": VERMILLION, "test": BLACK}
OPTIMIZER_COLORS = {"SGD": BLUE, "Adam": PURPLE}
SETTING_COLORS = {"paper": BLUE, "code": VERMILLION, "paper + signed velocity": ORANGE,
                  "paper + uint8 aux noise": GREEN, "paper + code plateau rule": PURPLE, "paper + code ResNet": SKY}
CYCLE = (BLUE, VERMILLION, GREEN, ORANGE, PURPLE, SKY, BLACK, GREY)
STYLE = {"font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "lines.linewidth": 1.6, "lines.markersize": 4.5, "axes.spines.top": False,
         "axes.spines.right": False, "legend.frameon": False, "axes.grid": True, "grid.alpha": 0.25,
         "pdf.fonttype": 42}
DPI = 200
WIDTH = 7.2  # inches: a two-column page width


def color_of(label: str, palette: dict[str, str] | None = None, index: int = 0) -> str:
    """The label's colour in ``palette`` (exact, then by prefix), else the method colours, else the cycle."""
    for table in (palette or {}, METHOD_COLORS):
        if label in table:
            return table[label]
        for key, color in table.items():
            if label.startswith(key):
                return color
    return CYCLE[index % len(CYCLE)]


def styled(function: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the house style (rcParams apply when artists are created)."""

    @functools.wraps(function)
    def wrapper(*results: Results) -> Figure:
        with mpl.rc_context(STYLE):
            return function(*results)

    return wrapper


def new_figure(panels: int, height: float = 2.9, width: float = WIDTH) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


# --------------------------------------------------------------------------------------------- helpers
#: Record columns drawn on a log axis: summarised over seeds by the geometric mean ×/÷ the geometric std (a
#: band of mean ± std would reach below zero on a quantity spanning decades).
LOG_COLUMNS = ("model_velocity", "velocity_train", "velocity_val")
GEOMETRIC_NOTE = "velocity: geometric mean ×/÷ geometric std over seeds"


def seed_stats(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per ``x``, over seeds (one value per run): ``mean``, ``low`` and ``high`` = mean ± sample std (NaN with one
    seed); for :data:`LOG_COLUMNS` the geometric mean and ×/÷ the geometric std."""
    frame = frame.dropna(subset=[y]).drop_duplicates(["run", x])
    geometric = y in LOG_COLUMNS
    values = np.log(frame[y].clip(lower=np.finfo(float).tiny)) if geometric else frame[y]
    grouped = values.groupby(frame[x])
    mean, std = grouped.mean(), grouped.std(ddof=1)
    stats_frame = pd.DataFrame({"mean": mean, "low": mean - std, "high": mean + std, "n": grouped.count()})
    if geometric:
        stats_frame[["mean", "low", "high"]] = np.exp(stats_frame[["mean", "low", "high"]])
    return stats_frame.reset_index()


def mean_band(ax: Axes, stats_frame: pd.DataFrame, x: str, color: str, label: str, **line: Any) -> None:
    """A mean line (``line``: its marker, linestyle, ...) with a band from ``low`` to ``high`` (or ``mean`` ±
    ``std``) over seeds."""
    if "low" not in stats_frame:
        stats_frame = stats_frame.assign(low=stats_frame["mean"] - stats_frame["std"],
                                         high=stats_frame["mean"] + stats_frame["std"])
    xs, mean = stats_frame[x].to_numpy(float), stats_frame["mean"].to_numpy(float)
    ax.plot(xs, mean, color=color, label=label, **line)
    band = stats_frame[["low", "high"]].notna().all(axis=1).to_numpy()
    if band.any():
        ax.fill_between(xs, stats_frame["low"].fillna(stats_frame["mean"]).to_numpy(float),
                        stats_frame["high"].fillna(stats_frame["mean"]).to_numpy(float), color=color, alpha=0.15,
                        linewidth=0)


def curves(ax: Axes, epochs: pd.DataFrame, column: str, group: str, palette: dict[str, str] | None = None,
           *, linestyle: str = "-", label_suffix: str = "") -> list[str]:
    """Per-epoch mean and spread over seeds of ``column``, one line per value of ``group``; returns the groups."""
    groups = list(dict.fromkeys(epochs[group].astype(str)))
    for index, name in enumerate(groups):
        rows = epochs[epochs[group].astype(str) == name]
        if rows[column].notna().any():
            mean_band(ax, seed_stats(rows, "epoch", column), "epoch", color_of(name, palette, index),
                      f"{name}{label_suffix}", linestyle=linestyle)
    return groups


def stop_marks(ax: Axes, runs: pd.DataFrame, group: str, palette: dict[str, str] | None = None,
               column: str = "neve_stop_epoch") -> list[str]:
    """NeVe's stop epoch per group: a dashed line at the mean over seeds, and at the top of the panel a marker
    with whiskers of ±std; returns a note for the groups where some run never stopped."""
    notes = []
    finished = runs[runs["state"] == FINISHED].drop_duplicates("run")
    top = ax.get_xaxis_transform()  # x in epochs, y in axes fractions
    if finished[column].notna().any():
        headroom(ax)
    for index, name in enumerate(dict.fromkeys(finished[group].astype(str))):
        rows = finished[finished[group].astype(str) == name]
        stops = rows[column].dropna().astype(float)
        color = color_of(name, palette, index)
        if len(stops):
            mean, std = stops.mean(), stops.std(ddof=1) if len(stops) > 1 else 0.0
            ax.axvline(mean, color=color, linestyle="--", linewidth=1.1)
            ax.errorbar([mean], [0.96 - 0.06 * index], xerr=[std], fmt="v", color=color, capsize=3, markersize=6,
                        transform=top)
        if len(stops) < len(rows):
            notes.append(f"{name}: {len(rows) - len(stops)} of {len(rows)} runs never reached V < ε")
    return notes


def headroom(ax: Axes, fraction: float = 0.18) -> None:
    """Room above the data for the markers drawn along the top of a panel."""
    low, high = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(low, high * (high / low) ** fraction)
    else:
        ax.set_ylim(low, high + (high - low) * fraction)


def velocity_axis(ax: Axes, cells: pd.DataFrame) -> None:
    """A velocity panel: log scale, its label, and the stop threshold ε as a dotted line."""
    epsilon = cells["epsilon"].iloc[0]
    ax.axhline(epsilon, color=GREY, linestyle=":", linewidth=1, label=f"ε = {epsilon:g}")
    ax.set_yscale("log")
    ax.set_ylabel("velocity V (log scale)")


def title_panels(axes: Sequence[Axes], titles: Sequence[str], xlabel: str = "epoch") -> None:
    """Panels side by side share their x axis: one label for all, a title each."""
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlabel(xlabel)
        ax.set_title(title)


def caption(lines: Sequence[str], width: float) -> str:
    """Notes under a figure, wrapped to its width (7 pt text: about 19 characters an inch)."""
    return "\n".join(textwrap.wrap("; ".join(line for line in lines if line), width=int(width * 19)))


def note(figure: Figure, lines: Sequence[str]) -> None:
    """Notes under a figure without a bottom legend (laid out with the panels, never over them)."""
    if lines:
        figure.supxlabel(caption(lines, figure.get_figwidth()), fontsize=7, color="#444444", x=0.01, ha="left")


def bottom_legend(figure: Figure, axes: Axes, extra: Sequence[Any] = (), ncols: int | None = None,
                  notes: Sequence[str] = ()) -> None:
    """One legend for the figure, below the panels (it never covers data), the notes as its caption."""
    handles, labels = axes.get_legend_handles_labels()
    handles, labels = [*handles, *extra], [*labels, *(h.get_label() for h in extra)]
    unique = dict(zip(labels, handles, strict=True))
    legend = figure.legend(unique.values(), unique.keys(), loc="outside lower center",
                           ncols=ncols or min(len(unique), 4), title=caption(notes, figure.get_figwidth()) or None,
                           title_fontsize=7, alignment="left")
    legend.get_title().set_color("#444444")


def fallback_points(ax: Axes, cells: pd.DataFrame, x: str, color: str) -> bool:
    """Hollow rings on the cells whose number fell back to the final accuracy in some runs."""
    marked = cells[cells["n_fallback"] > 0]
    ax.scatter(marked[x], marked["mean"], s=46, facecolors="none", edgecolors=color, linewidths=1.2, zorder=4)
    return len(marked) > 0


FALLBACK_NOTE = "○ some runs never reached V < ε: their final accuracy is used"


def seed_label(runs: pd.DataFrame) -> str:
    """How many seeds each number averages; one seed has no spread to show (no bar is drawn)."""
    seeds = runs[runs["state"] == FINISHED].groupby(["block", "cell"])["seed"].nunique()
    low, high = (int(seeds.min()), int(seeds.max())) if len(seeds) else (0, 0)
    if high == 1:
        return "one seed: no spread"
    count = f"{low}" if low == high else f"{low}–{high}"
    return f"mean ± std over {count} seeds"


# ----------------------------------------------------------------------------------------------- tables
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
        ax.errorbar(cell["mean"], y - 0.15, xerr=_spread(cell["std"]), fmt="o", color=color, capsize=2.5)
        if cell["n_fallback"] > 0:
            ax.scatter([cell["mean"]], [y - 0.15], s=60, facecolors="none", edgecolors=color, linewidths=1.1)
        if not math.isnan(cell["paper_mean"]):
            ax.errorbar(cell["paper_mean"], y + 0.15, xerr=_spread(cell["paper_std"]), fmt="D",
                        markerfacecolor="white", color=BLACK, capsize=2.5, markersize=4)
    ax.set_yticks(ys, labels)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="y", visible=False)


def _spread(value: float) -> float | None:
    """An error bar's half-width, or no bar: a spread nobody measured (one seed, a paper without std) is not 0."""
    return None if value is None or math.isnan(value) else float(value)


# ----------------------------------------------------------------------------------------------- Fig. 4
#: What one training example of a dataset is called on an axis (MNIST-1D's are sequences, not images).
UNITS = {"mnist1d": "sequences"}


@styled
def plot_fig4a(results: Results) -> Figure:
    """Fig. 4a: V.Loss accuracy against the training images it moves to validation; NeVe and the Baseline hold
    out nothing (horizontal lines, ±std bands)."""
    cells, runs = results.cells, results.finished_runs
    figure, (ax,) = new_figure(1, height=3.2, width=WIDTH * 0.62)
    held = cells[cells["holdout_images"] > 0].sort_values("holdout_images")
    for index, (method, rows) in enumerate(held.groupby("method", sort=False)):
        color = color_of(str(method), index=index)
        ax.errorbar(rows["holdout_images"], rows["mean"], yerr=rows["std"].fillna(0), color=color, marker="o",
                    capsize=2.5, label=f"{method} (early stop on held-out loss)")
        seeds = runs[runs["method"] == method]
        ax.scatter(seeds["holdout_images"], seeds["acc"], s=9, color=color, alpha=0.35, linewidths=0)
    most = held["holdout_images"].max()
    span = np.array([0, 1 if math.isnan(most) else most])
    for index, (_, cell) in enumerate(cells[cells["holdout_images"] == 0].iterrows()):
        color = color_of(cell["cell"])
        # Different dashes: two references with equal numbers stay visible one over the other.
        ax.plot(span, [cell["mean"]] * 2, color=color, linestyle=("--", ":", "-.")[index % 3],
                linewidth=2.2 - 0.6 * (index % 3), label=f"{cell['cell']} (nothing held out)")
        if not math.isnan(cell["std"]):
            ax.fill_between(span, cell["mean"] - cell["std"], cell["mean"] + cell["std"], color=color, alpha=0.12,
                            linewidth=0)
    fallback = fallback_points(ax, cells, "holdout_images", BLUE)
    unit = UNITS.get(str(cells["dataset"].iloc[0]), "images")
    ax.set_xlabel(f"training {unit} moved to validation")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    size = training_set_size(cells)
    if size:  # the same axis as a share of the training set: comparable across datasets of any size
        top = ax.secondary_xaxis("top", functions=(lambda n: 100 * n / size, lambda p: p * size / 100))
        top.set_xlabel(f"% of the {size:,} training {unit} moved")
    bottom_legend(figure, ax, ncols=1,
                  notes=[seed_label(results.runs), *([FALLBACK_NOTE] if fallback else [])])
    return figure


def training_set_size(cells: pd.DataFrame) -> int | None:
    """The training set's size, read back from the cells as examples held out / fraction held out at the largest
    holdout (where the rounding of the count matters least); None where no cell holds anything out."""
    if "holdout" not in cells.columns:
        return None
    held = cells[(cells["holdout"] > 0) & (cells["holdout_images"] > 0)]
    if held.empty:
        return None
    most = held.loc[held["holdout_images"].idxmax()]
    return round(most["holdout_images"] / most["holdout"])


@styled
def plot_fig4b(results: Results) -> Figure:
    """Fig. 4b: NeVe's accuracy against the size of the aux set (log axis), one line per aux type."""
    cells, runs = results.cells, results.finished_runs
    x = "config.aux_size" if "config.aux_size" in cells.columns else "aux_size"
    figure, (ax,) = new_figure(1, height=3.2, width=WIDTH * 0.62)
    fallback = False
    for index, (aux, rows) in enumerate(cells.groupby("aux", sort=False)):
        rows = rows.drop_duplicates(x).sort_values(x)
        color = color_of(str(aux), SET_COLORS, index)
        ax.errorbar(rows[x], rows["mean"], yerr=rows["std"].fillna(0), color=color, marker="o", capsize=2.5,
                    label=AUX_NAMES.get(str(aux), str(aux)))
        seeds = runs[runs["aux"] == aux].drop_duplicates("run")
        ax.scatter(seeds[x], seeds["acc"], s=9, color=color, alpha=0.35, linewidths=0)
        fallback |= fallback_points(ax, rows, x, color)
    ax.set_xscale("log")
    ax.set_xlabel("aux set size |D_aux| (images, log scale)")
    ax.set_ylabel("test accuracy at NeVe's stop (%)")
    bottom_legend(figure, ax, ncols=2,
                  notes=[seed_label(results.runs), *([FALLBACK_NOTE] if fallback else [])])
    return figure


AUX_NAMES = {"gaussian": "Gaussian noise", "val": "validation images", "train": "training images"}


# ----------------------------------------------------------------------------------------------- Fig. 5
@styled
def plot_fig5(results: Results) -> Figure:
    """Fig. 5: test accuracy over the whole budget (mean ± std over seeds), NeVe's stop epoch marked."""
    epochs = results.need_epochs()
    figure, (ax,) = new_figure(1, height=3.2, width=WIDTH * 0.7)
    curves(ax, epochs, "test_acc", "method")
    neve = results.runs[results.runs["metric"] == "test_acc_at_neve_stop"]
    notes = stop_marks(ax, neve, "method")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    stop = Line2D([], [], color=BLUE, linestyle="--", marker="v", label="NeVe's stop (V < ε): mean ± std")
    bottom_legend(figure, ax, [stop], ncols=3,
                  notes=[seed_label(results.runs), *notes])
    return figure


# ----------------------------------------------------------------------------------------------- Fig. 6
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


# ----------------------------------------------------------------------------------------------- Fig. 7
VELOCITY_SETS = {"model_velocity": "aux (Gaussian noise)", "velocity_train": "training images",
                 "velocity_val": "validation images"}
LOSSES = {"train_loss": "train", "val_loss": "validation", "test_loss": "test"}


@styled
def plot_fig7(results: Results) -> Figure:
    """Fig. 7: velocity measured on the aux, training and validation images (a) and the three losses (b), with a
    constant learning rate."""
    epochs = results.need_epochs()
    figure, axes = new_figure(2)
    for column, label in VELOCITY_SETS.items():
        if column in epochs.columns and epochs[column].notna().any():
            key = column.removeprefix("velocity_").replace("model_velocity", "aux")
            mean_band(axes[0], seed_stats(epochs, "epoch", column), "epoch", SET_COLORS[key], label)
    for column, label in LOSSES.items():
        if column in epochs.columns and epochs[column].notna().any():
            key = {"train_loss": "train", "val_loss": "val", "test_loss": "test"}[column]
            mean_band(axes[1], seed_stats(epochs, "epoch", column), "epoch", SET_COLORS[key], label)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("velocity V (log scale)")
    axes[1].set_ylabel("cross-entropy loss")
    title_panels(axes, ("(a) velocity", "(b) losses"))
    for ax in axes:
        ax.legend(loc="best")
    note(figure, [seed_label(results.runs), GEOMETRIC_NOTE])
    return figure


# ----------------------------------------------------------------------------------------------- Fig. 8
@styled
def plot_fig8(results: Results) -> Figure:
    """Fig. 8: NeVe with SGD and Adam: velocity (a) and test accuracy (b); each optimizer's stop marked."""
    return velocity_and_accuracy(results, "optimizer", OPTIMIZER_COLORS)


def velocity_and_accuracy(results: Results, group: str, palette: dict[str, str]) -> Figure:
    epochs = results.need_epochs()
    figure, axes = new_figure(2)
    curves(axes[0], epochs, "model_velocity", group, palette)
    curves(axes[1], epochs, "test_acc", group, palette)
    velocity_axis(axes[0], results.cells)
    notes = []
    neve = results.runs[results.runs["metric"] == "test_acc_at_neve_stop"]
    for ax in axes:
        notes = stop_marks(ax, neve, group, palette)
    axes[1].set_ylabel("test accuracy (%)")
    title_panels(axes, ("(a) velocity", "(b) test accuracy"))
    stop = Line2D([], [], color=GREY, linestyle="--", marker="v", label="NeVe's stop (V < ε): mean ± std")
    bottom_legend(figure, axes[0], [stop],
                  notes=[seed_label(results.runs), GEOMETRIC_NOTE, *notes])
    return figure


# -------------------------------------------------------------------------------------------- ablation
@styled
def plot_alpha_delta(results: Results) -> Figure:
    """The alpha x delta ablation: accuracy at NeVe's stop (a) and the stop epoch (b), as heatmaps."""
    cells = results.cells
    figure, axes = new_figure(2, height=3.0)
    for ax, (column, std, title, fmt) in zip(axes, (
            ("mean", "std", "(a) test accuracy at NeVe's stop (%)", "{:.2f}"),
            ("metric_epoch_mean", "metric_epoch_std", "(b) epoch of NeVe's stop", "{:.0f}")), strict=True):
        means = cells.pivot_table(index="alpha", columns="patience", values=column, aggfunc="first")
        stds = cells.pivot_table(index="alpha", columns="patience", values=std, aggfunc="first", dropna=False)
        stds = stds.reindex_like(means)
        fallbacks = cells.pivot_table(index="alpha", columns="patience", values="n_fallback",
                                      aggfunc="first").reindex_like(means)
        image = ax.imshow(means.to_numpy(float), cmap="viridis", aspect="auto", origin="lower")
        figure.colorbar(image, ax=ax, shrink=0.85)
        for (i, j), value in np.ndenumerate(means.to_numpy(float)):
            if math.isnan(value):
                ax.text(j, i, "n/a", ha="center", va="center", color=GREY)
                continue
            spread = stds.to_numpy(float)[i, j]
            text = fmt.format(value) + ("" if math.isnan(spread) else "\n± " + fmt.format(spread))
            text += " †" if fallbacks.to_numpy(float)[i, j] > 0 else ""
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=_contrast(image, value))
        ax.set_xticks(range(len(means.columns)), [f"{c:g}" for c in means.columns])
        ax.set_yticks(range(len(means.index)), [f"{a:g}" for a in means.index])
        ax.set_xlabel("plateau patience δ (epochs)")
        ax.set_ylabel("lr decay factor α")
        ax.set_title(title)
        ax.grid(False)
    fallback = (cells["n_fallback"] > 0).any()
    note(figure, [seed_label(results.runs), *(["† some runs never reached V < ε: their final accuracy and last "
                                                "epoch are used"] if fallback else [])])
    return figure


def _contrast(image: Any, value: float) -> str:
    red, green, blue, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


# --------------------------------------------------------------------------------------- paper vs code
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
        axes[0].errorbar(cell["mean"], y, xerr=_spread(cell["std"]), fmt="o", color=color, capsize=2.5)
        if cell["n_fallback"] > 0:
            axes[0].scatter([cell["mean"]], [y], s=60, facecolors="none", edgecolors=color, linewidths=1.1)
    axes[0].set_yticks(ys, labels)
    axes[0].set_xlabel("test accuracy at NeVe's stop (%)")
    axes[0].grid(axis="y", visible=False)
    axes[0].set_title("(a) accuracy")
    curves(axes[1], epochs, "model_velocity", "setting", SETTING_COLORS)
    velocity_axis(axes[1], cells)
    axes[1].set_xlabel("epoch")
    axes[1].set_title("(b) velocity")
    fallback = (cells["n_fallback"] > 0).any()
    bottom_legend(figure, axes[1], ncols=4,
                  notes=[seed_label(results.runs), GEOMETRIC_NOTE, *([FALLBACK_NOTE] if fallback else [])])
    return figure


# ------------------------------------------------------------------------------------------------ demo
@styled
def plot_demo(results: Results) -> Figure:
    """The demo and Table II's curves: velocity (a), test accuracy (b) and learning rate (c) over epochs per
    method, one row of panels per block (MNIST-1D's CNN and ResNet-1D); in (b) each run's reported epoch (NeVe's
    stop, V.Loss's kept model, the end) is a cross, in (c) each lr decay is a step and a tick. (b)'s y axis leaves
    out the first climb from chance (:data:`ZOOM_AFTER`): on a 20-100% axis the methods' differences, a point or
    two, would be a line's width."""
    # One row per (block, run): blocks may share a run folder (the miniature's do), and each row needs its crosses.
    epochs, runs = results.need_epochs(), results.finished_runs.drop_duplicates(["block", "run"])
    blocks = list(dict.fromkeys(results.cells["block"].fillna("")))
    if "block" in epochs and len(blocks) > 1:  # a block with no finished run yet gets no empty row
        trained = set(epochs["block"].fillna(""))
        blocks = [block for block in blocks if block in trained] or blocks[:1]
    figure = Figure(figsize=(WIDTH * 1.3, 0.4 + 2.7 * len(blocks)), layout="constrained")
    rows = figure.subplots(len(blocks), 3, squeeze=False)
    methods: list[str] = []
    zoomed = False
    for block, axes in zip(blocks, rows, strict=True):
        mine = epochs[epochs["block"].fillna("") == block] if "block" in epochs else epochs
        theirs = runs[runs["block"].fillna("") == block]
        methods = list(dict.fromkeys([*methods, *demo_row(axes, mine, theirs, results.cells)]))
        zoomed |= zoom_past_the_climb(axes[1], mine, theirs)
        if len(blocks) > 1:
            title_panels(axes, [f"{block}: {t}" for t in ("(a) velocity", "(b) test accuracy", "(c) lr per seed")])
        else:
            title_panels(axes, ("(a) velocity", "(b) test accuracy", "(c) learning rate, one line per seed"))
    extra = [Line2D([], [], marker="X", color=GREY, linestyle="none", label="reported epoch (per seed)"),
             Line2D([], [], marker="v", color=GREY, linestyle="none", label="lr decay (per seed)")]
    bottom_legend(figure, rows[0][0], extra, ncols=len(methods) + 3,
                  notes=[seed_label(results.runs), GEOMETRIC_NOTE,
                         *([f"(b): y axis fitted to the epochs after the first {ZOOM_AFTER:.0%} of them and the "
                            "reported accuracies (the first epochs climb from below it)"] if zoomed else [])])
    return figure


#: The share of the budget (b)'s y axis leaves out: the first climb from chance.
ZOOM_AFTER = 0.2


def zoom_past_the_climb(ax: Axes, epochs: pd.DataFrame, runs: pd.DataFrame) -> bool:
    """Fit ``ax``'s y axis to the mean accuracies after :data:`ZOOM_AFTER` of the epochs and the crosses;
    whether that leaves some of the curves below the panel."""
    means = epochs.groupby(["method", "epoch"])["test_acc"].mean().dropna()
    late = means[means.index.get_level_values("epoch") > ZOOM_AFTER * epochs["epoch"].max()]
    values = pd.concat([late, runs["acc"]]).dropna()
    if values.empty:
        return False
    low, high = values.min(), values.max()
    pad = 0.1 * (high - low) or 0.5
    ax.set_ylim(low - pad, high + pad)
    return bool(means.min() < low - pad)


def demo_row(axes: Sequence[Axes], epochs: pd.DataFrame, runs: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """One block's three panels of :func:`plot_demo`; returns its methods."""
    methods = curves(axes[0], epochs, "model_velocity", "method")
    curves(axes[1], epochs, "test_acc", "method")
    velocity_axis(axes[0], cells)
    for index, method in enumerate(methods):
        color = color_of(method, index=index)
        mine = runs[runs["method"].astype(str) == method]
        axes[1].scatter(mine["metric_epoch"], mine["acc"], marker="X", s=38, color=color, edgecolors="white",
                        linewidths=0.6, zorder=5)
        for _, run in epochs[epochs["method"].astype(str) == method].groupby("run"):
            # lr_reduced at epoch e: the lr drops after epoch e, so the step falls at x = e.
            axes[2].step(run["epoch"], run["lr"], where="pre", color=color, alpha=0.7, linewidth=1.1)
            decays = run[run["lr_reduced"] == 1]
            axes[2].scatter(decays["epoch"], decays["lr"], marker="v", s=22, color=color, zorder=4)
    axes[1].set_ylabel("test accuracy (%)")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("learning rate (log scale)")
    return methods


# ------------------------------------------------------------------------------------ performance profile
#: The tuning-free comparison: a colour per optimizer family; dashed: the variant that is told the horizon.
PROFILE_STYLES = {"Baseline": (BLACK, "-"), "NeVe": (BLUE, "-"), "schedule-free": (GREEN, "-"),
                  "Prodigy + cosine": (ORANGE, "--"), "Prodigy": (ORANGE, "-"),
                  "D-Adaptation (MultiStep)": (VERMILLION, "--"), "D-Adaptation": (VERMILLION, "-"),
                  "DoG": (PURPLE, "-")}
#: Vertical offset between methods' lines: with few workloads many profiles coincide, and would hide each other.
PROFILE_DODGE = 0.012
PROFILE_TIMES = {"target_epoch": "(a) epochs to target", "target_seconds": "(b) wall time to target"}


@styled
def plot_performance_profile(*results: Results) -> Figure:
    """AlgoPerf's performance profiles over every workload (table block) of the given results: per method, the
    fraction of workloads it reaches the target within tau times the fastest method's time, in epochs (a) and
    wall seconds (b); its score (the normalised area up to tau = 4) in the legend."""
    runs = pd.concat([r.finished_runs for r in results], ignore_index=True)
    missing = [column for column in TARGET_RUN_COLUMNS if column not in runs.columns]
    if missing:
        raise ResultsError(f"{', '.join(r.name for r in results)}: no time to target in the runs CSV (columns "
                           f"{', '.join(missing)}); its catalog entry needs target_margin, then aggregate it again")
    figure, axes = new_figure(2, height=3.3)
    scores = {}
    for ax, (column, title) in zip(axes, PROFILE_TIMES.items(), strict=True):
        ratios = performance_ratios(workload_times(runs, column))
        scores[column] = profile_score(ratios)
        taus = profile_steps(ratios)
        rho = performance_profile(ratios, taus)
        methods = list(ratios.columns)
        for index, method in enumerate(methods):
            color, linestyle = PROFILE_STYLES.get(method, PROFILE_STYLES.get(method.split(" (")[0],
                                                                             (CYCLE[index % len(CYCLE)], "-")))
            dodge = (index - (len(methods) - 1) / 2) * PROFILE_DODGE
            ax.step(taus, rho[method].to_numpy(float) + dodge, where="post", color=color, linestyle=linestyle,
                    label=method)
        ax.set_xscale("log")
        ax.set_xlim(1, MAX_RATIO)
        ax.set_xticks([1, 1.5, 2, 3, 4], ["1", "1.5", "2", "3", "4"])
        ax.minorticks_off()
        ax.set_ylim(-0.08, 1.08)
        ax.set_xlabel("τ: time / fastest method's time (log scale)")
        ax.set_ylabel("ρ(τ): share of workloads")
        ax.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    labelled = [f"{label} ({scores['target_epoch'][label]:.2f} / {scores['target_seconds'][label]:.2f})"
                for label in labels]
    workloads = list(dict.fromkeys(runs["block"]))
    targets = runs.drop_duplicates("block").set_index("block")["target"]
    never = [m for m in labels if not np.isfinite(workload_times(runs, "target_epoch")[m]).any()]
    notes = [f"workloads: {', '.join(f'{w} (target {targets[w]:.2f}%)' for w in workloads)}; target: the "
             f"Baseline's mean final accuracy − {target_margin(results)}",
             "a method's time on a workload: the median over seeds, a seed that never reached the target counting "
             "as ∞ (AlgoPerf's median over studies); dashed: told the training horizon",
             "in brackets: AlgoPerf's score, the area under the profile from 1 to 4 / 3, (a) / (b)",
             f"lines offset by up to ±{PROFILE_DODGE * (len(labels) - 1) / 2:.2f} so that coinciding ones show",
             seed_label(pd.concat([r.runs for r in results])).replace("mean ± std over", "medians over"),
             *([f"never reached on any workload: {', '.join(never)}"] if never else [])]
    figure.suptitle("Performance profiles (AlgoPerf): how soon each method reaches the target, relative to the "
                    "fastest", fontsize=9.5)
    legend = figure.legend(handles, labelled, loc="outside lower center", ncols=2,
                           title=caption(notes, figure.get_figwidth()), title_fontsize=7, alignment="left")
    legend.get_title().set_color("#444444")
    return figure


def target_margin(results: Sequence[Results]) -> str:
    """The margin below the Baseline's mean final accuracy the targets were set at, read back from the CSVs."""
    margins = set()
    for result in results:
        cells = result.cells
        for _, row in cells[cells["cell"] == cells["welch_ref"]].iterrows():
            margins.add(round(float(row["final_mean"] - row["target"]), 6))
    return ", ".join(f"{m:g}" for m in sorted(margins)) or "?"


#: Experiment name -> its figure layout.
PLOTS: dict[str, Callable[[Results], Figure]] = {
    "table1": plot_table,
    "table2": plot_table,
    "fig4a": plot_fig4a,
    "fig4b": plot_fig4b,
    "fig5": plot_fig5,
    "fig6": plot_fig6,
    "fig7": plot_fig7,
    "fig8": plot_fig8,
    "ablation-alpha-delta": plot_alpha_delta,
    "paper-vs-code": plot_paper_vs_code,
    "paper-vs-code-demo": plot_paper_vs_code,
    "demo": plot_demo,
    "tiny": plot_table,
    "mnist1d-published": plot_table,
    "mnist1d-tuning": plot_table,
    "mnist1d-table2": plot_demo,
    "mnist1d-demo": plot_demo,
    "mnist1d-table2-code": plot_table,
    "mnist1d-table1": plot_table,
    "mnist1d-fig4a": plot_fig4a,
    "mnist1d-fig6": plot_fig6,
    "tuning-free": plot_performance_profile,
    "mnist1d-tuning-free": plot_performance_profile,
    "mnist1d-tuning-peers": plot_table,
}


def plot(name: str, results: Results) -> Figure:
    """The figure of experiment ``name`` from its loaded results."""
    if name not in PLOTS:
        raise ValueError(f"no figure layout for {name!r}; known: {', '.join(PLOTS)}")
    return PLOTS[name](results)


def save_figure(figure: Figure, results_dir: str | Path, name: str) -> list[Path]:
    """``figures/NAME.png`` (dpi 200) and ``.pdf``, each written atomically."""
    from neve.io import atomic_write

    paths = []
    for suffix, metadata in ((".png", {"Software": None}), (".pdf", {"CreationDate": None, "Producer": None})):
        path = figure_path(results_dir, name, suffix)
        atomic_write(path, lambda handle, s=suffix, m=metadata: figure.savefig(handle, format=s[1:], dpi=DPI,
                                                                               metadata=m))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help=f"one or more of: {', '.join(PLOTS)}")
    parser.add_argument("--all", action="store_true", help="every experiment aggregated in the results folder")
    parser.add_argument("--results-dir", help="where the CSVs are (default results/, results/miniature/ with "
                                              "--miniature); figures go to its figures/")
    parser.add_argument("--miniature", action="store_true", help="the miniature results (results/miniature/)")
    args = parser.parse_args(argv)
    mpl.use("Agg")
    results_dir = resolve_results_dir(args.results_dir, args.miniature)
    names = list(args.experiments)
    if args.all:
        names += [name for name in PLOTS if name not in names and results_path(results_dir, name).is_file()]
    if not names:
        parser.error("name an experiment, or --all")
    failed = 0
    for name in names:
        try:
            figure = plot(name, load_results(name, results_dir))
        except (ResultsError, ValueError) as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            failed += 1
            continue
        for path in save_figure(figure, results_dir, name):
            print(f"wrote {path}")
    from experiments.report import write_report

    print(f"wrote {write_report(results_dir)}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
