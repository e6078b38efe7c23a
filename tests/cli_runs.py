"""Running ``python -m experiments.train`` as a real process, for tests that kill and resume runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from neve.records import read_records

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.train", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Block until ``path`` exists; fail if the process ends first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {path.name} appeared:\n{process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.01)


def records_without_seconds(run_dir: Path) -> list[dict]:
    """A run's records minus wall-clock time: what must match between a resumed and a straight run."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_records(run_dir)]
