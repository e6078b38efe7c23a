"""Recipe learning-rate schedules, as the lr of each (1-based) epoch."""

from __future__ import annotations

import bisect
import math
from typing import Any


def multistep_lr(epoch: int, base_lr: float, milestones: tuple[int, ...], gamma: float) -> float:
    """MultiStepLR stepped once per epoch: epochs after a milestone train with the decayed lr."""
    return base_lr * gamma ** bisect.bisect_right(sorted(milestones), epoch - 1)


def cosine_lr(epoch: int, base_lr: float, epochs: int, warmup_epochs: int, warmup_lr: float,
              min_lr: float) -> float:
    """Linear warm-up then cosine decay to ``min_lr`` (the Swin recipe, per epoch)."""
    if epoch <= warmup_epochs:
        return warmup_lr + (base_lr - warmup_lr) * (epoch - 1) / max(warmup_epochs, 1)
    progress = (epoch - 1 - warmup_epochs) / max(epochs - warmup_epochs, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def recipe_lr(epoch: int, config: Any) -> float:
    if config.schedule == "multistep":
        return multistep_lr(epoch, config.lr, tuple(config.milestones), config.gamma)
    if config.schedule == "cosine":
        return cosine_lr(epoch, config.lr, config.epochs, config.warmup_epochs, config.warmup_lr, config.min_lr)
    raise ValueError(f"unknown schedule {config.schedule!r}; choose multistep or cosine")
