"""Synthetic stand-ins for CIFAR-10/100 and ImageNet-100, written in the real on-disk formats.

They exist for tests and smoke runs on machines without the real data. They are never passed off as real:

* CIFAR: the files are exactly torchvision's layout (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
  ``batches.meta``; ``cifar-100-python/train``, ``test``, ``meta``), pickled the way the original Python 2
  files are (so ``pickle.load(f, encoding="latin1")`` gives ``"data"`` keys, as torchvision reads them, and
  ``encoding="bytes"`` gives ``b"data"``, as the CIFAR web page reads them). Beside them the writer stores
  ``NEVE_SYNTHETIC.json``, a manifest with the md5 of every file it wrote. torchvision verifies real CIFAR
  against its official md5s, which synthetic files cannot match; when the manifest is present, the loader
  (``cifar.py``) verifies the files against the manifest's md5s instead, logs a warning that the data is
  synthetic and marks ``DataSplits.synthetic = True``. Without the manifest only the official checksums pass.
* ImageNet: real JPEGs under ``train/<wnid>/`` and ``val/<wnid>/``, and the same manifest at the root.

Images are learnable: each class has its own colour and stripe orientation/frequency, plus per-image noise
and phase, so a tiny network (or a nearest-class-mean classifier) beats chance.

CLI: ``python -m tests.synthetic_data cifar10 --root PATH [--n-train N --n-test N]`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.data.base import MANIFEST_NAME, md5_of, read_manifest  # noqa: F401  (re-exported)
from neve.io import atomic_write, atomic_write_json

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_CIFAR_LAYOUT = {
    "cifar10": {
        "base_folder": "cifar-10-batches-py",
        "train_files": [f"data_batch_{i}" for i in range(1, 6)],
        "test_file": "test_batch",
        "meta_file": "batches.meta",
        "num_classes": 10,
    },
    "cifar100": {
        "base_folder": "cifar-100-python",
        "train_files": ["train"],
        "test_file": "test",
        "meta_file": "meta",
        "num_classes": 100,
    },
}


# ------------------------------------------------------------------------------- Python 2 style pickles
def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
    """Protocol-2 pickler writing ``str`` and ``bytes`` as Python 2 ``str`` (BINSTRING opcodes) and numpy's
    reconstructor under its historical name, which is how the original CIFAR pickles are encoded."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _numpy_reconstruct():
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(_numpy_reconstruct())] = save_global


