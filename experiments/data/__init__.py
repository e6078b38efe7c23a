"""The data layer: ``load_data(name, root, ...) -> DataSplits``.

Datasets (registry ``DATASETS``, each a :class:`DatasetSpec` with its facts: training-set size, unit, offline or
not, preparation check, epoch costs): ``cifar10``, ``cifar100`` (torchvision files, device-resident tensors,
batched GPU augmentation), ``imagenet100`` (ImageFolder + DataLoader), ``digits`` (scikit-learn's bundled
digits, offline; the data of fast tests and demos) and ``mnist1d`` (Greydanus & Kobak's MNIST-1D, generated
offline by its own package and cached under the data root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import cifar, digits, imagenet100, mnist1d  # noqa: F401  (importing registers the builders)
from .base import (
    DATASETS,
    DatasetSpec,
    DataSplits,
    EpochCost,
    EvalStream,
    TensorEvalStream,
    TensorTrainStream,
    TrainStream,
    dataset,
    register_dataset,
)
from .folder import folder_images
from .splits import holdout_split, symmetric_label_noise

#: How each epoch walks the training set (``--train-order``; the run config takes its choices from here).
TRAIN_ORDERS = ("shuffle", "fixed")



def load_data(
    name: str,
    root: str | Path,
    *,
    batch_size: int,
    eval_batch_size: int | None = None,
    holdout: float | int = 0,
    label_noise: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    download: bool = True,
    num_workers: int = 4,
    image_size: int | None = None,
    test_augmentation: bool = False,
    options: dict[str, Any] | None = None,
    train_order: str = "shuffle",
) -> DataSplits:
    """Load dataset ``name`` from ``root`` as train / val / test streams.

    ``holdout``: a float in [0, 1) (fraction) or an int (count) of the training set moved, seeded by ``seed``,
    to ``val`` (None when 0). ``label_noise``: symmetric noise rate applied, seeded by ``seed``, to the
    remaining training labels only. ``image_size``: side of the model input (default: the dataset's own).
    ``test_augmentation``: the test stream applies the training augmentation, drawn per (seed, epoch) in
    ``test.batches(epoch)`` -- what the authors' Label Wave loader did; its accuracy is not a clean test accuracy.
    ``options``: a generated dataset's generator arguments (``DATASETS[name].options``; MNIST-1D: ``num_samples``,
    ``seed``, ``shuffle_seq``); a dataset read from files takes none.
    ``train_order``: "shuffle" (a permutation per (seed, epoch)) or "fixed" (every epoch walks the training set
    in its stored order, as MNIST-1D's published ``train.py`` does); "fixed" needs a dataset held in memory.
    """
    if train_order not in TRAIN_ORDERS:
        raise ValueError(f"train_order must be one of {TRAIN_ORDERS}, got {train_order!r}")
    spec = dataset(name)
    if int(batch_size) < 1 or (eval_batch_size is not None and int(eval_batch_size) < 1):
        raise ValueError(
            f"batch sizes must be >= 1, got batch_size={batch_size}, eval_batch_size={eval_batch_size}"
        )
    if image_size is not None and int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    options = check_options(name, options or {})
    extra = {"options": options} if spec.options else {}
    splits = spec.builder(
        root,
        batch_size=int(batch_size),
        eval_batch_size=None if eval_batch_size is None else int(eval_batch_size),
        holdout=holdout,
        label_noise=label_noise,
        seed=int(seed),
        device=device,
        download=bool(download),
        num_workers=int(num_workers),
        image_size=None if image_size is None else int(image_size),
        test_augmentation=bool(test_augmentation),
        **extra,
    )
    if train_order == "fixed":
        if not isinstance(splits.train, TensorTrainStream):
            raise ValueError(f"train_order 'fixed' needs a dataset held in memory; {name} streams from files")
        splits.train.shuffle = False
    return splits


def check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against what dataset ``name`` takes, each cast to its type."""
    allowed = dataset(name).options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = f"it takes {', '.join(sorted(allowed))}" if allowed else "it takes none (its data is read from files)"
        raise ValueError(f"dataset {name!r} has no option {', '.join(unknown)}; {takes}")
    checked = {}
    for key, value in options.items():
        kind = allowed[key]
        if kind is bool and not isinstance(value, bool):
            if str(value).lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"dataset option {key} of {name!r} is true or false, got {value!r}")
            value = str(value).lower() in ("true", "1")
        try:
            checked[key] = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"dataset option {key} of {name!r} must be a {kind.__name__}, got {value!r}") from None
    return checked


__all__ = [
    "DATASETS",
    "TRAIN_ORDERS",
    "DataSplits",
    "DatasetSpec",
    "EpochCost",
    "EvalStream",
    "TensorEvalStream",
    "TensorTrainStream",
    "TrainStream",
    "dataset",
    "folder_images",
    "holdout_split",
    "load_data",
    "register_dataset",
    "symmetric_label_noise",
]
