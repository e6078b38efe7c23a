"""AlgoPerf's performance profiles of the tuning-free comparison: per method, the share of workloads it reaches the
target within τ times the fastest method's time, in epochs and in wall seconds.

A line's style comes from its method's declaration (``experiments.methods``): the paper's methods keep their
colours; a tuning-free method is coloured by its package (its variants share it) and dashed when it is told the
training horizon. Reading the declarations imports the methods' registry (and torch) when this layout draws."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.plots import layout
from experiments.plots.panels import (
    GREEN,
    ORANGE,
    PURPLE,
    SKY,
    VERMILLION,
    YELLOW,
    caption,
    color_of,
    new_figure,
    seed_label,
    styled,
)
from experiments.results import TARGET_RUN_COLUMNS, Results, ResultsError
from experiments.time_to_target import (
    MAX_RATIO,
    performance_profile,
    performance_ratios,
    profile_score,
    profile_steps,
    workload_times,
)

#: A colour per package of the tuning-free methods, in order of appearance (the paper's methods keep theirs).
PACKAGE_COLORS = (GREEN, ORANGE, VERMILLION, PURPLE, SKY, YELLOW)
#: Solid, dashed (told the training horizon), then the styles a further variant of the same package takes.
LINESTYLES = ("-", "--", ":", "-.")

#: Vertical offset between methods' lines: with few workloads many profiles coincide, and would hide each other.
PROFILE_DODGE = 0.012

PROFILE_TIMES = {"target_epoch": "(a) epochs to target", "target_seconds": "(b) wall time to target"}


@layout("profile")
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
        styles = line_styles(runs, methods)
        for index, method in enumerate(methods):
            color, linestyle = styles[method]
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


def line_styles(runs: pd.DataFrame, labels: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Per row label, (colour, line style) from its method's declaration (the runs CSV's ``config.method``): a
    paper or related method its own colour; a tuning-free one its package's colour, dashed when the method is
    told the horizon (:func:`knows_horizon`); a style already taken moves on to dotted, then dash-dotted."""
    from experiments.methods import METHODS

    named = runs.dropna(subset=["config.method"]) if "config.method" in runs.columns else runs.iloc[:0]
    method_of = dict(zip(named["cell"], named["config.method"], strict=True))
    packages: dict[str, str] = {}
    styles: dict[str, tuple[str, str]] = {}
    for index, label in enumerate(labels):
        method = METHODS.get(str(method_of.get(label, "")))
        if method is not None and method.family == "tuning-free":
            color = packages.setdefault(method.package, PACKAGE_COLORS[len(packages) % len(PACKAGE_COLORS)])
            first = "--" if knows_horizon(method) else "-"
        else:
            color, first = color_of(label, index=index), "-"
        # A style already taken moves on to dotted and dash-dotted, which claim neither horizon (solid would say
        # "not told the horizon" of a dashed method, and dashed the opposite).
        order = [first, ":", "-.", *(style for style in LINESTYLES if style not in (first, ":", "-."))]
        taken = set(styles.values())
        styles[label] = next(((color, style) for style in order if (color, style) not in taken), (color, first))
    return styles


def knows_horizon(method: type) -> bool:
    """Whether a tuning-free method is told the training budget at its documented settings: its class says so, or,
    where that depends on an option (Prodigy's warm-up, off by default), an instance at the defaults does."""
    declared = inspect.getattr_static(method, "knows_horizon", False)
    if isinstance(declared, property):
        from experiments.training.config import RunConfig

        return bool(method(RunConfig(method=method.name).resolved()).knows_horizon)
    return bool(declared)


def target_margin(results: Sequence[Results]) -> str:
    """The margin below the Baseline's mean final accuracy the targets were set at, read back from the CSVs."""
    margins = set()
    for result in results:
        cells = result.cells
        for _, row in cells[cells["cell"] == cells["welch_ref"]].iterrows():
            margins.add(round(float(row["final_mean"] - row["target"]), 6))
    return ", ".join(f"{m:g}" for m in sorted(margins)) or "?"
