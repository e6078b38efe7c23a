"""Per-epoch curves over seeds: test accuracy with NeVe's stop marked (Fig. 5), the velocity on three sets and the
losses (Fig. 7), velocity and accuracy per optimizer (Fig. 8), and the demo's velocity, accuracy and lr per
method, one row per block (the demo, Table II on MNIST-1D)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from experiments.plots import layout
from experiments.plots.panels import (
    BLUE,
    GEOMETRIC_NOTE,
    GREY,
    OPTIMIZER_COLORS,
    SET_COLORS,
    WIDTH,
    bottom_legend,
    color_of,
    curves,
    mean_band,
    new_figure,
    note,
    seed_label,
    seed_stats,
    stop_marks,
    styled,
    title_panels,
    velocity_axis,
)
from experiments.results import Results


@layout("fig5")
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

VELOCITY_SETS = {"model_velocity": "aux (Gaussian noise)", "velocity_train": "training images",
                 "velocity_val": "validation images"}

LOSSES = {"train_loss": "train", "val_loss": "validation", "test_loss": "test"}


@layout("fig7")
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


@layout("fig8")
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


@layout("curves")
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
