"""submitit on a real SLURM cluster: job arrays, failures, and what a requeue does to a Checkpointable job.

Answers measured here, on Slurm 22.05 (Debian 12) with submitit 1.5, that `experiments/sweep.py` relies on:

- `scontrol requeue <id>` on a running submitit job: Slurm sends SIGTERM, which submitit only logs
  ("Bypassing signal SIGTERM"), then SIGKILL after KillWait. `checkpoint()` is NOT called. The job keeps
  its id, waits in PENDING (Reason=BeginTime) until cred_expire has passed, and then re-runs the
  callable from the submitted pickle as it was: the original one, unless a checkpoint rewrote it.
  `job.result()` on the same Job object works afterwards. SLURM_RESTART_COUNT is 1 in the second run.
  Requeue to running again: ~14 s here (~5 s until the ignored SIGTERM becomes a SIGKILL and srun lets
  go, ~2 s more COMPLETING, then held cred_expire + 1 = 6 s, then ~1 s to start Python).
- A USR2 (what submitit asks Slurm to send 90 s before the time limit, and what `scancel --signal=USR2`
  sends) does call `checkpoint()`; submitit dumps the DelayedSubmission it returns over the submitted
  pickle, runs `scontrol requeue` itself and exits, so the restart runs the checkpointed callable.
  submitit calls a USR2 a timeout once the job has run min(0.8 t, t - 10 min) of its t = timeout_min,
  else a preemption; with timeout_min <= 10 every USR2 is a timeout. Each timeout spends one of
  `max_num_timeout` requeues (preemptions spend none); with none left, checkpoint() still runs but the
  job ends with UncompletedJobError and `job.result()` raises FailedJobError.
  USR2 to running again: ~7-11 s. Keep submitit's default use_srun=True: without srun there is no job
  step, and neither `--signal=USR2@90` nor `scancel --signal=USR2` reaches Python (checked by hand).
- A callable that raises: `job.result()` raises submitit's FailedJobError carrying the traceback;
  `job.exception()` returns it; the traceback is also in `job.paths.stderr`. Slurm reports the job
  FAILED. With accounting off (our cluster) sacct fails, so `job.state` is "UNKNOWN" forever and
  `job.done()` turns true only when the result pickle appears: a job killed before writing one
  (scancel, OOM) never reads as done. Ask `slurm_cluster.job_state` instead.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")
cloudpickle = pytest.importorskip("cloudpickle")
# jobs import nothing from tests/: pickle this module's functions and classes by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slurm
WAIT_S = 120  # generous: other test sessions share the machine's 2 cores


def executor(folder: Path, cluster, max_num_timeout: int = 3) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=max_num_timeout)
    ex.update_parameters(timeout_min=5, cpus_per_task=1, slurm_partition=cluster.partition)
    return ex


def wait_until(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s")
        time.sleep(0.05)


def square_with_company(x: int, folder: str, company: int) -> tuple[int, int]:
    """x squared, once `company` tasks of the array have started (proves they run at the same time)."""
    Path(folder, f"started-{x}").touch()
    deadline = time.monotonic() + 60
    while len(list(Path(folder).glob("started-*"))) < company and time.monotonic() < deadline:
        time.sleep(0.05)
    return x * x, len(list(Path(folder).glob("started-*")))


def fail(message: str) -> None:
    raise ValueError(message)


class Waiter(submitit.helpers.Checkpointable):
    """Logs each start (its generation, Slurm's restart count), then waits for a release file.

    Its checkpoint() returns the next generation, so a restart shows which pickle it came from.
    """

    def __init__(self, generation: int = 0) -> None:
        self.generation = generation

    def __call__(self, folder: str) -> tuple[int, int]:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        with open(Path(folder, "starts"), "a") as f:
            f.write(f"{self.generation} {restarts}\n")
        deadline = time.monotonic() + WAIT_S
        while not Path(folder, "release").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.generation, restarts

    def checkpoint(self, folder: str) -> submitit.helpers.DelayedSubmission:
        with open(Path(folder, "checkpoints"), "a") as f:
            f.write(f"{self.generation}\n")
        return submitit.helpers.DelayedSubmission(Waiter(self.generation + 1), folder)


def starts(folder: Path) -> list[tuple[int, int]]:
    path = folder / "starts"
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()] if path.exists() else []


def test_job_array_runs_tasks_concurrently_and_returns_their_results(slurm_cluster, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    # our own node takes 2 x nproc 1-CPU jobs at once; on a cluster we did not start, ask for no overlap
    company = min(3, slurm_cluster.slots) if slurm_cluster.slots else 1
    started = time.monotonic()
    jobs = executor(tmp_path / "logs", slurm_cluster).map_array(
        square_with_company, [1, 2, 3], [str(shared)] * 3, [company] * 3)
    results = [job.result() for job in jobs]
    print(f"3-task array done in {time.monotonic() - started:.1f} s")
    assert [r[0] for r in results] == [1, 4, 9]
    assert all(seen >= company for _, seen in results)
    array_id = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array_id}_{i}" for i in range(3)]
    for job in jobs:
        assert slurm_cluster.wait_for_state(job.job_id, {"COMPLETED"}, timeout=WAIT_S) == "COMPLETED"


def test_failed_job_reports_its_traceback(slurm_cluster, tmp_path):
    job = executor(tmp_path, slurm_cluster).submit(fail, "boom")
    with pytest.raises(submitit.core.utils.FailedJobError, match="ValueError: boom"):
        job.result()
    assert isinstance(job.exception(), submitit.core.utils.FailedJobError)
    assert "ValueError: boom" in job.paths.stderr.read_text()
    assert slurm_cluster.wait_for_state(job.job_id, {"FAILED"}, timeout=WAIT_S) == "FAILED"
    if slurm_cluster.started_here:  # no accounting, so sacct fails and submitit never learns a state
        assert job.state == "UNKNOWN"


def test_scontrol_requeue_reruns_the_original_pickle_without_checkpoint(slurm_cluster, tmp_path):
    job = executor(tmp_path / "logs", slurm_cluster).submit(Waiter(), str(tmp_path))
    wait_until(lambda: len(starts(tmp_path)) == 1, "the job started")
    requeued = time.monotonic()
    slurm_cluster.requeue(job.job_id)
    wait_until(lambda: len(starts(tmp_path)) == 2, "the requeued job restarted")
    print(f"scontrol requeue -> running again in {time.monotonic() - requeued:.1f} s")
    # generation 0 again: the submitted pickle, untouched; checkpoint() was never called
    assert starts(tmp_path) == [(0, 0), (0, 1)]
    assert not (tmp_path / "checkpoints").exists()
    assert "Bypassing signal SIGTERM" in job.paths.stderr.read_text()
    (tmp_path / "release").touch()
    assert job.result() == (0, 1)  # same Job object, same id, result of the second run
    assert slurm_cluster.show_job(job.job_id)["Restarts"] == "1"


def test_usr2_checkpoints_and_requeues_until_timeouts_run_out(slurm_cluster, tmp_path):
    keeps, ends = tmp_path / "keeps", tmp_path / "ends"
    keeps.mkdir()
    ends.mkdir()
    keeping = executor(keeps / "logs", slurm_cluster, max_num_timeout=1).submit(Waiter(), str(keeps))
    ending = executor(ends / "logs", slurm_cluster, max_num_timeout=0).submit(Waiter(), str(ends))
    wait_until(lambda: len(starts(keeps)) == 1 and len(starts(ends)) == 1, "both jobs started")
    signalled = time.monotonic()
    for job in (keeping, ending):
        slurm_cluster.command("scancel", "--signal=USR2", job.job_id)
    wait_until(lambda: len(starts(keeps)) == 2, "the checkpointed job restarted")
    print(f"USR2 -> checkpoint, requeue, running again in {time.monotonic() - signalled:.1f} s")
    # checkpoint() ran once in each job; the restart ran the pickle checkpoint() returned (generation 1)
    assert starts(keeps) == [(0, 0), (1, 1)]
    assert (keeps / "checkpoints").read_text() == "0\n"
    # submitit logs "Requeued job ... (0 remaining timeouts)" only after `scontrol requeue` returns, and Slurm
    # SIGTERMs/SIGKILLs the job KillWait later, so that line can be lost on a loaded machine (CI lost it once).
    # The controller's restart count and the handler's first log line (written before checkpoint()) cannot.
    logs = keeping.paths.stdout.read_text() + keeping.paths.stderr.read_text()
    assert "Caught signal SIGUSR2" in logs
    assert slurm_cluster.show_job(keeping.job_id)["Restarts"] == "1"
    (keeps / "release").touch()
    assert keeping.result() == (1, 1)
    # no timeout left: no requeue, the job ends with an error result
    with pytest.raises(submitit.core.utils.FailedJobError, match="timed-out too many times"):
        ending.result()
    assert (ends / "checkpoints").read_text() == "0\n"
    assert starts(ends) == [(0, 0)]
