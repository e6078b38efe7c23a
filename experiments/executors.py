"""Where a sweep's missing runs train: this machine (``local``) or a SLURM cluster through submitit (``slurm``).

Both launch :mod:`experiments.job`, which resumes each run from its folder, so an executor only decides where
and how many at once. The SLURM executor submits job arrays (split at the cluster's array-size limit), can
pack several small runs on one GPU per job, and records what it submitted in the sweep's folder
(``submitted.json``) so that repeating the command submits nothing already pending or running.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
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
from experiments.job import TrainJob, run_command
from experiments.profiles import ClusterProfile
from neve.io import atomic_write_json

SUBMITTED = "submitted.json"
#: squeue states, as the sweep reports them.
QUEUE_STATES = {"PENDING": "pending", "REQUEUED": "pending", "REQUEUE_HOLD": "pending", "REQUEUE_FED": "pending",
                "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "running",
                "RESIZING": "running", "STAGE_OUT": "running", "SIGNALING": "running"}


def slurm_available() -> bool:
    return shutil.which("sbatch") is not None


# ------------------------------------------------------------------------------------------------ local
@dataclass
class LocalResult:
    run: PlannedRun
    returncode: int
    log: Path


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


def run_local(runs: Sequence[PlannedRun], *, jobs: int = 1, runs_per_gpu: int = 1,
              progress: bool = True) -> list[LocalResult]:
    """Train ``runs`` on this machine, ``jobs`` at a time, one process each; output goes to ``<run>/train.log``."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    free_slots = local_slots(jobs, runs_per_gpu)
    lock = threading.Lock()
    processes: set[subprocess.Popen] = set()

    def train_one(run: PlannedRun) -> LocalResult:
        with lock:
            env = free_slots.pop()
        try:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            log_path = run.run_dir / "train.log"
            with open(log_path, "a") as log_file:
                log_file.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} sweep {run.experiment}: training "
                               f"{run.run_dir}\n")
                log_file.flush()
                process = subprocess.Popen([*run_command(run.config.to_dict()), "--log", str(log_path)],
                                           stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **env})
                with lock:
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
    try:
        futures = [pool.submit(train_one, run) for run in runs]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            bar.update(1)
            if result.returncode != 0:
                tqdm.write(f"FAILED {result.run.run_dir} (exit {result.returncode}); log: {result.log}",
                           file=sys.stderr)
    except KeyboardInterrupt:
        with lock:
            for process in processes:
                process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return results


# ------------------------------------------------------------------------------------------------ slurm
def queue_states() -> dict[str, str]:
    """This user's SLURM jobs, one id per array task (``123_4``) -> pending / running. Empty without SLURM."""
    if shutil.which("squeue") is None:
        return {}
    result = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"squeue failed ({result.stderr.strip()}); is the SLURM controller reachable?")
    states = {}
    for line in result.stdout.splitlines():
        job_id, _, state = line.strip().partition(" ")
        if job_id:
            states[job_id] = QUEUE_STATES.get(state.strip(), state.strip().lower())
    return states


def read_submitted(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """``run name -> {job_id, run_dir, stdout, stderr, submitted}`` of the runs this sweep submitted."""
    path = sweep_dir / SUBMITTED
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it lists what was submitted: fix or remove it "
                         "(then check squeue yourself before resubmitting)") from error


def all_submitted(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Every sweep's submissions under ``runs_dir/sweeps``, newest wins: a run shared by two experiments is
    known to be queued whichever sweep submitted it."""
    merged: dict[str, dict[str, Any]] = {}
    for path in sorted((runs_dir / "sweeps").glob(f"*/{SUBMITTED}")):
        for name, entry in read_submitted(path.parent).items():
            if name not in merged or entry.get("submitted", 0) > merged[name].get("submitted", 0):
                merged[name] = entry
    return merged


def packs(runs: Sequence[PlannedRun], runs_per_gpu: int) -> list[list[PlannedRun]]:
    """Group runs into jobs of up to ``runs_per_gpu`` runs of the same dataset and model (equal resources)."""
    groups: dict[tuple[str, str], list[PlannedRun]] = {}
    for run in runs:
        groups.setdefault((run.config.dataset, run.config.model), []).append(run)
    return [group[i:i + runs_per_gpu] for group in groups.values() for i in range(0, len(group), runs_per_gpu)]


def submit_slurm(runs: Sequence[PlannedRun], profile: ClusterProfile, sweep_dir: Path, *, job_name: str,
                 runs_per_gpu: int | None = None) -> dict[str, dict[str, Any]]:
    """Submit ``runs`` as job arrays; returns and records (in ``sweep_dir/submitted.json``) each run's job."""
    import submitit

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
