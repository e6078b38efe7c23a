"""What the figures share: the house style and colours, and the panels and notes every layout draws with.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot state) under :data:`STYLE`; colours are Okabe-Ito,
one per method, aux set, optimizer and fidelity setting, the same in every figure.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from experiments.results import FINISHED, Results

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

#: Record columns drawn on a log axis: summarised over seeds by the geometric mean ×/÷ the geometric std (a
#: band of mean ± std would reach below zero on a quantity spanning decades).
LOG_COLUMNS = ("model_velocity", "velocity_train", "velocity_val")

GEOMETRIC_NOTE = "velocity: geometric mean ×/÷ geometric std over seeds"

AUX_NAMES = {"gaussian": "Gaussian noise", "val": "real samples (validation split)", "train": "training samples"}


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
           *, linestyle: str = "-", label_suffix: str = "", stops: Mapping[str, int] | None = None,
           styles: Mapping[str, dict[str, Any]] | None = None) -> list[str]:
    """Per-epoch mean and spread over seeds of ``column``, one line per value of ``group``; returns the groups.

    A mean is drawn only over the epochs every run of its group has (:func:`complete_epochs`): where runs halt at
    different epochs (V.Loss, a halted NeVe), a mean over the runs still training would dip or jump as seeds drop
    out, so past the first run's end each run that trained on is a thin line of its own. ``stops`` (run -> epoch,
    :func:`marked_stops`): runs that report at NeVe's stop and trained on past it (``--stop mark``); their group's
    line turns dashed from the first such stop, labelled as past the stop by :data:`PAST_STOP_NOTE`. ``styles``:
    extra line properties per group (a reference method drawn thinner). Each line's ``gid`` is its group."""
    groups = list(dict.fromkeys(epochs[group].astype(str)))
    for index, name in enumerate(groups):
        rows = epochs[(epochs[group].astype(str) == name) & epochs[column].notna()]
        if rows.empty:
            continue
        color, style = color_of(name, palette, index), {"linestyle": linestyle, **(styles or {}).get(name, {})}
        last = complete_epochs(rows)
        stats_frame = seed_stats(rows[rows["epoch"] <= last], "epoch", column)
        split = min((stops[run] for run in rows["run"].unique() if stops and run in stops), default=None)
        before = stats_frame if split is None else stats_frame[stats_frame["epoch"] <= split]
        mean_band(ax, before, "epoch", color, f"{name}{label_suffix}", gid=name, **style)
        if split is not None and (stats_frame["epoch"] >= split).sum() > 1:
            mean_band(ax, stats_frame[stats_frame["epoch"] >= split], "epoch", color, "_past the stop",
                      gid=f"{name} {PAST_STOP}", **{**style, "linestyle": "--"})
        for _, own in rows[rows["epoch"] >= last].groupby("run", sort=False):
            if own["epoch"].max() > last:  # this run trained on after the group's first run ended
                ax.plot(own["epoch"], own[column], color=color, linewidth=0.7, alpha=0.45, label="_single run",
                        gid=f"{name} {SINGLE_RUN}")
    return groups


#: The gid suffixes of :func:`curves`' lines past NeVe's stop and of single runs past their group's common epochs.
PAST_STOP, SINGLE_RUN = "past the stop", "single run"

PAST_STOP_NOTE = "dashed from the first seed's stop on; NeVe's number is each run's accuracy at its own stop"

RAGGED_NOTE = "a mean line ends where its group's first run ended (halted); thin lines: the runs that trained on"


def complete_epochs(rows: pd.DataFrame) -> int:
    """The last epoch every run of ``rows`` (one group's records) reached: its mean is over all of them up to it."""
    return int(rows.groupby("run")["epoch"].max().min())


def ragged(epochs: pd.DataFrame, group: str) -> bool:
    """Whether some group's runs end at different epochs (so :func:`curves` ends its mean early)."""
    ends = epochs.groupby([epochs[group].astype(str), "run"])["epoch"].max()
    return bool((ends.groupby(level=0).nunique() > 1).any())


def marked_stops(runs: pd.DataFrame) -> dict[str, int]:
    """Finished runs that report their accuracy at NeVe's stop and trained on past it (``--stop mark``): run ->
    the stop's epoch. A halted run ends at its stop, and a Baseline's marker is not its own stop."""
    finished = runs[(runs["state"] == FINISHED) & (runs["metric"] == "test_acc_at_neve_stop")].drop_duplicates("run")
    past = finished[finished["neve_stop_epoch"].notna() & (finished["epochs_run"] > finished["neve_stop_epoch"])]
    return {str(row.run): int(row.neve_stop_epoch) for row in past.itertuples()}


