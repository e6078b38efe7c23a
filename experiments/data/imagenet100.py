"""ImageNet-100: the 100-class subset of ImageNet-1k given by the CMC list of WordNet ids
(``imagenet100_classes.txt``, shipped with the package), read with torchvision's ImageFolder.

Layout: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``; other class folders (e.g. a full
ImageNet-1k tree) are ignored. Class index = position of the wnid in the sorted list of the 100 ids.

Recipe (spec section 4): train Resize(232) + RandomCrop(224) + RandomHorizontalFlip + ToTensor + Normalize;
eval Resize(232) + CenterCrop(224). ``image_size`` S replaces 224 and the resize becomes round(S * 232 / 224).
The random crop and flip of a training sample are drawn from a generator seeded per (seed, epoch, sample),
handed to the dataset through the sampler, so an epoch is identical whatever ``num_workers`` is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .base import (
    MANIFEST_NAME,
    Batch,
    DataSplits,
    EpochCost,
    EvalStream,
    TrainStream,
    as_path,
    make_generator,
    read_manifest,
    register_dataset,
)
from .prepare import DataCheck
from .splits import check_holdout, check_label_noise, holdout_split, symmetric_label_noise

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_SIZE = 224
RESIZE_SIZE = 232


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids, in the file's order (the class index uses their sorted order)."""
    text = resources.files("experiments.data").joinpath("imagenet100_classes.txt").read_text()
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if len(ids) != 100 or len(set(ids)) != 100:
        raise RuntimeError(f"the packaged ImageNet-100 class list has {len(set(ids))} distinct ids, not 100")
    return ids


def resize_for(image_size: int) -> int:
    return int(round(image_size * RESIZE_SIZE / CROP_SIZE))


def check_class_folders(folder: Path, classes: Sequence[str]) -> None:
    missing = [c for c in sorted(classes) if not (folder / c).is_dir()]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{len(missing)} of the {len(classes)} ImageNet-100 class folders are missing from {folder}: "
            f"{shown}. Every class of the list must have a folder <wnid>/ of JPEGs there."
        )


def _image_folder(folder: Path, classes: Sequence[str]) -> Any:
    """torchvision ImageFolder restricted to ``classes`` (index = sorted position)."""
    from torchvision.datasets import ImageFolder

    wanted = sorted(classes)

    class ClassListImageFolder(ImageFolder):
        def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
            return list(wanted), {c: i for i, c in enumerate(wanted)}

    return ClassListImageFolder(str(folder))


