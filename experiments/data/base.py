"""The data interface the trainer uses: streams, the ``DataSplits`` bundle and the dataset registry.

Two implementations of the streams live here and in ``imagenet100.py``:

* ``TensorTrainStream`` / ``TensorEvalStream``: the whole split is ONE uint8 tensor (N, C, H, W) held on
  the training device, and augmentation (random crop with zero padding, horizontal flip) is a handful of
  batched tensor ops per batch, as in airbench. No PIL, no DataLoader workers. CIFAR and digits use it;
  MNIST-1D uses it with float32 sequences (N, 1, 40) and no augmentation.
* ``ImageFolderTrainStream`` / ``ImageFolderEvalStream`` (``imagenet100.py``): a DataLoader over JPEGs.

Reproducibility contract of every ``TrainStream``: all randomness of ``batches(epoch)`` (shuffling and
augmentation) comes from a ``torch.Generator`` seeded from ``(seed, epoch)`` only, so calling it twice with
the same epoch yields exactly the same batches -- a run killed and resumed at epoch ``e`` sees the data it
would have seen.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

Batch = tuple[Tensor, Tensor, Tensor]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that depends only on ``parts`` (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def make_generator(*parts: Any) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``derive_seed(*parts)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


# The manifest ``tests.synthetic_data`` writes beside the files of a synthetic dataset folder.
MANIFEST_NAME = "NEVE_SYNTHETIC.json"


def md5_of(path: str | Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The synthetic-data manifest in ``folder``, or None when the folder holds no synthetic data."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if not isinstance(manifest, dict) or manifest.get("synthetic") is not True:
        raise ValueError(f"{path} is not a valid neve synthetic-data manifest")
    return manifest


# --------------------------------------------------------------------------------------------- streams
class Stream(ABC):
    """Labelled samples served in batches of ``batch_size``; the last, partial batch is kept."""

    batch_size: int
    labels: Tensor  # CPU int64, one per sample

    @property
    def num_samples(self) -> int:
        return int(self.labels.numel())

    def __len__(self) -> int:
        """Batches per pass over the samples."""
        return math.ceil(self.num_samples / self.batch_size)


class TrainStream(Stream):
    """The training part of a dataset (after holdout removal and label noise).

    ``batches(epoch)`` yields ``(images, labels, indices)``: images float32 normalized on the device,
    labels int64 and indices int64 (positions of the samples in the training part, 0..num_samples-1),
    also on the device. ``labels`` / ``clean_labels`` are CPU int64 tensors of length ``num_samples``.
    """

    seed: int
    clean_labels: Tensor

    @abstractmethod
    def batches(self, epoch: int) -> Iterator[Batch]: ...


class EvalStream(Stream):
    """Unaugmented, normalized ``(images, labels)`` batches in a fixed order (labels on the device too);
    ``labels`` is in iteration order.

    A stream built with the training augmentation (``augmented``: the authors' Label Wave test loader) draws
    it from a generator seeded by (seed, epoch) in :meth:`batches`; iterating it directly is epoch 0.
    """

    augmented: bool = False

    @abstractmethod
    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of one evaluation at ``epoch``: the same for every epoch unless ``augmented``."""
        del epoch
        return iter(self)

    @abstractmethod
    def images(self, indices: Tensor) -> Tensor:
        """The normalized, unaugmented images at ``indices`` as a float32 CPU tensor (n, C, H, W)."""


def _as_stats(values: tuple[float, ...], device: torch.device, dims: int = 4) -> Tensor:
    """Per-channel statistics shaped to broadcast over (B, C, *spatial) with ``dims`` dimensions in all."""
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, *([1] * (dims - 2)))


