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


# ------------------------------------------------------------------------------------------------ packed jobs
def wait_for_file(path: Path, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def freeze_after_first_epoch(runs: list) -> dict[str, int]:
    """SIGSTOP each run's process (a child of its pack's job) as soon as its first checkpoint is written; their
    pids by run name. All are watched at once: a run of another pack may get there first."""
    pids: dict[str, int] = {}
    deadline = time.monotonic() + WAIT_S
    while len(pids) < len(runs):
        for run in runs:
            if run.name not in pids and (run.run_dir / "checkpoint.pt").exists():
                pids[run.name] = json.loads((run.run_dir / "running.json").read_text())["pid"]
                os.kill(pids[run.name], signal.SIGSTOP)
        assert time.monotonic() < deadline, f"only {sorted(pids)} wrote a checkpoint in {WAIT_S} s"
        time.sleep(0.02)
    return pids


def status_lines(runs_dir: Path, profile: Path, capsys, *args: str) -> tuple[int, dict[str, str]]:
    capsys.readouterr()
    code = sweep(runs_dir, profile, "--status", *args)
    lines = capsys.readouterr().out.splitlines()
    return code, {name: next(line for line in lines if name in line) for name in
                  (run.name for run in plan("tiny", seeds=3, runs_dir=runs_dir))}


def test_packed_jobs_train_every_run_resume_each_after_a_requeue_and_report_each_run(
        submitted_sweep: Path, slurm_cluster, tmp_path: Path, capsys) -> None:
    runs_dir = tmp_path / "runs"
    runs = {(run.config.method, run.seed): run for run in plan("tiny", seeds=3, runs_dir=runs_dir)}
    broken = runs[("baseline", 2)]  # fails for real in its pack, beside a run that trains on
    broken.run_dir.mkdir(parents=True)
    (broken.run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    profile = write_profile(tmp_path / "cluster.toml", slurm_cluster, runs_per_gpu=2)
    assert sweep(runs_dir, profile, "--seeds", "3", "--wandb", "disabled") == 0
    submitted = read_submitted(runs_dir / "sweeps" / "tiny")
    packs: dict[str, set[str]] = {}
    for name, entry in submitted.items():
        packs.setdefault(entry["job_id"], set()).add(name)
    assert sorted(map(len, packs.values())) == [2, 2, 2]  # 6 runs, 2 per job, in one array
    assert len({job_id.split("_")[0] for job_id in packs}) == 1
    job_of = {name: job_id for job_id, names in packs.items() for name in names}
    requeued = [run for run in runs.values() if job_of[run.name] == job_of[runs[("baseline", 0)].name]]
    mate = next(run for run in runs.values() if job_of[run.name] == job_of[broken.name] and run is not broken)
    assert len(requeued) == 2 and {run.name for run in requeued} <= {p.name for p in submitted_sweep.iterdir()}

    # Freeze both runs of one pack and the packmate of the failing run mid-way: --status shows each run alone.
    pids = freeze_after_first_epoch([*requeued, mate])
    wait_for_file(broken.run_dir / "error.json")
    try:
        code, lines = status_lines(runs_dir, profile, capsys, "--seeds", "3")
        assert code == 1  # a failed run
        for run in [*requeued, mate]:
            assert lines[run.name].startswith("running") and f"pid {pids[run.name]}" in lines[run.name]
            assert f" {len(records_without_seconds(run.run_dir))}/3 " in lines[run.name]  # its own epochs
        assert lines[broken.name].startswith("failed") and "CheckpointError" in lines[broken.name]
        assert "still runs the rest of its pack" in lines[broken.name]
    finally:
        os.kill(pids[mate.name], signal.SIGCONT)
    # Requeue the frozen pack and kill its runs as a node failure would: the next attempt resumes each of them.
    slurm_cluster.requeue(job_of[requeued[0].name])
    for run in requeued:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[run.name], signal.SIGKILL)

    assert wait_until_done(list(runs.values())) == ["finished"] * 2 + ["failed"] + ["finished"] * 3
    assert slurm_cluster.show_job(job_of[requeued[0].name]).get("Restarts") == "1"
    log = Path(submitted[requeued[0].name]["stderr"]).read_text()
    for run in requeued:
        assert f"resuming {run.run_dir} after epoch" in log
        assert records_without_seconds(run.run_dir) == records_without_seconds(submitted_sweep / run.name)
    code, lines = status_lines(runs_dir, profile, capsys, "--seeds", "3")
    assert code == 1
    for run in runs.values():
        assert lines[run.name].startswith("failed" if run is broken else "finished")
        assert (" 3/3 " in lines[run.name]) != (run is broken)
