"""CIFAR training throughput: our training epoch vs the authors' DataLoader + PIL transforms one.

All setups train the same ResNet-32 (same init, SGD recipe, batch 100) on the same images, in
alternating rounds so machine drift hits all alike; the script prints images/s (median over
rounds) and ratios. "Ours" is what neve's trainer does: the device-resident uint8 tensor with
batched crop/flip/normalize, channels_last, and its --precision auto (bf16 autocast on GPUs and on
CPUs with native bf16). "Authors'" is what their code does: torchvision's
CIFAR dataset with RandomCrop(32, 4) + RandomHorizontalFlip + ToTensor + Normalize per image in
DataLoader workers, default NCHW, fp32 on CPUs (autocast on GPUs). Two more setups (DataLoader +
PIL with channels_last, in their precision and in ours) split the gain into its three causes, and
data-only rounds time each pipeline without a model.

    python -m benchmarks.train_throughput                    # CPU, synthetic CIFAR-10 folder
    python -m benchmarks.train_throughput --device cuda --data-root data   # real CIFAR-10 on a GPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from experiments.data import load_data
from experiments.data.cifar import CIFAR_STATS, torchvision_cifar
from experiments.methods import make_optimizer
from experiments.models import create_model
from experiments.training.precision import autocast_dtype
from tests.synthetic_data import write_synthetic_cifar


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-root", help="a folder with CIFAR-10 (default: write a synthetic one)")
    parser.add_argument("--n-train", type=int, default=5000, help="images in the synthetic training set")
    parser.add_argument("--batches", type=int, default=20, help="timed training steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each pipeline")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the PIL pipeline")
    return parser.parse_args()


def pil_loader(root: Path, workers: int, device: torch.device) -> DataLoader:
    from torchvision import transforms

    mean, std = CIFAR_STATS["cifar10"]
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(mean, std)])
    dataset = torchvision_cifar("cifar10", root, train=True, transform=transform)
    return DataLoader(dataset, batch_size=100, shuffle=True, num_workers=workers, drop_last=True,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0)


def ours(data_root: Path, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    splits = load_data("cifar10", data_root, batch_size=100, device=device, download=False)
    epoch = 0
    while True:
        epoch += 1
        for images, labels, _ in splits.train.batches(epoch):
            yield images, labels


def theirs(loader: DataLoader, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        for images, labels in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def images_per_second(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], model: torch.nn.Module | None,
                      steps: int, device: torch.device, channels_last: bool, dtype: torch.dtype | None) -> float:
    """Training steps per second x batch size; with ``model=None`` only the data pipeline is timed."""
    optimizer = make_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=5e-4) if model else None

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        if model is None:
            return
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    step(*next(batches))  # warm-up (and first batch of a fresh DataLoader iterator)
    _sync(device)
    started = time.perf_counter()
    seen = 0
    for _ in range(steps):
        images, labels = next(batches)
        step(images, labels)
        seen += labels.numel()
    _sync(device)
    return seen / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def resnet32(device: torch.device, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet32", 10).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.data_root) if args.data_root else Path(scratch)
        if not args.data_root:
            write_synthetic_cifar(root, "cifar10", n_train=args.n_train, n_test=100, seed=0)
        ours_batches = ours(root, device)
        pil_batches = theirs(pil_loader(root, args.workers, device), device)
        ours_dtype = autocast_dtype(device, "auto")  # what the trainer uses on this machine
        authors_dtype = torch.bfloat16 if device.type == "cuda" else None  # their code: amp on GPUs only
        # name -> (batches, model or None for data only, channels_last, autocast dtype)
        setups = {
            OURS: (ours_batches, resnet32(device, True), True, ours_dtype),
            AUTHORS: (pil_batches, resnet32(device, False), False, authors_dtype),
            PIL_CL: (pil_batches, resnet32(device, True), True, authors_dtype),
            PIL_CL_OURS_PRECISION: (pil_batches, resnet32(device, True), True, ours_dtype),
            "data only: ours": (ours_batches, None, False, None),
            "data only: PIL": (pil_batches, None, False, None),
        }
        rates: dict[str, list[float]] = {name: [] for name in setups}
        for round_index in range(args.rounds):
            for name, (batches, model, channels_last, dtype) in setups.items():
                steps = args.batches if model is not None else 3 * args.batches
                rates[name].append(images_per_second(batches, model, steps, device, channels_last, dtype))
                print(f"round {round_index + 1}: {name:46s} {rates[name][-1]:10.1f} images/s", flush=True)

    def ratio(a: str, b: str) -> float:
        return median(x / y for x, y in zip(rates[a], rates[b], strict=True))

    print(f"\ndevice {device} ({torch.get_num_threads()} threads), ResNet-32, batch 100, "
          f"{args.workers} DataLoader workers; medians of {args.rounds} alternating rounds")
    precision = "bf16 autocast" if ours_dtype else "fp32"
    print(f"training precision of neve's trainer here: {precision} (--precision auto)")
    for name in setups:
        print(f"  {name:46s} {median(rates[name]):10.1f} images/s")
    print(f"ratio ours / authors' epoch            {ratio(OURS, AUTHORS):6.2f}x   (target >= 1.5 on CPU)")
    print(f"  data pipeline alone                  {ratio(OURS, PIL_CL_OURS_PRECISION):6.2f}x   "
          "(same layout and precision)")
    print(f"  channels_last alone                  {ratio(PIL_CL, AUTHORS):6.2f}x   (both DataLoader + PIL)")
    print(f"  precision alone                      {ratio(PIL_CL_OURS_PRECISION, PIL_CL):6.2f}x   "
          "(both DataLoader + PIL, channels_last)")
    print(f"data pipeline only, ours / PIL         {ratio('data only: ours', 'data only: PIL'):6.2f}x")


OURS = "ours: tensor pipeline, channels_last"  # and the trainer's --precision auto
AUTHORS = "authors': DataLoader+PIL, NCHW"  # fp32 on CPU, bf16 autocast on GPU
PIL_CL = "DataLoader+PIL, channels_last"
PIL_CL_OURS_PRECISION = "DataLoader+PIL, channels_last, our precision"


if __name__ == "__main__":
    main()
