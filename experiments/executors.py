"""Where a sweep's missing runs train: this machine (``local``) or a SLURM cluster through submitit (``slurm``).

Both launch :mod:`experiments.job`, which resumes each run from its folder, so an executor only decides where
and how many at once. The SLURM executor submits job arrays (split at the cluster's array-size limit), can
pack several small runs on one GPU per job, and records what it submitted in the sweep's folder
(``submitted.json``) so that repeating the command submits nothing already pending or running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from experiments.catalog import PlannedRun
from experiments.profiles import ClusterProfile
from experiments.run_folder import RunFolder
from experiments.slurm_queue import SUBMITTED, read_submitted
from experiments.training.interrupt import STOP_SIGNALS
from neve.io import atomic_write_json


def slurm_available() -> bool:
    return shutil.which("sbatch") is not None


# ------------------------------------------------------------------------------------------------ local
#: After forwarding a stop, how long a run may take to reach its safe point before it is killed.
STOP_GRACE_S = 60.0


@dataclass
class LocalResult:
    run: PlannedRun
    returncode: int | None  # None: never started, the sweep was stopped first
    log: Path

    @property
    def interrupted(self) -> bool:
        """Stopped by a signal (at a safe point, exit 128 + signal, or killed), or never started."""
        return self.returncode is None or self.returncode < 0 or self.returncode in STOPPED_CODES


#: Exit statuses of a run process that stopped at a safe point (``experiments.job``: 128 + the signal).
STOPPED_CODES = {128 + signum for signum in STOP_SIGNALS}


@dataclass
class LocalSweep:
    results: list[LocalResult]
    stopped_by: int | None = None  # the signal that stopped the sweep


def local_slots(jobs: int, runs_per_gpu: int) -> list[dict[str, str]]:
    """The environment of each concurrent slot: GPUs shared by ``runs_per_gpu`` runs, CPU threads split evenly."""
    gpus = _visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    slots = []
    for index in range(jobs):
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[(index // runs_per_gpu) % len(gpus)]
        slots.append(env)
    return slots


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch CUDA runtime: CPU only
        return []


def run_local(runs: Sequence[PlannedRun], *, jobs: int = 1, runs_per_gpu: int = 1, progress: bool = True,
              grace_s: float = STOP_GRACE_S) -> LocalSweep:
    """Train ``runs`` on this machine, ``jobs`` at a time, one process each; output goes to ``<run>/train.log``.

    SIGTERM, SIGINT or SIGHUP to the sweep is forwarded to every run, which stops at a safe point (its last
    checkpoint kept); no new run starts, and a run still going ``grace_s`` seconds later (or at a second
    signal) is killed. It returns once no run process is left, with the signal in ``stopped_by``."""
    from experiments.job import run_command  # the job module: a process that trains, not one that plans

    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    free_slots = local_slots(jobs, runs_per_gpu)
    lock = threading.RLock()  # re-entrant: the signal handler takes it in the main thread
    processes: set[subprocess.Popen] = set()
    stopped: list[int] = []

    def kill_all() -> None:
        with lock:
            targets = list(processes)
        for process in targets:
            _send(process, signal.SIGKILL)

    def forward(signum: int, frame: Any) -> None:
        with lock:
            first = not stopped
            stopped.append(signum)
            targets = list(processes)
        if not first:
            kill_all()
            return
        tqdm.write(f"{signal.Signals(signum).name}: stopping {len(targets)} run(s) at their next safe point",
                   file=sys.stderr)
        for process in targets:
            _send(process, signum)
        killer = threading.Timer(grace_s, kill_all)
        killer.daemon = True
        killer.start()

    def train_one(run: PlannedRun) -> LocalResult:
        log_path = RunFolder(run.run_dir).train_log
        with lock:
            if stopped:
                return LocalResult(run, None, log_path)
            env = free_slots.pop()
        try:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as log_file:
                log_file.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} sweep {run.experiment}: training "
                               f"{run.run_dir}\n")
                log_file.flush()
                with lock:  # a stop either comes before the start, or finds the process in the set
                    if stopped:
                        return LocalResult(run, None, log_path)
                    process = subprocess.Popen([*run_command(run.config.to_dict()), "--log", str(log_path)],
                                               stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **env})
                    processes.add(process)
                code = process.wait()
                with lock:
                    processes.discard(process)
            return LocalResult(run, code, log_path)
        finally:
            with lock:
                free_slots.append(env)

    results = []
    bar = tqdm(total=len(runs), desc="runs", unit="run", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=jobs)
    previous = _install(forward)
    try:
        futures = [pool.submit(train_one, run) for run in runs]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            bar.update(1)
            if result.returncode and not (stopped and result.interrupted):
                tqdm.write(f"FAILED {result.run.run_dir} (exit {result.returncode}); log: {result.log}",
                           file=sys.stderr)
    except BaseException:  # the sweep itself failed: start nothing more, leave nothing running
        with lock:
            stopped.append(0)
        kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _restore(previous)
        bar.close()
    signum = next((s for s in stopped if s), None)
    return LocalSweep(results, signum)


def _send(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if process.poll() is None:
            process.send_signal(signum)


def _install(handler: Any) -> dict[int, Any]:
    """``handler`` for the stop signals, where signals can be handled (the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


# ------------------------------------------------------------------------------------------------ slurm
def packs(runs: Sequence[PlannedRun], runs_per_gpu: int) -> list[list[PlannedRun]]:
    """Group runs into jobs of up to ``runs_per_gpu`` runs of the same dataset and model (equal resources)."""
    groups: dict[tuple[str, str], list[PlannedRun]] = {}
    for run in runs:
        groups.setdefault((run.config.dataset, run.config.model), []).append(run)
    return [group[i:i + runs_per_gpu] for group in groups.values() for i in range(0, len(group), runs_per_gpu)]


def submit_slurm(runs: Sequence[PlannedRun], profile: ClusterProfile, sweep_dir: Path, *, job_name: str,
                 runs_per_gpu: int | None = None) -> dict[str, dict[str, Any]]:
    """Submit ``runs`` as job arrays; returns and records (in ``sweep_dir/submitted.json``) each run's job."""
    import submitit  # only a SLURM submission needs it: planning, status and local sweeps do not

    from experiments.job import TrainJob

    per_gpu = runs_per_gpu or profile.runs_per_gpu
    jobs_of_runs = packs(runs, per_gpu)
    executor = submitit.SlurmExecutor(folder=sweep_dir / "slurm" / "%j", max_num_timeout=profile.max_requeues)
    executor.update_parameters(job_name=job_name, **profile.executor_parameters(per_gpu))
    submitted = read_submitted(sweep_dir)
    new: dict[str, dict[str, Any]] = {}
    for start in range(0, len(jobs_of_runs), profile.max_array_size):
        chunk = jobs_of_runs[start:start + profile.max_array_size]
        with executor.batch():
            handles = [executor.submit(TrainJob([run.config.to_dict() for run in pack])) for pack in chunk]
        for pack, handle in zip(chunk, handles, strict=True):
            for run in pack:
                new[run.name] = {"job_id": handle.job_id, "run_dir": str(run.run_dir),
                                 "stdout": str(handle.paths.stdout), "stderr": str(handle.paths.stderr),
                                 "submitted": time.time(), "cluster": profile.name}
        submitted.update(new)
        atomic_write_json(sweep_dir / SUBMITTED, submitted)  # after each array: nothing submitted goes unrecorded
    return new