def curve_notes(epochs: pd.DataFrame, group: str, stops: Mapping[str, int]) -> list[str]:
    """The caption lines :func:`curves` needs: past the stop (when some run trained on), ragged ends."""
    return [*([PAST_STOP_NOTE] if set(stops) & set(epochs["run"]) else []),
            *([RAGGED_NOTE] if ragged(epochs, group) else [])]


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


def bottom_legend(figure: Figure, axes: Axes | None, extra: Sequence[Any] = (), ncols: int | None = None,
                  notes: Sequence[str] = ()) -> None:
    """One legend for the figure, below the panels (it never covers data), the notes as its caption: the lines of
    ``axes`` (None: only ``extra``), then ``extra``."""
    handles, labels = axes.get_legend_handles_labels() if axes is not None else ([], [])
    handles, labels = [*handles, *extra], [*labels, *(h.get_label() for h in extra)]
    unique = dict(zip(labels, handles, strict=True))
    legend = figure.legend(unique.values(), unique.keys(), loc="outside lower center",
                           ncols=ncols or min(len(unique), 4), title=caption(notes, figure.get_figwidth()) or None,
                           title_fontsize=7, alignment="left")
    legend.get_title().set_color("#444444")


def claim_row(results: Results, claim: str, cell: str, quantity: str) -> pd.Series | None:
    """One quantity of a claim for one cell (``NAME_claims.csv``); None where it was not computed or no run has it."""
    claims = results.derived.get("claims")
    if claims is None:
        return None
    rows = claims[(claims["claim"] == claim) & (claims["cell"] == cell) & (claims["quantity"] == quantity)]
    return rows.iloc[0] if len(rows) and rows["n"].iloc[0] > 0 else None


def claim_text(results: Results, claim: str, cell: str, quantity: str, digits: int = 1,
               bounds: tuple[float, float] = (-math.inf, math.inf)) -> str:
    """A claim's number as a caption says it: ``−5.5 [−13.0, +2.0]``, the mean and its 95% t-interval over the runs
    that have it, the interval cut to the quantity's ``bounds`` (a correlation's [−1, 1]); "" where it was not
    computed or no run has it (:func:`claim_count` says how many)."""
    row = claim_row(results, claim, cell, quantity)
    if row is None:
        return ""
    if math.isnan(row["ci_low"]):
        return signed(row["mean"], digits)
    low, high = max(row["ci_low"], bounds[0]), min(row["ci_high"], bounds[1])
    return f"{signed(row['mean'], digits)} [{signed(low, digits)}, {signed(high, digits)}]"


def claim_count(results: Results, claim: str, cell: str, quantity: str) -> str:
    """How many runs a claim's number is over: ``10 runs``, or ``7 of 10 runs`` where some lack it."""
    row = claim_row(results, claim, cell, quantity)
    if row is None:
        return ""
    return f"{row['n']:.0f} runs" if row["n"] == row["n_runs"] else f"{row['n']:.0f} of {row['n_runs']:.0f} runs"


def signed(value: float, digits: int = 1) -> str:
    """``+2.0``, ``−5.5`` (a typographic minus, as in the axes' tick labels)."""
    return f"{value:+.{digits}f}".replace("-", "−")


def fallback_points(ax: Axes, cells: pd.DataFrame, x: str, color: str) -> bool:
    """Hollow rings on the cells whose number fell back to the final accuracy in some runs."""
    marked = cells[cells["n_fallback"] > 0]
    ax.scatter(marked[x], marked["mean"], s=46, facecolors="none", edgecolors=color, linewidths=1.2, zorder=4)
    return len(marked) > 0

FALLBACK_NOTE = "○ some runs never reached V < ε: their final accuracy is used"


def seed_label(runs: pd.DataFrame) -> str:
    """How many seeds each number averages; one seed has no spread to show (no bar is drawn)."""
    count = seed_count(runs)
    return "one seed: no spread" if count == "1" else f"mean ± std over {count} seeds"


def seed_count(runs: pd.DataFrame) -> str:
    """The finished seeds per cell: ``10``, or ``7–10`` where cells differ."""
    seeds = runs[runs["state"] == FINISHED].groupby(["block", "cell"])["seed"].nunique()
    low, high = (int(seeds.min()), int(seeds.max())) if len(seeds) else (0, 0)
    return f"{low}" if low == high else f"{low}–{high}"


def spread(value: float) -> float | None:
    """An error bar's half-width, or no bar: a spread nobody measured (one seed, a paper without std) is not 0."""
    return None if value is None or math.isnan(value) else float(value)
