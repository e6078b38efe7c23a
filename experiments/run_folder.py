"""Reading a run folder: the one place outside the trainer that knows its files.

The trainer writes ``config.json``, ``records.csv`` (one row per epoch), ``checkpoint.pt`` and, once finished,
``summary.json``. The experiment layer adds two small markers beside them: ``running.json`` while a job trains
the run (host, pid, SLURM job) and ``error.json`` when it raised. Sweep status and aggregation both read runs
through :class:`RunFolder`, so the format is parsed once.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.training.records import read_records
from neve.io import atomic_write_json

CONFIG = "config.json"
RECORDS = "records.csv"
SUMMARY = "summary.json"
RUNNING = "running.json"
ERROR = "error.json"


class RunFolderError(ValueError):
    """A run folder whose files cannot be read; the message names the file and what to do."""


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.path.is_dir()

    @property
    def finished(self) -> bool:
        return (self.path / SUMMARY).is_file()

    def summary(self) -> dict[str, Any]:
        return self._json(SUMMARY)

    def config(self) -> dict[str, Any]:
        return self._json(CONFIG)

    def records(self) -> list[dict[str, Any]]:
        """Per-epoch records (``records.csv``), [] before the first epoch."""
        if not (self.path / RECORDS).is_file():
            return []
        try:
            return read_records(self.path)
        except (OSError, ValueError, KeyError) as error:
            raise RunFolderError(f"{self.path / RECORDS} cannot be read ({error}); the run can be trained again "
                                 "after moving the folder away") from error

    def epochs_done(self) -> int:
        records = self.records()
        return int(records[-1]["epoch"]) if records else 0

    def error(self) -> dict[str, Any] | None:
        """What the last failed attempt raised (``error.json``), or None."""
        return self._json(ERROR) if (self.path / ERROR).is_file() else None

    def running(self) -> dict[str, Any] | None:
        """The ``running.json`` marker of a job training this run now, or None (also when that job died)."""
        if not (self.path / RUNNING).is_file():
            return None
        try:
            marker = self._json(RUNNING)
        except RunFolderError:
            return None
        if marker.get("slurm_job_id"):
            return marker  # the scheduler knows whether it still runs; the sweep checks it there
        same_host = marker.get("host") == socket.gethostname()
        return marker if (not same_host or _pid_alive(int(marker.get("pid", -1)))) else None

    # ------------------------------------------------------------------------------------- markers
    def mark_running(self, **details: Any) -> None:
        atomic_write_json(self.path / RUNNING, {"host": socket.gethostname(), "pid": os.getpid(), **details})

    def clear_running(self) -> None:
        (self.path / RUNNING).unlink(missing_ok=True)

    def mark_failed(self, error: BaseException, traceback_text: str, log: str | None) -> None:
        atomic_write_json(self.path / ERROR, {"error": f"{type(error).__name__}: {error}",
                                              "traceback": traceback_text, "log": log,
                                              "host": socket.gethostname()})

    def clear_error(self) -> None:
        (self.path / ERROR).unlink(missing_ok=True)

    def _json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RunFolderError(f"{path} does not exist") from None
        except (OSError, json.JSONDecodeError) as error:
            raise RunFolderError(f"{path} is not valid JSON ({error}); move the run folder away to train it "
                                 "again") from error


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
