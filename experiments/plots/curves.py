"""Per-epoch curves over seeds: test accuracy and loss with NeVe's stop marked (Fig. 5), the velocity on three sets
and the losses (Fig. 7), velocity and accuracy per optimizer (Fig. 8), and the demo's velocity, accuracy and lr per
method, one row per block (the demo, Table II on MNIST-1D).

Every curve layout follows the same two rules (:func:`~experiments.plots.panels.curves`): a mean over seeds is drawn
only over the epochs all its runs have (past the first halted run, each run is its own thin line), and NeVe's runs
trained on past their stop (``--stop mark``) are dashed from the first seed's stop, with the stop marked in every
panel. Where the aggregation computed the numbers behind the figure's claim (``NAME_claims.csv``), the caption
gives them."""

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
    claim_count,
    claim_text,
    color_of,
    curve_notes,
    curves,
    marked_stops,
    mean_band,
    new_figure,
    seed_label,
    seed_stats,
    signed,
    stop_marks,
    styled,
    title_panels,
    velocity_axis,
)
from experiments.results import Results

#: What the dashed line of a NeVe group is, in the legends.
PAST_STOP_LABEL = "past NeVe's stop: trained on (--stop mark)"
STOP_LABEL = "NeVe's stop (V < ε): mean ± std over seeds"


def neve_runs(results: Results) -> pd.DataFrame:
    """The runs whose number is read at NeVe's stop: the ones whose stop the figures mark."""
    return results.runs[results.runs["metric"] == "test_acc_at_neve_stop"]


@layout("fig5")
@styled
def plot_fig5(results: Results) -> Figure:
    """Fig. 5: test accuracy (a) and, where the runs recorded it, test loss (b) over the whole budget (mean ± std
    over seeds), NeVe's stop marked in each; the caption places the stop against the test loss's minimum and the
    best test accuracy, run by run (the claim's numbers)."""
    epochs = results.need_epochs()
    panels = {column: label for column, label in (("test_acc", "test accuracy (%)"), ("test_loss", "test loss"))
              if column in epochs.columns and epochs[column].notna().any()}
    figure, axes = new_figure(len(panels), height=3.3, width=WIDTH if len(panels) > 1 else WIDTH * 0.7)
    stops = marked_stops(results.runs)
    notes: list[str] = []
    zoomed = False
    minimum: list[Line2D] = []
    for ax, (column, label) in zip(axes, panels.items(), strict=True):
        curves(ax, epochs, column, "method", stops=stops)
        zoomed |= zoom_past_the_climb(ax, epochs, column, "method",
                                      results.finished_runs["acc"] if column == "test_acc" else None,
                                      after=ZOOM_AFTER_STOP)
        notes = stop_marks(ax, neve_runs(results), "method")
        if column == "test_loss":
            minimum = minimum_marks(ax, results, "min_test_loss_epoch", "minimum test loss")
        ax.set_ylabel(label)
    title_panels(axes, [f"({'ab'[i]}) {label.removesuffix(' (%)')}" for i, label in enumerate(panels.values())])
    handles = [Line2D([], [], color=BLUE, linestyle="--", label=PAST_STOP_LABEL),
               Line2D([], [], color=BLUE, linestyle="--", marker="v", label=STOP_LABEL), *minimum]
    bottom_legend(figure, axes[0], handles, ncols=2,
                  notes=[seed_label(results.runs), *curve_notes(epochs, "method", stops), *notes,
                         *([zoom_note(ZOOM_AFTER_STOP)] if zoomed else []), *fig5_claims(results)])
    return figure


