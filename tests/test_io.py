"""Atomic writes: the old file survives a failed write, and new files get normal permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from neve.io import atomic_write, atomic_write_json, atomic_write_text


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
