"""scikit-learn's bundled 8x8 handwritten digits (1797 images, fully offline): the data of fast tests and
``make train``/demo runs. Served by the same device-resident pipeline as CIFAR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import DataSplits, EpochCost, register_dataset
from .splits import check_holdout, check_label_noise, tensor_splits

DIGITS_TRAIN = 1497
DIGITS_TEST = 300
DIGITS_SPLIT_SEED = 20250707  # constant: the train/test split never depends on the run seed
DIGITS_SIZE = 16
DIGITS_PAD = 2


def load_digits_tensors(image_size: int | None = None) -> dict[str, Any]:
    """The fixed digits split as uint8 (N, 1, S, S) tensors (S = image_size or 16) and int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32))  # (1797, 8, 8), values 0..16
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    size = int(image_size or DIGITS_SIZE)
    scaled = (raw * (255.0 / 16.0)).round().unsqueeze(1)  # uint8 range, then upsampled
    if size != raw.shape[-1]:
        scaled = F.interpolate(scaled, size=(size, size), mode="bilinear", align_corners=False)
    images = scaled.round().clamp(0, 255).to(torch.uint8)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    train, test = order[:DIGITS_TRAIN], order[DIGITS_TRAIN:]
    return {
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
    }


@register_dataset("digits", train_size=DIGITS_TRAIN, offline=True,
                  epoch_costs={"resnet8": EpochCost(0.5, "CPU", True, "2-core CPU, fp32, 1,497 images, test and "
                                                                       "velocity")})
def build_digits(root: str | Path, **kw: Any) -> DataSplits:
    """``root`` is ignored: the data ships with scikit-learn."""
    check_holdout(kw["holdout"])
    check_label_noise(kw["label_noise"])
    data = load_digits_tensors(kw.get("image_size"))
    train = data["train_images"].float().div(255.0)
    mean = (float(train.mean()),)  # the fixed training split's statistics (independent of holdout)
    std = (float(train.std()),)
    return tensor_splits(
        name="digits",
        train_images=data["train_images"],
        train_labels=data["train_labels"],
        test_images=data["test_images"],
        test_labels=data["test_labels"],
        num_classes=10,
        mean=mean,
        std=std,
        pad=DIGITS_PAD,
        flip=False,
        batch_size=kw["batch_size"],
        eval_batch_size=kw["eval_batch_size"],
        holdout=kw["holdout"],
        label_noise=kw["label_noise"],
        seed=kw["seed"],
        device=torch.device(kw["device"]),
        classes=tuple(str(d) for d in range(10)),
        test_augmentation=kw.get("test_augmentation", False),
    )
