"""Getting a dataset ready before any run needs it: ``python -m experiments.data prepare cifar10 cifar100 --root DIR``.

Preparing downloads the official archive (or takes a local one with ``--from FILE``), verifies its checksum,
extracts it into a temporary folder beside the target, verifies every file, and only then renames the folder
into place: a reader never sees half a dataset. An exclusive lock on ``<root>/.neve-data.lock`` makes
concurrent preparations (or training processes that download, see ``cifar.py``) of one data root wait for
each other instead of extracting over each other; loads take it shared.

:func:`check_data` says whether a dataset is present and verified at a root, per dataset: CIFAR by its
checksums, ImageNet-100 by its class folders (it cannot be downloaded); a dataset with no preparation step
(digits, bundled with scikit-learn; any dataset generated offline) is always ready. The sweep checks this before
it submits anything.

An archive holding a folder written by ``tests.synthetic_data`` (its manifest beside the files) is accepted with
a warning and verified against the manifest, as the loader does: that is how the tests prepare offline.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import md5_of, read_manifest

log = logging.getLogger(__name__)

LOCK_NAME = ".neve-data.lock"
PRETTY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet100": "ImageNet-100"}


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


def _cifar(name: str) -> Any:
    from torchvision import datasets

    return datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100


def _cifar_files(cls: Any) -> dict[str, str]:
    """File -> official md5, as torchvision verifies them."""
    return {f: m for f, m in cls.train_list + cls.test_list} | {cls.meta["filename"]: cls.meta["md5"]}


def _bad_files(folder: Path, expected: dict[str, str]) -> list[str]:
    return [f for f, m in expected.items() if not (folder / f).is_file() or md5_of(folder / f) != m]


def _check_cifar(name: str, root: Path) -> DataCheck:
    cls = _cifar(name)
    folder = root / cls.base_folder
    command = prepare_command([name], root)
    if not folder.is_dir():
        return DataCheck(name, root, False, f"no folder {folder}", command)
    manifest = read_manifest(folder)
    expected = _cifar_files(cls)
    if manifest is not None:
        expected = {f: manifest.get("md5", {}).get(f, "") for f in expected}
    bad = _bad_files(folder, expected)
    kind = "its SYNTHETIC manifest's checksums" if manifest is not None else "the official checksums"
    if bad:
        return DataCheck(name, root, False, f"{', '.join(bad)} missing or not matching {kind}", command)
    return DataCheck(name, root, True, f"verified against {kind}")


def _check_imagenet100(name: str, root: Path) -> DataCheck:
    from .imagenet100 import check_class_folders, imagenet100_classes

    how = ("it cannot be downloaded: put ImageNet-1k's train/ and val/ (as <wnid>/*.JPEG folders) there; "
           "see docs/training.md, Data")
    try:
        for split in ("train", "val"):
            if not (root / split).is_dir():
                return DataCheck(name, root, False, f"no folder {root / split}; {how}")
            check_class_folders(root / split, imagenet100_classes())
    except ValueError as error:
        return DataCheck(name, root, False, f"{error}")
    return DataCheck(name, root, True, "the 100 class folders are in train/ and val/")


#: Datasets whose files must be at the data root before training; any other needs no preparation.
CHECKS = {"cifar10": _check_cifar, "cifar100": _check_cifar, "imagenet100": _check_imagenet100}
#: Datasets a command can prepare.
PREPARABLE = ("cifar10", "cifar100")


def check_data(name: str, root: str | Path) -> DataCheck:
    """Whether dataset ``name`` is present (and, where it has checksums, verified) at ``root``."""
    root = Path(root).resolve()
    if name not in CHECKS:
        return DataCheck(name, root, True, "needs no preparation")
    return CHECKS[name](name, root)


# ------------------------------------------------------------------------------------------------ prepare
def prepare(name: str, root: str | Path, archive: str | Path | None = None) -> DataCheck:
    """Make ``name`` ready at ``root`` (downloading, or from ``archive``); a ready dataset is left as it is."""
    root = Path(root).resolve()
    if name not in PREPARABLE:
        check = check_data(name, root)
        if check.ready or name not in CHECKS:
            return check
        raise ValueError(f"{PRETTY.get(name, name)} cannot be prepared by a command: {check.detail}")
    with data_root_lock(root):
        check = check_data(name, root)
        if check.ready:
            return DataCheck(name, root, True, f"already there, {check.detail}")
        _prepare_cifar(name, root, Path(archive).resolve() if archive else None)
        return check_data(name, root)


def _prepare_cifar(name: str, root: Path, archive: Path | None) -> None:
    cls = _cifar(name)
    pretty, target = PRETTY[name], root / cls.base_folder
    with tempfile.TemporaryDirectory(prefix=f".prepare-{name}-", dir=root) as tmp:
        if archive is None:
            from torchvision.datasets.utils import download_url

            log.info("downloading %s from %s", pretty, cls.url)
            try:
                download_url(cls.url, tmp, cls.filename)
            except OSError as error:
                raise RuntimeError(f"could not download {pretty} from {cls.url} ({error}); download it where "
                                   f"there is internet and pass it with --from FILE") from error
            archive = Path(tmp) / cls.filename
        if not archive.is_file():
            raise FileNotFoundError(f"--from {archive}: no such file")
        official = md5_of(archive) == cls.tgz_md5
        extracted = Path(tmp) / "extracted"
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(extracted, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ValueError(f"{archive} is not a readable {pretty} archive ({error}); nothing was changed in "
                             f"{root}") from error
        folder = extracted / cls.base_folder
        manifest = read_manifest(folder) if folder.is_dir() else None
        if not official and manifest is None:
            raise ValueError(f"{archive}'s md5 is not {pretty}'s official {cls.tgz_md5}: it is not the archive "
                             f"from {cls.url}, or an incomplete copy of it; nothing was changed in {root}")
        if not folder.is_dir():
            raise ValueError(f"{archive} holds no {cls.base_folder}/ folder; nothing was changed in {root}")
        expected = _cifar_files(cls)
        if manifest is not None:
            log.warning("%s is SYNTHETIC data (manifest from tests.synthetic_data), verified against its own "
                        "checksums: do not report results on it", archive)
            expected = {f: manifest.get("md5", {}).get(f, "") for f in expected}
        bad = _bad_files(folder, expected)
        if bad:
            raise ValueError(f"{archive}: {', '.join(bad)} missing or failing their checksums after extraction; "
                             f"nothing was changed in {root}")
        if target.exists():  # incomplete or corrupted: kept aside for the user, never deleted
            aside = target.with_name(f"{target.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
            target.rename(aside)
            log.warning("%s failed its checksums; moved it to %s", target, aside)
        os.rename(folder, target)
    log.info("%s is ready at %s", pretty, target)


# ---------------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.data", description="Prepare datasets before training.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("prepare", help="download (or take --from), verify and extract datasets into --root")
    cmd.add_argument("datasets", nargs="+", choices=sorted({*PREPARABLE, *CHECKS, "digits"}), metavar="DATASET",
                     help=f"datasets to prepare: {', '.join(PREPARABLE)} (others are only checked)")
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
