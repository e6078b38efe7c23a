"""Figures and the results report, rendered from the CSVs the real pipeline wrote (tests/results_pipeline.py)."""

from __future__ import annotations

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

    fig4b, = axes("fig4b")
    assert fig4b.get_xscale() == "log" and "|D_aux|" in fig4b.get_xlabel()
    assert [ax.get_xscale() for ax in axes("fig6")] == ["log", "log"]
    velocity, losses = axes("fig7")
    assert velocity.get_yscale() == "log"
    assert {line.get_label() for line in losses.get_lines()} == {"train", "validation", "test"}
    fig5, = axes("fig5")
    assert {line.get_label() for line in fig5.get_lines()} >= {"NeVe", "Baseline"}
    assert fig5.get_xlabel() == "epoch" and "(%)" in fig5.get_ylabel()
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
            expected = mine[mine["method"] == line.get_label()].groupby("epoch")["test_acc"].mean()
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
            assert abs(dodge) <= PROFILE_DODGE * 4  # only the small offset that keeps lines apart
            expected = performance_profile(ratios, taus)[line.get_label()].to_numpy()
            assert drawn - dodge == pytest.approx(expected), line.get_label()
    assert "epochs to target" in panels[0].get_title() and "wall time" in panels[1].get_title()


def test_the_profiles_line_styles_come_from_the_methods_declarations(results_build: Build) -> None:
    from experiments.methods import METHODS
    from experiments.plots.panels import METHOD_COLORS
    from experiments.plots.profile import line_styles

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
        assert (styles[label][1] == "--") == declared.knows_horizon or styles[label][1] in (":", "-."), label
    assert len(set(styles.values())) == len(labels)  # no two lines alike


def test_fig7_draws_the_velocity_on_training_and_validation_images(results_build: Build, figures: dict) -> None:
    epochs = load_results("fig7", results_build.results_dir).need_epochs()
    velocity, _ = _axes(figures["fig7"])
    lines = {line.get_label(): line for line in velocity.get_lines()}
    for column, label in (("model_velocity", "aux (Gaussian noise)"), ("velocity_train", "training images"),
                          ("velocity_val", "validation images")):
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