class SeededTrainTransform:
    """Resize(resize) + RandomCrop(crop) + RandomHorizontalFlip + ToTensor + Normalize, with its randomness
    taken from an explicit generator instead of torch's global one."""

    def __init__(self, crop: int, resize: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.crop, self.resize, self.mean, self.std = crop, resize, list(mean), list(std)

    def __call__(self, image: Any, generator: torch.Generator) -> Tensor:
        from torchvision.transforms import functional as TF

        image = TF.resize(image, self.resize)
        width, height = image.size
        if height < self.crop or width < self.crop:  # RandomCrop(pad_if_needed) would pad; resize >= crop
            image = TF.resize(image, self.crop)
            width, height = image.size
        top = int(torch.randint(0, height - self.crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - self.crop + 1, (1,), generator=generator))
        image = TF.crop(image, top, left, self.crop, self.crop)
        if float(torch.rand(1, generator=generator)) < 0.5:
            image = TF.hflip(image)
        return TF.normalize(TF.to_tensor(image), self.mean, self.std)


def eval_transform(crop: int, resize: int) -> Callable[[Any], Tensor]:
    from torchvision import transforms as T

    return T.Compose(
        [T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


class _ImageListDataset(Dataset):
    """(path, label) samples. Train mode: key = (index, sample_seed) -> (image, label, index).
    Eval mode: key = index -> (image, label)."""

    def __init__(
        self, paths: list[str], labels: Tensor, loader: Callable[[str], Any], transform: Any, train: bool
    ) -> None:
        self.paths, self.labels = paths, [int(x) for x in labels]
        self.loader, self.transform, self.train = loader, transform, train

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: Any) -> tuple[Any, ...]:
        if self.train:
            index, sample_seed = key
            generator = torch.Generator().manual_seed(int(sample_seed))
            return self.transform(self.loader(self.paths[index]), generator), self.labels[index], index
        return self.transform(self.loader(self.paths[key])), self.labels[key]


def _loader_kwargs(num_workers: int, device: torch.device) -> dict[str, Any]:
    return {"num_workers": int(num_workers), "pin_memory": device.type == "cuda", "persistent_workers": False}


class ImageFolderTrainStream(TrainStream):
    def __init__(
        self,
        dataset: _ImageListDataset,
        labels: Tensor,
        clean_labels: Tensor,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        num_workers: int,
    ) -> None:
        self.dataset = dataset
        self.labels = labels.to("cpu", torch.int64)
        self.clean_labels = clean_labels.to("cpu", torch.int64)
        self.batch_size, self.seed, self.device, self.num_workers = (
            int(batch_size),
            int(seed),
            device,
            num_workers,
        )

    def batches(self, epoch: int) -> Iterator[Batch]:
        generator = make_generator("train-stream", self.seed, int(epoch))
        order = torch.randperm(self.num_samples, generator=generator)
        sample_seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator)
        keys = list(zip(order.tolist(), sample_seeds.tolist(), strict=True))
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=keys,
            drop_last=False,
            generator=make_generator("loader", self.seed, int(epoch)),  # keeps global RNG intact
            **_loader_kwargs(self.num_workers, self.device),
        )
        for images, labels, indices in loader:
            yield (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
                indices.to(self.device, non_blocking=True),
            )


class ImageFolderEvalStream(EvalStream):
    """Fixed order. Unaugmented, unless ``augment_seed`` is given and ``dataset`` is in train mode: then each
    epoch's random crop and flip of a sample come from a generator seeded per (seed, epoch, sample)."""

    def __init__(
        self,
        dataset: _ImageListDataset,
        *,
        batch_size: int,
        device: torch.device,
        num_workers: int,
        augment_seed: int | None = None,
    ) -> None:
        if dataset.train != (augment_seed is not None):
            raise ValueError("an augmented eval stream needs a train-mode dataset and a seed; a plain one neither")
        self.dataset = dataset
        self.labels = torch.tensor(dataset.labels, dtype=torch.int64)
        self.batch_size, self.device, self.num_workers = int(batch_size), device, num_workers
        self.augment_seed = augment_seed
        self.augmented = augment_seed is not None

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.batches(0)

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        sampler = None
        if self.augment_seed is not None:
            generator = make_generator("test-augmentation", self.augment_seed, int(epoch))
            sample_seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator)
            sampler = list(zip(range(self.num_samples), sample_seeds.tolist(), strict=True))
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=False,
            sampler=sampler,
            generator=torch.Generator().manual_seed(0),
            **_loader_kwargs(self.num_workers, self.device),
        )
        for images, labels, *_ in loader:  # an augmented (train-mode) dataset also yields the sample index
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def images(self, indices: Tensor) -> Tensor:
        return torch.stack([self.dataset[int(i)][0] for i in indices.tolist()]).float()


def check_imagenet100(name: str, root: Path) -> DataCheck:
    """Whether ``root`` holds train/ and val/ with the 100 class folders (the data cannot be downloaded)."""
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


#: Epoch times on an H100, not measured yet: assumed from the loaders' throughput.
IMAGENET100_EPOCH_COSTS = {
    "resnet50": EpochCost(90.0, "H100", False, "assumed ~1,500 images/s (PIL DataLoader bound) over 126,689 "
                                               "images plus test; not measured"),
    "swinv2_tiny": EpochCost(150.0, "H100", False, "assumed ~900 images/s at 256 px; not measured"),
}


