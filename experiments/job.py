"""A sweep's unit of work: train one run, or a pack of runs side by side, resuming each from its run folder.

The same code runs a run on this machine (``python -m experiments.job --config-json ...``, one process per run,
as the local executor launches it) and inside a SLURM job (:class:`TrainJob`, pickled by submitit). A job
carries only the runs' configs: everything else -- epochs done, optimizer, W&B id -- is read back from the run
folder, so a job requeued after a timeout or preemption (submitit replays the pickle it was given) continues
where the run left off, and a finished run is skipped by the trainer.

While a run trains, the run folder's writer lock (:meth:`RunFolder.writer
<experiments.run_folder.RunFolder.writer>`, taken by the trainer) keeps a second job (a repeated sweep, a requeued
twin) or a ``python -m experiments.train`` from training the same folder at the same time: the second one steps
aside. ``running.json`` tells the sweep where it runs, and a run that raised leaves ``error.json`` (its traceback
and log) for ``--status``. A run process (``python -m experiments.job``) stops at a safe point on SIGTERM, SIGINT
or SIGHUP (:mod:`training.interrupt`) and exits with 128 + the signal's number, leaving no ``error.json``: the run
is interrupted, not failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import submitit

from experiments.run_folder import RunFolderBusy
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


def train_run(config: dict[str, Any], log_path: str | None = None, wait_s: float = 0.0) -> str:
    """Train (or resume, or skip if finished) one run; a failure is recorded in its folder and re-raised.

    ``wait_s``: how long to wait for another holder of the run folder (a requeued SLURM job's predecessor can
    take a moment to die) before stepping aside."""
    from experiments.training.trainer import train  # torch and the data stack: only in the process that trains

    forget_inherited_wandb_service()
    try:
        train(RunConfig(**config), lock_wait_s=wait_s, log_path=log_path)
    except RunFolderBusy as busy:
        log.warning("%s; this job skips it", busy)
        return BUSY
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
