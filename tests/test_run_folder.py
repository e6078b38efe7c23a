"""A run folder survives planted files, a second writer, leftovers of killed writes, a full disk and a read-only
runs dir: real ``python -m experiments.train`` processes, real checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runs import REPO, cli, kill_after_first_checkpoint, records_without_seconds, wait_for
from faults import FullDisk

from experiments.run_folder import RunFolder
from experiments.train import main as train_main
from experiments.training.config import RunConfig
from experiments.training.trainer import train

FAST = ["--dataset", "digits", "--model", "resnet8", "--batch-size", "128", "--aux-size", "16", "--wandb", "disabled",
        "--no-progress", "--num-workers", "0", "--precision", "fp32", "--threads", "1"]
FAST_CONFIG = dict(dataset="digits", model="resnet8", batch_size=128, aux_size=16, wandb="disabled", progress=False,
                   num_workers=0, precision="fp32", threads=1)


def strict_json(path: Path) -> object:
    """``path`` parsed as JSON proper: NaN and Infinity (Python's extension) are refused."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# ------------------------------------------------------------------------------------------ planted checkpoints
class Payload:
    """What an attacker plants: unpickling it creates ``marker`` (it could as well run a shell)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("packing", ["torch.save", "pickle"])
def test_a_planted_checkpoint_is_refused_and_nothing_in_it_runs(tmp_path: Path, packing: str) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "payload-ran"
    run_dir.mkdir()
    checkpoint = run_dir / "checkpoint.pt"
    planted = {"format": 1, "config": {}, "model": Payload(marker)}
    if packing == "torch.save":
        torch.save(planted, checkpoint)
    else:
        checkpoint.write_bytes(pickle.dumps(planted))
    assert not marker.exists()
    before = checkpoint.read_bytes()

    process = cli(*FAST, "--epochs", "2", "--out", str(run_dir))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    assert not marker.exists(), "the planted checkpoint ran code"
    assert f"the checkpoint {checkpoint} cannot be read: it holds more than tensors and plain values" in err
    assert "nothing in it ran" in err and "Traceback" not in err
    assert checkpoint.read_bytes() == before  # left for the user to inspect
    assert "CheckpointError" in strict_json(run_dir / "error.json")["error"]


def test_checkpoints_hold_only_tensors_and_plain_values(tmp_path: Path) -> None:
    train(RunConfig(**FAST_CONFIG, method="neve", epochs=1, out=str(tmp_path / "run")))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "run" / "checkpoint.pt") == []
    loaded = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert loaded["config"] == RunConfig(**FAST_CONFIG, method="neve", epochs=1,
                                         out=str(tmp_path / "run")).resolved().to_dict()


def test_a_checkpoint_of_the_older_format_resumes_exactly(tmp_path: Path) -> None:
    """Before checkpoints held only plain values, numpy's RNG state was saved as an array (a pickled numpy
    object). Such a checkpoint, killed mid-run, still resumes, and ends as a straight run does."""
    args = [*FAST, "--method", "neve", "--epochs", "3"]
    straight = cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(args, killed)
    checkpoint = torch.load(killed / "checkpoint.pt", weights_only=True)
    name, key, position, has_gauss, cached = checkpoint["rng"]["numpy"]
    checkpoint["rng"]["numpy"] = (name, np.asarray(key, dtype=np.uint32), position, has_gauss, cached)
    torch.save(checkpoint, killed / "checkpoint.pt")  # what the trainer wrote before: torch.save of that dict
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(killed / "checkpoint.pt")

    resumed = cli(*args, "--out", str(killed))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming {killed} after epoch {checkpoint['epoch']}" in err
    assert records_without_seconds(killed) == records_without_seconds(tmp_path / "straight")


# ------------------------------------------------------------------------------------------ one writer
def test_a_second_writer_refuses_naming_the_first_or_waits_and_takes_over_a_dead_ones_lock(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*FAST, "--method", "baseline", "--epochs", "500", "--out", str(run_dir)]
    first = cli(*args)
    try:
        wait_for(run_dir / "checkpoint.pt", first)
        second = cli(*args)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2, err
        assert f"{run_dir} is being trained by another process (pid {first.pid}, host {socket.gethostname()})" \
            in err and "--lock-wait" in err
        assert first.poll() is None  # the first writer was left alone

        # A third asks to wait: it waits while the first trains, and takes the folder over once the first dies
        # (SIGKILL: its running.json still names it, but the kernel released its lock).
        log = tmp_path / "third.log"
        with log.open("w") as out:
            third = subprocess.Popen([sys.executable, "-m", "experiments.train", *args, "--lock-wait", "600"],
                                     cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while "waiting up to 600 s" not in log.read_text():
                assert third.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the third writer never said it waits"
                time.sleep(0.1)
            assert f"(pid {first.pid}, host {socket.gethostname()})" in log.read_text()
            first.send_signal(signal.SIGKILL)
            first.wait()
            deadline = time.monotonic() + 300
            while RunFolder(run_dir).running() is None or RunFolder(run_dir).running()["pid"] != third.pid:
                assert third.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the third writer did not take the folder over"
                time.sleep(0.1)
        finally:
            third.kill()
            third.wait()
    finally:
        first.kill()
        first.wait()


# ------------------------------------------------------------------------------------------ leftovers and disks
def test_temporary_files_of_killed_writes_are_removed_at_the_next_start(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stale = [run_dir / ".records.csv.k2j4h1.tmp", run_dir / ".checkpoint.pt.x8q0az.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    kept = [run_dir / "notes.tmp", run_dir / "my-notes.txt"]  # not the writer's: left alone
    for path in kept:
        path.write_text("mine")
    train(RunConfig(**FAST_CONFIG, method="baseline", epochs=1, out=str(run_dir)))
    assert not any(path.exists() for path in stale)
    assert all(path.read_text() == "mine" for path in kept)


@pytest.fixture
def full_disk_for_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up when the checkpoint is written: the low-level write of ``checkpoint.pt``'s temporary
    file raises ENOSPC (torch.save writes through it and hides the error in its own). Other files still write."""
    real_fdopen = os.fdopen

    def fdopen(fd: int, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        return FullDisk(handle) if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}") else handle

    monkeypatch.setattr(os, "fdopen", fdopen)