def fig5_claims(results: Results) -> list[str]:
    """Fig. 5's claim in numbers: each cell's first V < ε minus the epoch of its minimum test loss and of its best
    test accuracy (negative: the stop comes first), mean and 95% interval over the runs that reached it."""
    lines = []
    for cell in results.cells["cell"]:
        loss = claim_text(results, "stop_vs_overfitting", cell, "stop_minus_min_test_loss_epoch")
        best = claim_text(results, "stop_vs_overfitting", cell, "stop_minus_best_test_acc_epoch")
        if loss and best:
            whose = "NeVe's stop" if cell == "NeVe" else f"{cell}'s first V < ε"
            count = claim_count(results, "stop_vs_overfitting", cell, "stop_minus_min_test_loss_epoch")
            lines.append(f"{whose} minus the epoch of the minimum test loss {loss}, of the best test accuracy {best} "
                         f"(epochs, mean [95% CI], {count})")
    return lines


#: In drawing order: training last, dashed over the validation velocity it nearly coincides with.
VELOCITY_SETS = {"model_velocity": "aux (Gaussian noise)", "velocity_val": "100 validation samples",
                 "velocity_train": "100 training samples"}

LOSSES = {"val_loss": "validation", "test_loss": "test", "train_loss": "train"}

#: Fig. 7's one legend: each set's colour in both panels (training dashed: its velocity and the validation one nearly
#: coincide, and one must not hide the other).
FIG7_SETS = {"aux": "aux set (Gaussian noise): velocity", "train": "training: velocity on 100 samples, loss",
             "val": "validation: velocity on 100 samples, loss", "test": "test: loss"}


@layout("fig7")
@styled
def plot_fig7(results: Results) -> Figure:
    """Fig. 7: velocity measured on the aux set and on training and validation samples (a), and the three losses
    (b), with a constant learning rate; the aux velocity's plateau (its first V < ε) marked in both."""
    epochs = results.need_epochs()
    figure, axes = new_figure(2, height=3.3)
    for column, label in VELOCITY_SETS.items():
        if column in epochs.columns and epochs[column].notna().any():
            key = column.removeprefix("velocity_").replace("model_velocity", "aux")
            mean_band(axes[0], seed_stats(epochs, "epoch", column), "epoch", SET_COLORS[key], label,
                      linestyle="--" if key == "train" else "-")
    for column, label in LOSSES.items():
        if column in epochs.columns and epochs[column].notna().any():
            key = {"train_loss": "train", "val_loss": "val", "test_loss": "test"}[column]
            mean_band(axes[1], seed_stats(epochs, "epoch", column), "epoch", SET_COLORS[key], label,
                      linestyle="--" if key == "train" else "-")
    velocity_axis(axes[0], results.cells)
    zoomed = zoom_losses(axes[1], epochs)
    axes[1].set_ylabel("cross-entropy loss")
    title_panels(axes, ("(a) velocity", "(b) losses"))
    notes: list[str] = []
    for ax in axes:
        notes = stop_marks(ax, results.runs, "method", {"constant lr": SET_COLORS["aux"]})
    minimum = minimum_marks(axes[1], results, "min_val_loss_epoch", "minimum validation loss")
    drawn = {line.get_color() for ax in axes for line in ax.get_lines()}
    sets = [Line2D([], [], color=SET_COLORS[key], linestyle="--" if key == "train" else "-", label=label)
            for key, label in FIG7_SETS.items() if SET_COLORS[key] in drawn]
    plateau = Line2D([], [], color=SET_COLORS["aux"], linestyle="--", marker="v",
                     label="aux velocity's plateau (first V < ε): mean ± std over seeds")
    epsilon = next(line for line in axes[0].get_lines() if line.get_label().startswith("ε"))
    bottom_legend(figure, None, [*sets, epsilon, plateau, *minimum], ncols=2,
                  notes=[seed_label(results.runs), GEOMETRIC_NOTE, *notes,
                         *([zoom_note(ZOOM_AFTER_STOP, reported=False)] if zoomed else []), *fig7_claims(results)])
    return figure


