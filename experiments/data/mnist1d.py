"""MNIST-1D (Greydanus & Kobak, ICML 2024): 10 classes of 1-D sequences of length 40, generated offline.

The arrays are exactly what the authors' package returns from ``make_dataset(get_dataset_args())`` (4,000
training and 1,000 test sequences for the default arguments, seed 42): the generator is theirs, never
reimplemented. Generation takes a few seconds, so the arrays are cached under ``<root>/mnist1d/``, in a file
named by a hash of every generator argument and written atomically; other arguments, another file.

Three generator arguments can be set (``load_data(..., options=...)``, ``--data-option KEY=VALUE``):
``num_samples`` (train + test, split 80/20), ``seed`` (the generator's seed: another seed is another dataset,
which is how a tuning set is drawn without touching the published test set) and ``shuffle_seq`` (a fixed
permutation of the 40 positions, the package's spatial-prior ablation).

The sequences are served as float32 (N, 1, 40) tensors on the training device, unaugmented and as the package
normalized them (zero mean, unit std over the whole set), as the published training script feeds them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neve.io import atomic_write

from .base import DataSplits, EpochCost, as_path, register_dataset
from .splits import check_holdout, check_label_noise, tensor_splits

log = logging.getLogger(__name__)

#: The generator arguments a run may set, and their types.
MNIST1D_OPTIONS: dict[str, type] = {"num_samples": int, "seed": int, "shuffle_seq": bool}
#: The published dataset's generator seed (``get_dataset_args()``); tuning sets use other seeds.
PUBLISHED_SEED = 42
CACHE_FORMAT = 1


def generator_args(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The package's default arguments with ``options`` applied (the download url dropped: nothing is fetched)."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    unknown = sorted(set(options or {}) - set(MNIST1D_OPTIONS))
    if unknown:
        raise ValueError(f"mnist1d has no generator option {', '.join(unknown)}; it takes "
                         f"{', '.join(sorted(MNIST1D_OPTIONS))}")
    args.update(options or {})
    if int(args["num_samples"]) < 20:
        raise ValueError(f"mnist1d num_samples must be >= 20 (2 per class in train and test), "
                         f"got {args['num_samples']}")
    return args


def cache_path(root: str | Path, args: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    return as_path(root) / "mnist1d" / f"mnist1d-s{args['seed']}-n{args['num_samples']}-{digest}.npz"


def generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """The package's ``make_dataset`` on ``args``. It reseeds numpy's and Python's global generators; their
    states are restored, so a run's own seeding does not depend on whether the data came from the cache."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {key: np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test")}


def load_arrays(root: str | Path, options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The arrays for these generator arguments: from the cache when it holds them, else generated and cached.

    A cache file that cannot be read, or that holds other arguments, is regenerated (and replaced atomically).
    """
    args = generator_args(options)
    path = cache_path(root, args)
    cached = _read_cache(path, args)
    if cached is not None:
        return cached
    arrays = generate(args)

    def write(handle: Any) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, args=np.array(json.dumps(args, sort_keys=True)), format=np.array(CACHE_FORMAT), **arrays)
        handle.write(buffer.getvalue())

    atomic_write(path, write)
    return arrays


def _read_cache(path: Path, args: dict[str, Any]) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if int(saved["format"]) != CACHE_FORMAT or json.loads(str(saved["args"])) != args:
                log.warning("%s holds other MNIST-1D arguments; regenerating it", path)
                return None
            return {key: saved[key] for key in ("x", "y", "x_test", "y_test")}
    except Exception as error:  # a truncated or foreign file: regenerate rather than fail
        log.warning("%s cannot be read (%s: %s); regenerating it", path, type(error).__name__, error)
        return None


#: Measured on a 2-core AMD EPYC, fp32, one thread per run, two runs at a time: wall seconds per epoch.
MNIST1D_EPOCH_COSTS = {
    "mnist1d_cnn": EpochCost(0.15, "CPU", True, "median of 209 mnist1d-* runs' wall seconds per epoch, 2-core AMD "
                                                "EPYC, fp32, two runs at a time"),
    "mnist1d_resnet": EpochCost(1.8, "CPU", True, "median of 53 mnist1d-* ResNet-1D runs, as the CNN's"),
    "mnist1d_mlp": EpochCost(0.08, "CPU", True, "two 30-epoch runs of the published recipe at once, wall seconds "
                                                "per epoch, same machine"),
}


# 4,000 training sequences: 80% of the default 5,000 (num_samples changes it; Fig. 4a's axis assumes the default).
@register_dataset("mnist1d", options=MNIST1D_OPTIONS, title="MNIST-1D", train_size=4_000, unit="sequences",
                  offline=True, epoch_costs=MNIST1D_EPOCH_COSTS)
def build_mnist1d(root: str | Path, **kw: Any) -> DataSplits:
    check_holdout(kw["holdout"])
    check_label_noise(kw["label_noise"])
    if kw.get("image_size"):
        raise ValueError("mnist1d sequences have a fixed length (40); --image-size does not apply")
    arrays = load_arrays(root, kw.get("options"))

    def sequences(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32)).unsqueeze(1)  # (N, 1, L)

    return tensor_splits(
        name="mnist1d",
        train_images=sequences(arrays["x"]),
        train_labels=torch.from_numpy(arrays["y"].astype(np.int64)),
        test_images=sequences(arrays["x_test"]),
        test_labels=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        num_classes=10,
        mean=(0.0,),  # the package already normalized the whole set; the published script feeds it as it is
        std=(1.0,),
        pad=0,
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
