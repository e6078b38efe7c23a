"""Auxiliary sets D_aux: the inputs on which velocity is measured (spec section 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: Kinds of Gaussian aux noise: ``normal`` (the paper: N(0, 1) per pixel) or ``uint8`` (the authors' code).
AUX_NOISES = ("normal", "uint8")


def gaussian_aux(n: int = 100, shape: Sequence[int] = (3, 32, 32), seed: int = 0, noise: str = "normal") -> Tensor:
    """``n`` noise images with the dataset's image shape, from a generator seeded with ``seed``.

    The paper's default D_aux: fixed once, reused at every measurement, no real data needed.
    ``noise="normal"``: N(0, 1) per pixel, as the paper describes it. ``noise="uint8"``: what the authors'
    code feeds the model instead (see :func:`uint8_wrapped`): roughly uniform in [0, 1], not normalized.
    """
    if n < 1:
        raise ValueError(f"the aux set needs at least one image, got n={n}")
    if len(shape) < 1 or any(int(d) < 1 for d in shape):
        raise ValueError(f"shape must be the image shape, e.g. (3, 32, 32); got {tuple(shape)}")
    if noise not in AUX_NOISES:
        raise ValueError(f"noise must be one of {AUX_NOISES}, got {noise!r}: 'normal' is N(0, 1) (the paper), "
                         "'uint8' the authors' randn through ToPILImage/ToTensor")
    generator = torch.Generator().manual_seed(seed)
    if noise == "normal":
        return torch.randn((n, *shape), generator=generator)
    # One image per draw, as the authors' loop draws them: seed 0 gives their images exactly.
    return torch.stack([uint8_wrapped(torch.randn(tuple(shape), generator=generator)) for _ in range(n)])


def uint8_wrapped(images: Tensor) -> Tensor:
    """torchvision's ToPILImage then ToTensor applied to float images, as batched tensor arithmetic.

    ToPILImage turns a float image into 8-bit pixels by ``x * 255`` cast to uint8; the cast truncates toward
    zero and wraps out-of-range values modulo 256 (-0.5 -> -127.5 -> 129), and ToTensor divides by 255. On
    N(0, 1) input the result is roughly uniform in [0, 1] (mean ~0.50, std ~0.29): the authors' "Gaussian"
    aux images. The wrap is written out (truncate to int64, then mod 256) so it does not depend on how a
    platform casts out-of-range floats.
    """
    pixels = torch.remainder(images.float().mul(255).to(torch.int64), 256).to(torch.uint8)
    return pixels.float().div(255)


def token_aux(n: int = 100, seq_len: int = 32, vocab_size: int = 30522, seed: int = 0) -> Tensor:
    """``n`` sequences of ``seq_len`` token ids drawn uniformly from ``[0, vocab_size)``: D_aux for token models.

    The int64 (n, seq_len) tensor goes to the model as its first argument (``input_ids`` of a HF model).
    For dicts of tensors (attention masks, token types) pass the dict itself, or a loader of dicts.
    """
    if n < 1 or seq_len < 1:
        raise ValueError(f"the aux set needs n >= 1 sequences of seq_len >= 1 tokens, got n={n}, seq_len={seq_len}")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1 (the model's config.vocab_size), got {vocab_size}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (n, seq_len), generator=generator)