def zoom_losses(ax: Axes, epochs: pd.DataFrame) -> bool:
    """Fit (b)'s y axis to the mean losses after :data:`ZOOM_AFTER_STOP` of the epochs: the claim is about where
    they turn, which the first fall from chance would flatten to a line; whether that cut some of them off."""
    columns = [column for column in LOSSES if column in epochs.columns and epochs[column].notna().any()]
    if not columns:
        return False
    means = epochs.groupby("epoch")[columns].mean()
    late = means[means.index > ZOOM_AFTER_STOP * means.index.max()].stack().dropna()
    if late.empty:
        return False
    low, high = late.min(), late.max()
    pad = 0.1 * (high - low) or 0.05
    ax.set_ylim(max(low - pad, 0.0), high + pad)
    return bool((means.max() > high + pad).any())


def minimum_marks(ax: Axes, results: Results, column: str, what: str) -> list[Line2D]:
    """Each cell's epoch of ``column`` (``NAME_claims_runs.csv``: ``min_val_loss_epoch``...), mean ± std over its
    runs, as a ● with whiskers along the top of ``ax``, under NeVe's stop marks: where the stop should line up. The
    legend handles ([] where the claim was not computed)."""
    per_run = results.derived.get("claims_runs")
    if per_run is None or column not in per_run or per_run[column].isna().all():
        return []
    handles = []
    for index, (cell, rows) in enumerate(per_run.groupby("cell", sort=False)):
        epochs = rows[column].dropna().astype(float)
        if epochs.empty:
            continue
        color = SET_COLORS["val"] if column == "min_val_loss_epoch" else color_of(str(cell), index=index)
        std = epochs.std(ddof=1) if len(epochs) > 1 else 0.0
        ax.errorbar([epochs.mean()], [0.84 - 0.06 * index], xerr=[std], fmt="o", color=color, capsize=3,
                    markersize=5, transform=ax.get_xaxis_transform())
        handles.append(Line2D([], [], color=color, marker="o",
                              label=f"{what}{'' if per_run['cell'].nunique() == 1 else f' ({cell})'}: mean ± std "
                                    "epoch over seeds"))
    return handles


def fig7_claims(results: Results) -> list[str]:
    """Fig. 7's claim in numbers: Spearman's ρ of the aux velocity with the validation and training velocities (of
    the levels and of the epoch-to-epoch changes), and the plateau's lag after the losses' minima."""
    cell = results.cells["cell"].iloc[0]

    def text(quantity: str) -> str:
        if "spearman" in quantity:  # a rank correlation: its interval cut to [-1, 1]
            return claim_text(results, "velocity_sets", cell, quantity, digits=2, bounds=(-1.0, 1.0))
        return claim_text(results, "velocity_sets", cell, quantity)

    rho = [f"{name} {text(f'spearman_aux_{key}')} (epoch-to-epoch changes {text(f'spearman_aux_{key}_changes')})"
           for key, name in (("val", "validation"), ("train", "training")) if text(f"spearman_aux_{key}")]
    lines = [f"Spearman ρ of the aux velocity with the {', with the '.join(rho)}, over epochs "
             f"({claim_count(results, 'velocity_sets', cell, 'spearman_aux_val')})"] if rho else []
    lag = [f"minus the epoch of the minimum {name} loss {text(f'plateau_minus_min_{key}_loss_epoch')}"
           for key, name in (("val", "validation"), ("test", "test")) if text(f"plateau_minus_min_{key}_loss_epoch")]
    count = claim_count(results, "velocity_sets", cell, "plateau_minus_min_val_loss_epoch")
    return lines + ([f"the aux plateau's epoch {', '.join(lag)} (epochs, {count})"] if lag else [])


@layout("fig8")
@styled
def plot_fig8(results: Results) -> Figure:
    """Fig. 8: NeVe with SGD and Adam: velocity (a) and test accuracy (b), each optimizer's stop marked. Where the
    experiment has a Baseline per optimizer too (MNIST-1D), one line per cell: colour the optimizer, dotted the
    Baseline."""
    cells = results.cells
    if "method" in results.values and cells["method"].nunique() > 1:
        palette = dict(zip(cells["cell"].astype(str), cells["optimizer"].map(OPTIMIZER_COLORS), strict=True))
        styles = {str(cell): {"linestyle": ":", "linewidth": 1.3}
                  for cell, method in zip(cells["cell"], cells["method"], strict=True) if method == "Baseline"}
        return velocity_and_accuracy(results, "cell", palette, styles)
    return velocity_and_accuracy(results, "optimizer", OPTIMIZER_COLORS)


