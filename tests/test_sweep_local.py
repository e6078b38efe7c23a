"""The sweep runner on this machine: real runs of the `tiny` experiment, skipped when done, resumed when
interrupted, failures shown with their error and log, never silent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runs import REPO, records_without_seconds, wait_for

from experiments.job import run_command
from experiments.sweep import main as sweep_main
from experiments.sweep import plan, statuses

BASE = ["--wandb", "disabled", "--no-progress", "--executor", "local"]


def sweep(runs_dir: Path, *args: str) -> int:
    return sweep_main(["tiny", "--runs-dir", str(runs_dir), *BASE, *args])


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """The tiny experiment (baseline and NeVe, 2 seeds, 3 epochs) trained by the local executor, 2 at a time."""
    runs_dir = tmp_path_factory.mktemp("runs")
    assert sweep(runs_dir, "--jobs", "2") == 0
    return runs_dir


def test_a_sweep_trains_every_run_once_and_a_repeat_trains_nothing(finished_sweep: Path, capsys) -> None:
    runs = plan("tiny", runs_dir=finished_sweep)
    assert len(runs) == 4 and [s.state for s in statuses(runs)] == ["finished"] * 4
    for run in runs:
        assert json.loads((run.run_dir / "summary.json").read_text())["epochs_run"] == 3
        assert (run.run_dir / "train.log").read_text().count("sweep tiny: training") == 1
        assert not (run.run_dir / "running.json").exists() and not (run.run_dir / "error.json").exists()
    stamps = {run.name: (run.run_dir / "summary.json").stat().st_mtime_ns for run in runs}
    capsys.readouterr()
    assert sweep(finished_sweep, "--jobs", "2") == 0
    assert "4 finished, 0 to train" in capsys.readouterr().out
    assert {run.name: (run.run_dir / "summary.json").stat().st_mtime_ns for run in runs} == stamps
    assert sweep(finished_sweep, "--status") == 0
    assert "4 finished, 0 running, 0 pending, 0 failed, 0 missing" in capsys.readouterr().out


def test_failed_running_and_interrupted_runs_show_as_such_and_resume(finished_sweep: Path, tmp_path: Path,
                                                                     capsys) -> None:
    runs = {run.config.method: run for run in plan("tiny", seeds=1, runs_dir=tmp_path)}
    baseline, neve = runs["baseline"], runs["neve"]
    # A corrupt checkpoint makes the baseline run fail for real, inside its job.
    baseline.run_dir.mkdir(parents=True)
    (baseline.run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    # The NeVe run trains in a job of its own, is seen running, then is killed after its first epoch. One thread,
    # as each of the fixture's two concurrent runs had: float sums then add up in the same order.
    job = subprocess.Popen(run_command(neve.config.to_dict()), cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(neve.run_dir / "checkpoint.pt", job)
    os.kill(job.pid, signal.SIGSTOP)  # frozen mid-run, so it cannot finish while we look
    try:
        assert sweep(tmp_path, "--seeds", "1", "--status") == 0
        out = capsys.readouterr().out
        running = next(line for line in out.splitlines() if neve.name in line)
        assert running.startswith("running") and f"pid {job.pid}" in running
    finally:
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
    assert sweep(tmp_path, "--seeds", "1", "--only", "method=baseline") == 1  # its job fails: the exit code says so
    assert "0 trained, 1 failed" in capsys.readouterr().out

    assert sweep(tmp_path, "--seeds", "1", "--status") == 1  # a failed run: non-zero
    out = capsys.readouterr().out
    failed = next(line for line in out.splitlines() if baseline.name in line)
    assert failed.startswith("failed") and "CheckpointError" in failed and "train.log" in failed
    interrupted = next(line for line in out.splitlines() if neve.name in line)
    assert interrupted.startswith("missing") and "resumes after epoch" in interrupted
    assert (baseline.run_dir / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # left for the user

    (baseline.run_dir / "checkpoint.pt").unlink()
    assert sweep(tmp_path, "--seeds", "1", "--jobs", "2") == 0
    assert "2 to train (1 failed before, retried)" in capsys.readouterr().out
    assert [s.state for s in statuses(list(runs.values()))] == ["finished", "finished"]
    assert not (baseline.run_dir / "error.json").exists()
    # The resumed NeVe run ends as the uninterrupted one of the same config did.
    straight = finished_sweep / neve.name
    assert records_without_seconds(neve.run_dir) == records_without_seconds(straight)


def test_a_second_job_on_a_run_being_trained_steps_aside(tmp_path: Path) -> None:
    (run,) = plan("tiny", seeds=1, runs_dir=tmp_path, only=["method=baseline"])
    first = subprocess.Popen(run_command(run.config.to_dict()), cwd=REPO, env=dict(os.environ),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(run.run_dir / "running.json", first)
    second = subprocess.run(run_command(run.config.to_dict()),
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and f"being trained by another process (pid {first.pid}," in second.stderr
    assert "this job skips it" in second.stderr
    assert first.wait(timeout=120) == 0
    assert (run.run_dir / "summary.json").exists()


# ------------------------------------------------------------------------- a local sweep stopped by a signal
def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes naming ``text`` (a run folder's path appears in its job's command)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # gone meanwhile
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_a_sweep_sent_sigterm_stops_its_runs_at_a_checkpoint_leaves_nothing_running_and_resumes(
        finished_sweep: Path, tmp_path: Path) -> None:
    import torch

    runs = plan("tiny", runs_dir=tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "experiments.sweep", "tiny", "--runs-dir", str(tmp_path), *BASE,
                                "--jobs", "2"], cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any((run.run_dir / "checkpoint.pt").exists() for run in runs):  # a run is mid-way
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)

    assert process.returncode == 128 + signal.SIGTERM, err
    assert not _processes_mentioning(str(tmp_path)), "a run of the stopped sweep is still running"
    assert "stopped by SIGTERM" in err and "resume them" in err and f"--runs-dir {tmp_path}" in err
    stopped = [run for run in runs if (run.run_dir / "checkpoint.pt").exists()]
    assert stopped and not any((run.run_dir / "summary.json").exists() for run in runs), err
    for run in stopped:  # stopped at a safe point: its checkpoint is whole and matches its records
        epochs = len(records_without_seconds(run.run_dir))
        assert torch.load(run.run_dir / "checkpoint.pt", weights_only=True)["epoch"] == epochs
        assert f"stopped after epoch {epochs}" in next(line for line in err.splitlines() if str(run.run_dir) in line)
        assert not (run.run_dir / "error.json").exists() and not (run.run_dir / "running.json").exists()
    for run in runs:
        assert str(run.run_dir) in err  # every run not finished is listed, started or not
    assert [s.state for s in statuses(runs)] == ["missing"] * 4

    assert sweep(tmp_path, "--jobs", "2") == 0
    for run in runs:  # resumed or started afresh, each ends as the uninterrupted sweep's run did
        assert records_without_seconds(run.run_dir) == records_without_seconds(finished_sweep / run.name)
