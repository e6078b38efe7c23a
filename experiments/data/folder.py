"""An auxiliary set from any folder of images (the "image folder" D_aux of the paper's ablation)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .base import as_path, make_generator

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(path: str | Path) -> list[Path]:
    """Every .jpg/.jpeg/.png file under ``path`` (recursively, any case), in sorted order."""
    folder = as_path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder} does not exist or is not a directory")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def folder_images(
    path: str | Path,
    n: int,
    image_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
) -> Tensor:
    """``n`` images drawn (seeded, without replacement) from the folder ``path``, each converted to the
    channel count of ``image_shape`` = (C, H, W) (C = 1: grayscale, C = 3: RGB), resized so it covers H x W,
    center-cropped to H x W and normalized with ``mean``/``std``. Returns float32 (n, C, H, W) on the CPU."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    channels, height, width = (int(s) for s in image_shape)
    if channels not in (1, 3):
        raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std need {channels} values, got {len(mean)} and {len(std)}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    files = list_images(path)
    if len(files) < n:
        raise ValueError(
            f"asked for {n} images but {as_path(path)} holds only {len(files)} image files "
            f"({'/'.join(IMAGE_SUFFIXES)}, searched recursively)"
        )
    chosen = torch.randperm(len(files), generator=make_generator("folder-images", int(seed)))[:n]
    out = []
    for i in chosen.tolist():
        with Image.open(files[i]) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            w, h = image.size
            scale = max(height / h, width / w)
            image = TF.resize(image, [max(height, round(h * scale)), max(width, round(w * scale))])
            image = TF.center_crop(image, [height, width])
            out.append(TF.normalize(TF.to_tensor(image), list(mean), list(std)))
    return torch.stack(out).float()