def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path, full_disk_for_checkpoints: None, capsys) -> None:
    run_dir = tmp_path / "run"
    code = train_main([*FAST, "--method", "baseline", "--epochs", "2", "--out", str(run_dir)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert lines == [f"error: no space left to write {run_dir / 'checkpoint.pt'} (No space left on device): free "
                     "space there or point --out to another disk; the run resumes from its last checkpoint"]
    assert "Traceback" not in err and "unexpected pos" not in err
    assert strict_json(run_dir / "error.json")["error"] == lines[0].removeprefix("error: ")
    assert not list(run_dir.glob(".*.tmp"))


@pytest.fixture
def read_only_runs_dir(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A runs dir nobody may write, and the command prefix that makes the permissions bind a process: root
    ignores them, so as root the process runs without the capabilities that override them."""
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root, permissions bind only without CAP_DAC_OVERRIDE, and setpriv is not installed")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
    try:
        yield runs, prefix
    finally:
        runs.chmod(0o755)


def test_a_read_only_runs_dir_is_one_line_naming_the_path(read_only_runs_dir: tuple[Path, list[str]]) -> None:
    runs, prefix = read_only_runs_dir
    run_dir = runs / "run"
    process = subprocess.run([*prefix, sys.executable, "-m", "experiments.train", *FAST, "--epochs", "1", "--out",
                              str(run_dir)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 2, process.stderr
    assert process.stderr.splitlines()[-1] == (
        f"error: cannot write {run_dir} (Permission denied): the folder is read-only or not yours; fix its "
        "permissions or use another folder (--out, --data-root)")
    assert "Traceback" not in process.stderr
    assert not run_dir.exists()
