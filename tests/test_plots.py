"""Figures and the results report, rendered from the CSVs the real pipeline wrote (tests/results_pipeline.py)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle
from results_pipeline import PIPELINE, Build, call

from experiments import aggregate, plots
from experiments.catalog import experiment_names, get_experiment
from experiments.data import dataset
from experiments.plots.profile import PROFILE_DODGE
from experiments.results import ResultsError, figure_path, load_results, results_path

REPO = Path(__file__).resolve().parents[1]


def test_every_catalog_experiment_has_a_figure_layout() -> None:
    layouts = {name: get_experiment(name).layout for name in experiment_names()}
    assert set(layouts.values()) <= set(plots.LAYOUTS), "a catalog entry names a layout nobody registered"
    assert set(layouts.values()) == set(plots.LAYOUTS)  # and no layout is left unused
    with pytest.raises(ValueError, match="no figure layout 'fig99'"):
        plots.draw("fig99")


def test_a_figure_follows_the_layout_its_catalog_entry_names(results_build: Build) -> None:
    results = load_results("mnist1d-fig4a", results_build.results_dir)
    assert get_experiment("mnist1d-fig4a").layout == "fig4a"  # the same function as the paper's Fig. 4a
    labels = [ax.get_xlabel() for ax in _axes(plots.plot("mnist1d-fig4a", results))]
    assert labels == [ax.get_xlabel() for ax in _axes(plots.draw("fig4a", results))]
    assert labels != [ax.get_xlabel() for ax in _axes(plots.draw("table", results))]  # another layout, another figure


@pytest.fixture(scope="module")
def figures(results_build: Build) -> dict:
    """Each pipeline figure drawn once from its CSVs, for the tests below to inspect."""
    return {name: plots.plot(name, load_results(name, results_build.results_dir)) for name, _, _ in PIPELINE}


def test_each_figure_is_written_as_png_and_pdf(results_build: Build, figures: dict) -> None:
    code, out, err = results_build.plotted
    assert code == 0, err
    for name, _, _ in PIPELINE:
        png, pdf = figure_path(results_build.results_dir, name), figure_path(results_build.results_dir, name, ".pdf")
        assert f"wrote {png}" in out and f"wrote {pdf}" in out
        assert pdf.read_bytes().startswith(b"%PDF")
        height, width, _ = matplotlib.image.imread(png).shape
        expected = figures[name].get_size_inches() * plots.DPI
        assert (width, height) == pytest.approx(tuple(expected), abs=2)  # dpi 200, the figure's own size
    assert not [p for p in (results_build.results_dir / "figures").iterdir() if p.suffix not in (".png", ".pdf")]


def _axes(figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_figures_have_the_papers_axes(results_build: Build, figures: dict) -> None:
    def axes(name: str) -> list:
        return _axes(figures[name])

    fig4b, stop_epochs = axes("fig4b")
    assert fig4b.get_xscale() == "log" and "|D_aux|" in fig4b.get_xlabel()
    assert stop_epochs.get_xscale() == "log" and stop_epochs.get_ylabel() == "epoch of NeVe's stop"
    assert [ax.get_xscale() for ax in axes("fig6")] == ["log", "log"]
    velocity, losses = axes("fig7")
    assert velocity.get_yscale() == "log"
    assert {line.get_label() for line in losses.get_lines() if not line.get_label().startswith("_")} == {
        "train", "validation", "test"}
    fig5, loss = axes("fig5")
    assert {line.get_label() for line in fig5.get_lines()} >= {"NeVe", "Baseline"}
    assert fig5.get_xlabel() == "epoch" and "(%)" in fig5.get_ylabel()
    assert {line.get_label() for line in loss.get_lines()} >= {"NeVe", "Baseline"} and loss.get_ylabel() == "test loss"
    fig4a, = axes("fig4a")
    results = load_results("fig4a", results_build.results_dir)
    held = sorted(results.cells[results.cells["holdout_images"] > 0]["holdout_images"])
    vloss = next(bars for bars in fig4a.containers if bars.get_label().startswith("V.Loss"))
    assert sorted(vloss.lines[0].get_xdata()) == held  # x = images held out (fraction x 1,497 training images)
    assert len(axes("table2")) == 4  # one panel per block
    assert len(axes("demo")) == 3
    # MNIST-1D: Table II's curves one row per network, Fig. 6 one line per network, Fig. 4a in sequences.
    table2 = axes("mnist1d-table2")
    assert len(table2) == 6 and [ax.get_title().split(":")[0] for ax in table2[::3]] == [
        "MNIST-1D CNN", "MNIST-1D ResNet-1D"]
    # Each row marks its own runs' reported epochs (in the miniature both networks read the same run folders).
    crosses = [sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
               for ax in table2[1::3]]
    assert crosses[0] > 0 and crosses[0] == crosses[1]
    epochs_panel, _ = axes("mnist1d-fig6")
    assert {line.get_label() for line in epochs_panel.get_lines()} >= {"CNN", "ResNet-1D"}
    m1d_fig4a, = axes("mnist1d-fig4a")
    assert m1d_fig4a.get_xlabel() == "training images moved to validation"  # miniature: digits
    (share,) = m1d_fig4a.child_axes  # the same axis in % of the training set, read back from the CSV
    digits = dataset("digits").train_size
    assert share.get_xlabel() == f"% of the {digits:,} training images moved"
    figures["mnist1d-fig4a"].draw_without_rendering()
    assert share.get_xlim() == pytest.approx([100 * x / digits for x in m1d_fig4a.get_xlim()])
    real = load_results("mnist1d-fig4a", results_build.results_dir)
    real.cells["dataset"] = "mnist1d"
    assert _axes(plots.plot("mnist1d-fig4a", real))[0].get_xlabel() == "training sequences moved to validation"


def test_mnist1d_table2_draws_each_network_in_its_own_row(results_build: Build) -> None:
    results = load_results("mnist1d-table2", results_build.results_dir)
    epochs = results.need_epochs()
    resnet = epochs["block"] == "MNIST-1D ResNet-1D"
    epochs.loc[resnet, "test_acc"] -= 10  # the miniature's two blocks share runs: make them differ
    panels = _axes(plots.plot("mnist1d-table2", results))
    for block, (_, accuracy, _) in zip(("MNIST-1D CNN", "MNIST-1D ResNet-1D"), (panels[:3], panels[3:]),
                                       strict=True):
        mine, runs = epochs[epochs["block"] == block], results.finished_runs
        for line in accuracy.get_lines():
            if line.get_label().startswith("_"):  # a line past NeVe's stop or a single run (tested below)
                continue
            expected = mine[mine["method"] == line.get_label()].groupby("epoch")["test_acc"].mean()
            assert line.get_xdata()[0] == 1
            expected = expected.loc[line.get_xdata()]
            assert list(line.get_ydata()) == pytest.approx(expected.tolist()), (block, line.get_label())
        # Each finished run's reported epoch and number, a cross in its own block's row (shared folders too).
        crosses = np.concatenate([c.get_offsets() for c in accuracy.collections if isinstance(c, PathCollection)])
        reported = runs[runs["block"] == block][["metric_epoch", "acc"]].to_numpy(float)
        assert np.array(sorted(map(tuple, crosses))) == pytest.approx(np.array(sorted(map(tuple, reported)))), block
        low, high = accuracy.get_ylim()
        assert low <= crosses[:, 1].min() and crosses[:, 1].max() <= high  # zoomed, yet no cross cut off


def test_mnist1d_published_draws_no_spread_the_paper_did_not_give(results_build: Build, figures: dict) -> None:
    cells = load_results("mnist1d-published", results_build.results_dir).cells
    assert cells["paper_mean"].notna().all() and cells["paper_std"].isna().all()
    figure = figures["mnist1d-published"]
    (panel,) = _axes(figure)
    paper = [bars for bars in panel.containers if bars.lines[0].get_marker() == "D"]
    assert len(paper) == len(cells) and not any(bars.has_xerr for bars in paper)
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "paper (no spread given)" in labels and "paper (mean ± std)" not in labels


def test_the_performance_profile_is_drawn_from_the_runs_csv(results_build: Build, figures: dict) -> None:
    from experiments.time_to_target import MAX_RATIO, performance_profile, performance_ratios, workload_times

    runs = load_results("mnist1d-tuning-free", results_build.results_dir).finished_runs
    panels = _axes(figures["mnist1d-tuning-free"])
    assert len(panels) == 2
    for ax, column in zip(panels, ("target_epoch", "target_seconds"), strict=True):
        assert ax.get_xscale() == "log" and ax.get_xlim() == pytest.approx((1, MAX_RATIO))
        assert "τ" in ax.get_xlabel() and "workloads" in ax.get_ylabel()
        ratios = performance_ratios(workload_times(runs, column))
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == list(ratios.columns)  # one line per method, in table order
        for line in lines:
            taus, drawn = line.get_xdata(), line.get_ydata()
            dodge = drawn[0] - performance_profile(ratios, [1.0])[line.get_label()].iloc[0]
            # only the small offset that keeps lines apart: at most half the spread of all the lines
            assert abs(dodge) <= PROFILE_DODGE * (len(lines) - 1) / 2 + 1e-9
            expected = performance_profile(ratios, taus)[line.get_label()].to_numpy()
            assert drawn - dodge == pytest.approx(expected), line.get_label()
    assert "epochs to target" in panels[0].get_title() and "wall time" in panels[1].get_title()


def test_the_profiles_line_styles_come_from_the_methods_declarations(results_build: Build) -> None:
    from experiments.methods import METHODS
    from experiments.plots.panels import METHOD_COLORS
    from experiments.plots.profile import knows_horizon, line_styles

    runs = load_results("mnist1d-tuning-free", results_build.results_dir).finished_runs
    labels = list(dict.fromkeys(runs["cell"]))
    styles = line_styles(runs, labels)
    method = dict(zip(runs["cell"], runs["config.method"], strict=True))
    assert styles["Baseline"] == (METHOD_COLORS["Baseline"], "-") and styles["NeVe"] == (METHOD_COLORS["NeVe"], "-")
    tuning_free = [label for label in labels if METHODS[method[label]].family == "tuning-free"]
    assert len(tuning_free) >= 6
    for label in tuning_free:
        declared = METHODS[method[label]]
        same_package = {styles[other][0] for other in tuning_free if METHODS[method[other]].package == declared.package}
        assert same_package == {styles[label][0]}, label  # one colour per package
        assert (styles[label][1] == "--") == knows_horizon(declared) or styles[label][1] in (":", "-."), label
    assert len(set(styles.values())) == len(labels)  # no two lines alike


def test_fig7_draws_the_velocity_on_training_and_validation_images(results_build: Build, figures: dict) -> None:
    epochs = load_results("fig7", results_build.results_dir).need_epochs()
    velocity, _ = _axes(figures["fig7"])
    lines = {line.get_label(): line for line in velocity.get_lines()}
    for column, label in (("model_velocity", "aux (Gaussian noise)"), ("velocity_train", "100 training samples"),
                          ("velocity_val", "100 validation samples")):
        assert epochs[column].notna().all() and (epochs[column] > 0).all(), column  # --velocity-sets train,val
        per_epoch = epochs.groupby("epoch")[column].mean()  # one seed: the run's own values
        assert label in lines, f"Fig. 7 has no {label} line"
        assert list(lines[label].get_xdata()) == per_epoch.index.tolist()
        assert list(lines[label].get_ydata()) == pytest.approx(per_epoch.tolist()), column
    assert not epochs["velocity_train"].equals(epochs["model_velocity"])  # three measurements, not one


def test_miniature_results_default_to_results_miniature_and_leave_the_real_ones(results_build: Build, tmp_path: Path,
                                                                               monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    real = tmp_path / "results"
    real.mkdir()
    (real / "fig5.csv").write_text("the real results\n")
    code, _, err = call(aggregate.main, results_build.options("fig5"))  # --miniature, no --results-dir
    assert code == 0, err
    code, out, err = call(plots.main, ["--all", "--miniature"])
    assert code == 0, err
    miniature = real / "miniature"
    assert results_path(miniature, "fig5").is_file() and figure_path(miniature, "fig5").is_file()
    assert sorted(p.name for p in (miniature / "figures").iterdir()) == ["fig5.pdf", "fig5.png"]  # --all: aggregated
    (miniature / "README.md").unlink()
    report = subprocess.run([sys.executable, "-m", "experiments.report", "--miniature"], cwd=tmp_path, text=True,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert report.returncode == 0, report.stderr
    assert "## fig5: " in (miniature / "README.md").read_text()
    assert sorted(p.name for p in real.iterdir()) == ["fig5.csv", "miniature"]
    assert (real / "fig5.csv").read_text() == "the real results\n"


def test_a_malformed_csv_is_a_clear_error(results_build: Build, tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    shutil.copytree(results_build.results_dir, results_dir)
    runs = results_dir / "fig5_runs.csv"
    pd.read_csv(runs).drop(columns=["acc"]).to_csv(runs, index=False)
    code, _, err = call(plots.main, ["fig5", "--results-dir", str(results_dir)])
    assert code == 2 and "fig5_runs.csv lacks the column(s) acc" in err and "experiments.aggregate fig5" in err

    cells = results_dir / "fig8.csv"
    frame = pd.read_csv(cells)
    frame["mean"] = "about ninety"
    frame.to_csv(cells, index=False)
    with pytest.raises(ResultsError, match="column 'mean' must hold numbers"):
        load_results("fig8", results_dir)

    (results_dir / "fig7_epochs.csv").write_text('epoch,"unclosed\n1,2,3,4\n')
    with pytest.raises(ResultsError, match="fig7_epochs.csv"):
        load_results("fig7", results_dir)

    (results_dir / "fig6.csv").unlink()
    code, _, err = call(plots.main, ["fig6", "--results-dir", str(results_dir)])
    assert code == 2 and "fig6.csv does not exist" in err


def test_the_report_shows_every_table_and_figure(results_build: Build) -> None:
    readme = (results_build.results_dir / "README.md").read_text()
    for name, _, _ in PIPELINE:
        assert f"## {name}: {get_experiment(name).title}" in readme
        assert f"![{name}](figures/{name}.png)" in readme
    assert "Miniature rehearsal" in readme
    assert "| NeVe |" in readme and "p (Welch)" in readme
    assert "Not aggregated yet: `paper-vs-code-demo`, `tiny`" in readme  # then the MNIST-1D experiments


# ------------------------------------------------------------------------------------------ curves that do not mislead
def _records(run: str, method: str, epochs: int, base: float) -> list[dict]:
    return [{"run": run, "method": method, "epoch": e, "test_acc": base + e} for e in range(1, epochs + 1)]


def test_a_mean_curve_ends_where_its_first_run_ends_and_past_neves_stop_it_is_dashed() -> None:
    from matplotlib.figure import Figure

    from experiments.plots.panels import PAST_STOP, SINGLE_RUN, curve_notes, curves

    # V.Loss: one run halts after 3 epochs, the other trains 5. NeVe: both train 5 (--stop mark), stops at 2 and 4.
    epochs = pd.DataFrame([*_records("v1", "V.Loss", 5, 80), *_records("v2", "V.Loss", 3, 70),
                           *_records("n1", "NeVe", 5, 90), *_records("n2", "NeVe", 5, 60)])
    stops = {"n1": 2, "n2": 4}
    ax = Figure().subplots()
    assert curves(ax, epochs, "test_acc", "method", stops=stops) == ["V.Loss", "NeVe"]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    vloss = lines["V.Loss"]  # the mean over both runs, over the 3 epochs both have: no dip as v2 drops out
    assert list(vloss.get_xdata()) == [1, 2, 3] and list(vloss.get_ydata()) == pytest.approx([76, 77, 78])
    alone = lines[f"V.Loss {SINGLE_RUN}"]  # then v1 alone, a thin line, not in the legend
    assert list(alone.get_xdata()) == [3, 4, 5] and alone.get_label().startswith("_")
    assert alone.get_linewidth() < vloss.get_linewidth()
    neve, past = lines["NeVe"], lines[f"NeVe {PAST_STOP}"]
    assert list(neve.get_xdata()) == [1, 2] and neve.get_linestyle() == "-"  # solid up to the first seed's stop
    assert list(past.get_xdata()) == [2, 3, 4, 5] and past.get_linestyle() == "--"
    assert list(past.get_ydata()) == pytest.approx([77, 78, 79, 80]) and past.get_label().startswith("_")
    notes = curve_notes(epochs, "method", stops)
    assert any("first seed's stop" in note for note in notes) and any("first run ended" in note for note in notes)
    assert curve_notes(epochs[epochs["method"] == "NeVe"], "method", {}) == []  # neither: no note


def test_only_runs_that_report_at_neves_stop_and_trained_past_it_are_drawn_past_the_stop() -> None:
    from experiments.plots.panels import marked_stops

    neve = "test_acc_at_neve_stop"
    rows = [("marked", "finished", neve, 40, 200), ("halted", "finished", neve, 40, 40),
            ("never", "finished", neve, np.nan, 200), ("baseline", "finished", "final_test_acc", 45, 200),
            ("failed", "failed", neve, 3, 9)]
    runs = pd.DataFrame(rows, columns=["run", "state", "metric", "neve_stop_epoch", "epochs_run"])
    assert marked_stops(runs) == {"marked": 40}


def test_neves_stop_is_marked_in_every_panel_and_its_curve_past_it_is_dashed(results_build: Build,
                                                                              figures: dict) -> None:
    from experiments.plots.panels import PAST_STOP

    stopped = results_build.stopped  # Fig. 5's NeVe at seed 1: V < epsilon from epoch 1, trained on (--stop mark)
    accuracy, loss = _axes(figures["fig5"])
    for ax in (accuracy, loss):
        assert _stop_markers(ax), f"a panel without NeVe's stop ({ax.get_title()})"
        lines = {line.get_gid(): line for line in ax.get_lines()}
        assert lines["NeVe"].get_xdata()[-1] == 1 and lines[f"NeVe {PAST_STOP}"].get_linestyle() == "--"
        assert f"Baseline {PAST_STOP}" not in lines  # the Baseline's marker is not its stop
    assert stopped.config.stop == "mark"
    legend = [text.get_text() for legend in figures["fig5"].legends for text in legend.get_texts()]
    assert any("past NeVe's stop" in label for label in legend)


def _stop_markers(ax) -> list:
    """The stop marks of :func:`~experiments.plots.panels.stop_marks`: a ▼ with whiskers along the top."""
    return [bars for bars in ax.containers if bars.lines[0].get_marker() == "v"]


def _caption(figure) -> str:
    texts = [legend.get_title().get_text() for legend in figure.legends]
    if figure._supxlabel is not None:
        texts.append(figure._supxlabel.get_text())
    return " ".join(texts).replace("\n", " ")


# ------------------------------------------------------------------------------------------ the new MNIST-1D figures
def test_the_stop_quality_figure_puts_each_method_at_its_epochs_saved_and_regret(results_build: Build,
                                                                                  figures: dict) -> None:
    results = load_results("mnist1d-stop-quality", results_build.results_dir)
    own, baseline = _axes(figures["mnist1d-stop-quality"])
    assert get_experiment("mnist1d-stop-quality").layout == "stop-quality"
    for ax, column in ((own, "regret"), (baseline, "baseline_regret")):
        points = {bars.get_label(): bars.lines[0] for bars in ax.containers}
        for _, cell in results.cells.iterrows():
            line = points[cell["cell"]]
            assert (line.get_xdata()[0], line.get_ydata()[0]) == pytest.approx(
                (cell["epochs_saved_mean"], cell[f"{column}_mean"]), nan_ok=True), (column, cell["cell"])
        assert "budget" in ax.get_xlabel()
    # Where the Baseline's velocity fell below epsilon, its would-be NeVe stop is a hollow point of its own.
    cells = results.cells.copy()
    baseline_row = cells["cell"] == "Baseline"
    cells.loc[baseline_row, ["n_at_neve_stop", "regret_at_neve_stop_mean", "epochs_saved_at_neve_stop_mean"]] = (
        2, 0.25, 1.0)
    figure = plots.plot("mnist1d-stop-quality", dataclasses.replace(results, cells=cells))
    for ax in _axes(figure):
        would_be = next(bars.lines[0] for bars in ax.containers if "first V < ε" in bars.get_label())
        assert (would_be.get_xdata()[0], would_be.get_ydata()[0]) == (1.0, 0.25)
        assert would_be.get_markerfacecolor() == "white"
    missing = results.cells.drop(columns=["regret_mean"])
    with pytest.raises(ResultsError, match="no stop-quality columns"):
        plots.plot("mnist1d-stop-quality", dataclasses.replace(results, cells=missing))


def test_mnist1d_fig8_draws_a_line_per_cell_coloured_by_optimizer_and_the_baseline_dotted(figures: dict) -> None:
    from experiments.plots.panels import OPTIMIZER_COLORS

    for ax in _axes(figures["mnist1d-fig8"]):
        lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
        assert {"NeVe SGD", "NeVe Adam", "Baseline SGD", "Baseline Adam"} <= set(lines)
        for label, line in lines.items():
            if label.startswith(("NeVe", "Baseline")):
                assert line.get_color() == OPTIMIZER_COLORS[label.split()[-1]], label
                assert line.get_linestyle() == (":" if label.startswith("Baseline") else "-"), label


def test_fig5_and_fig7_give_their_claims_numbers_in_the_caption(claims_build) -> None:
    from experiments.plots.panels import claim_text

    fig5 = load_results("mnist1d-fig5", claims_build.results_dir)
    caption = _caption(plots.plot("mnist1d-fig5", fig5))
    lag = claim_text(fig5, "stop_vs_overfitting", "NeVe", "stop_minus_min_test_loss_epoch")
    assert lag and f"NeVe's stop minus the epoch of the minimum test loss {lag}" in caption
    assert "1 of 2 runs" in caption  # one seed's velocity never fell below epsilon in the rehearsal
    _, loss = _axes(plots.plot("mnist1d-fig5", fig5))
    per_run = fig5.derived["claims_runs"]
    minima = [bars.lines[0].get_xdata()[0] for bars in loss.containers if bars.lines[0].get_marker() == "o"]
    assert minima == pytest.approx(per_run.groupby("cell", sort=False)["min_test_loss_epoch"].mean().tolist())
    fig7 = load_results("mnist1d-fig7", claims_build.results_dir)
    caption = _caption(plots.plot("mnist1d-fig7", fig7))
    rho = claim_text(fig7, "velocity_sets", "constant lr", "spearman_aux_val", digits=2, bounds=(-1, 1))
    assert rho and f"Spearman ρ of the aux velocity with the validation {rho}" in caption
    assert "the aux plateau's epoch minus the epoch of the minimum validation loss" in caption
    for ax in _axes(plots.plot("mnist1d-fig7", fig7)):  # the plateau marked in both panels
        assert _stop_markers(ax)


def test_fig4b_fig8_and_the_ablation_show_welchs_tests(claims_build) -> None:
    fig4b = load_results("mnist1d-fig4b", claims_build.results_dir)
    caption = _caption(plots.plot("mnist1d-fig4b", fig4b))
    assert "real minus Gaussian samples in accuracy, at |D_aux| = 10:" in caption
    assert "accuracy against gaussian 100:" in caption and "stop epoch against gaussian 100:" in caption
    fig8 = load_results("mnist1d-fig8", claims_build.results_dir)
    figure = plots.plot("mnist1d-fig8", fig8)
    assert "NeVe Adam minus NeVe SGD:" in _caption(figure) and "after the whole budget" in _caption(figure)
    velocity, accuracy = _axes(figure)
    assert _stop_markers(velocity) and _stop_markers(accuracy)  # NeVe SGD at seed 1 stops at epoch 1
    ablation = load_results("mnist1d-ablation-alpha-delta", claims_build.results_dir)
    claims = ablation.derived["claims"]
    claims.loc[(claims["cell"] == "alpha 0.5, delta 5") & (claims["quantity"] == "acc"), "welch_p"] = 0.01
    accuracy, epochs = _axes(plots.plot("mnist1d-ablation-alpha-delta", ablation))
    starred = [text.get_text() for text in accuracy.texts if text.get_text().endswith(" *")]
    assert len(starred) == 1  # the planted p < 0.05, in accuracy only
    assert not [text for text in epochs.texts if text.get_text().endswith(" *")]
    for ax in (accuracy, epochs):  # the paper's defaults (0.5, 10) boxed
        (box,) = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
        cells = ablation.cells
        row = sorted(cells["alpha"].unique()).index(0.5)
        column = sorted(cells["patience"].unique()).index(10)
        assert box.get_xy() == (column - 0.5, row - 0.5)
