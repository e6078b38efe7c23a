"""The sweep on a real SLURM cluster (tests/slurm_cluster.py starts one): job arrays submitted once,
a `scontrol requeue` resumed to the records of an uninterrupted run, a failing job shown as failed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import wandb
from cli_runs import records_without_seconds
from wandb_files import offline_run

from experiments.executors import read_submitted
from experiments.sweep import main as sweep_main
from experiments.sweep import plan, statuses

WAIT_S = 300


def write_profile(path: Path, cluster, **fields) -> Path:
    values = {"partition": cluster.partition, "time_min": 30, "gpus_per_task": 0, "cpus_per_task": 1, "mem_gb": 2,
              **fields}
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def sweep(runs_dir: Path, profile: Path, *args: str) -> int:
    return sweep_main(["tiny", "--runs-dir", str(runs_dir), "--executor", "slurm", "--cluster", str(profile),
                       "--no-progress", *args])


def wait_until_done(runs, timeout: float = WAIT_S) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [s.state for s in statuses(runs)]
        if all(state in ("finished", "failed") for state in states):
            return states
        time.sleep(1)
    raise AssertionError(f"runs not done in {timeout} s: {[(s.run.name, s.state, s.detail) for s in statuses(runs)]}")


@pytest.fixture(scope="module")
def submitted_sweep(slurm_cluster, tmp_path_factory) -> Path:
    """`tiny` (2 methods x 2 seeds) submitted to SLURM with arrays of at most 3 tasks, trained to the end."""
    root = tmp_path_factory.mktemp("slurm-sweep")
    profile = write_profile(root / "cluster.toml", slurm_cluster, max_array_size=3)
    runs_dir = root / "runs"
    assert sweep(runs_dir, profile, "--wandb", "disabled") == 0
    return runs_dir


def test_a_sweep_is_submitted_once_as_split_arrays_and_trains_every_run(submitted_sweep: Path, slurm_cluster,
                                                                        tmp_path: Path, capsys) -> None:
    runs = plan("tiny", runs_dir=submitted_sweep)
    submitted = read_submitted(submitted_sweep / "sweeps" / "tiny")
    assert set(submitted) == {run.name for run in runs}
    arrays = {entry["job_id"].split("_")[0] for entry in submitted.values()}
    assert len(arrays) == 2  # 4 runs, arrays of at most 3 tasks
    profile = write_profile(tmp_path / "cluster.toml", slurm_cluster, max_array_size=3)
    capsys.readouterr()
    assert sweep(submitted_sweep, profile, "--wandb", "disabled") == 0  # while queued or running: nothing new
    assert "0 to submit" in capsys.readouterr().out
    assert read_submitted(submitted_sweep / "sweeps" / "tiny") == submitted
    assert wait_until_done(runs) == ["finished"] * 4
    assert sweep(submitted_sweep, profile, "--wandb", "disabled") == 0  # finished: nothing new either
    assert "4 finished, 0 to submit" in capsys.readouterr().out
    assert read_submitted(submitted_sweep / "sweeps" / "tiny") == submitted
    for run in runs:
        assert json.loads((run.run_dir / "summary.json").read_text())["epochs_run"] == 3


def test_a_requeued_job_resumes_to_the_same_records_and_w_and_b_run_and_a_failing_job_shows_failed(
        submitted_sweep: Path, slurm_cluster, tmp_path: Path, monkeypatch, capsys, wandb_in_this_process) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for name, value in {"HOME": str(home), "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}.items():
        monkeypatch.setenv(name, value)  # jobs inherit the submitting environment
    runs_dir = tmp_path / "runs"
    runs = {run.config.method: run for run in plan("tiny", seeds=1, runs_dir=runs_dir)}
    baseline, neve = runs["baseline"], runs["neve"]
    baseline.run_dir.mkdir(parents=True)
    (baseline.run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")  # its job will fail for real
    profile = write_profile(tmp_path / "cluster.toml", slurm_cluster)
    wandb.setup()  # the submitter has a W&B service, as a notebook that logged would: its jobs must not share it
    assert os.environ.get("WANDB_SERVICE")  # (they inherit its address; the resumed run's id would be in use)
    assert sweep(runs_dir, profile, "--seeds", "1", "--wandb", "offline") == 0
    job_id = read_submitted(runs_dir / "sweeps" / "tiny")[neve.name]["job_id"]

    # Freeze the NeVe run after its first epoch, requeue its job, and kill the frozen attempt as a node failure
    # would: Slurm's requeue sends SIGCONT + SIGTERM (which submitit ignores) and SIGKILLs only after KillWait,
    # time enough for a tiny run to finish on an idle machine, leaving the restarted attempt nothing to resume.
    deadline = time.monotonic() + WAIT_S
    while not (neve.run_dir / "checkpoint.pt").exists():
        assert time.monotonic() < deadline, "the NeVe job never wrote a checkpoint"
        time.sleep(0.05)
    pid = json.loads((neve.run_dir / "running.json").read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)
    slurm_cluster.requeue(job_id)
    with contextlib.suppress(ProcessLookupError):  # Slurm may have killed it already
        os.kill(pid, signal.SIGKILL)

    states = wait_until_done(list(runs.values()))
    assert states == ["failed", "finished"]
    assert slurm_cluster.show_job(job_id).get("Restarts") == "1"
    # Resumed from its folder, it ends as the uninterrupted run of the same config (the module's sweep) did.
    assert records_without_seconds(neve.run_dir) == records_without_seconds(submitted_sweep / neve.name)
    # One W&B run, continued: two attempts' folders under the same id, grouped under the experiment's name.
    wandb_ids = [folder.name.rsplit("-", 1)[1] for folder in sorted((neve.run_dir / "wandb").glob("offline-run-*"))]
    assert len(wandb_ids) == 2 and len(set(wandb_ids)) == 1
    resumed = offline_run(neve.run_dir, wandb_ids[0], attempt=1)  # the killed attempt never wrote its end
    assert resumed["group"] == "tiny" and resumed["summary"]["epochs_run"] == 3
    assert [row["epoch"] for row in resumed["history"] if "epoch" in row][-1] == 3

    capsys.readouterr()
    assert sweep(runs_dir, profile, "--seeds", "1", "--status") == 1
    out = capsys.readouterr().out
    failed = next(line for line in out.splitlines() if baseline.name in line)
    assert failed.startswith("failed") and "CheckpointError" in failed
    assert read_submitted(runs_dir / "sweeps" / "tiny")[baseline.name]["stderr"] in failed
