"""Cluster profiles: what a SLURM cluster needs to run a sweep, one TOML file per cluster in ``slurm/``.

A profile names the partition, the resources of one job (GPUs, CPUs, memory, time limit), the account, how
many array tasks may run at once, the cluster's array-size limit, how many runs share one GPU, how often a job
may be requeued, shell lines to run first, and any extra ``#SBATCH`` options. ``slurm/example.toml`` documents
every field. A missing, unknown or mistyped field is an error that names it, and so is a value that would break
the batch script: a newline (or any control character) in a field written on an ``#SBATCH`` line, an ``[sbatch]``
key that is not an option name, or one the sweep writes itself.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PROFILE_DIR = Path(__file__).resolve().parents[1] / "slurm"


class ProfileError(ValueError):
    """A cluster profile that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    partition: str
    time_min: int
    account: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: float = 32.0
    array_parallelism: int = 64
    max_array_size: int = 1000
    runs_per_gpu: int = 1
    max_requeues: int = 20
    setup: tuple[str, ...] = ()
    sbatch: dict[str, Any] = field(default_factory=dict)

    def executor_parameters(self, runs_per_job: int) -> dict[str, Any]:
        """``submitit.SlurmExecutor.update_parameters`` arguments for jobs of ``runs_per_job`` runs."""
        parameters: dict[str, Any] = {
            "partition": self.partition, "time": self.time_min, "mem": f"{self.mem_gb:g}GB",
            "cpus_per_task": self.cpus_per_task, "array_parallelism": self.array_parallelism,
            "nodes": 1, "ntasks_per_node": 1, "setup": list(self.setup),
            "additional_parameters": dict(self.sbatch),
        }
        if self.gpus_per_task:
            parameters["gpus_per_node"] = self.gpus_per_task
        if self.account:
            parameters["account"] = self.account
        return parameters


_REQUIRED = ("partition", "time_min")
_TYPES: dict[str, tuple[type, ...]] = {
    "partition": (str,), "time_min": (int,), "account": (str,), "gpus_per_task": (int,), "cpus_per_task": (int,),
    "mem_gb": (int, float), "array_parallelism": (int,), "max_array_size": (int,), "runs_per_gpu": (int,),
    "max_requeues": (int,), "setup": (list,), "sbatch": (dict,),
}
_MINIMUM = {"time_min": 1, "gpus_per_task": 0, "cpus_per_task": 1, "mem_gb": 0.001, "array_parallelism": 1,
            "max_array_size": 1, "runs_per_gpu": 1, "max_requeues": 0}


#: ``#SBATCH`` options the sweep writes itself: from a profile field, or submitit's own (its requeue needs them).
_SET_ELSEWHERE = {"partition": "the field partition", "time": "the field time_min", "mem": "the field mem_gb",
                  "cpus-per-task": "the field cpus_per_task", "account": "the field account",
                  "gpus-per-node": "the field gpus_per_task", "array": "array_parallelism and max_array_size",
                  **dict.fromkeys(("nodes", "ntasks-per-node", "output", "error", "open-mode", "signal", "job-name",
                                   "wrap"), "the sweep (submitit)")}
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _check_sbatch_value(path: Path, field_name: str, value: Any) -> None:
    """A value written on an ``#SBATCH`` line: a control character (a newline above all) would end the line, the
    rest would run as shell, and sbatch would ignore every directive after it (the time limit, the signal)."""
    if isinstance(value, str) and any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ProfileError(f"{path}: field {field_name!r} holds a control character ({value!r}); it would end the "
                           "#SBATCH line and run the rest as shell. Write it on one line, without newlines or tabs")


def _check_sbatch_option(path: Path, key: str, value: Any) -> None:
    """One ``[sbatch]`` entry: an option name, a one-line value (string, number, or true for a bare flag)."""
    if not isinstance(key, str) or not _OPTION_NAME.fullmatch(key):
        raise ProfileError(f"{path}: [sbatch] key {key!r} is not an sbatch option name (letters, digits, - and _, "
                           "e.g. qos or mail-type)")
    if key.replace("_", "-") in _SET_ELSEWHERE:
        raise ProfileError(f"{path}: [sbatch] {key} is written by {_SET_ELSEWHERE[key.replace('_', '-')]}; remove "
                           "it from [sbatch]")
    if value is False or not isinstance(value, str | int | float):
        raise ProfileError(f"{path}: [sbatch] {key} must be a string, a number or true (a bare flag), got "
                           f"{value!r}")
    _check_sbatch_value(path, f"sbatch.{key}", value)


def profile_path(name: str) -> Path:
    """``name`` as a file path (``my/cluster.toml``) or a profile in ``slurm/`` (``example``)."""
    path = Path(name)
    if path.suffix == ".toml" or path.parent != Path("."):
        return path
    return PROFILE_DIR / f"{name}.toml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name: str) -> ClusterProfile:
    path = profile_path(name)
    if not path.is_file():
        raise ProfileError(f"no cluster profile {path}: copy slurm/example.toml to slurm/<cluster>.toml, fill it in, "
                           f"and pass --cluster <cluster> (profiles here: {', '.join(available_profiles()) or 'none'})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path} is not valid TOML: {error}") from error
    known = {f.name for f in fields(ClusterProfile)} - {"name"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"{path}: unknown field(s) {', '.join(unknown)}; the fields are {', '.join(sorted(known))} "
                           "(see slurm/example.toml)")
    for name_ in _REQUIRED:
        if name_ not in data or data[name_] in ("", None):
            raise ProfileError(f"{path}: the field {name_!r} is required (see slurm/example.toml)")
    for key, value in data.items():
        types = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise ProfileError(f"{path}: field {key!r} must be {expected}, got {value!r}")
        if key in _MINIMUM and value < _MINIMUM[key]:
            raise ProfileError(f"{path}: field {key!r} must be >= {_MINIMUM[key]}, got {value!r}")
    if not all(isinstance(line, str) for line in data.get("setup", [])):
        raise ProfileError(f"{path}: field 'setup' must be a list of shell lines (strings)")
    for key in ("partition", "account"):
        if key in data:
            _check_sbatch_value(path, key, data[key])
    for key, value in data.get("sbatch", {}).items():
        _check_sbatch_option(path, key, value)
    data["setup"] = tuple(data.get("setup", ()))
    return ClusterProfile(name=path.stem, **data)
