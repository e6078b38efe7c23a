"""Accuracy against what a method spends on its stop: the training examples V.Loss moves to validation (Fig. 4a)
and the size and kind of NeVe's aux set (Fig. 4b)."""

from __future__ import annotations

import math

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.plots import layout
from experiments.plots.panels import (
    AUX_NAMES,
    BLUE,
    FALLBACK_NOTE,
    SET_COLORS,
    WIDTH,
    bottom_legend,
    color_of,
    fallback_points,
    new_figure,
    seed_label,
    signed,
    styled,
    title_panels,
)
from experiments.results import Results


@layout("fig4a")
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
    unit = unit_of(str(cells["dataset"].iloc[0]))
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


def unit_of(dataset_name: str) -> str:
    """What one training example of the dataset is called on an axis (MNIST-1D's are sequences), as the dataset
    declares it; imports the data registry (and torch) only when a figure draws training examples."""
    from experiments.data import dataset

    return dataset(dataset_name).unit


@layout("fig4b")
@styled
def plot_fig4b(results: Results) -> Figure:
    """Fig. 4b: NeVe's accuracy at its stop (a) and the stop's epoch (b) against the size of the aux set (log axis),
    one line per aux type; the caption gives Welch's tests where the aggregation computed them (each cell against
    the paper's default, Gaussian against real samples at each size)."""
    cells, runs = results.cells, results.finished_runs
    x = "config.aux_size" if "config.aux_size" in cells.columns else "aux_size"
    figure, axes = new_figure(2, height=3.3)
    fallback = False
    kinds = list(dict.fromkeys(cells["aux"]))
    for index, (aux, rows) in enumerate(cells.groupby("aux", sort=False)):
        rows = rows.drop_duplicates(x).sort_values(x)
        color = color_of(str(aux), SET_COLORS, index)
        seeds = runs[runs["aux"] == aux].drop_duplicates("run")
        # Each type a little off its size (same factor both ways on the log axis), so that the bars stay apart.
        shift = FIG4B_DODGE ** (index - (len(kinds) - 1) / 2)
        for ax, (mean, std, per_run) in zip(axes, (("mean", "std", "acc"),
                                                   ("metric_epoch_mean", "metric_epoch_std", "metric_epoch")),
                                            strict=True):
            ax.errorbar(rows[x] * shift, rows[mean], yerr=rows[std].fillna(0), color=color, marker="o",
                        capsize=2.5, linestyle=("-", "--")[index % 2], label=AUX_NAMES.get(str(aux), str(aux)))
            ax.scatter(seeds[x] * shift, seeds[per_run], s=9, color=color, alpha=0.35, linewidths=0)
            fallback |= fallback_points(ax, rows.assign(mean=rows[mean], **{x: rows[x] * shift}), x, color)
    sizes = sorted(cells[x].dropna().unique())
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{size:,.0f}" for size in sizes])  # the sizes trained, not powers of ten
        ax.minorticks_off()
    title_panels(axes, ("(a) accuracy", "(b) epoch of the stop"), xlabel="aux set size |D_aux| (log scale)")
    axes[0].set_ylabel("test accuracy at NeVe's stop (%)")
    axes[1].set_ylabel("epoch of NeVe's stop")
    fallback_note = "○ some runs never reached V < ε: their final accuracy and last epoch are used"
    notes = [seed_label(results.runs), *held_out_note(cells), *([fallback_note] if fallback else [])]
    if len(kinds) > 1:
        notes.append(f"the types drawn side by side, {FIG4B_DODGE - 1:.0%} apart on the size axis")
    bottom_legend(figure, axes[0], ncols=2, notes=[*notes, *fig4b_claims(results)])
    return figure


#: How far apart Fig. 4b draws the aux types at one size (a factor on the log axis).
FIG4B_DODGE = 1.06


def held_out_note(cells: pd.DataFrame) -> list[str]:
    """Real aux samples come from a validation split the run does not train on: a difference that is not the aux
    set's alone, so the caption says how many examples those runs lose."""
    held = cells[(cells["aux"] != "gaussian") & (cells["holdout_images"] > 0)]
    if held.empty:
        return []
    counts = sorted(set(held["holdout_images"].astype(int)))
    unit = unit_of(str(cells["dataset"].iloc[0]))
    return [f"real samples are drawn from a validation split of {', '.join(f'{n:,}' for n in counts)} training {unit}, "
            "which those runs do not train on"]


def fig4b_claims(results: Results) -> list[str]:
    """Fig. 4b's claim in numbers (``NAME_claims.csv``): real minus Gaussian samples at each size, and the cells that
    differ from the paper's default (100 Gaussian samples) at p < 0.05, in accuracy and in the stop's epoch."""
    claims = results.derived.get("claims")
    if claims is None:
        return []
    lines = []
    compared = claims[claims["versus"].notna() & claims["welch_p"].notna()]
    pairs = compared[(compared["claim"] == "paired") & (compared["quantity"] == "acc")]
    if len(pairs):
        lines.append("real minus Gaussian samples in accuracy, at |D_aux| = " + ", ".join(
            f"{row['cell'].split()[-1]}: {signed(row['diff'], 2)} (p {row['welch_p']:.2g})"
            for _, row in pairs.iterrows()))
    against = compared[compared["claim"] == "against_reference"]
    if len(against):
        reference = against["versus"].iloc[0]
        for quantity, name in (("acc", "accuracy"), ("metric_epoch", "stop epoch")):
            differ = against[(against["quantity"] == quantity) & (against["welch_p"] < SIGNIFICANT)]
            which = ", ".join(f"{row['cell']} ({signed(row['diff'], 2 if quantity == 'acc' else 0)})"
                              for _, row in differ.iterrows())
            lines.append(f"{name} against {reference}: " + (f"p < {SIGNIFICANT:g} at {which}" if which else
                                                            f"no cell differs at p < {SIGNIFICANT:g}"))
    return [f"Welch: {'; '.join(lines)}"] if lines else []


#: The Welch p below which a caption names a difference.
SIGNIFICANT = 0.05