def velocity_and_accuracy(results: Results, group: str, palette: dict[str, str],
                          styles: dict[str, dict] | None = None) -> Figure:
    epochs = results.need_epochs()
    stops = marked_stops(results.runs)
    figure, axes = new_figure(2, height=3.3)
    curves(axes[0], epochs, "model_velocity", group, palette, stops=stops, styles=styles)
    curves(axes[1], epochs, "test_acc", group, palette, stops=stops, styles=styles)
    velocity_axis(axes[0], results.cells)
    zoomed = zoom_past_the_climb(axes[1], epochs, "test_acc", group, results.finished_runs["acc"],
                                 after=ZOOM_AFTER_STOP)
    notes = []
    for ax in axes:
        notes = stop_marks(ax, neve_runs(results), group, palette)
    axes[1].set_ylabel("test accuracy (%)")
    title_panels(axes, ("(a) velocity", "(b) test accuracy"))
    extra = [Line2D([], [], color=GREY, linestyle="--", label=PAST_STOP_LABEL),
             Line2D([], [], color=GREY, linestyle="--", marker="v", label=STOP_LABEL)]
    bottom_legend(figure, axes[0], extra, ncols=3,
                  notes=[seed_label(results.runs), GEOMETRIC_NOTE, *curve_notes(epochs, group, stops), *notes,
                         *([zoom_note(ZOOM_AFTER_STOP)] if zoomed else []), *fig8_claims(results)])
    return figure


def fig8_claims(results: Results) -> list[str]:
    """Fig. 8's claim in numbers: each NeVe row at its stop against the same runs after the whole budget, and, where
    the aggregation paired them, Adam against SGD (Welch)."""
    lines = []
    for _, cell in results.cells[results.cells["metric"] == "test_acc_at_neve_stop"].iterrows():
        if cell["n"] > 0:
            lines.append(f"{cell['cell']}: {cell['mean']:.2f} ± {cell['std']:.2f} at the stop (epoch "
                         f"{cell['metric_epoch_mean']:.0f}), {cell['final_mean']:.2f} ± {cell['final_std']:.2f} after "
                         f"the whole budget")
    claims = results.derived.get("claims")
    if claims is not None:
        pairs = claims[(claims["claim"] == "paired") & claims["versus"].notna() & (claims["quantity"] == "acc")]
        for _, row in pairs[pairs["diff"].notna() & pairs["welch_p"].notna()].iterrows():
            lines.append(f"{row['cell']} minus {row['versus']}: {signed(row['diff'], 2)} points (Welch p "
                         f"{row['welch_p']:.2g}, {row['n']:.0f} and {row['versus_n']:.0f} seeds)")
    return lines


