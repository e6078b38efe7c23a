"""Running ``python -m experiments.train`` as a real process, for tests that kill and resume runs."""

from __future__ import annotations

import os
import signal
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


def straight_and_resumed(args: list[str], tmp_path: Path) -> tuple[Path, Path]:
    """Run ``experiments.train args`` straight through, and again killed by SIGKILL mid-run then resumed; returns
    the two run folders (straight, resumed) for the caller to compare."""
    straight = cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.wait() == 0, straight.stderr.read()
    killed = tmp_path / "killed"
    process = cli(*args, "--out", str(killed))
    wait_for(killed / "checkpoint.pt", process)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    resumed = cli(*args, "--out", str(killed))
    assert resumed.wait() == 0, resumed.stderr.read()
    return tmp_path / "straight", killed
