"""Tests of experiments.data: real files in the real formats, read through the real loaders (no mocks)."""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_data import MANIFEST_NAME, main, write_synthetic_cifar, write_synthetic_imagenet

from experiments.data import DATASETS, folder_images, holdout_split, load_data, symmetric_label_noise
from experiments.data.base import crop_flip, register_dataset
from experiments.data.imagenet100 import imagenet100_classes

# The spec's constants, written out here so a wrong constant in the code fails the test.
SPEC_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels"),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels"),
}
N_TRAIN, N_TEST = 120, 40


# ----------------------------------------------------------------------------------------------- helpers
def read_raw_cifar(root: Path, name: str) -> dict[str, torch.Tensor]:
    """Read the pickles directly (the CIFAR web page's recipe), independently of the loader."""
    folder, train_files, test_file, key = CIFAR_FILES[name]

    def read(files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        data, labels = [], []
        for f in files:
            with open(root / folder / f, "rb") as handle:
                entry = pickle.load(handle, encoding="bytes")
            data.append(entry[b"data"])
            labels += entry[key]
        images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32))
        return images, torch.tensor(labels, dtype=torch.int64)

    train_x, train_y = read(train_files)
    test_x, test_y = read([test_file])
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def normalized(raw: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return ((raw.double() / 255 - m) / s).float()


def to_uint8(images: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return ((images * s + m) * 255).round().clamp(0, 255).to(torch.uint8)


def crop_candidates(image: torch.Tensor, pad: int, flips: bool) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every (dx, dy, flip) crop of ``image`` (C, H, W) padded with zeros, computed the slow obvious way."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out.append((dx, dy, False, crop))
            if flips:
                out.append((dx, dy, True, torch.flip(crop, dims=[2])))
    return out


def collect(stream) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*list(stream), strict=True)
    return torch.cat(images), torch.cat(labels)


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar(root, "cifar10", n_train=N_TRAIN, n_test=N_TEST, seed=1)
    write_synthetic_cifar(root, "cifar100", n_train=N_TRAIN, n_test=N_TEST, seed=2)
    return root


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    write_synthetic_imagenet(root, imagenet100_classes(), per_class=1, image_size=(20, 18), seed=3)
    # a class outside the list (as in a full ImageNet-1k tree) must be ignored
    extra = tmp_path_factory.mktemp("extra")
    write_synthetic_imagenet(extra, ["n00000001"], per_class=1, image_size=20)
    for split in ("train", "val"):
        shutil.copytree(extra / split / "n00000001", root / split / "n00000001")
    return root


# ----------------------------------------------------------------------------------------------- registry
def test_registry_and_unknown_name():
    assert set(DATASETS) == {"cifar10", "cifar100", "imagenet100", "digits", "mnist1d"}
    with pytest.raises(ValueError, match="cifar10.*cifar100.*digits.*imagenet100.*mnist1d"):
        load_data("mnist", ".", batch_size=8)
    with pytest.raises(ValueError, match="twice"):
        register_dataset("digits")(lambda root, **kw: None)


# ----------------------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_round_trip(cifar_root, name):
    splits = load_data(name, cifar_root, batch_size=32, eval_batch_size=25, download=False)
    raw = read_raw_cifar(cifar_root, name)
    mean, std = SPEC_STATS[name]
    assert splits.name == name and splits.num_classes == (10 if name == "cifar10" else 100)
    assert splits.image_shape == (3, 32, 32)
    assert splits.mean == mean and splits.std == std
    assert splits.val is None and splits.synthetic
    assert splits.train.num_samples == N_TRAIN and splits.test.num_samples == N_TEST
    assert len(splits.test) == math.ceil(N_TEST / 25) and len(splits.train) == math.ceil(N_TRAIN / 32)

    test_x, test_y = collect(splits.test)
    assert test_x.dtype == torch.float32 and test_x.shape == (N_TEST, 3, 32, 32)
    torch.testing.assert_close(test_x, normalized(raw["test_x"], mean, std), atol=1e-5, rtol=0)
    assert torch.equal(test_y, raw["test_y"])
    assert torch.equal(to_uint8(test_x, mean, std), raw["test_x"])  # pixels round-trip exactly

    train_x, train_y = collect(splits.train_eval)
    torch.testing.assert_close(train_x, normalized(raw["train_x"], mean, std), atol=1e-5, rtol=0)
    assert torch.equal(train_y, raw["train_y"])
    assert torch.equal(splits.train.labels, raw["train_y"]) and torch.equal(
        splits.train.clean_labels, raw["train_y"]
    )


def test_cifar_files_are_torchvision_format(cifar_root):
    folder = cifar_root / "cifar-10-batches-py"
    with open(folder / "data_batch_1", "rb") as handle:
        as_bytes = pickle.load(handle, encoding="bytes")
    with open(folder / "data_batch_1", "rb") as handle:
        as_latin1 = pickle.load(handle, encoding="latin1")
    assert as_bytes[b"data"].dtype == np.uint8 and as_bytes[b"data"].shape[1] == 3072
    assert isinstance(as_bytes[b"labels"], list)
    assert np.array_equal(as_latin1["data"], as_bytes[b"data"])  # torchvision reads the latin1 way
    with open(folder / "batches.meta", "rb") as handle:
        assert len(pickle.load(handle, encoding="latin1")["label_names"]) == 10
    folder100 = cifar_root / "cifar-100-python"
    with open(folder100 / "train", "rb") as handle:
        entry = pickle.load(handle, encoding="bytes")
    assert {b"data", b"fine_labels", b"coarse_labels"} <= set(entry)
    with open(folder100 / "meta", "rb") as handle:
        assert len(pickle.load(handle, encoding="latin1")["fine_label_names"]) == 100


def test_synthetic_cifar_is_learnable(cifar_root):
    raw = read_raw_cifar(cifar_root, "cifar10")
    x, y = raw["train_x"].flatten(1).float(), raw["train_y"]
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    pred = torch.cdist(raw["test_x"].flatten(1).float(), means).argmin(1)
    assert (pred == raw["test_y"]).float().mean() > 0.5  # chance is 0.1


def test_cifar_checksums(cifar_root, tmp_path, caplog):
    # Without the manifest, only torchvision's official checksums count: the synthetic files are rejected.
    shutil.copytree(cifar_root / "cifar-10-batches-py", tmp_path / "a" / "cifar-10-batches-py")
    (tmp_path / "a" / "cifar-10-batches-py" / MANIFEST_NAME).unlink()
    with pytest.raises(RuntimeError, match="official checksums"):
        load_data("cifar10", tmp_path / "a", batch_size=8, download=False)
    # With the manifest, a corrupted file is caught and named.
    shutil.copytree(cifar_root / "cifar-10-batches-py", tmp_path / "b" / "cifar-10-batches-py")
    victim = tmp_path / "b" / "cifar-10-batches-py" / "data_batch_2"
    blob = bytearray(victim.read_bytes())
    blob[-10] ^= 0xFF
    victim.write_bytes(bytes(blob))
    with pytest.raises(RuntimeError, match="data_batch_2"):
        load_data("cifar10", tmp_path / "b", batch_size=8, download=False)
    # and a synthetic folder says so
    caplog.clear()
    load_data(
        "cifar10", cifar_root, batch_size=8, download=True
    )  # verified against the manifest: no download
    assert "SYNTHETIC" in caplog.text


def test_missing_cifar_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*download=True"):
        load_data("cifar10", tmp_path / "nowhere", batch_size=8, download=False)


# ----------------------------------------------------------------------------------------------- holdout
def test_holdout_split():
    train, val = holdout_split(1000, 0.1, seed=0)
    assert len(val) == 100 and len(train) == 900
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(1000))
    again_train, again_val = holdout_split(1000, 0.1, seed=0)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(val, holdout_split(1000, 0.1, seed=1)[1])
    assert len(holdout_split(1000, 37, seed=0)[1]) == 37
    assert len(holdout_split(1000, 0, seed=0)[1]) == 0
    for bad in (1.0, 1.5, -0.1, -1):
        with pytest.raises(ValueError):
            holdout_split(1000, bad, seed=0)
    with pytest.raises(ValueError, match="leaving none"):
        holdout_split(1000, 1000, seed=0)
    with pytest.raises(TypeError):
        holdout_split(1000, True, seed=0)


