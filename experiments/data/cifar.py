"""CIFAR-10 / CIFAR-100, read with torchvision's own dataset classes and served from the device.

Recipe (spec section 4): RandomCrop 32 with zero padding 4 + RandomHorizontalFlip + Normalize with the
per-dataset mean/std, done as batched tensor ops on a device-resident uint8 tensor (``base.crop_flip``).

Integrity: real data is verified by torchvision with its official md5s. With ``download=True`` a missing or
corrupted folder is fetched by :func:`experiments.data.prepare.prepare` (atomic, under the data root's lock, so
concurrent runs wait instead of racing), and reading takes that lock shared. A folder written by
``tests.synthetic_data`` carries a manifest of its own md5s; for such a folder only, the torchvision class is
subclassed with the manifest's checksums, a warning says the data is synthetic, and ``DataSplits.synthetic``
is True.
"""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import MANIFEST_NAME, DataSplits, EpochCost, as_path, md5_of, read_manifest, register_dataset
from .base import dataset as registered
from .prepare import DataCheck, check_data, data_root_lock, prepare, prepare_command
from .splits import check_holdout, check_label_noise, tensor_splits

log = logging.getLogger(__name__)

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
CIFAR_PAD = 4


def _torchvision_class(name: str) -> Any:
    from torchvision import datasets

    return datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100


def _file_checks(cls: Any) -> list[tuple[str, str]]:
    return [(f, m) for f, m in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]


def _synthetic_class(base: Any, manifest: dict[str, Any], folder: Path) -> Any:
    """``base`` with the manifest's md5s in place of the official ones, and no download."""
    md5 = manifest.get("md5", {})
    needed = [f for f, _ in _file_checks(base)]
    missing = [f for f in needed if f not in md5]
    if missing:
        raise ValueError(f"{folder / MANIFEST_NAME} lists no checksum for {missing}; regenerate the folder")

    def download(self: Any) -> None:
        if not self._check_integrity():
            raise RuntimeError(
                f"the synthetic folder {folder} fails its own manifest checksums; delete it and write it "
                "again with `python -m tests.synthetic_data`, or delete it to download the real data"
            )

    return type(
        f"Synthetic{base.__name__}",
        (base,),
        {
            "train_list": [[f, md5[f]] for f, _ in base.train_list],
            "test_list": [[f, md5[f]] for f, _ in base.test_list],
            "meta": {**base.meta, "md5": md5[base.meta["filename"]]},
            "download": download,
        },
    )


def torchvision_cifar(name: str, root: str | Path, *, train: bool, transform: Any = None) -> Any:
    """torchvision's CIFAR dataset over ``root`` (verified; a synthetic folder by its manifest), with
    per-image ``transform``: the DataLoader + PIL pipeline the benchmark compares against."""
    cls = _torchvision_class(name)
    manifest = read_manifest(as_path(root) / cls.base_folder)
    if manifest is not None:
        cls = _synthetic_class(cls, manifest, as_path(root) / cls.base_folder)
    return cls(str(root), train=train, transform=transform, download=False)


def load_cifar_arrays(name: str, root: str | Path, download: bool) -> dict[str, Any]:
    """Read a CIFAR split pair through torchvision (checksums verified). Returns uint8 NCHW numpy
    arrays ``train_images``, ``test_images``, int64 ``train_labels``, ``test_labels``, ``classes``
    and ``synthetic``."""
    if name not in CIFAR_STATS:
        raise ValueError(f"not a CIFAR dataset: {name!r}")
    root = as_path(root)
    cls = _torchvision_class(name)
    folder = root / cls.base_folder
    pretty = registered(name).title
    manifest = read_manifest(folder) if folder.is_dir() else None
    synthetic = manifest is not None
    if synthetic:
        log.warning(
            "%s at %s is SYNTHETIC data written by tests.synthetic_data (manifest %s), not the real dataset; "
            "its files are verified against the manifest's checksums. Do not report results on it.",
            pretty,
            folder,
            MANIFEST_NAME,
        )
        cls = _synthetic_class(cls, manifest, folder)  # type: ignore[arg-type]
    elif not folder.is_dir() and not download:
        raise FileNotFoundError(
            f"{pretty} not found: looked for the folder {folder} (torchvision layout). Prepare it with "
            f"`python -m experiments.data prepare {name} --root {root}` (downloads {cls.url}; `--from FILE` takes a "
            f"copy of {cls.filename}), or let the run download it (leave out --no-download; download=True in code). "
            f"For a smoke run without the real data: `python -m tests.synthetic_data {name} --root {root}`."
        )
    elif download and not check_data(name, root).ready:
        prepare(name, root)  # atomic, and under the root's lock: concurrent runs wait instead of racing
    with data_root_lock(root, shared=True):  # never read while another process moves files in
        return _read_cifar(name, root, cls, folder, synthetic)


