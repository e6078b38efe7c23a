"""Aggregation on results the real pipeline made (tests/results_pipeline.py): what the CSVs hold, the statistics
recomputed here from the runs CSV, failed and unfinished runs, and the command line's errors."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from results_pipeline import Build, call
from scipy import stats

from experiments import aggregate
from experiments.catalog import get_experiment
from experiments.data import dataset
from experiments.methods import methods_of
from experiments.results import load_results, results_path
from experiments.run_folder import RunFolder


def test_every_experiment_is_aggregated_atomically(results_build: Build) -> None:
    for name, (code, out, err) in results_build.aggregated.items():
        assert code == 0, f"{name}: {err}"
        assert results_path(results_build.results_dir, name).is_file()
        assert results_path(results_build.results_dir, name, "runs").is_file()
        curves = get_experiment(name).curves
        assert results_path(results_build.results_dir, name, "epochs").is_file() == curves, name
        assert "wrote" in out
    assert results_path(results_build.results_dir, "fig6", "epsilon").is_file()
    leftovers = [p for p in results_build.results_dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_runs_csv_is_the_run_folders_summaries(results_build: Build) -> None:
    results = load_results("table2", results_build.results_dir)
    planned = results_build.planned["table2"]
    assert len(results.runs) == len(planned) == 16 * 2  # 4 blocks x 4 rows x 2 seeds (miniature: shared folders)
    assert {"config.method", "config.holdout", "config.stop"} <= set(results.runs.columns)
    assert "config.seed" not in results.runs.columns and "config.out" not in results.runs.columns
    for _, row in results.finished_runs.iterrows():
        folder = RunFolder(results_build.runs_dir / row["run"])
        summary, records = folder.summary(), folder.records()
        own = summary[row["metric"]]
        expected = summary["final_test_acc"] if own is None else own
        assert row["acc"] == pytest.approx(100 * expected)
        assert row["acc_fallback"] == int(own is None)
        assert row["final_test_acc"] == pytest.approx(100 * summary["final_test_acc"])
        assert row["epochs_run"] == len(records) == summary["epochs_run"]
        assert row["holdout_images"] == round(folder.config()["holdout"] * dataset("digits").train_size)
        decays = [r["epoch"] for r in records if r["lr_reduced"]]
        assert row["lr_decay_epochs"] == " ".join(map(str, decays))


def test_cell_statistics_match_a_recomputation_from_the_runs(results_build: Build) -> None:
    for name in ("table2", "table1", "fig4a", "demo"):
        results = load_results(name, results_build.results_dir)
        table = get_experiment(name).kind == "table"
        finished = results.finished_runs
        for _, cell in results.cells.iterrows():
            block = cell["block"]
            accs = finished[(finished["block"] == block) & (finished["cell"] == cell["cell"])]["acc"]
            accs = accs.to_numpy(float)
            assert cell["n"] == len(accs)
            assert cell["mean"] == pytest.approx(np.mean(accs))
            if len(accs) > 1:
                assert cell["std"] == pytest.approx(np.std(accs, ddof=1), rel=1e-5)  # accs rounded in the CSV
                low, high = stats.t.interval(0.95, len(accs) - 1, loc=np.mean(accs), scale=stats.sem(accs))
                if np.std(accs) > 0:  # abs: the CSV keeps 8 significant digits, a bound near 0 loses them
                    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((low, high), rel=1e-6, abs=1e-4)
            else:
                assert math.isnan(cell["std"]) and math.isnan(cell["ci_low"])
            if not table:
                assert pd.isna(cell["welch_ref"])
                continue
            rows = results.cells[results.cells["block"] == block]
            reference = "Baseline" if "Baseline" in rows["cell"].tolist() else rows["cell"].iloc[0]
            assert cell["welch_ref"] == reference
            ref = finished[(finished["block"] == block) & (finished["cell"] == reference)]["acc"]
            if cell["cell"] == reference or len(accs) < 2 or (np.std(accs) == 0 and np.std(ref) == 0):
                assert math.isnan(cell["welch_p"])
            else:
                t, p = stats.ttest_ind(accs, ref.to_numpy(float), equal_var=False)
                # The CSV keeps 8 significant digits of each accuracy; t amplifies that rounding by
                # mean / (difference of means), so the recomputation agrees to about 1e-5, not 1e-6.
                assert (cell["welch_t"], cell["welch_p"]) == pytest.approx((t, p), rel=1e-4, nan_ok=True)


def test_a_failed_run_is_listed_and_not_averaged(results_build: Build) -> None:
    broken = results_build.broken
    assert (broken.run_dir / "error.json").is_file()  # the job raised for real
    for name in ("table2", "fig4a"):
        results = load_results(name, results_build.results_dir)
        row = results.runs[results.runs["run"] == broken.name].iloc[0]
        assert row["state"] == "failed" and "checkpoint" in row["detail"]
        assert math.isnan(row["acc"])
        label = row["cell"]  # Table II calls it "V.Loss 30%", Fig. 4a "V.Loss 0.3"
        cell = results.cells[results.cells["cell"] == label].iloc[0]
        assert (cell["n"], cell["n_asked"]) == (1, 2)
        out = results_build.aggregated[name][1]
        assert "1 of 2" in out  # fewer seeds than asked
        assert f"`{broken.name}` failed" in out
    readme = (results_build.results_dir / "README.md").read_text()
    assert f"`{broken.name}` failed" in readme


def test_a_missing_own_number_falls_back_to_the_final_accuracy_and_says_so(results_build: Build) -> None:
    results = load_results("fig5", results_build.results_dir)
    neve = results.finished_runs[results.finished_runs["metric"] == "test_acc_at_neve_stop"]
    missing = neve["test_acc_at_neve_stop"].isna()
    assert missing.any()  # two digits epochs never bring V below 1e-3
    assert (neve["acc_fallback"] == missing.astype(int)).all()
    assert (neve[missing]["acc"] == neve[missing]["final_test_acc"]).all()
    assert (neve[missing]["metric_epoch"] == neve[missing]["epochs_run"]).all()
    cell = results.cells[results.cells["metric"] == "test_acc_at_neve_stop"].iloc[0]
    assert cell["n_fallback"] == missing.sum()
    assert "†" in results_build.aggregated["fig5"][1]


def test_neves_number_is_the_accuracy_at_the_first_epoch_below_epsilon(results_build: Build) -> None:
    folder = RunFolder(results_build.stopped.run_dir)
    records, epsilon = folder.records(), folder.config()["epsilon"]
    below = [r for r in records if r["model_velocity"] < epsilon]
    assert len(below) > 1 and below[0]["test_acc"] != below[-1]["test_acc"]  # reading the last one would show
    for name in ("table2", "fig5", "table1"):
        runs = load_results(name, results_build.results_dir).finished_runs
        rows = runs[runs["run"] == results_build.stopped.name]
        assert len(rows) and (rows["metric"] == "test_acc_at_neve_stop").all(), name
        assert (rows["acc_fallback"] == 0).all() and (rows["metric_epoch"] == below[0]["epoch"]).all(), name
        assert rows["acc"].tolist() == pytest.approx([100 * below[0]["test_acc"]] * len(rows)), name


def test_table1_reads_each_methods_own_number_and_tests_against_its_first_row(results_build: Build) -> None:
    results = load_results("table1", results_build.results_dir)
    # No Baseline in Table I: Welch's reference is each block's first row.
    assert set(results.cells["welch_ref"]) == {"Ultimate Optimizer"}
    assert dict(zip(results.cells["cell"], results.cells["metric"], strict=True)) == {
        "Ultimate Optimizer": "final_test_acc", "Label Wave (δ=5)": "test_acc_at_kept",
        "NeVe (δ=10)": "test_acc_at_neve_stop"}
    for _, row in results.finished_runs.iterrows():
        folder = RunFolder(results_build.runs_dir / row["run"])
        records, config = folder.records(), folder.config()
        if row["cell"] == "Ultimate Optimizer":
            at = records[-1]
            assert all(r["learned_lr"] is not None for r in records)
        elif row["cell"] == "Label Wave (δ=5)":
            assert config["label_noise"] == 0.4 and config["method"] == "labelwave"
            at = [r for r in records if r["kept_weights"]][-1]  # the model at the prediction-change minimum
        else:
            at = next((r for r in records if r["model_velocity"] < config["epsilon"]), records[-1])
        assert row["metric_epoch"] == at["epoch"] and row["acc"] == pytest.approx(100 * at["test_acc"]), row["run"]
    assert results.cells["welch_p"].notna().sum() >= 2  # both blocks' non-reference rows were tested


def test_epsilon_stops_are_recomputed_from_the_records(results_build: Build) -> None:
    results = load_results("fig6", results_build.results_dir)
    epochs, derived = results.need_epochs(), results.need_derived("epsilon")
    assert sorted(derived["epsilon"].unique()) == sorted(get_experiment("fig6").derived["epsilon"])
    for _, row in derived.iterrows():
        stops, accs = [], []
        for _, run in epochs[epochs["cell"] == row["cell"]].groupby("run"):
            below = run[run["model_velocity"] < row["epsilon"]]
            at = below.iloc[0] if len(below) else run.iloc[-1]
            stops.append(at["epoch"])
            accs.append(at["test_acc"])
        assert row["n"] == len(stops)
        assert row["n_no_stop"] == sum(not (run["model_velocity"] < row["epsilon"]).any()
                                       for _, run in epochs[epochs["cell"] == row["cell"]].groupby("run"))
        assert row["epochs_mean"] == pytest.approx(np.mean(stops))
        assert row["acc_mean"] == pytest.approx(np.mean(accs))
    assert derived["n_no_stop"].max() > 0  # the smallest epsilons are never reached in two epochs
    assert "| gaussian | 1e-05 |" in results_build.aggregated["fig6"][1]  # its table, printed


def test_time_to_target_is_recomputed_from_the_run_folders(results_build: Build) -> None:
    results = load_results("mnist1d-tuning-free", results_build.results_dir)
    runs, cells = results.finished_runs, results.cells
    per_block = 2 + len(methods_of("tuning-free"))  # Baseline, NeVe and each registered tuning-free method
    assert len(results.runs) == 2 * per_block * 2 and results.runs["state"].eq("finished").all()
    for block, rows in runs.groupby("block"):
        target = rows[rows["cell"] == "Baseline"]["final_test_acc"].mean() - 0.5
        assert rows["target"].tolist() == pytest.approx([target] * len(rows), rel=1e-6)
        for _, row in rows.iterrows():
            records = RunFolder(results_build.runs_dir / row["run"]).records()
            until = records[: int(row["metric_epoch"])]  # NeVe: up to its stop; the others: the whole budget
            reached = next((r for r in until if 100 * r["test_acc"] >= row["target"]), None)
            if reached is None:
                assert math.isnan(row["target_epoch"]) and math.isnan(row["target_seconds"]), row["run"]
            else:
                assert row["target_epoch"] == reached["epoch"], row["run"]
                seconds = sum(r["seconds"] for r in records if r["epoch"] <= reached["epoch"])
                assert row["target_seconds"] == pytest.approx(seconds, rel=1e-6), row["run"]
        for _, cell in cells[cells["block"] == block].iterrows():
            mine = rows[rows["cell"] == cell["cell"]]
            assert cell["n_target"] == mine["target_epoch"].notna().sum()
            assert cell["test_acc_at_neve_stop_n"] == mine["test_acc_at_neve_stop"].notna().sum()
            neve = rows[rows["cell"] == "NeVe"]["acc"].to_numpy(float)
            if cell["cell"] == "NeVe" or np.std(neve) == 0 and np.std(mine["acc"]) == 0:
                assert math.isnan(cell["welch2_p"])
            else:
                p = stats.ttest_ind(mine["acc"].to_numpy(float), neve, equal_var=False).pvalue
                assert cell["welch2_ref"] == "NeVe" and cell["welch2_p"] == pytest.approx(p, rel=1e-4)
    out = results_build.aggregated["mnist1d-tuning-free"][1]
    assert "epochs to target" in out and "p (Welch) vs NeVe" in out and "at NeVe's stop (epoch)" in out


def test_unreadable_records_are_listed_not_averaged(results_build: Build, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    planned = results_build.planned["fig5"]
    for run in planned:
        shutil.copytree(run.run_dir, runs_dir / run.name)
    corrupt = planned[0].name
    (runs_dir / corrupt / "records.csv").write_bytes(b"\xff\xfe\x00 not utf-8")
    options = [o if o != str(results_build.runs_dir) else str(runs_dir) for o in results_build.options("fig5")]
    code, out, _ = call(aggregate.main, [*options, "--results-dir", str(tmp_path / "results")])
    assert code == 0
    results = load_results("fig5", tmp_path / "results")
    row = results.runs[results.runs["run"] == corrupt].iloc[0]
    assert row["state"] == "failed" and "records.csv" in row["detail"]
    assert results.cells["n"].sum() == len(planned) - 1
    assert f"`{corrupt}` failed" in out


def test_nothing_finished_exits_nonzero_and_writes_nothing(tmp_path: Path) -> None:
    code, _, err = call(aggregate.main, ["fig5", "--miniature", "--seeds", "2", "--runs-dir", str(tmp_path / "runs"),
                                         "--results-dir", str(tmp_path / "results")])
    assert code == 1
    assert "none of its 4 runs" in err and "4 missing" in err and "experiments.sweep fig5" in err
    assert not (tmp_path / "results").exists()


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    code, _, err = call(aggregate.main, ["fig5", "--only", "colour=red", "--runs-dir", str(tmp_path)])
    assert code == 2 and "unknown key(s) colour" in err
    code, _, err = call(aggregate.main, ["fig99", "--runs-dir", str(tmp_path)])
    assert code == 2 and "unknown experiment 'fig99'" in err
