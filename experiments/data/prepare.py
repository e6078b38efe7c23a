"""Getting a dataset ready before any run needs it: ``python -m experiments.data prepare cifar10 cifar100 --root DIR``.

Preparing downloads the official archive (or takes a local one with ``--from FILE``), verifies its checksum,
extracts it into a temporary folder beside the target, verifies every file, and only then renames the folder
into place: a reader never sees half a dataset. An exclusive lock on ``<root>/.neve-data.lock`` makes
concurrent preparations (or training processes that download, see ``cifar.py``) of one data root wait for
each other instead of extracting over each other; loads take it shared.

:func:`check_data` says whether a dataset is present and verified at a root, with the check each dataset
registers (``register_dataset(check=..., prepare=...)``): CIFAR by its checksums, ImageNet-100 by its class
folders (it cannot be downloaded); a dataset with no check (digits, bundled with scikit-learn; any dataset
generated offline) is always ready. The sweep checks this before it submits anything.

An archive holding a folder written by ``tests.synthetic_data`` (its manifest beside the files) is accepted with
a warning and verified against the manifest, as the loader does: that is how the tests prepare offline.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .base import DATASETS, dataset

log = logging.getLogger(__name__)

LOCK_NAME = ".neve-data.lock"


@dataclass(frozen=True)
class DataCheck:
    dataset: str
    root: Path
    ready: bool
    detail: str
    command: str | None = None  # what makes it ready, when a command can

    def line(self) -> str:
        state = "ready" if self.ready else "NOT READY"
        fix = f"; prepare it with: {self.command}" if self.command and not self.ready else ""
        return f"{self.dataset} at {self.root}: {state} ({self.detail}){fix}"


# --------------------------------------------------------------------------------------------------- lock
@contextmanager
def data_root_lock(root: str | Path, *, shared: bool = False) -> Iterator[None]:
    """Hold ``root``'s data lock (shared: reading; exclusive: writing) for the block, waiting for it.

    A root this process cannot write to (a read-only shared copy) is used without a lock: no one writes there."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK_NAME, "a+")
    except OSError:
        yield
        return
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with handle:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for the data lock %s: another process is preparing data there", root / LOCK_NAME)
            fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -------------------------------------------------------------------------------------------------- check
def prepare_command(names: Sequence[str], root: str | Path) -> str:
    return f"python -m experiments.data prepare {' '.join(names)} --root {root}"


def check_data(name: str, root: str | Path) -> DataCheck:
    """Whether dataset ``name`` is present (and, where it has checksums, verified) at ``root``: its registered
    check, or ready when it has none (bundled or generated)."""
    root = Path(root).resolve()
    check = dataset(name).check
    return check(name, root) if check else DataCheck(name, root, True, "needs no preparation")


# ------------------------------------------------------------------------------------------------ prepare
def prepare(name: str, root: str | Path, archive: str | Path | None = None) -> DataCheck:
    """Make ``name`` ready at ``root`` (its registered ``prepare``: downloading, or from ``archive``); a ready
    dataset is left as it is."""
    root = Path(root).resolve()
    spec = dataset(name)
    if spec.prepare is None:
        check = check_data(name, root)
        if check.ready:
            return check
        raise ValueError(f"{spec.title} cannot be prepared by a command: {check.detail}")
    with data_root_lock(root):
        check = check_data(name, root)
        if check.ready:
            return DataCheck(name, root, True, f"already there, {check.detail}")
        spec.prepare(name, root, Path(archive).resolve() if archive else None)
        return check_data(name, root)


def preparable() -> list[str]:
    """The datasets a command can prepare (each registered with a ``prepare``)."""
    return [name for name, spec in DATASETS.items() if spec.prepare]


# ---------------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.data", description="Prepare datasets before training.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("prepare", help="download (or take --from), verify and extract datasets into --root")
    cmd.add_argument("datasets", nargs="+", choices=sorted(DATASETS), metavar="DATASET",
                     help=f"datasets to prepare: {', '.join(preparable())} (others are only checked)")
    cmd.add_argument("--root", default="data", help="the data root the runs use (--data-root; default data/)")
    cmd.add_argument("--from", dest="archive", metavar="FILE",
                     help="a local archive (e.g. cifar-10-python.tar.gz) instead of downloading; one dataset only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.archive and len(args.datasets) != 1:
        parser.error("--from FILE goes with one dataset")
    failed = 0
    for name in args.datasets:
        try:
            check = prepare(name, args.root, args.archive)
        except (ValueError, RuntimeError, OSError) as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            failed += 1
            continue
        print(check.line())
        failed += not check.ready
    return 1 if failed else 0
