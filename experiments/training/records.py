"""Per-epoch records of a run: ``config.json``, ``records.csv`` and ``summary.json`` in the run folder
(:class:`~experiments.run_folder.RunFolder` names them and reads them back), mirrored to a W&B run (online,
offline, or not at all).

The CSV is the record format the rest of the project reads (aggregation, plots); W&B is a view of it.
Every file is rewritten atomically, so a run killed at any moment leaves the previous complete file.
"""

from __future__ import annotations

import csv
import io
import json
import netrc
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from experiments.run_folder import RunFolder
from experiments.run_folder import read_records as read_records  # re-exported: where callers have read records
from neve.io import atomic_write_json, atomic_write_text

#: ``--wandb``: "auto" picks one of the others (:func:`resolve_wandb_mode`).
WANDB_MODES = ("auto", "online", "offline", "disabled")
_RESOLVED_MODES = WANDB_MODES[1:]
_WANDB_MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # older spellings wandb still accepts
_DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def forget_inherited_wandb_service() -> None:
    """Let this training process start its own W&B service instead of the launcher's.

    A process that used W&B (a notebook, a test, a sweep's submitter) leaves ``WANDB_SERVICE`` in the
    environment its children inherit, and W&B then attaches them to its service. A resumed run would share it
    with its killed attempt, whose run id the service still holds ("run ID ... is in use"), and on a SLURM
    node the launcher's socket does not exist. Call it at the start of a process that trains, before W&B.
    """
    os.environ.pop("WANDB_SERVICE", None)


def resolve_wandb_mode(mode: str) -> str:
    """Turn ``mode`` into one of "online", "offline", "disabled".

    "auto" means: what ``WANDB_MODE`` (or ``WANDB_DISABLED``) asks for if set, else "online" when the user
    is logged in to W&B (``WANDB_API_KEY`` set, or an API key for the W&B host in ~/.netrc), else "offline"
    (the run can be uploaded later with ``wandb sync``).
    """
    if mode in _RESOLVED_MODES:
        return mode
    if mode != "auto":
        raise ValueError(f"unknown W&B mode {mode!r}; expected one of: {', '.join(WANDB_MODES)}")
    if os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled"
    if env_mode := os.environ.get("WANDB_MODE", "").strip().lower():
        env_mode = _WANDB_MODE_ALIASES.get(env_mode, env_mode)
        if env_mode not in _RESOLVED_MODES:
            expected = ", ".join(_RESOLVED_MODES)
            raise ValueError(f"WANDB_MODE={env_mode!r} is not one of {expected}; fix or unset it")
        return env_mode
    return "online" if _wandb_logged_in() else "offline"


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", _DEFAULT_WANDB_HOST)
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth  # wandb's own reader (recent wandb versions)
    except ImportError:
        return _netrc_has_key(host)
    try:
        return bool(read_netrc_auth(host=host))
    except Exception as error:  # a malformed key: W&B online would fail too
        warnings.warn(f"ignoring the W&B API key in netrc ({error}); logging to W&B offline", stacklevel=3)
        return False


def _netrc_has_key(host: str) -> bool:
    path = Path(os.environ.get("NETRC", "~/.netrc")).expanduser()
    try:
        credentials = netrc.netrc(path).authenticators(urlsplit(host).netloc)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(credentials and credentials[2])


class RunLog:
    """What a run wrote, epoch by epoch: a CSV in the run folder and (optionally) a W&B run.

    ``records`` and ``wandb_id`` are what a checkpoint must keep so that a resumed run continues the
    same CSV and the same W&B run: pass them back to the constructor on resume.
    """

    def __init__(
        self,
        run_dir: Path,
        config: dict,
        *,
        wandb_mode: str = "auto",
        project: str = "neve",
        run_name: str | None = None,
        records: list[dict] | None = None,
        wandb_id: str | None = None,
        group: str | None = None,
    ):
        self.folder = RunFolder(Path(run_dir))
        self.run_dir = self.folder.path
        self.config = config
        self.records: list[dict] = [dict(record) for record in records or []]
        self.wandb_id = wandb_id
        self.group = group
        self.wandb_mode = resolve_wandb_mode(wandb_mode)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder.config_file, _json_safe(config))
        # On resume the CSV may hold epochs logged after the checkpoint was taken; the checkpoint wins.
        _write_csv(self.csv_path, self.records)
        self._run = None
        if self.wandb_mode != "disabled":
            self._run = self._start_wandb(project, run_name)
            self.wandb_id = self._run.id

    @property
    def csv_path(self) -> Path:
        return self.folder.records_file

    def _start_wandb(self, project: str, run_name: str | None):
        import wandb  # slow to import: only when W&B is wanted

        def init(mode: str):
            return wandb.init(
                project=project,
                name=run_name,
                group=self.group,
                config=_json_safe(self.config),
                dir=self.run_dir,
                id=self.wandb_id,
                resume="allow",
                mode=mode,
            )

        if self.wandb_mode != "online":
            return init(self.wandb_mode)
        try:
            return init("online")
        except Exception as error:  # e.g. no network on a compute node: keep the run, sync it later
            warnings.warn(
                f"W&B online failed ({error}); logging offline under {self.run_dir / 'wandb'} instead, "
                "upload it later with `wandb sync`",
                stacklevel=3,
            )
            self.wandb_mode = "offline"
            return init("offline")

    def log(self, record: dict) -> None:
        """Append one epoch's record (it must have an ``epoch``), rewrite the CSV, and log it to W&B."""
        if "epoch" not in record:
            raise ValueError(f"a record needs an 'epoch' key (the W&B step); got keys {sorted(record)}")
        # Plain Python values (no numpy/torch scalars), so a checkpoint holding ``records`` loads anywhere.
        record = {key: _plain(value) for key, value in record.items()}
        records = [*self.records, record]
        _write_csv(self.csv_path, records)  # raises before anything changed if a value cannot be written
        self.records = records
        if self._run is not None:
            values = {key: value for key, value in record.items() if value is not None}
            self._run.log(_json_safe(values), step=int(record["epoch"]))

    def finish(self, summary: dict) -> None:
        """Write ``summary.json``, put the summary in the W&B run's summary, and close the W&B run."""
        atomic_write_json(self.folder.summary_file, _json_safe(summary))
        if self._run is not None:
            self._run.summary.update(_json_safe(summary))
            self._run.finish()
            self._run = None


def _write_csv(path: Path, records: list[dict]) -> None:
    # The whole text is built first, so a value that cannot be written never touches the file.
    columns = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    if columns:
        writer.writeheader()
    for record in records:
        writer.writerow({key: _cell(value) for key, value in record.items()})
    atomic_write_text(path, buffer.getvalue())


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    return value


def _json_safe(data: Any) -> Any:
    """Plain JSON data: numpy/torch scalars as numbers, paths and other objects as strings."""
    return json.loads(json.dumps(data, default=_json_default))


def _json_default(value: Any) -> Any:
    plain = _plain(value)
    return str(value) if plain is value else plain
