"""A sweep's unit of work: train one run, or a pack of runs side by side, resuming each from its run folder.

The same code runs a run on this machine (``python -m experiments.job --config-json ...``, one process per run,
as the local executor launches it) and inside a SLURM job (:class:`TrainJob`, pickled by submitit). A job
carries only the runs' configs: everything else -- epochs done, optimizer, W&B id -- is read back from the run
folder, so a job requeued after a timeout or preemption (submitit replays the pickle it was given) continues
where the run left off, and a finished run is skipped by the trainer.

While a run trains, an exclusive lock on ``<run>/.lock`` keeps a second job (a repeated sweep, a requeued
twin) from training the same folder at the same time; ``running.json`` tells the sweep where it runs, and a
run that raised leaves ``error.json`` (its traceback and log) for ``--status``. A run process
(``python -m experiments.job``) stops at a safe point on SIGTERM, SIGINT or SIGHUP (:mod:`training.interrupt`) and
exits with 128 + the signal's number, leaving no ``error.json``: the run is interrupted, not failed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import submitit

from experiments.run_folder import RunFolder
from experiments.training.config import RunConfig
from experiments.training.interrupt import RunInterrupted, stop_on_signals
from experiments.training.records import forget_inherited_wandb_service

log = logging.getLogger(__name__)

#: What a run's job returned: it trained to the end (or was already finished), or another job holds it.
TRAINED, BUSY = "trained", "busy"
#: A SLURM job waits this long for its run's lock: after a requeue, the killed attempt may still hold it.
REQUEUE_LOCK_WAIT_S = 300.0


class RunFailed(RuntimeError):
    """One or more runs of a job raised; each left ``error.json`` in its folder."""


@contextmanager
def run_lock(run_dir: Path, wait_s: float = 0.0) -> Iterator[bool]:
    """Hold ``run_dir/.lock`` exclusively for the block; yields False (holding nothing) if another still has it
    after ``wait_s`` seconds."""
    run_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with open(run_dir / ".lock", "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(1.0)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def slurm_ids() -> dict[str, str]:
    """This process's SLURM job id as squeue shows it (``123_4`` for an array task), if inside a job."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return {"slurm_job_id": f"{job}_{task}"}
    if os.environ.get("SLURM_JOB_ID"):
        return {"slurm_job_id": os.environ["SLURM_JOB_ID"]}
    return {}


def train_run(config: dict[str, Any], log_path: str | None = None, wait_s: float = 0.0) -> str:
    """Train (or resume, or skip if finished) one run; record a failure in its folder and re-raise it.

    ``wait_s``: how long to wait for another holder of the run's lock (a requeued SLURM job's predecessor can
    take a moment to die) before stepping aside."""
    from experiments.training.trainer import train  # torch and the data stack: only in the process that trains

    forget_inherited_wandb_service()
    run_config = RunConfig(**config).resolved()
    folder = RunFolder(Path(run_config.out))
    with run_lock(folder.path, wait_s) as locked:
        if not locked:
            log.warning("%s is being trained by another job; skipping it here", folder.path)
            return BUSY
        folder.clear_error()
        folder.mark_running(log=log_path, **slurm_ids())
        try:
            train(run_config)
        except BaseException as error:
            if not isinstance(error, KeyboardInterrupt | SystemExit | RunInterrupted):
                folder.mark_failed(error, traceback.format_exc(), log_path)
            raise
        finally:
            folder.clear_running()
    return TRAINED


def run_command(config: dict[str, Any]) -> list[str]:
    """The command that trains ``config`` in a fresh process (the local executor's, and a pack's per run)."""
    return [sys.executable, "-m", "experiments.job", "--config-json", json.dumps(config)]


class TrainJob(submitit.helpers.Checkpointable):
    """A SLURM job training one run, or a pack of runs sharing the job's GPU (one process each).

    ``checkpoint()`` (called by submitit on a timeout or preemption) hands back a fresh job with the same
    configs and nothing else: the requeued job resumes every unfinished run from its folder.
    """

    def __init__(self, configs: Sequence[dict[str, Any]]) -> None:
        self.configs = [dict(config) for config in configs]

    def __call__(self) -> list[str]:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        log_path = _submitit_log()
        if len(self.configs) == 1:
            return [train_run(self.configs[0], log_path, wait_s=REQUEUE_LOCK_WAIT_S)]
        processes = [subprocess.Popen([*run_command(config), "--lock-wait", str(REQUEUE_LOCK_WAIT_S)])
                     for config in self.configs]
        codes = [process.wait() for process in processes]
        failed = [config["out"] for config, code in zip(self.configs, codes, strict=True) if code != 0]
        if failed:
            raise RunFailed(f"{len(failed)} of {len(self.configs)} runs failed: {', '.join(failed)} "
                            "(see error.json in each)")
        return [TRAINED] * len(self.configs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(TrainJob(self.configs))


def _submitit_log() -> str | None:
    try:
        return str(submitit.JobEnvironment().paths.stderr)
    except RuntimeError:  # not inside a submitit job
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.job",
                                     description="Train one run of a sweep from its resolved config (internal).")
    parser.add_argument("--config-json", required=True, help="the run's resolved config as JSON")
    parser.add_argument("--log", help="the log file this process writes to, recorded on failure")
    parser.add_argument("--lock-wait", type=float, default=0.0,
                        help="seconds to wait for another job holding the run before stepping aside")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = json.loads(args.config_json)
    try:
        with stop_on_signals():  # SIGTERM/SIGINT/SIGHUP: stop at a safe point, the last checkpoint intact
            train_run(config, args.log, wait_s=args.lock_wait)
    except RunInterrupted as stop:
        print(f"interrupted: {config.get('out')} {stop}; its last epoch's checkpoint is kept and the same "
              "command resumes it", file=sys.stderr)
        return 128 + stop.signum
    except Exception as error:
        traceback.print_exc()
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
