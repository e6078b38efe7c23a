"""What sweeps submitted to SLURM (``runs/sweeps/<name>/submitted.json``) and what the scheduler still holds.

Reading ``submitted.json`` needs no scheduler. ``squeue`` is asked only by the code that submits, and by the
status view for runs not finished: a finished run is read from its folder alone, so results can be
aggregated on a laptop, on a login node while the controller restarts, or after the cluster is gone.
"""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

SUBMITTED = "submitted.json"
#: squeue states, as the sweep reports them.
QUEUE_STATES = {"PENDING": "pending", "REQUEUED": "pending", "REQUEUE_HOLD": "pending", "REQUEUE_FED": "pending",
                "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "running",
                "RESIZING": "running", "STAGE_OUT": "running", "SIGNALING": "running"}
SQUEUE_TIMEOUT_S = 60


class QueueUnavailable(RuntimeError):
    """The scheduler's queue cannot be read (no ``squeue`` here, or the controller does not answer)."""


def queue_states() -> dict[str, str]:
    """This user's SLURM jobs, one id per array task (``123_4``) -> pending / running.

    Raises :class:`QueueUnavailable` with the scheduler's own error when the queue cannot be read."""
    if shutil.which("squeue") is None:
        raise QueueUnavailable("squeue is not on PATH here (runs copied from a cluster?), so the SLURM queue "
                               "cannot be read")
    try:
        result = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"],
                                capture_output=True, text=True, timeout=SQUEUE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise QueueUnavailable(f"squeue could not be run ({error}); is the SLURM controller reachable?") from error
    if result.returncode != 0:
        message = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
        raise QueueUnavailable(f"squeue failed ({message}); is the SLURM controller reachable?")
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
