"""Preparing data before any run needs it, offline: `python -m experiments.data prepare` from an archive written in
torchvision's exact format (a synthetic CIFAR folder with its manifest, tarred as the official archive is),
bad archives refused with nothing changed, two processes preparing one root at once, and a sweep refused
for missing data."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from cli_runs import REPO
from synthetic_data import write_synthetic_cifar

from experiments.data import load_data
from experiments.data.prepare import check_data, data_root_lock
from experiments.sweep import main as sweep_main

N_TRAIN, N_TEST = 60, 20


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """cifar-10-python.tar.gz as the official one is laid out: cifar-10-batches-py/<files> (+ the manifest)."""
    root = tmp_path_factory.mktemp("cifar-src")
    folder = write_synthetic_cifar(root, "cifar10", n_train=N_TRAIN, n_test=N_TEST)
    path = root / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return path


def prepare(root: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.data", "prepare", "cifar10", "--root", str(root),
                             *args],
                            cwd=REPO, text=True, **({"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} | popen))


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name not in ("cifar-10-batches-py", ".neve-data.lock"))


def test_prepare_from_an_archive_verifies_and_extracts_it_and_bad_archives_change_nothing(archive: Path,
                                                                                         tmp_path: Path) -> None:
    root = tmp_path / "data"
    assert not check_data("cifar10", root).ready
    done = prepare(root, "--from", str(archive))
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "cifar10 at" in out and "ready" in out and "SYNTHETIC" in err
    assert check_data("cifar10", root).ready and leftovers(root) == []
    splits = load_data("cifar10", root, batch_size=16, download=False)
    assert splits.train.num_samples == N_TRAIN and splits.synthetic

    # One byte changed in one member: the manifest's checksum catches it after extraction; nothing lands.
    corrupt = tmp_path / "corrupt.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(corrupt, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name.endswith("data_batch_2"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    bad_root = tmp_path / "bad"
    done = prepare(bad_root, "--from", str(corrupt))
    _, err = done.communicate(timeout=120)
    assert done.returncode == 1 and "data_batch_2" in err and "nothing was changed" in err
    assert leftovers(bad_root) == [] and not (bad_root / "cifar-10-batches-py").exists()

    # An archive that is neither the official one (md5) nor a synthetic folder: refused before anything lands.
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        tar.add(archive.parent / "cifar-10-batches-py" / "test_batch", arcname="cifar-10-batches-py/test_batch")
    done = prepare(bad_root, "--from", str(plain))
    _, err = done.communicate(timeout=120)
    assert done.returncode == 1 and "not CIFAR-10's official" in err and leftovers(bad_root) == []


def test_two_processes_preparing_one_root_at_once_wait_on_its_lock_and_both_end_verified(archive: Path,
                                                                                        tmp_path: Path) -> None:
    root = tmp_path / "data"
    logs = [tmp_path / "a.err", tmp_path / "b.err"]
    with data_root_lock(root):  # held while both start, so both contend for it once released
        processes = [prepare(root, "--from", str(archive), stderr=open(log, "w")) for log in logs]
        deadline = time.monotonic() + 120
        while not all("waiting for the data lock" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes), \
                [log.read_text() for log in logs]
            time.sleep(0.05)
    outs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [log.read_text() for log in logs]
    assert sum("already there" in out for out in outs) == 1  # one extracted it, the other found it verified
    assert check_data("cifar10", root).ready and leftovers(root) == []


def test_a_sweep_is_refused_while_its_data_is_missing_and_dry_run_and_status_say_so(archive: Path, tmp_path: Path,
                                                                                  capsys) -> None:
    root, runs_dir = tmp_path / "data", tmp_path / "runs"
    args = ["table2", "--only", "dataset=cifar10", "--seeds", "1", "--runs-dir", str(runs_dir), "--data-root",
            str(root), "--executor", "local", "--wandb", "disabled", "--no-progress"]
    command = f"python -m experiments.data prepare cifar10 --root {root.resolve()}"
    assert sweep_main(args) == 2
    err = capsys.readouterr().err
    assert "refusing to train" in err and "cifar10 at" in err and command in err
    assert not runs_dir.exists()  # nothing started
    assert sweep_main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "NOT READY" in out and "would refuse to train" in out and command in out
    assert sweep_main([*args, "--status"]) == 0
    assert "data: cifar10 at" in capsys.readouterr().out

    assert prepare(root, "--from", str(archive)).wait(timeout=120) == 0
    assert sweep_main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "data: cifar10 at" in out and ": ready (verified" in out and "would refuse" not in out
