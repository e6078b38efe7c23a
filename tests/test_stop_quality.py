"""Stop quality: the oracle epoch, the regret and the epochs saved, per run from its records and per cell; and the
columns the real pipeline writes (tests/claims_pipeline.py), checked against the run folders."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from claims_pipeline import EPOCHS, ClaimsBuild

from experiments.aggregate import describe
from experiments.catalog import get_experiment
from experiments.results import STOP_QUALITY_CELL_COLUMNS, STOP_QUALITY_RUN_COLUMNS, load_results
from experiments.run_folder import RunFolder
from experiments.stop_quality import add_baseline_oracle, add_to_cells, add_to_runs, stop_quality


def records(accs: list[float], *, neve_from: int | None = None, stop_at: int | None = None) -> list[dict]:
    """Records of epochs 1..len(accs) (accuracies as fractions, as the trainer writes them)."""
    return [{"epoch": e, "test_acc": acc, "neve_stop": int(neve_from is not None and e >= neve_from),
             "method_stop": int(stop_at is not None and e >= stop_at)} for e, acc in enumerate(accs, start=1)]


def test_a_marked_stop_is_scored_against_the_best_epoch_of_the_whole_budget() -> None:
    # NeVe with --stop mark: V < epsilon from epoch 3 on, trained on to the budget; the best epoch comes later.
    run = records([0.5, 0.7, 0.8, 0.75, 0.9, 0.85], neve_from=3, stop_at=3)
    quality = stop_quality(run, budget=6, reported_epoch=3)
    assert quality == pytest.approx({"oracle_epoch": 5, "oracle_acc": 90.0, "oracle_whole_budget": 1, "regret": 10.0,
                                     "epochs_spent": 3, "epochs_saved": 3, "regret_at_neve_stop": 10.0,
                                     "epochs_saved_at_neve_stop": 3})


def test_a_halted_run_has_its_oracle_over_the_epochs_it_trained_and_pays_its_patience() -> None:
    # V.Loss with --stop halt: keeps epoch 2, stops at epoch 4 of a 10-epoch budget; its velocity never fell.
    run = records([0.6, 0.8, 0.7, 0.65], stop_at=4)
    quality = stop_quality(run, budget=10, reported_epoch=2)
    assert (quality["oracle_epoch"], quality["oracle_acc"], quality["oracle_whole_budget"]) == (2, 80.0, 0)
    assert quality["regret"] == 0.0
    assert (quality["epochs_spent"], quality["epochs_saved"]) == (4, 6)  # the patience past its kept model counts
    assert math.isnan(quality["regret_at_neve_stop"]) and math.isnan(quality["epochs_saved_at_neve_stop"])


def test_a_run_that_never_stops_spends_its_budget_and_ties_go_to_the_earliest_epoch() -> None:
    # The Baseline: final model reported, no stop of its own, its would-be NeVe stop at epoch 2.
    run = records([0.5, 0.9, 0.9, 0.8], neve_from=2)
    quality = stop_quality(run, budget=4, reported_epoch=4)
    assert (quality["oracle_epoch"], quality["regret"]) == (2, pytest.approx(10.0))
    assert (quality["epochs_spent"], quality["epochs_saved"]) == (4, 0)
    assert (quality["regret_at_neve_stop"], quality["epochs_saved_at_neve_stop"]) == (0.0, 2)


def test_records_that_cannot_be_scored_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="reports epoch 7"):
        stop_quality(records([0.5, 0.6]), budget=10, reported_epoch=7)
    with pytest.raises(ValueError, match="no epoch of the run recorded a test accuracy"):
        stop_quality([{"epoch": 1, "test_acc": None}], budget=10, reported_epoch=1)


def runs_frame(rows: list[tuple[str, str, int, str, float, int]]) -> pd.DataFrame:
    """A runs table: (block, cell, seed, state, acc %, metric_epoch) per run; budget 6."""
    return pd.DataFrame([{"block": b, "cell": c, "seed": s, "run": f"{b}-{c}-{s}", "state": st, "acc": acc,
                          "metric_epoch": epoch, "budget_epochs": 6} for b, c, s, st, acc, epoch in rows])


def test_every_run_is_scored_against_its_blocks_baseline_at_the_same_seed() -> None:
    runs = runs_frame([("A", "Baseline", 0, "finished", 80.0, 6), ("A", "Baseline", 1, "finished", 70.0, 6),
                       ("A", "NeVe", 0, "finished", 75.0, 3), ("A", "NeVe", 1, "failed", math.nan, 0),
                       ("B", "NeVe", 0, "finished", 60.0, 2)])
    run_records = [records([0.5, 0.7, 0.8, 0.9, 0.85, 0.8]), records([0.6, 0.65, 0.7, 0.7, 0.7, 0.7]),
                   records([0.5, 0.7, 0.75, 0.8, 0.8, 0.8], neve_from=3, stop_at=3), [],
                   records([0.5, 0.6, 0.7, 0.7, 0.7, 0.7], neve_from=2, stop_at=2)]
    scored = add_to_runs(runs, run_records)
    assert set(STOP_QUALITY_RUN_COLUMNS) <= set(scored.columns)
    by = scored.set_index("run")
    assert by.at["A-NeVe-0", "regret"] == pytest.approx(5.0)  # its own best, 80 at epoch 4
    assert by.at["A-NeVe-0", "baseline_oracle_acc"] == pytest.approx(90.0)  # Baseline seed 0's best, epoch 4
    assert by.at["A-NeVe-0", "baseline_regret"] == pytest.approx(15.0)
    assert by.at["A-Baseline-1", "baseline_regret"] == pytest.approx(0.0)  # 70 is its own best (epoch 3)
    assert by.at["A-Baseline-1", "baseline_oracle_epoch"] == 3
    assert by.loc["A-NeVe-1", list(STOP_QUALITY_RUN_COLUMNS)].isna().all()  # not finished: nothing
    assert math.isnan(by.at["B-NeVe-0", "baseline_regret"])  # block B has no Baseline
    # A Baseline that did not train its whole budget is no yardstick.
    halted = scored.assign(oracle_whole_budget=np.where(scored["cell"] == "Baseline", 0, 1))
    assert add_baseline_oracle(halted)["baseline_oracle_acc"].isna().all()


def test_cells_get_the_mean_and_95_percent_interval_over_their_finished_runs() -> None:
    runs = runs_frame([("A", "NeVe", s, "finished", acc, epoch) for s, (acc, epoch) in
                       enumerate([(75.0, 3), (70.0, 2), (80.0, 4)])] + [("A", "NeVe", 3, "failed", math.nan, 0)])
    run_records = [records([0.5, 0.7, 0.75, 0.8, 0.8, 0.8], neve_from=3, stop_at=3),
                   records([0.5, 0.7, 0.75, 0.9, 0.8, 0.8], neve_from=2, stop_at=2),
                   records([0.5, 0.7, 0.75, 0.8, 0.82, 0.8]), []]
    scored = add_to_runs(runs, run_records)
    cells = add_to_cells(pd.DataFrame({"block": ["A"], "cell": ["NeVe"]}), scored)
    assert set(STOP_QUALITY_CELL_COLUMNS) <= set(cells.columns)
    row = cells.iloc[0]
    expected = describe([5.0, 20.0, 2.0])
    assert (row["regret_mean"], row["regret_ci_low"], row["regret_ci_high"]) == pytest.approx(
        (expected["mean"], expected["ci_low"], expected["ci_high"]))
    assert row["epochs_saved_mean"] == pytest.approx(np.mean([3, 4, 0]))
    assert row["n_at_neve_stop"] == 2 and row["epochs_saved_at_neve_stop_mean"] == pytest.approx(3.5)
    assert row["n_oracle_whole_budget"] == 3


# ------------------------------------------------------------------------------------------ the real pipeline
def test_every_run_row_carries_its_stop_quality_as_its_run_folder_gives_it(claims_build: ClaimsBuild) -> None:
    results = load_results("mnist1d-stop-quality", claims_build.results_dir)
    finished = results.finished_runs
    assert len(finished) == len(results.runs) == 2 * len(get_experiment("mnist1d-stop-quality").cells)
    for _, row in finished.iterrows():
        folder = RunFolder(claims_build.runs_dir / row["run"])
        summary, run_records = folder.summary(), folder.records()
        best = max(r["test_acc"] for r in run_records)
        assert row["oracle_acc"] == pytest.approx(100 * best)
        assert run_records[int(row["oracle_epoch"]) - 1]["test_acc"] == best
        assert row["regret"] == pytest.approx(100 * best - row["acc"], abs=1e-5)
        assert row["epochs_spent"] == (summary["stop_epoch"] or summary["epochs_run"])
        assert row["epochs_saved"] == EPOCHS - row["epochs_spent"]
        if summary["neve_stop_epoch"] is None:
            assert math.isnan(row["regret_at_neve_stop"])
        else:
            assert row["regret_at_neve_stop"] == pytest.approx(100 * (best - summary["test_acc_at_neve_stop"]))
            assert row["epochs_saved_at_neve_stop"] == EPOCHS - summary["neve_stop_epoch"]
        baseline = finished[(finished["block"] == row["block"]) & (finished["cell"] == "Baseline")
                            & (finished["seed"] == row["seed"])].iloc[0]
        assert row["baseline_regret"] == pytest.approx(baseline["oracle_acc"] - row["acc"], abs=1e-5)
    # The NeVe run whose stop fires at epoch 1 (epsilon 10) saves all the rest of its budget.
    stopped = finished[finished["run"] == claims_build.stopped[0].name].iloc[0]
    assert (stopped["cell"], stopped["epochs_spent"], stopped["epochs_saved"]) == ("NeVe", 1, EPOCHS - 1)


def test_cells_summarise_their_runs_stop_quality(claims_build: ClaimsBuild) -> None:
    results = load_results("mnist1d-stop-quality", claims_build.results_dir)
    finished = results.finished_runs
    for _, cell in results.cells.iterrows():
        runs = finished[(finished["block"] == cell["block"]) & (finished["cell"] == cell["cell"])]
        for name in ("regret", "epochs_saved", "baseline_regret"):
            expected = describe(runs[name].tolist())
            assert cell[f"{name}_mean"] == pytest.approx(expected["mean"], abs=1e-5)
            if not math.isnan(expected["ci_low"]):
                assert (cell[f"{name}_ci_low"], cell[f"{name}_ci_high"]) == pytest.approx(
                    (expected["ci_low"], expected["ci_high"]), abs=1e-4)
        assert cell["n_at_neve_stop"] == runs["neve_stop_epoch"].notna().sum()


def test_every_aggregated_experiment_carries_the_stop_quality_columns(claims_build: ClaimsBuild) -> None:
    for name, (code, _, err) in claims_build.aggregated.items():
        assert code == 0, f"{name}: {err}"
        results = load_results(name, claims_build.results_dir)
        assert set(STOP_QUALITY_RUN_COLUMNS) <= set(results.runs.columns), name
        assert set(STOP_QUALITY_CELL_COLUMNS) <= set(results.cells.columns), name
        assert results.finished_runs["oracle_acc"].notna().all(), name