def test_load_with_holdout_and_noise(cifar_root):
    raw = read_raw_cifar(cifar_root, "cifar10")
    mean, std = SPEC_STATS["cifar10"]
    kw = {"batch_size": 32, "download": False, "holdout": 0.25, "label_noise": 0.5, "seed": 7}
    splits = load_data("cifar10", cifar_root, **kw)
    assert splits.val.num_samples == 30 and splits.train.num_samples == 90
    # train part + val = the whole training set (as multisets of images), and val labels stay clean
    val_x, val_y = collect(splits.val)
    part_x, _ = collect(splits.train_eval)
    rows = {bytes(r.numpy()) for r in raw["train_x"].flatten(1)}
    val_rows = [bytes(r.numpy()) for r in to_uint8(val_x, mean, std).flatten(1)]
    part_rows = [bytes(r.numpy()) for r in to_uint8(part_x, mean, std).flatten(1)]
    assert set(val_rows) | set(part_rows) == rows and not set(val_rows) & set(part_rows)
    row_label = {
        bytes(r.numpy()): int(y) for r, y in zip(raw["train_x"].flatten(1), raw["train_y"], strict=True)
    }
    assert [row_label[r] for r in val_rows] == val_y.tolist()
    assert [row_label[r] for r in part_rows] == splits.train.clean_labels.tolist()
    # noise on the training part only, deterministic, test labels clean
    changed = (splits.train.labels != splits.train.clean_labels).float().mean().item()
    assert 0.25 < changed < 0.75
    assert torch.equal(collect(splits.test)[1], raw["test_y"])
    again = load_data("cifar10", cifar_root, **kw)
    assert torch.equal(again.train.labels, splits.train.labels) and torch.equal(collect(again.val)[0], val_x)
    other = load_data("cifar10", cifar_root, **{**kw, "seed": 8})
    assert not torch.equal(collect(other.val)[0], val_x)
    for _, batch_y, idx in splits.train.batches(0):
        assert torch.equal(batch_y, splits.train.labels[idx])  # the noisy labels are the ones served
    for bad in ({"holdout": 1.0}, {"holdout": 120}, {"label_noise": 1.0}, {"label_noise": -0.1}):
        with pytest.raises(ValueError):
            load_data("cifar10", cifar_root, batch_size=8, download=False, **bad)


