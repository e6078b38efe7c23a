"""A run folder: the one place that names its files, reads them back, and lets one writer at a time in.

The trainer writes ``config.json``, ``records.csv`` (one row per epoch), ``checkpoint.pt`` and, once finished,
``model.pt`` and ``summary.json`` (``kept_model.pt`` too for the methods that keep a best model). Whoever trains
the run (``python -m experiments.train`` or a sweep's job) holds an exclusive lock on ``.lock`` while it writes,
says who it is in ``running.json`` (host, pid, SLURM job, log) and leaves ``error.json`` when it raised; a local
sweep appends the run's output to ``train.log``. Every reader -- sweep status, aggregation, the trainer's resume --
goes through :class:`RunFolder`, so the file names are spelled and the formats parsed here only.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neve.io import atomic_write_json

log = logging.getLogger(__name__)

CONFIG = "config.json"
RECORDS = "records.csv"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
MODEL = "model.pt"
KEPT_MODEL = "kept_model.pt"
RUNNING = "running.json"
ERROR = "error.json"
LOCK = ".lock"
TRAIN_LOG = "train.log"
#: What :func:`neve.io.atomic_write` leaves behind when killed mid-write: ``.<name>.<random>.tmp``.
STALE_TEMPORARY = ".*.tmp"

#: Write errors that say the disk or the folder refuses, not that the run is wrong: a full disk or quota, a
#: read-only file system, a folder that is not ours.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

_INT = re.compile(r"[+-]?\d+")


class RunFolderError(ValueError):
    """A run folder whose files cannot be read; the message names the file and what to do."""


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's writer lock; the message names it (host, pid) when it said."""


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------------------------- files
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def records_file(self) -> Path:
        return self.path / RECORDS

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY

    @property
    def model_file(self) -> Path:
        return self.path / MODEL

    @property
    def kept_model_file(self) -> Path:
        return self.path / KEPT_MODEL

    @property
    def running_file(self) -> Path:
        return self.path / RUNNING

    @property
    def error_file(self) -> Path:
        return self.path / ERROR

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    # ------------------------------------------------------------------------------------- reading
    def exists(self) -> bool:
        return self.path.is_dir()

    @property
    def finished(self) -> bool:
        return self.summary_file.is_file()

    def summary(self) -> dict[str, Any]:
        return self._json(self.summary_file)

    def config(self) -> dict[str, Any]:
        return self._json(self.config_file)

    def records(self) -> list[dict[str, Any]]:
        """Per-epoch records (``records.csv``), [] before the first epoch."""
        if not self.records_file.is_file():
            return []
        try:
            return read_records(self.path)
        except (OSError, ValueError, KeyError) as error:
            raise RunFolderError(f"{self.records_file} cannot be read ({error}); the run can be trained again "
                                 "after moving the folder away") from error

    def epochs_done(self) -> int:
        records = self.records()
        return int(records[-1]["epoch"]) if records else 0

    def error(self) -> dict[str, Any] | None:
        """What the last failed attempt raised (``error.json``), or None."""
        return self._json(self.error_file) if self.error_file.is_file() else None

    def running(self) -> dict[str, Any] | None:
        """The ``running.json`` marker of a process training this run now, or None (also when it died)."""
        marker = self._holder()
        if marker is None or marker.get("slurm_job_id"):
            return marker  # the scheduler knows whether a job still runs; the sweep checks it there
        same_host = marker.get("host") == socket.gethostname()
        return marker if (not same_host or _pid_alive(int(marker.get("pid", -1)))) else None

    # ------------------------------------------------------------------------------------- writing
    @contextmanager
    def writer(self, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the folder's exclusive writer lock (``.lock``) for the block, creating the folder if needed.

        Another holder makes it wait up to ``wait_s`` seconds, then raise :class:`RunFolderBusy` naming that
        holder. The lock is the kernel's (``flock``): it dies with its process, so a killed run's lock is taken
        over at once, whatever its ``running.json`` still says.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        with open(self.lock_file, "a+") as handle:
            said = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RunFolderBusy(f"{self.path} is being trained by another {self.holder_text()}; "
                                            "wait for it to end, or pass --lock-wait SECONDS to wait here") \
                            from None
                    if not said:
                        log.info("%s is being trained by another %s; waiting up to %.0f s for it", self.path,
                                 self.holder_text(), wait_s)
                        said = True
                    time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def holder_text(self) -> str:
        """Who holds the writer lock, as its ``running.json`` says: ``process (pid 12, host n1, SLURM job 3)``."""
        marker = self._holder()
        if marker is None:
            return "process (it has not written its running.json yet)"
        parts = [f"pid {marker.get('pid')}", f"host {marker.get('host')}"]
        if marker.get("slurm_job_id"):
            parts.append(f"SLURM job {marker['slurm_job_id']}")
        return f"process ({', '.join(parts)})"

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files a killed write left (only the writer may: they could be another's)."""
        stale = sorted(self.path.glob(STALE_TEMPORARY))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.info("removed %d temporary file(s) an interrupted write left in %s: %s", len(stale), self.path,
                     ", ".join(p.name for p in stale))
        return stale

    def mark_running(self, **details: Any) -> None:
        atomic_write_json(self.running_file, {"host": socket.gethostname(), "pid": os.getpid(), **slurm_ids(),
                                              **details})

    def clear_running(self) -> None:
        self.running_file.unlink(missing_ok=True)

    def mark_failed(self, error: BaseException, traceback_text: str, log_path: str | None) -> None:
        text = disk_error_text(error) if isinstance(error, OSError) else None
        atomic_write_json(self.error_file, {"error": text or f"{type(error).__name__}: {error}",
                                            "traceback": traceback_text, "log": log_path,
                                            "host": socket.gethostname()})

    def clear_error(self) -> None:
        self.error_file.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------- helpers
    def _holder(self) -> dict[str, Any] | None:
        if not self.running_file.is_file():
            return None
        try:
            marker = self._json(self.running_file)
        except RunFolderError:
            return None
        return marker if isinstance(marker, dict) else None

    @staticmethod
    def _json(path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RunFolderError(f"{path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunFolderError(f"{path} is not valid JSON ({error}); move the run folder away to train it "
                                 "again") from error


def read_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """Parse ``run_dir/records.csv`` back into dicts: ints, floats and bools as such, empty cells as None."""
    with (Path(run_dir) / RECORDS).open(newline="", encoding="utf-8") as handle:
        return [{key: _parse_cell(cell) for key, cell in row.items()} for row in csv.DictReader(handle)]


def _parse_cell(cell: str | None) -> Any:
    if cell is None or cell == "":
        return None
    if _INT.fullmatch(cell):
        return int(cell)
    if cell in ("True", "False"):
        return cell == "True"
    try:
        return float(cell)
    except ValueError:
        return cell


def disk_error_text(error: OSError) -> str | None:
    """One line for a write the disk or the folder refused (full, quota, read-only, not ours), naming the path;
    None for other errors."""
    if error.errno not in DISK_ERRNOS:
        return None
    where = error.filename or "the run folder"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left to write {where} ({error.strerror}): free space there or point --out to another "
                "disk; the run resumes from its last checkpoint")
    return (f"cannot write {where} ({error.strerror}): the folder is read-only or not yours; fix its "
            "permissions or use another folder (--out, --data-root)")


def slurm_ids() -> dict[str, str]:
    """This process's SLURM job id as squeue shows it (``123_4`` for an array task), if inside a job."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return {"slurm_job_id": f"{job}_{task}"}
    if os.environ.get("SLURM_JOB_ID"):
        return {"slurm_job_id": os.environ["SLURM_JOB_ID"]}
    return {}


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