def _read_cifar(name: str, root: Path, cls: Any, folder: Path, synthetic: bool) -> dict[str, Any]:
    pretty = registered(name).title
    splits = {}
    for train in (True, False):
        try:
            dataset = cls(str(root), train=train, download=False)
        except RuntimeError as err:
            bad = [f for f, m in _file_checks(cls) if not (folder / f).is_file() or md5_of(folder / f) != m]
            kind = "its synthetic manifest" if synthetic else "torchvision's official checksums"
            raise RuntimeError(
                f"{pretty} at {folder} is incomplete or corrupted: {bad or 'unknown files'} missing or not "
                f"matching {kind}. Run `python -m experiments.data prepare {name} --root {root}` (it moves the bad "
                f"folder aside), or delete the folder and pass download=True to fetch it again."
            ) from err
        images = np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2))  # torchvision keeps NHWC
        splits["train" if train else "test"] = (images, np.asarray(dataset.targets, dtype=np.int64))
        classes = tuple(str(c) for c in dataset.classes)
    return {
        "train_images": splits["train"][0],
        "train_labels": splits["train"][1],
        "test_images": splits["test"][0],
        "test_labels": splits["test"][1],
        "classes": classes,
        "synthetic": synthetic,
    }


# ---------------------------------------------------------------------------------------------- prepare
def _official_md5s(cls: Any) -> dict[str, str]:
    """File -> official md5, as torchvision verifies them."""
    return dict(_file_checks(cls))


def _bad_files(folder: Path, expected: dict[str, str]) -> list[str]:
    return [f for f, m in expected.items() if not (folder / f).is_file() or md5_of(folder / f) != m]


def check_cifar(name: str, root: Path) -> DataCheck:
    """Whether CIFAR is at ``root``, every file matching the official checksums (a synthetic folder's: its
    manifest's)."""
    cls = _torchvision_class(name)
    folder = root / cls.base_folder
    command = prepare_command([name], root)
    if not folder.is_dir():
        return DataCheck(name, root, False, f"no folder {folder}", command)
    manifest = read_manifest(folder)
    expected = _official_md5s(cls)
    if manifest is not None:
        expected = {f: manifest.get("md5", {}).get(f, "") for f in expected}
    bad = _bad_files(folder, expected)
    kind = "its SYNTHETIC manifest's checksums" if manifest is not None else "the official checksums"
    if bad:
        return DataCheck(name, root, False, f"{', '.join(bad)} missing or not matching {kind}", command)
    return DataCheck(name, root, True, f"verified against {kind}")


def prepare_cifar(name: str, root: Path, archive: Path | None) -> None:
    """Download (or take ``archive``), verify and extract CIFAR into ``root`` atomically (the caller holds the
    root's lock: :func:`experiments.data.prepare.prepare`)."""
    cls = _torchvision_class(name)
    pretty, target = registered(name).title, root / cls.base_folder
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
        expected = _official_md5s(cls)
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


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of uint8 NCHW images to size x size, rounded back to uint8."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _build_cifar(name: str, root: str | Path, **kw: Any) -> DataSplits:
    check_holdout(kw["holdout"])
    check_label_noise(kw["label_noise"])
    arrays = load_cifar_arrays(name, root, kw["download"])
    device = torch.device(kw["device"])
    train_images = torch.from_numpy(arrays["train_images"])
    test_images = torch.from_numpy(arrays["test_images"])
    if kw.get("image_size"):
        train_images = resize_uint8(train_images, int(kw["image_size"]))
        test_images = resize_uint8(test_images, int(kw["image_size"]))
    mean, std = CIFAR_STATS[name]
    return tensor_splits(
        name=name,
        train_images=train_images,
        train_labels=torch.from_numpy(arrays["train_labels"]),
        test_images=test_images,
        test_labels=torch.from_numpy(arrays["test_labels"]),
        num_classes=10 if name == "cifar10" else 100,
        mean=mean,
        std=std,
        pad=CIFAR_PAD,
        flip=True,
        batch_size=kw["batch_size"],
        eval_batch_size=kw["eval_batch_size"],
        holdout=kw["holdout"],
        label_noise=kw["label_noise"],
        seed=kw["seed"],
        device=device,
        synthetic=arrays["synthetic"],
        classes=arrays["classes"],
        test_augmentation=kw.get("test_augmentation", False),
    )


#: 50,000 training images each; an H100 epoch of ResNet-32 (training, test and velocity), eager, bf16.
CIFAR_FACTS: dict[str, Any] = {
    "train_size": 50_000, "check": check_cifar, "prepare": prepare_cifar,
    "epoch_costs": {"resnet32": EpochCost(8.0, "H100", True, "a real NeVe run: 50,000 train images, test and "
                                                             "velocity, eager, bf16 (issue 2-4 session)")},
}


@register_dataset("cifar10", title="CIFAR-10", **CIFAR_FACTS)
def build_cifar10(root: str | Path, **kw: Any) -> DataSplits:
    return _build_cifar("cifar10", root, **kw)


@register_dataset("cifar100", title="CIFAR-100", **CIFAR_FACTS)  # same images and model; a 100-way head
def build_cifar100(root: str | Path, **kw: Any) -> DataSplits:
    return _build_cifar("cifar100", root, **kw)
