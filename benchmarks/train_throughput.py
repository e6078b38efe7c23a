"""CIFAR training throughput: our device-resident tensor pipeline vs a DataLoader + PIL transforms one.

Both train the same ResNet-32 (SGD recipe, batch 100, channels_last) on the same images, in
alternating rounds (ours, theirs, ours, theirs, ...) so machine drift hits both alike, and the
script prints images/s of each (median over rounds) and their ratio. The "theirs" pipeline is
what the authors' code does: torchvision's CIFAR dataset with RandomCrop(32, 4) +
RandomHorizontalFlip + ToTensor + Normalize per image in DataLoader workers.

    python benchmarks/train_throughput.py                    # CPU, synthetic CIFAR-10 folder
    python benchmarks/train_throughput.py --device cuda --data-root data   # real CIFAR-10 on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from neve.data import load_data, write_synthetic_cifar
from neve.data.cifar import CIFAR_STATS, torchvision_cifar
from neve.methods import make_optimizer
from neve.models import create_model


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


def images_per_second(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], model: torch.nn.Module,
                      optimizer: torch.optim.Optimizer, steps: int, device: torch.device) -> float:
    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        images = images.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
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


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.data_root) if args.data_root else Path(scratch)
        if not args.data_root:
            write_synthetic_cifar(root, "cifar10", n_train=args.n_train, n_test=100, seed=0)
        model = create_model("resnet32", 10).to(device, memory_format=torch.channels_last)
        optimizer = make_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
        pipelines = {"ours (tensor)": ours(root, device), "DataLoader+PIL": theirs(pil_loader(root, args.workers,
                                                                                              device), device)}
        rates: dict[str, list[float]] = {name: [] for name in pipelines}
        for round_index in range(args.rounds):
            for name, batches in pipelines.items():
                rates[name].append(images_per_second(batches, model, optimizer, args.batches, device))
                print(f"round {round_index + 1}: {name:16s} {rates[name][-1]:8.1f} images/s", flush=True)
    ours_rate, theirs_rate = median(rates["ours (tensor)"]), median(rates["DataLoader+PIL"])
    ratios = [a / b for a, b in zip(rates["ours (tensor)"], rates["DataLoader+PIL"], strict=True)]
    print(f"\ndevice {device} ({torch.get_num_threads()} threads), ResNet-32, batch 100, {args.workers} workers")
    print(f"ours (tensor pipeline)   {ours_rate:8.1f} images/s (median of {args.rounds})")
    print(f"DataLoader + PIL         {theirs_rate:8.1f} images/s (median of {args.rounds})")
    print(f"ratio ours/theirs        {median(ratios):8.2f}x (median of per-round ratios; target >= 1.5 on CPU)")


if __name__ == "__main__":
    main()
