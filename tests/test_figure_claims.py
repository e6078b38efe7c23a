"""The numbers behind the figures' claims: Fig. 5's stop against overfitting, Fig. 7's velocity sets, the
comparisons of Fig. 4b, Fig. 8 and the alpha/delta ablation; and the claims CSVs the real pipeline writes
(tests/claims_pipeline.py), checked against the run folders."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from claims_pipeline import ClaimsBuild
from scipy import stats

from experiments.catalog import get_experiment
from experiments.figure_claims import (
    CLAIMS,
    against_reference,
    claim_tables,
    paired,
    stop_vs_overfitting,
    velocity_sets,
)
from experiments.results import CLAIM_COLUMNS, load_results, results_path
from experiments.run_folder import RunFolder


def test_fig5_places_the_stop_against_the_test_losss_minimum_and_the_best_accuracy() -> None:
    # Test loss falls to its minimum at epoch 4 then rises (overfitting); accuracy is best at 5; V < eps from 3.
    losses, accs = [1.0, 0.6, 0.45, 0.4, 0.42, 0.5], [0.5, 0.7, 0.78, 0.8, 0.82, 0.79]
    run = [{"epoch": e, "test_loss": loss, "test_acc": acc, "neve_stop": int(e >= 3)}
           for e, (loss, acc) in enumerate(zip(losses, accs, strict=True), start=1)]
    claim = stop_vs_overfitting(run)
    assert (claim["neve_stop_epoch"], claim["min_test_loss_epoch"], claim["best_test_acc_epoch"]) == (3, 4, 5)
    assert (claim["stop_minus_min_test_loss_epoch"], claim["stop_minus_best_test_acc_epoch"]) == (-1, -2)
    assert claim["test_acc_at_neve_stop"] == pytest.approx(78.0) and claim["best_test_acc"] == pytest.approx(82.0)
    assert (claim["test_loss_at_neve_stop"], claim["min_test_loss"]) == (0.45, 0.4)
    never = stop_vs_overfitting([{**r, "neve_stop": 0} for r in run])
    assert math.isnan(never["neve_stop_epoch"]) and math.isnan(never["stop_minus_min_test_loss_epoch"])
    assert never["min_test_loss_epoch"] == 4
    diverged = stop_vs_overfitting([{**r, "test_loss": math.nan} for r in run])  # described, not a crash
    assert math.isnan(diverged["min_test_loss_epoch"]) and diverged["best_test_acc_epoch"] == 5


def fig7_records(aux: list[float], val: list[float], train: list[float], epsilon: float = 0.1) -> list[dict]:
    val_loss = [1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.7]
    return [{"epoch": e, "model_velocity": a, "velocity_val": v, "velocity_train": t, "val_loss": val_loss[e - 1],
             "test_loss": val_loss[e - 1] + 0.1, "neve_stop": int(a < epsilon)}
            for e, (a, v, t) in enumerate(zip(aux, val, train, strict=True), start=1)]


def test_fig7_correlates_the_velocities_in_rank_and_in_their_changes_and_times_the_plateau() -> None:
    aux = [0.5, 0.3, 0.2, 0.08, 0.05, 0.06, 0.04]
    val = [2 * a for a in aux]                          # tracks the aux velocity step by step
    train = [1.0, 0.6, 0.45, 0.2, 0.15, 0.1, 0.09]      # decays too, but not with the aux set's ups and downs
    claim = velocity_sets(fig7_records(aux, val, train))
    assert claim["spearman_aux_val"] == pytest.approx(1.0) and claim["spearman_aux_val_changes"] == pytest.approx(1.0)
    assert claim["spearman_aux_train"] == pytest.approx(stats.spearmanr(aux, train).statistic)
    assert claim["spearman_aux_train"] > 0.9  # two decaying series agree in rank...
    assert claim["spearman_aux_train_changes"] == pytest.approx(stats.spearmanr(np.diff(aux), np.diff(train)).statistic)
    assert claim["spearman_aux_train_changes"] < claim["spearman_aux_val_changes"]  # ...not in their steps
    # The plateau is the first epoch with V < epsilon (epoch 4), where the validation and test losses are lowest.
    assert (claim["plateau_epoch"], claim["min_val_loss_epoch"], claim["min_test_loss_epoch"]) == (4, 4, 4)
    assert claim["plateau_minus_min_val_loss_epoch"] == 0
    late = velocity_sets(fig7_records(aux, val, train, epsilon=0.045))
    assert late["plateau_epoch"] == 7 and late["plateau_minus_min_val_loss_epoch"] == 3
    never = velocity_sets(fig7_records(aux, val, train, epsilon=1e-3))
    assert math.isnan(never["plateau_epoch"]) and math.isnan(never["plateau_minus_min_test_loss_epoch"])
    flat = velocity_sets(fig7_records(aux, [0.1] * 7, train))
    assert math.isnan(flat["spearman_aux_val"])  # a constant series has no rank order


def test_fig7_needs_the_velocity_sets_and_says_how_to_record_them() -> None:
    run = [{"epoch": e, "model_velocity": 0.1, "val_loss": None, "test_loss": 1.0, "neve_stop": 0} for e in (1, 2)]
    with pytest.raises(ValueError, match="--velocity-sets train,val"):
        velocity_sets(run)


def comparison_runs() -> pd.DataFrame:
    """Two blocks, cells at three seeds: block A has the reference "gaussian 100"; block B does not."""
    accs = {("A", "gaussian 100", "gaussian", 100): [90.0, 91.0, 92.0],
            ("A", "val 100", "val", 100): [88.0, 89.5, 89.0],
            ("A", "gaussian 10", "gaussian", 10): [91.0, 93.0, 92.5],
            ("A", "val 10", "val", 10): [85.0, 86.0, 88.0],
            ("B", "gaussian 10", "gaussian", 10): [70.0, 71.0, 72.0]}
    rows = [{"block": block, "cell": cell, "aux": aux, "aux_size": size, "seed": seed, "run": f"{block}{cell}{seed}",
             "state": "finished", "acc": acc, "metric_epoch": 40 + seed + size // 10}
            for (block, cell, aux, size), values in accs.items() for seed, acc in enumerate(values)]
    rows.append({**rows[0], "seed": 3, "run": "unfinished", "state": "failed", "acc": math.nan})
    return pd.DataFrame(rows)


def test_each_cell_is_tested_against_its_blocks_reference() -> None:
    runs = comparison_runs()
    rows = pd.DataFrame(against_reference(runs, "gaussian 100"))
    acc = rows[rows["quantity"] == "acc"].set_index(["block", "cell"])
    val = acc.loc[("A", "val 100")]
    expected = stats.ttest_ind([88.0, 89.5, 89.0], [90.0, 91.0, 92.0], equal_var=False)
    assert (val["versus"], val["n"], val["versus_n"]) == ("gaussian 100", 3, 3)  # the failed run is not counted
    assert (val["welch_t"], val["welch_p"]) == pytest.approx((expected.statistic, expected.pvalue))
    assert val["diff"] == pytest.approx(np.mean([88.0, 89.5, 89.0]) - 91.0)
    assert acc.loc[("A", "gaussian 100"), "versus"] == ""  # the reference itself
    assert acc.loc[("B", "gaussian 10"), "versus"] == "" and math.isnan(acc.loc[("B", "gaussian 10"), "welch_p"])
    epochs = rows[rows["quantity"] == "metric_epoch"].set_index(["block", "cell"])
    assert epochs.loc[("A", "val 10"), "mean"] == pytest.approx(42.0)


def test_cells_that_differ_in_one_value_are_paired_at_each_value_of_another() -> None:
    rows = pd.DataFrame(paired(comparison_runs(), by="aux_size", across="aux"))
    acc = rows[(rows["quantity"] == "acc") & (rows["versus"] != "")].set_index("cell")
    assert set(acc.index) == {"val 100", "val 10"}  # block B has one aux type only: nothing to pair
    assert acc.loc["val 10", "versus"] == "gaussian 10"
    expected = stats.ttest_ind([85.0, 86.0, 88.0], [91.0, 93.0, 92.5], equal_var=False)
    assert acc.loc["val 10", "welch_p"] == pytest.approx(expected.pvalue)
    with pytest.raises(ValueError, match="no value 'network'"):
        paired(comparison_runs(), by="network", across="aux")


def test_claim_tables_write_every_declared_claim_and_refuse_unknown_ones() -> None:
    runs = comparison_runs()
    tables = claim_tables({"against_reference": {"reference": "gaussian 100"},
                           "paired": {"by": "aux_size", "across": "aux"}}, runs, {})
    assert list(tables) == ["claims"] and list(tables["claims"].columns) == list(CLAIM_COLUMNS)
    assert set(tables["claims"]["claim"]) == {"against_reference", "paired"}
    assert claim_tables({}, runs, {}) == {}
    with pytest.raises(ValueError, match="unknown claim"):
        claim_tables({"fig9": {}}, runs, {})


def test_a_claim_compared_with_a_cell_the_experiment_lacks_is_refused() -> None:
    experiment = get_experiment("mnist1d-ablation-alpha-delta")
    with pytest.raises(ValueError, match="'alpha 0.5, delta 11'.*not one of its cells"):
        dataclasses.replace(experiment, claims={"against_reference": {"reference": "alpha 0.5, delta 11"}})


def test_every_declared_claim_exists() -> None:
    from experiments import catalog

    declared = {claim for name in catalog.experiment_names() for claim in get_experiment(name).claims}
    assert declared == set(CLAIMS)  # each claim is used, and none is declared that the aggregation lacks


# ------------------------------------------------------------------------------------------ the real pipeline
def test_fig5_claims_are_the_run_folders_curves(claims_build: ClaimsBuild) -> None:
    results = load_results("mnist1d-fig5", claims_build.results_dir)
    per_run = results.derived["claims_runs"]
    assert len(per_run) == len(results.finished_runs) == 4
    for _, row in per_run.iterrows():
        run = RunFolder(claims_build.runs_dir / row["run"]).records()
        losses = [r["test_loss"] for r in run]
        assert row["min_test_loss_epoch"] == run[int(np.argmin(losses))]["epoch"]
        assert row["best_test_acc_epoch"] == run[int(np.argmax([r["test_acc"] for r in run]))]["epoch"]
        stop = next((r["epoch"] for r in run if r["neve_stop"]), None)
        assert (math.isnan(row["neve_stop_epoch"]) if stop is None else row["neve_stop_epoch"] == stop)
    stopped = per_run.set_index("run").loc[claims_build.stopped[0].name]
    assert stopped["neve_stop_epoch"] == 1
    assert stopped["stop_minus_min_test_loss_epoch"] == 1 - stopped["min_test_loss_epoch"]
    summary = results.derived["claims"]
    lag = summary[(summary["cell"] == "NeVe") & (summary["quantity"] == "stop_minus_min_test_loss_epoch")].iloc[0]
    assert (lag["n"], lag["n_runs"]) == (1, 2)  # seed 0 never reached V < epsilon in a few digits epochs


def test_fig7_claims_are_the_run_folders_velocities(claims_build: ClaimsBuild) -> None:
    results = load_results("mnist1d-fig7", claims_build.results_dir)
    per_run = results.derived["claims_runs"].set_index("run")
    for name in per_run.index:
        run = RunFolder(claims_build.runs_dir / name).records()
        aux, val = [r["model_velocity"] for r in run], [r["velocity_val"] for r in run]
        assert per_run.at[name, "spearman_aux_val"] == pytest.approx(stats.spearmanr(aux, val).statistic)
        assert per_run.at[name, "min_val_loss_epoch"] == run[int(np.argmin([r["val_loss"] for r in run]))]["epoch"]
    stopped = per_run.loc[claims_build.stopped[1].name]
    assert stopped["plateau_epoch"] == 1
    assert stopped["plateau_minus_min_val_loss_epoch"] == 1 - stopped["min_val_loss_epoch"]


def test_fig4b_and_the_ablation_are_tested_against_their_references(claims_build: ClaimsBuild) -> None:
    for name, reference in (("mnist1d-fig4b", "gaussian 100"), ("mnist1d-ablation-alpha-delta", "alpha 0.5, delta 10")):
        results = load_results(name, claims_build.results_dir)
        claims, finished = results.derived["claims"], results.finished_runs
        against = claims[(claims["claim"] == "against_reference") & (claims["quantity"] == "acc")]
        assert set(against["cell"]) == set(results.cells["cell"])
        for _, row in against[against["cell"] != reference].iterrows():
            assert row["versus"] == reference
            ours = finished[finished["cell"] == row["cell"]]["acc"]
            ref = finished[finished["cell"] == reference]["acc"]
            assert row["mean"] == pytest.approx(ours.mean()) and row["versus_mean"] == pytest.approx(ref.mean())
            if np.std(ours) or np.std(ref):
                assert row["welch_p"] == pytest.approx(stats.ttest_ind(ours, ref, equal_var=False).pvalue)
    claims = load_results("mnist1d-fig4b", claims_build.results_dir).derived["claims"]
    pairs = claims[(claims["claim"] == "paired") & claims["versus"].notna() & (claims["versus"] != "")]
    assert set(zip(pairs["cell"], pairs["versus"], strict=True)) == {("val 10", "gaussian 10"),
                                                                    ("val 100", "gaussian 100")}


def test_fig8_tests_adam_against_sgd_for_each_method(claims_build: ClaimsBuild) -> None:
    results = load_results("mnist1d-fig8", claims_build.results_dir)
    claims, finished = results.derived["claims"], results.finished_runs
    pairs = claims[(claims["claim"] == "paired") & claims["versus"].notna() & (claims["quantity"] == "acc")]
    assert set(zip(pairs["cell"], pairs["versus"], strict=True)) == {("NeVe Adam", "NeVe SGD")}  # --only=NeVe
    (_, row), = pairs.iterrows()
    assert row["versus_mean"] == pytest.approx(finished[finished["cell"] == "NeVe SGD"]["acc"].mean())
    assert row["diff"] == pytest.approx(row["mean"] - row["versus_mean"])


def test_claims_files_are_written_for_the_experiments_that_declare_claims_only(claims_build: ClaimsBuild) -> None:
    for name in claims_build.aggregated:
        declared = get_experiment(name).claims
        assert results_path(claims_build.results_dir, name, "claims").is_file() == bool(declared), name
        per_run = any(claim in ("stop_vs_overfitting", "velocity_sets") for claim in declared)
        assert results_path(claims_build.results_dir, name, "claims_runs").is_file() == per_run, name