def py2_pickle_dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------- images
def synthetic_images(
    labels: np.ndarray,
    num_classes: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    class_seed: int = 1234,
) -> np.ndarray:
    """uint8 (N, H, W, 3) images whose colour and stripes depend on the class, plus noise."""
    h, w = size
    class_rng = np.random.default_rng(class_seed + num_classes)  # class look is fixed per num_classes
    colours = class_rng.uniform(0.15, 0.85, size=(num_classes, 3))
    angles = class_rng.uniform(0, np.pi, size=num_classes)
    freqs = class_rng.uniform(1.0, 4.0, size=num_classes)
    stripe_tint = class_rng.uniform(-1.0, 1.0, size=(num_classes, 3))
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    n = len(labels)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    proj = np.cos(angles[labels])[:, None, None] * xx + np.sin(angles[labels])[:, None, None] * yy
    stripes = np.sin(2 * np.pi * freqs[labels][:, None, None] * proj + phase[:, None, None])  # (N, H, W)
    img = colours[labels][:, None, None, :] + 0.2 * stripes[..., None] * stripe_tint[labels][:, None, None, :]
    img = img + rng.normal(0, 0.08, size=img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


# -------------------------------------------------------------------------------------------- CIFAR
def write_synthetic_cifar(
    root: str | Path, name: str = "cifar10", n_train: int = 1000, n_test: int = 200, seed: int = 0
) -> Path:
    """Write a synthetic CIFAR-10/100 folder under ``root`` in torchvision's exact on-disk format, plus the
    checksum manifest. Returns the dataset folder (``root/cifar-10-batches-py`` or ``root/cifar-100-python``);
    pass ``root`` itself to ``load_data``."""
    if name not in _CIFAR_LAYOUT:
        raise ValueError(f"name must be one of {sorted(_CIFAR_LAYOUT)}, got {name!r}")
    if n_train < 1 or n_test < 1:
        raise ValueError("n_train and n_test must be >= 1")
    layout = _CIFAR_LAYOUT[name]
    num_classes = int(layout["num_classes"])
    folder = Path(root).expanduser() / str(layout["base_folder"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).unlink(missing_ok=True)  # a half-written folder must not look verified
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = _balanced_labels(n, num_classes, rng)
        images = synthetic_images(labels, num_classes, (32, 32), rng)  # (N, 32, 32, 3)
        return images.transpose(0, 3, 1, 2).reshape(n, 3072).copy(), labels  # CIFAR rows: R, G, B planes

    train_data, train_labels = make(n_train)
    test_data, test_labels = make(n_test)
    written: dict[str, str] = {}

    def dump(file_name: str, payload: dict[str, Any]) -> None:
        blob = py2_pickle_dumps(payload)
        atomic_write(folder / file_name, lambda handle: handle.write(blob))
        written[file_name] = hashlib.md5(blob, usedforsecurity=False).hexdigest()

    def batch(tag: str, data: np.ndarray, labels: np.ndarray, offset: int) -> dict[str, Any]:
        payload: dict[str, Any] = {"batch_label": f"synthetic {tag} (tests.synthetic_data, seed {seed})"}
        if name == "cifar10":
            payload["labels"] = [int(x) for x in labels]
        else:
            payload["fine_labels"] = [int(x) for x in labels]
            payload["coarse_labels"] = [int(x) // 5 for x in labels]
        payload["data"] = np.ascontiguousarray(data, dtype=np.uint8)
        payload["filenames"] = [f"synthetic_{offset + i:06d}.png" for i in range(len(labels))]
        return payload

    train_files = list(layout["train_files"])
    chunks = np.array_split(np.arange(n_train), len(train_files))
    for k, (file_name, chunk) in enumerate(zip(train_files, chunks, strict=True)):
        tag = f"training batch {k + 1} of {len(train_files)}"
        dump(
            file_name, batch(tag, train_data[chunk], train_labels[chunk], int(chunk[0]) if len(chunk) else 0)
        )
    dump(str(layout["test_file"]), batch("testing batch 1 of 1", test_data, test_labels, n_train))
    if name == "cifar10":
        meta = {
            "num_cases_per_batch": int(len(chunks[0])),
            "label_names": list(CIFAR10_CLASSES),
            "num_vis": 3072,
        }
    else:
        meta = {
            "fine_label_names": [f"synthetic_class_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"synthetic_superclass_{i:02d}" for i in range(20)],
        }
    dump(str(layout["meta_file"]), meta)
    atomic_write_json(
        folder / MANIFEST_NAME,
        {
            "synthetic": True,
            "generator": "tests.synthetic_data.write_synthetic_cifar",
            "dataset": name,
            "seed": seed,
            "n_train": n_train,
            "n_test": n_test,
            "md5": written,
            "note": "NOT real CIFAR data: class-coloured stripes plus noise, for tests and smoke runs.",
        },
    )
    return folder


# ----------------------------------------------------------------------------------------- ImageNet
def write_synthetic_imagenet(
    root: str | Path,
    classes: Sequence[str],
    per_class: int,
    image_size: int | tuple[int, int] = 64,
    *,
    val_per_class: int | None = None,
    seed: int = 0,
) -> Path:
    """Write real JPEGs ``root/{train,val}/<wnid>/<wnid>_<k>.JPEG`` (``per_class`` train images and
    ``val_per_class`` (default ``per_class``) val images per class) plus the synthetic manifest at ``root``.
    ``image_size`` is an int (square) or (width, height)."""
    from PIL import Image

    if per_class < 1:
        raise ValueError("per_class must be >= 1")
    val_per_class = per_class if val_per_class is None else int(val_per_class)
    width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    classes = list(classes)
    ordered = sorted(classes)  # the class index the loader will use
    for split, count in (("train", per_class), ("val", val_per_class)):
        if count < 1:
            continue
        for wnid in classes:
            labels = np.full(count, ordered.index(wnid), dtype=np.int64)
            images = synthetic_images(labels, len(classes), (height, width), rng)
            for k, array in enumerate(images):
                buffer = io.BytesIO()
                Image.fromarray(array, mode="RGB").save(buffer, format="JPEG", quality=92)
                blob = buffer.getvalue()
                atomic_write(root / split / wnid / f"{wnid}_{k}.JPEG", lambda handle, b=blob: handle.write(b))
    atomic_write_json(
        root / MANIFEST_NAME,
        {
            "synthetic": True,
            "generator": "tests.synthetic_data.write_synthetic_imagenet",
            "classes": len(classes),
            "per_class": per_class,
            "val_per_class": val_per_class,
            "image_size": [width, height],
            "seed": seed,
            "note": "NOT real ImageNet data: class-coloured stripes plus noise, for tests and smoke runs.",
        },
    )
    return root


# ---------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.synthetic_data",
        description="Write a synthetic dataset folder in the real on-disk format, for smoke runs without the "
        "real data. The loader recognises it by its manifest and warns that it is synthetic.",
    )
    parser.add_argument("dataset", choices=["cifar10", "cifar100", "imagenet100"])
    parser.add_argument("--root", required=True, help="folder to write into (the `root` of load_data)")
    parser.add_argument("--n-train", type=int, default=1000, help="CIFAR: training images (default 1000)")
    parser.add_argument("--n-test", type=int, default=200, help="CIFAR: test images (default 200)")
    parser.add_argument("--per-class", type=int, default=4, help="ImageNet-100: train JPEGs per class")
    parser.add_argument("--val-per-class", type=int, default=None, help="ImageNet-100: val JPEGs per class")
    parser.add_argument("--image-size", type=int, default=64, help="ImageNet-100: JPEG side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.dataset == "imagenet100":
        from .imagenet100 import imagenet100_classes

        path = write_synthetic_imagenet(
            args.root,
            imagenet100_classes(),
            args.per_class,
            args.image_size,
            val_per_class=args.val_per_class,
            seed=args.seed,
        )
    else:
        path = write_synthetic_cifar(args.root, args.dataset, args.n_train, args.n_test, args.seed)
    print(f"wrote synthetic {args.dataset} to {path} (NOT real data; for smoke runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
