"""Auxiliary sets D_aux: the inputs on which velocity is measured (spec section 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def gaussian_aux(n: int = 100, shape: Sequence[int] = (3, 32, 32), seed: int = 0) -> Tensor:
    """``n`` images of N(0, 1) noise with the dataset's image shape, from a generator seeded with ``seed``.

    The paper's default D_aux: fixed once, reused at every measurement, no real data needed.
    """
    if n < 1:
        raise ValueError(f"the aux set needs at least one image, got n={n}")
    if len(shape) < 1 or any(int(d) < 1 for d in shape):
        raise ValueError(f"shape must be the image shape, e.g. (3, 32, 32); got {tuple(shape)}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=generator)