@layout("curves")
@styled
def plot_demo(results: Results) -> Figure:
    """The demo and Table II's curves: velocity (a), test accuracy (b) and learning rate (c) over epochs per
    method, one row of panels per block (MNIST-1D's CNN and ResNet-1D); in (b) each run's reported epoch (NeVe's
    stop, V.Loss's kept model, the end) is a cross, in (c) each lr decay is a step and a tick; NeVe's stop is marked
    in every panel. (b)'s y axis leaves out the first climb from chance (:data:`ZOOM_AFTER`): on a 20-100% axis the
    methods' differences, a point or two, would be a line's width."""
    # One row per (block, run): blocks may share a run folder (the miniature's do), and each row needs its crosses.
    epochs, runs = results.need_epochs(), results.finished_runs.drop_duplicates(["block", "run"])
    blocks = list(dict.fromkeys(results.cells["block"].fillna("")))
    if "block" in epochs and len(blocks) > 1:  # a block with no finished run yet gets no empty row
        trained = set(epochs["block"].fillna(""))
        blocks = [block for block in blocks if block in trained] or blocks[:1]
    figure = Figure(figsize=(WIDTH * 1.3, 0.6 + 2.7 * len(blocks)), layout="constrained")
    rows = figure.subplots(len(blocks), 3, squeeze=False)
    stops = marked_stops(results.runs)
    methods: list[str] = []
    zoomed = False
    notes: list[str] = []
    for block, axes in zip(blocks, rows, strict=True):
        mine = epochs[epochs["block"].fillna("") == block] if "block" in epochs else epochs
        theirs = runs[runs["block"].fillna("") == block]
        methods = list(dict.fromkeys([*methods, *demo_row(axes, mine, theirs, results.cells, stops)]))
        zoomed |= zoom_past_the_climb(axes[1], mine, "test_acc", "method", theirs["acc"])
        neve = theirs[theirs["metric"] == "test_acc_at_neve_stop"]
        for ax in axes:
            notes = stop_marks(ax, neve, "method")
        notes = [*notes, *curve_notes(mine, "method", stops)]
        if len(blocks) > 1:
            title_panels(axes, [f"{block}: {t}" for t in ("(a) velocity", "(b) test accuracy", "(c) lr per seed")])
        else:
            title_panels(axes, ("(a) velocity", "(b) test accuracy", "(c) learning rate, one line per seed"))
    extra = [Line2D([], [], marker="X", color=GREY, linestyle="none", label="reported epoch (per seed)"),
             Line2D([], [], marker="v", color=GREY, linestyle="none", label="lr decay (per seed)"),
             Line2D([], [], color=BLUE, linestyle="--", marker="v", label=STOP_LABEL)]
    if set(stops) & set(epochs["run"]):
        extra.append(Line2D([], [], color=BLUE, linestyle="--", label=PAST_STOP_LABEL))
    bottom_legend(figure, rows[0][0], extra, ncols=4,
                  notes=[seed_label(results.runs), GEOMETRIC_NOTE, *dict.fromkeys(notes),
                         *([zoom_note(ZOOM_AFTER)] if zoomed else [])])
    return figure

#: The share of the budget a zoomed y axis leaves out: the first climb from chance (or fall of the loss). Fig. 5 and
#: Fig. 8 leave out less (:data:`ZOOM_AFTER_STOP`): their claim is about the epochs around NeVe's stop.
ZOOM_AFTER = 0.2
ZOOM_AFTER_STOP = 0.1


def zoom_note(after: float, reported: bool = True) -> str:
    return (f"accuracy and loss axes fitted to the epochs after the first {after:.0%}"
            + (" (and the reported numbers)" if reported else "") + ": the first epochs lie outside them")


def zoom_past_the_climb(ax: Axes, epochs: pd.DataFrame, column: str, group: str,
                        reported: pd.Series | None = None, after: float = ZOOM_AFTER) -> bool:
    """Fit ``ax``'s y axis to the mean ``column`` per ``group`` after ``after`` of the epochs and the ``reported``
    numbers (the crosses); whether that leaves some of the curves outside the panel."""
    means = epochs.groupby([group, "epoch"])[column].mean().dropna()
    late = means[means.index.get_level_values("epoch") > after * epochs["epoch"].max()]
    values = pd.concat([late, reported if reported is not None else pd.Series(dtype=float)]).dropna()
    if values.empty:
        return False
    low, high = values.min(), values.max()
    pad = 0.1 * (high - low) or 0.5
    ax.set_ylim(low - pad, high + pad)
    return bool(means.min() < low - pad or means.max() > high + pad)


def demo_row(axes: Sequence[Axes], epochs: pd.DataFrame, runs: pd.DataFrame, cells: pd.DataFrame,
             stops: dict[str, int]) -> list[str]:
    """One block's three panels of :func:`plot_demo`; returns its methods."""
    methods = curves(axes[0], epochs, "model_velocity", "method", stops=stops)
    curves(axes[1], epochs, "test_acc", "method", stops=stops)
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

