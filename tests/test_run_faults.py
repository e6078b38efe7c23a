"""Run folders that are damaged, diverged or fewer than the results already written: what ``--status``, the sweep
and the aggregation make of them, on real runs of the `tiny` experiment (digits, 3 epochs, 3 seeds).

One of those runs diverges for real: its planned folder is trained with lr 1e4 (only its config.json says so),
and its training loss is NaN after the first epoch."""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from results_pipeline import call

from experiments import aggregate
from experiments.catalog import PlannedRun
from experiments.job import train_run
from experiments.planning import plan, statuses
from experiments.results import load_results
from experiments.sweep import main as sweep_main

SEEDS = 3
DIVERGING_LR = 1e4


@dataclass
class Trained:
    runs_dir: Path
    runs: list[PlannedRun]
    diverged: PlannedRun
    log: list[str]

    def copy(self, to: Path) -> tuple[Path, dict[tuple[str, int], PlannedRun]]:
        """A copy of the runs folder to damage, and its runs by (method, seed)."""
        shutil.copytree(self.runs_dir, to)
        runs = plan("tiny", seeds=SEEDS, runs_dir=to)
        return to, {(run.config.method, run.seed): run for run in runs}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    runs_dir = tmp_path_factory.mktemp("faults") / "runs"
    runs = plan("tiny", seeds=SEEDS, runs_dir=runs_dir, wandb="disabled")
    diverged = next(run for run in runs if run.config.method == "baseline" and run.seed == SEEDS - 1)
    handler = _Lines()
    logger = logging.getLogger("experiments.training.trainer")
    logger.addHandler(handler)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for run in runs:
            config = run.config.to_dict()
            if run is diverged:
                config["lr"] = DIVERGING_LR
            train_run(config)
    finally:
        torch.set_num_threads(threads)
        logger.removeHandler(handler)
    return Trained(runs_dir, runs, diverged, handler.lines)


def sweep(runs_dir: Path, *args: str) -> int:
    return sweep_main(["tiny", "--seeds", str(SEEDS), "--runs-dir", str(runs_dir), "--wandb", "disabled",
                       "--no-progress", "--executor", "local", *args])


def aggregate_into(runs_dir: Path, results_dir: Path, *args: str) -> tuple[int, str, str]:
    return call(aggregate.main, ["tiny", "--seeds", str(SEEDS), "--runs-dir", str(runs_dir), "--results-dir",
                                 str(results_dir), *args])


