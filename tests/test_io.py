"""Atomic writes: the old file survives a failed write, and new files get normal permissions."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from faults import FullDisk

from neve.io import atomic_torch_save, atomic_write, atomic_write_json, atomic_write_text


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "records.csv"
    atomic_write_text(target, "old\n")

    def fail_halfway(handle) -> None:
        handle.write(b"half of a new fi")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail_halfway)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["records.csv"]


def test_files_get_the_permissions_of_the_umask_not_0600(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "summary.json", {"finished": True})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644


def test_json_files_are_valid_json_with_non_finite_numbers_as_null(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"loss": math.nan, "best": -math.inf, "velocities": [0.5, math.inf, (math.nan, 1)],
                               "acc": 0.25, "nested": {"v": np.float64("nan")}})

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(target.read_text(), parse_constant=refuse) == {
        "loss": None, "best": None, "velocities": [0.5, None, [None, 1]], "acc": 0.25, "nested": {"v": None}}


def test_a_write_the_disk_refuses_names_the_file_even_through_torch_save(tmp_path: Path, monkeypatch) -> None:
    """torch.save reports a failed write as ``RuntimeError: ... unexpected pos``; the writer raises the disk's
    own error instead, naming the file, and leaves the previous file and no temporary."""
    target = tmp_path / "checkpoint.pt"
    atomic_torch_save(target, {"epoch": 1})
    before = target.read_bytes()
    real_fdopen = os.fdopen

    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: FullDisk(real_fdopen(fd, *args, **kwargs)))
    for write in (lambda: atomic_torch_save(target, {"epoch": 2, "weights": torch.zeros(1000)}),
                  lambda: atomic_write_text(target, "text")):
        with pytest.raises(OSError) as raised:
            write()
        assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
