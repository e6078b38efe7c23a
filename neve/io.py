"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A write the system refuses (disk full, read-only, no permission) raises ``OSError`` naming ``path``, also
    when ``write`` hid it (``torch.save`` turns a failed write into a ``RuntimeError`` about zip offsets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:  # named after the file it was for, not its random temporary name
        raise _naming(error, path) from error
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the permissions open() would
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        # torch.save reports a failed write as a RuntimeError raised while handling the OSError
        refused = error.__context__ if isinstance(error, RuntimeError) else error
        if isinstance(refused, OSError) and refused.errno is not None and refused.filename is None:
            raise _naming(refused, path) from error
        raise


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` with ``path`` as its file name (a failed fsync or write names none)."""
    return type(error)(error.errno, error.strerror, str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """``data`` as JSON, other objects as their ``str``; NaN and infinities (not JSON) as ``null``, so every file
    written is valid JSON for any reader."""
    text = json.dumps(_finite(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle))
