"""Results need no scheduler: finished runs are read from their folders, the queue is asked only about submitted
runs that have not finished, and when it cannot be read those runs are `unknown` with the scheduler's error:
aggregation goes on and exits 0, `--status` shows them, a sweep refuses to start anything. The unreachable
scheduler is a real failing `squeue` first on PATH, as on a login node whose controller is down."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.aggregate import main as aggregate_main
from experiments.planning import plan
from experiments.slurm_queue import SUBMITTED
from experiments.sweep import main as sweep_main
from neve.io import atomic_write_json

ERROR = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
LOCAL = ["--wandb", "disabled", "--no-progress", "--executor", "local"]


@pytest.fixture
def squeue_calls(tmp_path: Path, monkeypatch) -> Path:
    """A `squeue` that fails as SLURM's does without a controller, first on PATH; returns the file logging calls."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "squeue-calls"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\necho "{ERROR}" >&2\nexit 1\n')
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_finished_runs_aggregate_without_the_queue_and_unfinished_ones_are_unknown(tmp_path: Path, squeue_calls,
                                                                                   capsys) -> None:
    runs_dir, results = tmp_path / "runs", tmp_path / "results"
    runs = {run.config.method: run for run in plan("tiny", seeds=1, runs_dir=runs_dir)}
    assert sweep_main(["tiny", "--seeds", "1", "--only", "method=baseline", "--runs-dir", str(runs_dir), *LOCAL]) == 0
    # Both runs were submitted to SLURM (as submit_slurm records them): the baseline finished, NeVe did not.
    atomic_write_json(runs_dir / "sweeps" / "tiny" / SUBMITTED, {
        run.name: {"job_id": f"41_{i}", "run_dir": str(run.run_dir), "stdout": f"/logs/41_{i}.out",
                   "stderr": f"/logs/41_{i}.err", "submitted": time.time(), "cluster": "gone"}
        for i, run in enumerate(runs.values())})
    base = ["tiny", "--seeds", "1", "--runs-dir", str(runs_dir)]

    assert aggregate_main([*base, "--only", "method=baseline", "--results-dir", str(results / "a")]) == 0
    assert not squeue_calls.exists(), "the queue was asked about finished runs"

    capsys.readouterr()
    assert aggregate_main([*base, "--results-dir", str(results / "b")]) == 0
    assert squeue_calls.exists()
    table = pd.read_csv(results / "b" / "tiny_runs.csv").set_index("run")
    assert table.loc[runs["baseline"].name, "state"] == "finished"
    assert table.loc[runs["neve"].name, "state"] == "unknown"
    assert ERROR in table.loc[runs["neve"].name, "detail"] and "41_1" in table.loc[runs["neve"].name, "detail"]
    cells = pd.read_csv(results / "b" / "tiny.csv").set_index("cell")
    assert cells.loc["Baseline", "n"] == 1 and cells.loc["NeVe", "n"] == 0
    assert "1 run(s) not averaged" in capsys.readouterr().err

    assert sweep_main([*base, *LOCAL, "--status"]) == 0
    captured = capsys.readouterr()
    line = next(line for line in captured.out.splitlines() if runs["neve"].name in line)
    assert line.startswith("unknown") and ERROR in line
    assert "1 finished, 0 running, 0 pending, 0 failed, 0 missing, 1 unknown" in captured.out

    assert sweep_main([*base, *LOCAL, "--dry-run"]) == 0
    assert "would refuse to train" in capsys.readouterr().out
    assert sweep_main([*base, *LOCAL]) == 2  # it could start a run that is still queued on the cluster
    refused = capsys.readouterr().err
    assert "refusing to train" in refused and ERROR in refused and "submitted.json" in refused
    assert not runs["neve"].run_dir.exists()