def state_of(runs_dir: Path, run: PlannedRun) -> tuple[str, str]:
    (status,) = [s for s in statuses(plan("tiny", seeds=SEEDS, runs_dir=runs_dir)) if s.run.name == run.name]
    return status.state, status.detail


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------- damage
def test_records_cut_mid_line_are_named_and_the_run_skipped_not_a_traceback(trained: Trained, tmp_path: Path) -> None:
    runs_dir, runs = trained.copy(tmp_path / "runs")
    cut = runs[("neve", 0)]
    text = (cut.run_dir / "records.csv").read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    (cut.run_dir / "records.csv").write_text(text[: len(text) - len(last) // 2 - 1])  # the last line, half of it
    state, detail = state_of(runs_dir, cut)
    assert state == "failed" and "records.csv ends mid-line" in detail and str(cut.run_dir) in detail
    assert "python -m experiments.sweep" in detail  # what to do

    code, out, err = aggregate_into(runs_dir, tmp_path / "results")
    assert code == 0, err
    results = load_results("tiny", tmp_path / "results")
    row = results.runs[results.runs["run"] == cut.name].iloc[0]
    assert row["state"] == "failed" and row["detail"] == detail  # aggregate and --status say the same
    neve = results.cells[results.cells["cell"] == "NeVe"].iloc[0]
    assert (neve["n"], neve["n_asked"]) == (SEEDS - 1, SEEDS)
    assert f"`{cut.name}` failed" in out and "fewer finished seeds than asked" in out


def test_records_cut_at_a_line_boundary_disagree_with_the_summary(trained: Trained, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    runs_dir, runs = trained.copy(tmp_path / "runs")
    cut = runs[("neve", 1)]
    lines = (cut.run_dir / "records.csv").read_text().splitlines(keepends=True)
    (cut.run_dir / "records.csv").write_text("".join(lines[:-1]))  # whole lines, one epoch fewer
    state, detail = state_of(runs_dir, cut)
    assert state == "failed" and "holds 2 epoch record(s)" in detail and "trained 3 epochs" in detail
    assert sweep(runs_dir, "--status") == 1  # a failed run: --status says so in its exit code
    line = next(line for line in capsys.readouterr().out.splitlines() if cut.name in line)
    assert line.startswith("failed") and "holds 2 epoch record(s)" in line


def test_a_damaged_summary_is_failed_everywhere_and_the_sweep_rebuilds_it_from_the_checkpoint(
        trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs_dir, runs = trained.copy(tmp_path / "runs")
    broken, cut = runs[("baseline", 0)], runs[("neve", 0)]
    summary = (broken.run_dir / "summary.json").read_text()
    records = (cut.run_dir / "records.csv").read_bytes()
    (broken.run_dir / "summary.json").write_text(summary[: len(summary) // 2])  # a truncated summary
    (cut.run_dir / "records.csv").write_bytes(records[:-20])  # and records cut mid-line in another run
    state, detail = state_of(runs_dir, broken)
    assert state == "failed" and "summary.json is not valid JSON" in detail
    code, out, err = aggregate_into(runs_dir, tmp_path / "results")
    assert code == 0, err
    assert f"`{broken.name}` failed" in out and f"`{cut.name}` failed" in out

    capsys.readouterr()
    assert sweep(runs_dir) == 0
    out = capsys.readouterr().out
    assert "2 to train (2 failed before, retried)" in out and f"set aside {broken.run_dir / 'summary.json'}" in out
    assert [s.state for s in statuses(plan("tiny", seeds=SEEDS, runs_dir=runs_dir))].count("finished") == 2 * SEEDS - 1
    # Rebuilt from the checkpoint, no epoch trained again: the very summary and records the run had.
    assert json.loads((broken.run_dir / "summary.json").read_text()) == json.loads(summary)
    assert (cut.run_dir / "records.csv").read_bytes() == records
    assert (broken.run_dir / "summary.json.damaged").read_text() == summary[: len(summary) // 2]


# -------------------------------------------------------------------------------------------- divergence
def test_a_diverged_run_logs_a_line_shows_in_status_and_is_never_retrained(trained: Trained,
                                                                           capsys: pytest.CaptureFixture) -> None:
    run = trained.diverged
    assert json.loads((run.run_dir / "summary.json").read_text())["diverged"] is True
    assert any("diverged" in line and str(run.run_dir) in line and "epoch 1" in line for line in trained.log)
    assert sweep(trained.runs_dir, "--status") == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if run.name in line)
    assert line.startswith("diverged") and "non-finite at epoch 1" in line and "lr 10000" in line
    assert f"{2 * SEEDS - 1} finished" in out and "1 diverged" in out
    assert sweep(trained.runs_dir, "--dry-run") == 0
    assert f"{2 * SEEDS - 1} finished, 1 diverged, 0 to train" in capsys.readouterr().out


def test_a_diverged_run_has_its_own_column_and_footnote_never_the_mean(trained: Trained, tmp_path: Path) -> None:
    code, out, err = aggregate_into(trained.runs_dir, tmp_path / "results")
    assert code == 0, err
    results = load_results("tiny", tmp_path / "results")
    runs = results.runs
    diverged = runs[runs["run"] == trained.diverged.name].iloc[0]
    assert diverged["state"] == "diverged" and diverged["diverged"] == 1 and diverged["epochs_run"] == 1
    baseline = results.cells[results.cells["cell"] == "Baseline"].iloc[0]
    finished = runs[(runs["cell"] == "Baseline") & (runs["state"] == "finished")]["acc"]
    assert (baseline["n"], baseline["n_asked"], baseline["n_diverged"]) == (SEEDS - 1, SEEDS, 1)
    assert baseline["mean"] == pytest.approx(finished.mean()) and baseline["n_fallback"] == 0
    assert results.cells[results.cells["cell"] == "NeVe"].iloc[0]["n_diverged"] == 0
    header = next(line for line in out.splitlines() if line.startswith("| method"))
    assert "| seeds | diverged |" in header
    row = next(line for line in out.splitlines() if line.startswith("| Baseline"))
    assert f"| {SEEDS - 1} of {SEEDS} | 1 |" in row
    assert "Baseline (digits) seed 2 at epoch 1" in out and "became non-finite" in out
    fallback = next(line for line in out.splitlines() if "never reached V < ε" in line)
    assert "Baseline" not in fallback  # the fallback note (NeVe's, here) does not explain the divergence away
    assert f"`{trained.diverged.name}` diverged: diverged: the training loss became non-finite" not in out
    assert f"`{trained.diverged.name}` diverged" in out  # listed with the runs not averaged


# ------------------------------------------------------------------------------------------ partial results
def test_fewer_finished_runs_than_the_results_hold_refuse_and_partial_writes_elsewhere(trained: Trained,
                                                                                       tmp_path: Path) -> None:
    runs_dir, runs = trained.copy(tmp_path / "runs")
    results_dir = tmp_path / "results"
    code, _, err = aggregate_into(runs_dir, results_dir)
    assert code == 0, err
    complete = folder_bytes(results_dir)
    shutil.move(runs[("neve", 2)].run_dir, tmp_path / "moved-away")  # a copy of the runs that lacks one

    code, out, err = aggregate_into(runs_dir, results_dir)
    assert code == 1 and out == ""
    assert f"holds {2 * SEEDS - 1} finished runs, and 1 of them are not finished" in err and "1 missing" in err
    assert "nothing was written" in err and "python -m experiments.sweep tiny" in err and "--partial" in err
    assert folder_bytes(results_dir) == complete  # the complete results stay as they were
    code, _, err = call(aggregate.main, ["tiny", "--seeds", "1", "--runs-dir", str(trained.runs_dir),
                                         "--results-dir", str(results_dir)])
    assert code == 1 and "not planned with these options" in err  # fewer seeds than the results hold
    assert folder_bytes(results_dir) == complete

    code, out, err = aggregate_into(runs_dir, results_dir, "--partial")
    assert code == 0, err
    assert folder_bytes(results_dir).items() >= complete.items()  # untouched, with the partial ones beside
    partial = load_results("tiny", results_dir / "partial")
    assert (partial.cells["partial"] == 1).all()
    assert partial.cells[partial.cells["cell"] == "NeVe"].iloc[0]["n"] == SEEDS - 1
    assert "**PARTIAL RESULTS**" in out.splitlines()[2]  # above the table
    assert "PARTIAL RESULTS" in (results_dir / "partial" / "README.md").read_text()
    assert "PARTIAL" in err and str(results_dir / "partial") in err
    assert (load_results("tiny", results_dir).cells["partial"] == 0).all()


def test_results_with_every_run_are_rewritten_without_asking(trained: Trained, tmp_path: Path) -> None:
    for _ in range(2):  # a second aggregation of the same runs replaces nothing it lacks
        code, _, err = aggregate_into(trained.runs_dir, tmp_path / "results")
        assert code == 0, err
    assert not (tmp_path / "results" / "partial").exists()
    assert not math.isnan(pd.read_csv(tmp_path / "results" / "tiny.csv")["mean"].iloc[0])
