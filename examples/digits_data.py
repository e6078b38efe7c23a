"""scikit-learn's bundled 8x8 digits as 16x16 uint8 tensors, a fixed 1,497/300 split: the examples' data.

The examples use the library alone (``pip install neve`` plus scikit-learn), so they carry this loader instead of
importing the experiment harness; it gives the same split as the harness's ``digits`` dataset.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TRAIN_SIZE = 1497
SPLIT_SEED = 20250707


def load_digits_tensors(size: int = 16) -> dict[str, torch.Tensor]:
    """``train_images``/``test_images`` (N, 1, size, size) uint8 and ``train_labels``/``test_labels`` int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1) * (255.0 / 16.0)
    images = F.interpolate(raw.round(), size=(size, size), mode="bilinear", align_corners=False)
    images = images.round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, test = order[:TRAIN_SIZE], order[TRAIN_SIZE:]
    return {"train_images": images[train], "train_labels": labels[train],
            "test_images": images[test], "test_labels": labels[test]}
