"""experiments.compare_machines: per-cell agreement of two machines' runs, and both pooled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.compare_machines import compare, finished_runs, main
from experiments.results import ResultsError

RESULTS = Path(__file__).resolve().parent.parent / "results"


def runs_csv(path: Path, rows: list[tuple[str, str, int, str, float]]) -> Path:
    pd.DataFrame(rows, columns=["block", "cell", "seed", "state", "acc"]).to_csv(path, index=False)
    return path


def welch_p(a: list[float], b: list[float]) -> float:
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_cells_per_machine_and_pooled_against_the_pooled_reference(tmp_path: Path) -> None:
    first = runs_csv(tmp_path / "a_runs.csv", [
        ("CNN", "Baseline", 0, "finished", 95.0), ("CNN", "Baseline", 1, "finished", 96.0),
        ("CNN", "Baseline", 2, "finished", 95.5),
        ("CNN", "NeVe", 0, "finished", 94.0), ("CNN", "NeVe", 1, "finished", 95.0),
        ("CNN", "NeVe", 2, "failed", 10.0),  # not finished: never counted
        ("ResNet", "Baseline", 0, "finished", 99.0)])  # a block the second machine did not train: left out
    second = runs_csv(tmp_path / "b_runs.csv", [
        ("CNN", "Baseline", 0, "finished", 95.2), ("CNN", "Baseline", 1, "finished", 95.9),
        ("CNN", "NeVe", 0, "finished", 94.5), ("CNN", "NeVe", 1, "finished", 94.1),
        ("CNN", "NeVe", 2, "finished", 95.3)])
    table = compare(finished_runs(first), finished_runs(second))
    assert set(table["block"]) == {"CNN"}
    table = table.set_index("cell")

    neve = table.loc["NeVe"]
    assert (neve.first_n, neve.second_n, neve.pooled_n) == (2, 3, 5)
    assert neve.first_mean == pytest.approx(94.5)
    assert neve.second_std == pytest.approx(np.std([94.5, 94.1, 95.3], ddof=1))
    assert neve.welch_machines_p == pytest.approx(welch_p([94.0, 95.0], [94.5, 94.1, 95.3]))
    # pooled is the runs together (unequal n: not the mean of the two means)
    assert neve.pooled_mean == pytest.approx(np.mean([94.0, 95.0, 94.5, 94.1, 95.3]))
    assert neve.welch_pooled_p == pytest.approx(
        welch_p([94.0, 95.0, 94.5, 94.1, 95.3], [95.0, 96.0, 95.5, 95.2, 95.9]))
    assert np.isnan(table.loc["Baseline"].welch_pooled_p)
    assert set(table["reference"]) == {"Baseline"}


def test_a_block_without_a_baseline_is_tested_against_its_first_cell(tmp_path: Path) -> None:
    rows = [("T1", "Ultimate", s, "finished", 93.0 + s) for s in range(3)]
    rows += [("T1", "NeVe", s, "finished", 95.0 + s / 2) for s in range(3)]
    path = runs_csv(tmp_path / "t_runs.csv", rows)
    table = compare(finished_runs(path), finished_runs(path)).set_index("cell")
    assert table.loc["NeVe", "reference"] == "Ultimate"
    assert table.loc["NeVe", "welch_pooled_p"] == pytest.approx(
        welch_p([95.0, 95.5, 96.0] * 2, [93.0, 94.0, 95.0] * 2))


def test_a_malformed_runs_csv_is_a_clear_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    good = runs_csv(tmp_path / "a_runs.csv", [("CNN", "Baseline", 0, "finished", 95.0)])
    bad = tmp_path / "b_runs.csv"
    bad.write_text("block,cell,seed\nCNN,Baseline,0\n")
    with pytest.raises(ResultsError, match="lacks the column"):
        finished_runs(bad)
    out = tmp_path / "out.csv"
    assert main([str(good), str(bad), "--out", str(out)]) == 2
    assert "b_runs.csv" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name", ["mnist1d-table2", "mnist1d-tuning-free"])
def test_the_committed_second_machine_comparisons_come_from_the_committed_runs(name: str) -> None:
    committed = pd.read_csv(RESULTS / "second-cpu" / f"{name}_machines.csv")
    again = compare(finished_runs(RESULTS / f"{name}_runs.csv"),
                    finished_runs(RESULTS / "second-cpu" / f"{name}_runs.csv"))
    assert list(committed["cell"]) == list(again["cell"])
    numbers = [c for c in committed.columns if c not in ("block", "cell", "reference")]
    np.testing.assert_allclose(committed[numbers].to_numpy(float), again[numbers].to_numpy(float), rtol=1e-6)