@register_dataset("imagenet100", title="ImageNet-100", train_size=126_689, check=check_imagenet100,
                  epoch_costs=IMAGENET100_EPOCH_COSTS)
def build_imagenet100(root: str | Path, **kw: Any) -> DataSplits:
    check_holdout(kw["holdout"])
    check_label_noise(kw["label_noise"])
    root = as_path(root)
    classes = imagenet100_classes()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(
                f"ImageNet-100 not found: looked for the folder {root / split}. It cannot be downloaded "
                f"automatically (download={kw['download']} changes nothing): get ImageNet-1k (ILSVRC 2012) "
                f"from https://image-net.org, arrange train/ and val/ as <wnid>/*.JPEG folders (the val "
                f"images need sorting into class folders) and pass the folder holding train/ and val/. Only "
                f"the 100 ids of the packaged class list are used. For a smoke run without the real data: "
                f"`python -m tests.synthetic_data imagenet100 --root {root}`."
            )
        check_class_folders(root / split, classes)
    synthetic = read_manifest(root) is not None
    if synthetic:
        log.warning(
            "ImageNet-100 at %s is SYNTHETIC data written by tests.synthetic_data (%s), not the real "
            "dataset. Do not report results on it.",
            root,
            MANIFEST_NAME,
        )
    device = torch.device(kw["device"])
    crop = int(kw.get("image_size") or CROP_SIZE)
    resize = resize_for(crop)
    batch_size, eval_bs = int(kw["batch_size"]), int(kw["eval_batch_size"] or kw["batch_size"])
    workers, seed = int(kw["num_workers"]), int(kw["seed"])

    train_folder = _image_folder(root / "train", classes)
    val_folder = _image_folder(root / "val", classes)
    train_paths = [p for p, _ in train_folder.samples]
    train_targets = torch.tensor([t for _, t in train_folder.samples], dtype=torch.int64)
    train_idx, val_idx = holdout_split(len(train_paths), kw["holdout"], seed)
    part_paths = [train_paths[i] for i in train_idx.tolist()]
    clean = train_targets[train_idx]
    noisy = symmetric_label_noise(clean, kw["label_noise"], len(classes), seed)
    evaluate = eval_transform(crop, resize)
    loader = train_folder.loader

    train_transform = SeededTrainTransform(crop, resize, IMAGENET_MEAN, IMAGENET_STD)
    train = ImageFolderTrainStream(
        _ImageListDataset(part_paths, noisy, loader, train_transform, train=True),
        noisy,
        clean,
        batch_size=batch_size,
        seed=seed,
        device=device,
        num_workers=workers,
    )

    def eval_stream(paths: list[str], labels: Tensor) -> ImageFolderEvalStream:
        dataset = _ImageListDataset(paths, labels, loader, evaluate, train=False)
        return ImageFolderEvalStream(dataset, batch_size=eval_bs, device=device, num_workers=workers)

    val = None
    if len(val_idx):
        val = eval_stream([train_paths[i] for i in val_idx.tolist()], train_targets[val_idx])
    test_paths = [p for p, _ in val_folder.samples]
    test_labels = torch.tensor([t for _, t in val_folder.samples], dtype=torch.int64)
    if kw.get("test_augmentation", False):  # the training transform on the test set (the authors' Label Wave)
        augmented = _ImageListDataset(test_paths, test_labels, loader, train_transform, train=True)
        test = ImageFolderEvalStream(augmented, batch_size=eval_bs, device=device, num_workers=workers,
                                     augment_seed=seed)
    else:
        test = eval_stream(test_paths, test_labels)
    return DataSplits(
        name="imagenet100",
        num_classes=len(classes),
        image_shape=(3, crop, crop),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        train=train,
        val=val,
        test=test,
        train_eval=eval_stream(part_paths, noisy),
        synthetic=synthetic,
        classes=tuple(sorted(classes)),
    )
