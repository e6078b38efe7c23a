"""Holdout (validation split carved out of train) and symmetric label noise, plus the assembly of the
GPU-resident streams shared by CIFAR and digits."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from .base import Augmentation, DataSplits, TensorEvalStream, TensorTrainStream, make_generator


def check_holdout(holdout: float | int) -> None:
    """Range/type checks that need no dataset size: a float in [0, 1) or a non-negative int."""
    if isinstance(holdout, bool) or not isinstance(holdout, numbers.Real):
        raise TypeError(f"holdout must be a float fraction in [0, 1) or an int count, got {holdout!r}")
    if isinstance(holdout, numbers.Integral):
        if holdout < 0:
            raise ValueError(f"holdout count must be >= 0, got {holdout}")
    elif not 0.0 <= float(holdout) < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {holdout}")


def holdout_count(num_samples: int, holdout: float | int) -> int:
    """How many of ``num_samples`` training samples ``holdout`` moves to validation."""
    check_holdout(holdout)
    if isinstance(holdout, numbers.Integral):
        count = int(holdout)
    else:
        count = int(round(float(holdout) * num_samples))
        if float(holdout) > 0 and count == 0:
            count = 1  # a positive fraction of a tiny set still makes a (one-sample) validation split
    if count >= num_samples:
        raise ValueError(
            f"holdout={holdout!r} would move {count} of the {num_samples} training samples to validation, "
            f"leaving none to train on; use a smaller holdout"
        )
    return count


def holdout_split(num_samples: int, holdout: float | int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded split of ``range(num_samples)`` into (train indices, val indices), both sorted int64.

    A float in [0, 1) is a fraction (rounded to a count), an int is a count. The same
    (num_samples, holdout, seed) always gives the same split.
    """
    count = holdout_count(num_samples, holdout)
    order = torch.randperm(num_samples, generator=make_generator("holdout", int(seed)))
    val = order[:count].sort().values
    train = order[count:].sort().values
    return train, val


def check_label_noise(rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"label_noise must be a rate in [0, 1), got {rate!r}")


def symmetric_label_noise(labels: Tensor, rate: float, num_classes: int, seed: int) -> Tensor:
    """Symmetric label noise (the Label Wave setting): each label is, with probability ``rate``, replaced by
    a class drawn uniformly among the ``num_classes - 1`` OTHER classes, i.e. the transition matrix has
    ``1 - rate`` on the diagonal and ``rate / (num_classes - 1)`` elsewhere, so the expected fraction of
    changed labels is exactly ``rate``. Deterministic in (labels, rate, num_classes, seed); returns a new
    int64 tensor on the device of ``labels``.
    """
    check_label_noise(rate)
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    clean = labels.detach().to("cpu", torch.int64)
    if rate == 0 or clean.numel() == 0:
        return clean.clone().to(labels.device)
    if num_classes < 2:
        raise ValueError("label noise needs at least 2 classes")
    if int(clean.min()) < 0 or int(clean.max()) >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got [{int(clean.min())}, {int(clean.max())}]"
        )
    generator = make_generator("symmetric-label-noise", float(rate), int(num_classes), int(seed))
    corrupt = torch.rand(clean.numel(), generator=generator) < float(rate)
    # label + uniform offset in 1..C-1 (mod C) is uniform over the other C-1 classes.
    offset = torch.randint(1, num_classes, (clean.numel(),), generator=generator)
    noisy = torch.where(corrupt, (clean + offset) % num_classes, clean)
    return noisy.to(labels.device)


def tensor_splits(
    *,
    name: str,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    pad: int,
    flip: bool,
    batch_size: int,
    eval_batch_size: int | None,
    holdout: float | int,
    label_noise: float,
    seed: int,
    device: torch.device,
    synthetic: bool = False,
    classes: tuple[str, ...] = (),
    test_augmentation: bool = False,
) -> DataSplits:
    """Holdout, then label noise on the remaining training part, then device-resident streams.

    ``test_augmentation``: the test stream applies the training crop/flip, seeded per (seed, epoch), as the
    authors' Label Wave loader did.
    """
    check_label_noise(label_noise)
    eval_bs = int(eval_batch_size or batch_size)
    train_images = train_images.to(device)
    test_images = test_images.to(device)
    train_labels = torch.as_tensor(train_labels, dtype=torch.int64)
    test_labels = torch.as_tensor(test_labels, dtype=torch.int64)

    train_idx, val_idx = holdout_split(len(train_images), holdout, seed)
    val = None
    if len(val_idx):
        val = TensorEvalStream(
            train_images[val_idx.to(device)], train_labels[val_idx], batch_size=eval_bs, mean=mean, std=std
        )
    part_images = train_images[train_idx.to(device)] if len(val_idx) else train_images
    clean = train_labels[train_idx]
    noisy = symmetric_label_noise(clean, label_noise, num_classes, seed)
    train = TensorTrainStream(
        part_images, noisy, clean, batch_size=batch_size, mean=mean, std=std, pad=pad, flip=flip, seed=seed
    )
    train_eval = TensorEvalStream(part_images, noisy, batch_size=eval_bs, mean=mean, std=std)
    # A dataset trained without augmentation (MNIST-1D) has none to apply: its test stream stays clean.
    augmentation = Augmentation(pad=pad, flip=flip, seed=seed) if test_augmentation and (pad or flip) else None
    test = TensorEvalStream(test_images, test_labels, batch_size=eval_bs, mean=mean, std=std,
                            augmentation=augmentation)
    return DataSplits(
        name=name,
        num_classes=num_classes,
        image_shape=tuple(int(s) for s in train_images.shape[1:]),  # type: ignore[arg-type]
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        train=train,
        val=val,
        test=test,
        train_eval=train_eval,
        synthetic=synthetic,
        classes=classes,
    )
