"""Faults the tests plant: a disk that refuses writes (a real full disk cannot be made here)."""

from __future__ import annotations

import errno
import os
from typing import Any


class FullDisk:
    """A file handle whose writes fail with ENOSPC, as on a full disk; everything else is the real handle's."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.close()