# ----------------------------------------------------------------------------------------------- label noise
def test_symmetric_label_noise_statistics():
    clean = torch.randint(0, 10, (60000,), generator=torch.Generator().manual_seed(0))
    noisy = symmetric_label_noise(clean, 0.4, 10, seed=3)
    changed = noisy != clean
    assert abs(changed.float().mean().item() - 0.4) < 0.01  # drawing among ALL classes would give 0.36
    # a changed label is uniform over the 9 other classes
    targets = noisy[changed & (clean == 0)]
    counts = torch.bincount(targets, minlength=10).float()
    assert counts[0] == 0
    assert torch.allclose(counts[1:] / counts.sum(), torch.full((9,), 1 / 9), atol=0.02)
    assert torch.equal(noisy, symmetric_label_noise(clean, 0.4, 10, seed=3))
    assert not torch.equal(noisy, symmetric_label_noise(clean, 0.4, 10, seed=4))
    assert torch.equal(symmetric_label_noise(clean, 0.0, 10, seed=3), clean)
    many = torch.randint(0, 100, (60000,), generator=torch.Generator().manual_seed(1))
    assert abs((symmetric_label_noise(many, 0.2, 100, seed=0) != many).float().mean().item() - 0.2) < 0.01
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ValueError):
            symmetric_label_noise(clean, bad, 10, seed=0)