def normalize_uint8(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (B, C, H, W) -> float32 ``(x / 255 - mean) / std`` (the ToTensor + Normalize formula); float
    samples (MNIST-1D's sequences) are already in their own units and are only normalized."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0).sub_(mean).div_(std)
    return images.float().sub(mean).div_(std)


def _check_samples(images: Tensor, pad: int = 0, flip: bool = False) -> None:
    """uint8 images (N, C, H, W), or float32 samples (N, C, *spatial) that are never cropped or flipped."""
    if images.dtype == torch.uint8 and images.dim() == 4:
        return
    if images.dtype == torch.float32 and images.dim() >= 3 and not pad and not flip:
        return
    raise ValueError(f"expected uint8 images (N, C, H, W), or float32 samples (N, C, *spatial) with no crop or "
                     f"flip; got {images.dtype} {tuple(images.shape)} (pad={pad}, flip={flip})")


def crop_flip(images: Tensor, pad: int, dx: Tensor, dy: Tensor, flip: Tensor | None) -> Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip of a batch, in one gather.

    ``images`` (B, C, H, W) any dtype; ``dx``, ``dy`` int64 (B,) offsets in [0, 2 * pad] into the padded
    image (``pad`` = no shift); ``flip`` bool (B,) or None. Output pixel (i, j) of sample b is
    ``padded[b, :, dy + i, dx + j]``, or ``padded[b, :, dy + i, dx + W - 1 - j]`` when flipped, which is
    torchvision's RandomCrop(pad) followed by RandomHorizontalFlip.
    """
    b, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    rows = dy.view(b, 1) + torch.arange(h, device=device).view(1, h)  # (B, H)
    cols = torch.arange(w, device=device).view(1, w).expand(b, w)
    if flip is not None:
        cols = torch.where(flip.view(b, 1), (w - 1) - cols, cols)
    cols = cols + dx.view(b, 1)  # (B, W)
    batch_index = torch.arange(b, device=device).view(b, 1, 1, 1)
    channel_index = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch_index, channel_index, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


class TensorTrainStream(TrainStream):
    """GPU-resident training split: uint8 images on the device, batched crop/flip/normalize per batch."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        clean_labels: Tensor,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        pad: int,
        flip: bool,
        seed: int,
        shuffle: bool = True,
    ) -> None:
        _check_samples(images, pad, flip)
        if not len(images) == len(labels) == len(clean_labels):
            raise ValueError("images, labels and clean_labels must have the same length")
        self.device = images.device
        self._images = images
        self.labels = labels.detach().to("cpu", torch.int64)
        self.clean_labels = clean_labels.detach().to("cpu", torch.int64)
        self._labels_dev = self.labels.to(self.device)
        self.batch_size = int(batch_size)
        self.pad = int(pad)
        self.flip = bool(flip)
        self.seed = int(seed)
        #: False: every epoch walks the samples in their stored order (``--train-order fixed``).
        self.shuffle = bool(shuffle)
        self._mean = _as_stats(mean, self.device, images.dim())
        self._std = _as_stats(std, self.device, images.dim())

    def batches(self, epoch: int) -> Iterator[Batch]:
        n = self.num_samples
        generator = make_generator("train-stream", self.seed, int(epoch))
        # Every random number of the epoch is drawn up front, on the CPU, from the (seed, epoch) generator.
        order = torch.randperm(n, generator=generator)
        if not self.shuffle:
            order = torch.arange(n)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator)
        dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5 if self.flip else None
        order, dx, dy = order.to(self.device), dx.to(self.device), dy.to(self.device)
        if flips is not None:
            flips = flips.to(self.device)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            index = order[start:stop]
            raw = self._images[index]
            if self.pad or flips is not None:
                raw = crop_flip(
                    raw,
                    self.pad,
                    dx[start:stop],
                    dy[start:stop],
                    None if flips is None else flips[start:stop],
                )
            yield normalize_uint8(raw, self._mean, self._std), self._labels_dev[index], index


@dataclass(frozen=True)
class Augmentation:
    """The training stream's random crop (zero padding ``pad``) and horizontal flip, applied to an evaluation
    stream (the authors' Label Wave test loader), drawn per (``seed``, epoch)."""

    pad: int
    flip: bool
    seed: int


