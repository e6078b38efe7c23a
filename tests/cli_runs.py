"""Running ``python -m experiments.train`` as a real process, for tests that kill and resume runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.training.records import read_records

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


def kill_after_first_checkpoint(args: list[str], run_dir: Path) -> list[dict]:
    """Start ``experiments.train args --out run_dir``, SIGKILL it as soon as its first checkpoint is written (it
    is then training the next epoch), and return the records it had written. No sleep: a kill timed after the
    checkpoint could come after the run finished on a fast machine."""
    process = cli(*args, "--out", str(run_dir))
    wait_for(run_dir / "checkpoint.pt", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"
    return read_records(run_dir)


def kill_after_epoch(args: list[str], run_dir: Path, epoch: int) -> list[dict]:
    """Like :func:`kill_after_first_checkpoint`, but SIGKILL once epoch ``epoch``'s record is written: the
    checkpoint of epoch ``epoch - 1`` (written before the next epoch's record) is then on disk."""
    process = cli(*args, "--out", str(run_dir))
    deadline = time.monotonic() + 120
    while True:
        try:
            if len(read_records(run_dir)) >= epoch:
                break
        except (OSError, ValueError):  # not written yet, or caught mid-write
            pass
        if process.poll() is not None:
            raise AssertionError(f"the run ended before epoch {epoch}:\n{process.stderr.read()}")
        assert time.monotonic() < deadline, f"epoch {epoch} not reached in 120 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"
    return read_records(run_dir)


def resume_and_check_it_resumed(args: list[str], run_dir: Path, before_kill: list[dict], epochs: int) -> str:
    """Rerun the killed command and assert it resumed rather than restarted: it says it resumed after epoch k
    (0 < k < epochs), and the epochs up to k keep the records, wall-clock seconds included, written before the
    kill (a restart would retrain them, at other timings). Returns the resumed run's stderr."""
    resumed = cli(*args, "--out", str(run_dir))
    _, err = resumed.communicate()
    assert resumed.returncode == 0, err
    said = re.search(rf"resuming \S*{re.escape(run_dir.name)} after epoch (\d+)", err)
    assert said, f"the rerun did not say it resumed:\n{err}"
    k = int(said.group(1))
    assert 0 < k < epochs and k <= len(before_kill)
    after = read_records(run_dir)
    assert [r["epoch"] for r in after] == list(range(1, epochs + 1))
    assert after[:k] == before_kill[:k]
    return err


def straight_and_resumed(args: list[str], tmp_path: Path, epochs: int, resume_after: int = 1) -> tuple[Path, Path]:
    """Run ``experiments.train args`` straight through, and again killed by SIGKILL mid-run then resumed (checked
    to be a resume, not a restart, from a checkpoint of epoch ``resume_after`` or later); returns the two run
    folders (straight, resumed) for the caller to compare."""
    straight = cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.wait() == 0, straight.stderr.read()
    killed = tmp_path / "killed"
    if resume_after <= 1:
        before_kill = kill_after_first_checkpoint(args, killed)
    else:
        before_kill = kill_after_epoch(args, killed, resume_after + 1)
    err = resume_and_check_it_resumed(args, killed, before_kill, epochs)
    k = int(re.search(r"after epoch (\d+)", err).group(1))
    assert k >= resume_after, f"resumed after epoch {k}, not from epoch {resume_after}'s checkpoint or later"
    return tmp_path / "straight", killed