# ----------------------------------------------------------------------------------------------- train stream
def test_batches_deterministic_per_epoch(cifar_root):
    splits = load_data("cifar10", cifar_root, batch_size=32, download=False, seed=5)
    rng_state = torch.get_rng_state()
    first = list(splits.train.batches(0))
    list(splits.train.batches(1))
    second = list(splits.train.batches(0))  # as after a resume at epoch 0
    assert torch.equal(rng_state, torch.get_rng_state())  # the global RNG is untouched
    assert len(first) == len(splits.train) == 4 and first[-1][0].shape[0] == N_TRAIN - 3 * 32
    for (x1, y1, i1), (x2, y2, i2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(i1, i2)
    for x, y, i in first:
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and i.dtype == torch.int64
    indices = torch.cat([i for _, _, i in first])
    assert torch.equal(indices.sort().values, torch.arange(N_TRAIN))
    epoch1 = torch.cat([i for _, _, i in splits.train.batches(1)])
    assert not torch.equal(indices, epoch1)
    other_seed = load_data("cifar10", cifar_root, batch_size=32, download=False, seed=6)
    assert not torch.equal(indices, torch.cat([i for _, _, i in other_seed.train.batches(0)]))


def test_crop_flip_function():
    image = torch.arange(2 * 5 * 6, dtype=torch.uint8).view(1, 2, 5, 6) + 1
    centre = torch.tensor([2])
    out = crop_flip(image, 2, centre, centre, torch.tensor([True]))
    assert torch.equal(out, torch.flip(image, dims=[3]))
    shifted = crop_flip(image, 2, torch.tensor([3]), torch.tensor([1]), torch.tensor([False]))
    assert torch.equal(shifted[0, :, 1:, :-1], image[0, :, :-1, 1:])  # content moved down 1, left 1
    assert shifted[0, :, 0].eq(0).all() and shifted[0, :, :, -1].eq(0).all()  # zero padding came in


def test_augmentation_crops_and_flips(cifar_root):
    splits = load_data("cifar10", cifar_root, batch_size=50, download=False, seed=0)
    mean, std = SPEC_STATS["cifar10"]
    raw = read_raw_cifar(cifar_root, "cifar10")["train_x"]
    seen = []
    for epoch in (0, 1):
        for x, _, idx in splits.train.batches(epoch):
            for image, i in zip(to_uint8(x, mean, std), idx.tolist(), strict=True):
                matches = [
                    (dx, dy, f) for dx, dy, f, c in crop_candidates(raw[i], 4, True) if torch.equal(c, image)
                ]
                assert len(matches) == 1, "every augmented image is exactly one crop/flip of its source image"
                seen.append(matches[0])
    flips = sum(f for _, _, f in seen) / len(seen)
    shifted = sum((dx, dy) != (4, 4) for dx, dy, _ in seen) / len(seen)
    assert 0.3 < flips < 0.7 and shifted > 0.8
    assert len({(dx, dy) for dx, dy, _ in seen}) > 40  # offsets spread over the 81 possibilities


def test_aux_images(cifar_root):
    mean, std = SPEC_STATS["cifar10"]
    splits = load_data("cifar10", cifar_root, batch_size=32, download=False)
    aux = splits.aux_images("train", 10, seed=0)
    assert aux.shape == (10, 3, 32, 32) and aux.dtype == torch.float32 and aux.device.type == "cpu"
    assert torch.equal(aux, splits.aux_images("train", 10, seed=0))
    assert not torch.equal(aux, splits.aux_images("train", 10, seed=1))
    rows = {bytes(r.numpy()) for r in read_raw_cifar(cifar_root, "cifar10")["train_x"].flatten(1)}
    assert all(bytes(r.numpy()) in rows for r in to_uint8(aux, mean, std).flatten(1))  # real, unaugmented
    with pytest.raises(ValueError, match="holdout"):
        splits.aux_images("val", 5, seed=0)
    with pytest.raises(ValueError, match="only 120"):
        splits.aux_images("train", 121, seed=0)
    with_val = load_data("cifar10", cifar_root, batch_size=32, download=False, holdout=20)
    assert with_val.aux_images("val", 20, seed=0).shape == (20, 3, 32, 32)
    with pytest.raises(ValueError, match="only 20"):
        with_val.aux_images("val", 21, seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_cpu_batches(cifar_root):
    cpu = load_data("cifar10", cifar_root, batch_size=32, download=False, holdout=10, label_noise=0.3)
    gpu = load_data(
        "cifar10", cifar_root, batch_size=32, download=False, holdout=10, label_noise=0.3, device="cuda"
    )
    for (xc, yc, ic), (xg, yg, ig) in zip(cpu.train.batches(3), gpu.train.batches(3), strict=True):
        assert xg.is_cuda and yg.is_cuda and ig.is_cuda
        assert torch.equal(yc, yg.cpu()) and torch.equal(ic, ig.cpu())
        # same pixels; the float normalization may differ in the last bit (CUDA divides by a reciprocal)
        torch.testing.assert_close(xc, xg.cpu(), atol=1e-6, rtol=0)
        assert torch.equal(to_uint8(xc, cpu.mean, cpu.std), to_uint8(xg.cpu(), gpu.mean, gpu.std))
    torch.testing.assert_close(collect(cpu.test)[0], collect(gpu.test)[0].cpu(), atol=1e-6, rtol=0)


def test_synthetic_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--n-train" in capsys.readouterr().out
    assert main(["cifar100", "--root", str(tmp_path), "--n-train", "12", "--n-test", "6"]) == 0
    splits = load_data("cifar100", tmp_path, batch_size=4, download=False)
    assert splits.train.num_samples == 12 and splits.test.num_samples == 6 and len(splits.train) == 3


# ----------------------------------------------------------------------------------------------- digits
def test_digits():
    from sklearn.datasets import load_digits

    splits = load_data("digits", "unused", batch_size=128)
    assert splits.image_shape == (1, 16, 16) and splits.num_classes == 10
    assert splits.train.num_samples == 1497 and splits.test.num_samples == 300 and len(splits.train) == 12
    x, y, i = next(iter(splits.train.batches(0)))
    assert x.shape == (128, 1, 16, 16) and y.shape == (128,) and i.max() < 1497
    train_x, _ = collect(splits.train_eval)
    assert abs(train_x.mean().item()) < 1e-4 and abs(train_x.std().item() - 1) < 1e-3  # train-set stats
    # the split does not depend on the run seed
    other = load_data("digits", "unused", batch_size=128, seed=9, holdout=100)
    assert torch.equal(collect(other.test)[1], collect(splits.test)[1])
    assert other.val.num_samples == 100 and other.train.num_samples == 1397
    # at 8x8 the images are sklearn's, scaled to 0..255, split into train and test
    small = load_data("digits", "unused", batch_size=500, image_size=8)
    assert small.image_shape == (1, 8, 8)
    pixels = torch.cat(
        [to_uint8(collect(s)[0], small.mean, small.std) for s in (small.train_eval, small.test)]
    )
    expected = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    assert sorted(bytes(r) for r in pixels.flatten(1).numpy()) == sorted(
        bytes(r) for r in expected.reshape(-1, 64)
    )
    # augmentation: crops with padding 2, never flipped
    raw = to_uint8(collect(splits.train_eval)[0], splits.mean, splits.std)
    for image, idx in zip(to_uint8(x[:40], splits.mean, splits.std), i[:40].tolist(), strict=True):
        assert any(torch.equal(c, image) for _, _, _, c in crop_candidates(raw[idx], 2, False))


# ----------------------------------------------------------------------------------------------- ImageNet-100
def test_fixed_train_order_walks_the_stored_order_every_epoch(tmp_path):
    # MNIST-1D's published train.py takes batch i of every epoch from rows [100 i, 100 i + 100).
    fixed = load_data("mnist1d", tmp_path, batch_size=100, seed=3, train_order="fixed")
    shuffled = load_data("mnist1d", tmp_path, batch_size=100, seed=3)
    stored = fixed.train_eval.images(torch.arange(fixed.train.num_samples))
    for epoch in (1, 2):
        batches = list(fixed.train.batches(epoch))
        assert torch.equal(torch.cat([i for _, _, i in batches]), torch.arange(4000))
        assert torch.equal(batches[7][0], stored[700:800])
    assert not torch.equal(torch.cat([i for _, _, i in shuffled.train.batches(1)]), torch.arange(4000))
    with pytest.raises(ValueError, match="train_order"):
        load_data("digits", "", batch_size=8, train_order="sorted")


def test_fixed_train_order_is_refused_for_data_streamed_from_files(imagenet_root):
    with pytest.raises(ValueError, match="held in memory"):
        load_data("imagenet100", imagenet_root, batch_size=32, num_workers=0, image_size=16, train_order="fixed")


def test_train_order_names_its_runs_and_leaves_older_runs_their_names():
    from experiments.training.config import RunConfig, run_name

    shuffled = RunConfig(dataset="mnist1d", model="mnist1d_cnn").resolved()
    fixed = RunConfig(dataset="mnist1d", model="mnist1d_cnn", train_order="fixed").resolved()
    assert "fixedorder" in run_name(fixed) and "order" not in run_name(shuffled)
    # The default is out of the hash, so a run trained before the option existed keeps its folder (the name
    # committed in results/mnist1d-table2_runs.csv before train_order was added).
    assert run_name(RunConfig(dataset="mnist1d", model="mnist1d_cnn", method="baseline", stop="mark").resolved()) \
        == "mnist1d-mnist1d_cnn-baseline-s0-3a2eb095"
    with pytest.raises(ValueError, match="--train-order"):
        RunConfig(dataset="mnist1d", model="mnist1d_cnn", train_order="sorted").resolved()


def test_imagenet100_full_folder(imagenet_root):
    from torchvision import transforms as T

    classes = sorted(imagenet100_classes())
    splits = load_data("imagenet100", imagenet_root, batch_size=32, num_workers=0, image_size=16, holdout=10)
    assert splits.num_classes == 100 and splits.classes == tuple(classes) and splits.synthetic
    assert splits.image_shape == (3, 16, 16)
    assert splits.train.num_samples == 90 and splits.val.num_samples == 10 and splits.test.num_samples == 100
    # eval: Resize(round(16 * 232 / 224) = 17) + CenterCrop(16), class index = sorted position of the wnid
    test_x, test_y = collect(splits.test)
    assert torch.equal(test_y, torch.arange(100))
    reference = T.Compose(
        [T.Resize(17), T.CenterCrop(16), T.ToTensor(), T.Normalize(splits.mean, splits.std)]
    )
    from PIL import Image

    for k in (0, 41, 99):
        (path,) = (imagenet_root / "val" / classes[k]).glob("*.JPEG")
        with Image.open(path) as image:
            assert torch.allclose(test_x[k], reference(image.convert("RGB")), atol=1e-6)
    # train: deterministic per epoch, every sample a crop/flip of the resized image
    first, second = list(splits.train.batches(0)), list(splits.train.batches(0))
    assert len(first) == len(splits.train) == 3
    for (x1, y1, i1), (x2, y2, i2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(i1, i2)
    x, y, idx = first[0]
    assert x.shape == (32, 3, 16, 16) and torch.equal(y, splits.train.labels[idx])
    resize = T.Compose([T.Resize(17), T.ToTensor(), T.Normalize(splits.mean, splits.std)])
    seen = []
    for images, labels, _ in first:
        for image, label in zip(images, labels.tolist(), strict=True):
            (path,) = (imagenet_root / "train" / classes[label]).glob("*.JPEG")
            with Image.open(path) as source:
                big = resize(source.convert("RGB"))  # 20 x 18 -> (3, 17, 18): 2 x 3 crop positions
            matches = [
                (top, left, flip)
                for top in range(big.shape[1] - 15)
                for left in range(big.shape[2] - 15)
                for flip in (False, True)
                if torch.allclose(
                    image,
                    big[:, top : top + 16, left : left + 16].flip(2)
                    if flip
                    else big[:, top : top + 16, left : left + 16],
                    atol=1e-5,
                )
            ]
            assert len(matches) == 1, "every training image is one crop (maybe flipped) of the resized source"
            seen += matches
    assert 20 < sum(flip for _, _, flip in seen) < 70  # both flipped and plain (90 samples)
    assert {top for top, _, _ in seen} == {0, 1} and {left for _, left, _ in seen} == {0, 1, 2}
    assert not torch.equal(
        torch.cat([i for _, _, i in first]), torch.cat([i for _, _, i in splits.train.batches(1)])
    )
    assert splits.aux_images("val", 4, seed=0).shape == (4, 3, 16, 16)


def test_imagenet100_missing_classes(tmp_path):
    classes = sorted(imagenet100_classes())
    write_synthetic_imagenet(tmp_path, classes[3:], per_class=1, image_size=8, val_per_class=0)
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match=rf"3 of the 100.*{tmp_path / 'train'}.*{classes[0]}, {classes[1]}"):
        load_data("imagenet100", tmp_path, batch_size=8, num_workers=0)
    with pytest.raises(FileNotFoundError, match="image-net.org"):
        load_data("imagenet100", tmp_path / "nothing", batch_size=8, num_workers=0)


# ----------------------------------------------------------------------------------------------- image folder
def test_folder_images(tmp_path):
    from PIL import Image

    colours = [(10, 200, 30), (250, 0, 128), (90, 90, 90), (0, 0, 0), (255, 255, 255)]
    (tmp_path / "a" / "b").mkdir(parents=True)
    for k, colour in enumerate(colours):
        folder = tmp_path if k < 2 else tmp_path / "a" / "b"
        suffix = [".png", ".jpg", ".PNG", ".jpeg", ".png"][k]
        Image.new("RGB", (12 + k, 9), colour).save(folder / f"img{k}{suffix}")
    (tmp_path / "notes.txt").write_text("not an image")
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    aux = folder_images(tmp_path, 5, (3, 8, 8), mean, std, seed=0)
    assert aux.shape == (5, 3, 8, 8) and aux.dtype == torch.float32
    expected = {
        tuple(round((c / 255 - m) / s, 1) for c, m, s in zip(col, mean, std, strict=True)) for col in colours
    }
    got = {tuple(round(v, 1) for v in img.mean(dim=(1, 2)).tolist()) for img in aux}
    assert (
        got == expected
    )  # every image loaded once, normalized per channel (JPEG is near-exact on flat colour)
    assert torch.equal(
        folder_images(tmp_path, 3, (3, 8, 8), mean, std, seed=1),
        folder_images(tmp_path, 3, (3, 8, 8), mean, std, seed=1),
    )
    picks = {folder_images(tmp_path, 2, (3, 8, 8), mean, std, seed=s).sum().item() for s in range(6)}
    assert len(picks) > 1  # the choice depends on the seed
    gray = folder_images(tmp_path, 2, (1, 16, 10), (0.5,), (0.5,), seed=0)
    assert gray.shape == (2, 1, 16, 10)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        folder_images(tmp_path / "nowhere", 1, (3, 8, 8), mean, std, seed=0)
    with pytest.raises(ValueError, match="only 5"):
        folder_images(tmp_path, 6, (3, 8, 8), mean, std, seed=0)
