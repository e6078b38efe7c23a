"""Time to target and AlgoPerf's performance profiles on scripted numbers, and the tuning-free reporting columns
(time to target, Welch against a second reference, a field reported beside the cell's own number) on scripted
runs, where every expected value is worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.aggregate import RunData, add_time_to_target, cells_table, method_seconds
from experiments.catalog import Cell, get_experiment
from experiments.results import FINISHED, Results, markdown
from experiments.time_to_target import (
    first_reaching,
    performance_profile,
    performance_ratios,
    profile_score,
    workload_times,
)

INF = math.inf


def records(accs: list[float], seconds: float = 2.0) -> list[dict]:
    """Per-epoch records as the trainer writes them: accuracies as fractions, each epoch ``seconds`` long."""
    return [{"epoch": e, "test_acc": a, "seconds": seconds} for e, a in enumerate(accs, start=1)]


# ------------------------------------------------------------------------------------------ one run
def test_the_wall_time_a_method_spends_stops_at_a_marked_stop_only() -> None:
    curve = [{**r, "seconds": s} for r, s in zip(records([0.5] * 5), (1.0, 2.0, 4.0, 8.0, 16.0), strict=True)]
    assert method_seconds(curve, "mark", 3) == 7.0  # NeVe marked at epoch 3: a stopping run would end there
    assert method_seconds(curve, "mark", 5) == 31.0  # the Baseline reports its last epoch
    assert method_seconds(curve, "halt", 2) == 31.0  # V.Loss kept epoch 2 but trained its patience past it
    assert method_seconds(curve, "none", None) == 31.0


def test_the_first_epoch_at_or_above_the_target_and_the_seconds_up_to_it() -> None:
    curve = records([0.50, 0.80, 0.9049, 0.905, 0.96, 0.91])
    assert first_reaching(curve, 90.5) == (4, 8.0)  # 0.905 is exactly 90.5%: reached; 0.9049 is not
    assert first_reaching(curve, 95.0) == (5, 10.0)  # the first one, not the best or the last
    assert first_reaching(curve, 50.0) == (1, 2.0)
    uneven = [{**r, "seconds": s} for r, s in zip(curve, (1.0, 2.5, 3.0, 4.0, 5.0, 6.0), strict=True)]
    assert first_reaching(uneven, 90.5) == (4, 10.5)  # the records' own seconds, summed through that epoch


def test_never_and_epochs_after_the_reported_one_do_not_count() -> None:
    curve = records([0.50, 0.80, 0.90, 0.96])
    assert first_reaching(curve, 97.0) is None
    assert first_reaching(curve, 95.0, until=3) is None  # NeVe stopped at epoch 3: epoch 4 is after its stop
    assert first_reaching(curve, 95.0, until=4) == (4, 8.0)
    assert first_reaching(curve, math.nan) is None  # no Baseline finished: no target
    assert first_reaching([], 10.0) is None


# ------------------------------------------------------------------------------------------ profiles
def scripted_runs() -> pd.DataFrame:
    """Two workloads x three methods x three seeds of epochs to target (NaN: never)."""
    rows = {("W1", "A"): [10, 12, 14], ("W1", "B"): [20, 20, math.nan], ("W1", "C"): [math.nan, math.nan, 5],
            ("W2", "A"): [30, 30, 30], ("W2", "B"): [10, 15, 20], ("W2", "C"): [60, 40, math.nan]}
    return pd.DataFrame([{"block": w, "cell": m, "seed": s, "target_epoch": t}
                         for (w, m), times in rows.items() for s, t in enumerate(times)])


def test_a_workloads_time_is_the_median_over_seeds_with_never_as_infinite() -> None:
    times = workload_times(scripted_runs(), "target_epoch")
    assert list(times.index) == ["W1", "W2"] and list(times.columns) == ["A", "B", "C"]
    # W1: A median 12; B (20, 20, inf) -> 20; C (inf, inf, 5) -> inf: one seed of three is not "reached".
    # W2: A 30; B 15; C (60, 40, inf) -> 60.
    assert times.to_numpy().tolist() == [[12, 20, INF], [30, 15, 60]]


def test_ratios_profile_and_score_on_a_scripted_table() -> None:
    ratios = performance_ratios(workload_times(scripted_runs(), "target_epoch"))
    assert ratios.to_numpy().tolist() == [[1.0, 20 / 12, INF], [2.0, 1.0, 4.0]]
    rho = performance_profile(ratios, [1.0, 1.5, 20 / 12, 2.0, 3.999, 4.0, 100.0])
    assert rho["A"].tolist() == [0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]  # r <= tau, ties included
    assert rho["B"].tolist() == [0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert rho["C"].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]  # never on W1, at any tau
    # Area under rho from 1 to 4, over 3: A = (0.5 * 1 + 1 * 2) / 3; B = (0.5 * 2/3 + 1 * (4 - 5/3)) / 3; C: 0.
    assert profile_score(ratios).tolist() == pytest.approx([2.5 / 3, (1 / 3 + 7 / 3) / 3, 0.0])


def test_a_workload_no_method_reached_counts_against_every_method() -> None:
    times = pd.DataFrame([[INF, INF], [4.0, 8.0]], index=["W1", "W2"], columns=["A", "B"])
    ratios = performance_ratios(times)
    assert ratios.to_numpy().tolist() == [[INF, INF], [1.0, 2.0]]
    assert performance_profile(ratios, [4.0]).iloc[0].tolist() == [0.5, 0.5]


# ------------------------------------------------------------------------------------------ aggregation
def tiny_runs() -> list:
    """Real planned runs (the ``tiny`` experiment's Baseline and NeVe at 3 seeds) to hang scripted records on."""
    return get_experiment("tiny").runs(3)


def scripted_table(curves: dict[tuple[str, int], list[float]], stops: dict[tuple[str, int], int]) -> tuple:
    """``NAME_runs.csv`` rows as ``runs_table`` writes them, for scripted records; and the RunData behind them."""
    data, rows = [], []
    for run in tiny_runs():
        key = (run.cell.label, run.seed)
        curve = records(curves[key])
        data.append(RunData(run, FINISHED, records=curve))
        stop = stops.get(key)
        final = 100 * curve[-1]["test_acc"]
        at_stop = 100 * curve[stop - 1]["test_acc"] if stop else math.nan
        own = at_stop if run.cell.metric == "test_acc_at_neve_stop" and stop else final
        rows.append({"block": run.cell.block, "cell": run.cell.label, "method": run.cell.label, "seed": run.seed,
                     "state": FINISHED, "dataset": "digits", "model": "resnet8", "holdout_images": 0,
                     "budget_epochs": len(curve), "epsilon": 1e-3, "metric": run.cell.metric, "acc": own,
                     "acc_fallback": 0, "metric_epoch": stop if run.cell.metric == "test_acc_at_neve_stop" and stop
                     else len(curve), "final_test_acc": final, "test_acc_at_neve_stop": at_stop,
                     "epochs_run": len(curve), "neve_stop_epoch": stop if stop else math.nan,
                     "wall_seconds": 2.0 * len(curve)})
    return pd.DataFrame(rows), data


CURVES = {("Baseline", 0): [0.5, 0.8, 0.9], ("Baseline", 1): [0.5, 0.7, 0.8], ("Baseline", 2): [0.6, 0.9, 0.85],
          ("NeVe", 0): [0.5, 0.9, 0.95], ("NeVe", 1): [0.7, 0.8, 0.99], ("NeVe", 2): [0.5, 0.6, 0.7]}
STOPS = {("NeVe", 0): 2, ("NeVe", 1): 2, ("Baseline", 2): 2}  # where V < epsilon (Baseline's is a marker only)


def test_time_to_target_per_run_from_the_blocks_baseline() -> None:
    runs, data = scripted_table(CURVES, STOPS)
    timed = add_time_to_target(runs, data, margin=0.5)
    target = np.mean([90.0, 80.0, 85.0]) - 0.5  # the Baseline's mean final accuracy - 0.5 = 84.5
    assert timed["target"].tolist() == pytest.approx([target] * 6)
    by_run = {(row.cell, row.seed): (row.target_epoch, row.target_seconds) for row in timed.itertuples()}
    assert by_run[("Baseline", 0)] == (3, 6.0)  # 90 >= 84.5 first at epoch 3
    assert by_run[("Baseline", 2)] == (2, 4.0)  # its V < epsilon marker does not cut a Baseline short
    assert all(math.isnan(v) for v in by_run[("Baseline", 1)])  # 80 at most: never
    assert by_run[("NeVe", 0)] == (2, 4.0)
    assert all(math.isnan(v) for v in by_run[("NeVe", 1)])  # 99% at epoch 3, but NeVe stopped at epoch 2
    assert all(math.isnan(v) for v in by_run[("NeVe", 2)])  # no stop: the whole budget counts, and never


def test_cells_report_time_to_target_welch_against_both_references_and_accuracy_at_neves_stop() -> None:
    runs, data = scripted_table(CURVES, STOPS)
    runs = add_time_to_target(runs, data, margin=0.5)
    cells = list({(r.cell.block, r.cell.label): r.cell for r in tiny_runs()}.values())
    frame = cells_table(runs, cells, ["method"], [], "table", second_reference="NeVe",
                        also_report=("test_acc_at_neve_stop",))
    table = frame.set_index("cell")
    assert table.loc["Baseline", "n_target"] == 2 and table.loc["NeVe", "n_target"] == 1
    assert table.loc["Baseline", "target_epoch_mean"] == 2.5 and table.loc["Baseline", "target_seconds_mean"] == 5.0
    assert table.loc["NeVe", "target_epoch_mean"] == 2.0 and math.isnan(table.loc["NeVe", "target_epoch_std"])
    # Every method's accuracy where V < epsilon, over the runs that got there: Baseline seed 2 only.
    assert table.loc["Baseline", "test_acc_at_neve_stop_n"] == 1
    assert table.loc["Baseline", "test_acc_at_neve_stop_mean"] == pytest.approx(90.0)
    assert table.loc["NeVe", "test_acc_at_neve_stop_mean"] == pytest.approx(85.0)  # (90 + 80) / 2
    assert table.loc["NeVe", "test_acc_at_neve_stop_epoch_mean"] == 2.0
    baseline = runs[runs["cell"] == "Baseline"]["acc"].to_numpy(float)
    neve = runs[runs["cell"] == "NeVe"]["acc"].to_numpy(float)  # 90, 80 at the stop; 70 final (no stop)
    assert neve.tolist() == pytest.approx([90.0, 80.0, 70.0])
    p_vs_baseline = stats.ttest_ind(neve, baseline, equal_var=False).pvalue
    assert table.loc["NeVe", "welch_ref"] == "Baseline" and table.loc["NeVe", "welch_p"] == pytest.approx(p_vs_baseline)
    assert table.loc["Baseline", "welch2_ref"] == "NeVe"
    assert table.loc["Baseline", "welch2_p"] == pytest.approx(stats.ttest_ind(baseline, neve, equal_var=False).pvalue)
    assert math.isnan(table.loc["NeVe", "welch2_p"])  # the reference itself

    text = markdown(Results("scripted", frame, runs), "table")
    assert "**digits** (target 84.50%)" in text
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    # Epochs to target: mean ± std over the runs that reached it, and how many of how many when not all.
    assert "| 85.00 ± 7.07 (2), 2 of 3 | 88.00 ± 15.72 | 2, 1 of 3 | 4.0 s |" in lines["| NeVe"]
    assert "| 2 ± 1, 2 of 3 | 5.0 s |" in lines["| Baseline"]  # epochs 3 and 2
    assert lines["| NeVe"].endswith("| (reference) |") and lines["| Baseline"].startswith("| Baseline |")
    assert "p (Welch) vs NeVe" in text


def test_a_cell_whose_runs_never_reach_the_target_says_never() -> None:
    low = {key: [0.1, 0.2, 0.3] if key[0] == "NeVe" else curve for key, curve in CURVES.items()}
    runs, data = scripted_table(low, {})
    runs = add_time_to_target(runs, data, margin=0.5)
    cells = list({(r.cell.block, r.cell.label): r.cell for r in tiny_runs()}.values())
    table = cells_table(runs, cells, ["method"], [], "table", second_reference="NeVe")
    neve = table.set_index("cell").loc["NeVe"]
    assert neve["n_target"] == 0 and math.isnan(neve["target_epoch_mean"])
    text = markdown(Results("scripted", table, runs), "table")
    assert "| never (0 of 3) | never |" in next(line for line in text.splitlines() if line.startswith("| NeVe |"))


def test_experiments_without_the_reporting_keep_their_columns() -> None:
    runs, _ = scripted_table(CURVES, STOPS)
    cells = [Cell("Baseline", {}, {"method": "Baseline"}, block="digits"),
             Cell("NeVe", {}, {"method": "NeVe"}, block="digits", metric="test_acc_at_neve_stop")]
    table = cells_table(runs, cells, ["method"], [], "table")
    assert not [c for c in table.columns if c.startswith(("target", "welch2", "test_acc_at_neve_stop"))]