class TensorEvalStream(EvalStream):
    """GPU-resident evaluation split: fixed order, no augmentation unless ``augmentation`` is given."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augmentation: Augmentation | None = None,
    ) -> None:
        _check_samples(images)
        if len(images) != len(labels):
            raise ValueError(f"expected as many labels as images, got {len(labels)} for {len(images)}")
        self.device = images.device
        self._images = images
        self.labels = labels.detach().to("cpu", torch.int64)
        self._labels_dev = self.labels.to(self.device)
        self.batch_size = int(batch_size)
        self._mean = _as_stats(mean, self.device, images.dim())
        self._std = _as_stats(std, self.device, images.dim())
        if augmentation is not None:
            _check_samples(images, augmentation.pad, augmentation.flip)
        self.augmentation = augmentation
        self.augmented = augmentation is not None

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.batches(0)

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        n, augment = self.num_samples, self.augmentation
        if augment is not None:  # drawn up front from the (seed, epoch) generator, as the training stream does
            generator = make_generator("test-augmentation", augment.seed, int(epoch))
            dx = torch.randint(0, 2 * augment.pad + 1, (n,), generator=generator).to(self.device)
            dy = torch.randint(0, 2 * augment.pad + 1, (n,), generator=generator).to(self.device)
            flips = (torch.rand(n, generator=generator) < 0.5).to(self.device) if augment.flip else None
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            raw = self._images[start:stop]
            if augment is not None:
                raw = crop_flip(raw, augment.pad, dx[start:stop], dy[start:stop],
                                None if flips is None else flips[start:stop])
            yield normalize_uint8(raw, self._mean, self._std), self._labels_dev[start:stop]

    def images(self, indices: Tensor) -> Tensor:
        raw = self._images[indices.to(self.device)]
        return normalize_uint8(raw, self._mean, self._std).cpu()


# --------------------------------------------------------------------------------------------- bundle
@dataclass
class DataSplits:
    """Everything the trainer needs from a dataset.

    ``val`` is None when no holdout was requested. ``train_eval`` is the training part again, unaugmented
    and in a fixed order (labels = the training labels used, i.e. after label noise); ``aux_images`` draws
    from it.
    ``synthetic`` is True when the data came from ``tests.synthetic_data`` rather than the real dataset.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, ...]  # one sample: (C, H, W), or (C, L) for MNIST-1D's sequences
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: TrainStream
    val: EvalStream | None
    test: EvalStream
    train_eval: EvalStream | None = None
    synthetic: bool = False
    classes: tuple[str, ...] = field(default=(), repr=False)

    def aux_images(self, source: str, n: int, seed: int) -> Tensor:
        """``n`` real images from ``source`` ("train" or "val"): a seeded choice, normalized, no augmentation.

        Returns a float32 CPU tensor (n, C, H, W). The same (source, n, seed) gives the same images.
        """
        if source == "train":
            pool = self.train_eval
        elif source == "val":
            if self.val is None:
                raise ValueError(
                    "aux_images('val', ...) needs a validation split, but this data was loaded with "
                    "holdout=0; pass holdout > 0 to load_data or use source='train'"
                )
            pool = self.val
        else:
            raise ValueError(f"aux_images source must be 'train' or 'val', got {source!r}")
        if pool is None:
            raise ValueError(f"{self.name}: no unaugmented view of the '{source}' split is available")
        n = int(n)
        if n <= 0:
            raise ValueError(f"aux_images needs n >= 1, got {n}")
        if n > pool.num_samples:
            raise ValueError(
                f"aux_images asked for {n} images from the {self.name} '{source}' split, which has only "
                f"{pool.num_samples}"
            )
        generator = make_generator("aux-images", source, int(seed))
        indices = torch.randperm(pool.num_samples, generator=generator)[:n]
        return pool.images(indices).float().contiguous()


# --------------------------------------------------------------------------------------------- registry
Builder = Callable[..., DataSplits]


@dataclass(frozen=True)
class EpochCost:
    """Seconds one epoch of a model takes on a dataset (training, test and velocity), on ``device``; an
    assumption until ``measured``. ``python -m experiments.sweep --list`` prices runs with it."""

    seconds: float
    device: str
    measured: bool
    source: str


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as registered: how to build it, and the facts the experiment layer reads (sizes on Fig. 4a's
    axis, the sweep's data check and cost estimate, which experiments are CPU work).

    ``check(name, root) -> DataCheck``: whether it is present and verified at a data root (None: nothing to
    prepare, it is always ready); ``prepare(name, root, archive)``: make it ready there (None: no command can,
    e.g. ImageNet-100). ``offline``: bundled or generated on this machine, so its runs are CPU work.
    """

    name: str
    builder: Builder
    title: str = ""
    train_size: int | None = None
    unit: str = "images"
    offline: bool = False
    options: dict[str, type] = field(default_factory=dict)
    check: Callable[[str, Path], Any] | None = None
    prepare: Callable[[str, Path, Path | None], None] | None = None
    epoch_costs: dict[str, EpochCost] = field(default_factory=dict)


#: Every registered dataset by name (``register_dataset``).
DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, options: dict[str, type] | None = None, *, title: str = "",
                     train_size: int | None = None, unit: str = "images", offline: bool = False,
                     check: Callable[[str, Path], Any] | None = None,
                     prepare: Callable[[str, Path, Path | None], None] | None = None,
                     epoch_costs: dict[str, EpochCost] | None = None) -> Callable[[Builder], Builder]:
    """Decorator: register a builder ``fn(root: Path, *, batch_size, eval_batch_size, holdout, label_noise,
    seed, device, download, num_workers, image_size, test_augmentation[, options]) -> DataSplits`` under
    ``name``, with its facts (:class:`DatasetSpec`); a builder with ``options`` (name -> type) also gets
    ``options=`` (a dict of those only)."""

    def decorate(builder: Builder) -> Builder:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        if prepare is not None and check is None:
            raise ValueError(f"dataset {name!r}: a dataset that can be prepared needs a check of it too")
        DATASETS[name] = DatasetSpec(name, builder, title or name, train_size, unit, offline, dict(options or {}),
                                 check, prepare, dict(epoch_costs or {}))
        return builder

    return decorate


def dataset(name: str) -> DatasetSpec:
    """The registered dataset ``name``, or a ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def as_path(root: str | Path) -> Path:
    return Path(root).expanduser()
