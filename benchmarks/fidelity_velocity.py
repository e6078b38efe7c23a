"""How much the authors' code differences change the velocity signal: normal vs uint8 aux noise, and how many
neurons the signed recursion makes negative (spec section 6). Not a speed benchmark: it prints measurements.

For a model trained with its recipe's SGD, four velocity monitors watch the same weights: aux noise N(0, 1)
(the paper) or uint8-wrapped (the authors' code, ~uniform in [0, 1]), each with the paper's recursion and the
signed one. Two starting points: the untrained model (t = 0 at initialization) and a briefly trained one
(t = 0 after ``--warmup`` epochs). Per epoch it prints V^t for both aux kinds, and for the signed form the number
of neurons with v < 0 out of all measured neurons and its V^t and D^t next to the paper's.

    python -m benchmarks.fidelity_velocity                       # digits ResNet-8, a few minutes on 2 cores
    python -m benchmarks.fidelity_velocity --model resnet32 --data cifar-shaped   # synthetic 32x32 RGB images
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F

from experiments.data import load_data
from experiments.methods import make_optimizer
from experiments.models import create_model
from experiments.training.config import RunConfig
from neve import VelocityMonitor, gaussian_aux
from tests.synthetic_data import write_synthetic_cifar


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data, epoch: int) -> None:
    model.train()
    for images, labels, _ in data.train.batches(epoch):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()


def run(args: argparse.Namespace, warmup: int) -> None:
    torch.manual_seed(args.seed)
    if args.data == "digits":
        dataset, root = "digits", ""
    else:
        dataset, root = "cifar10", tempfile.mkdtemp(prefix="neve-fidelity-")
        write_synthetic_cifar(root, "cifar10", n_train=args.train_images, n_test=100, seed=args.seed)
    config = RunConfig(dataset=dataset, model=args.model).resolved()
    data = load_data(dataset, root, batch_size=config.batch_size, seed=args.seed, download=False)
    model = create_model(args.model, data.num_classes, in_chans=data.image_shape[0],
                         image_size=data.image_shape[-1], variant=args.variant)
    optimizer = make_optimizer(model, config.optimizer, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    for epoch in range(1, warmup + 1):
        train_epoch(model, optimizer, data, epoch)
    monitors = {(noise, form): VelocityMonitor(model, gaussian_aux(args.aux_size, data.image_shape, args.seed, noise),
                                               velocity_form=form)
                for noise in ("normal", "uint8") for form in ("paper", "signed")}
    start = "untrained" if warmup == 0 else f"after {warmup} epochs"
    print(f"\n{args.model} on {args.data}, variant {args.variant}, t = 0 {start}, |D_aux| = {args.aux_size}")
    print(f"{'t':>3} {'V normal':>9} {'V uint8':>9} | signed, normal aux: {'v<0':>5} {'V':>8} {'D':>9} "
          f"(paper D {'':>1}) | signed, uint8 aux: {'v<0':>5} {'V':>8} {'D':>9} (paper D)")
    for t in range(1, args.epochs + 1):
        train_epoch(model, optimizer, data, warmup + t)
        reports = {key: monitor.measure() for key, monitor in monitors.items()}
        row = f"{t:>3} {reports['normal', 'paper'].model_velocity:9.4f} {reports['uint8', 'paper'].model_velocity:9.4f}"
        for noise in ("normal", "uint8"):
            signed, paper = reports[noise, "signed"], reports[noise, "paper"]
            values = torch.cat(list(signed.layers.values()))
            negative, total = int((values < 0).sum()), values.numel()
            d_signed = "-" if signed.velocity_change is None else f"{signed.velocity_change:.2e}"
            d_paper = "-" if paper.velocity_change is None else f"{paper.velocity_change:.2e}"
            row += f" | {negative:>4}/{total} {signed.model_velocity:8.4f} {d_signed:>9} ({d_paper:>8})"
        print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--data", default="digits", choices=["digits", "cifar-shaped"])
    parser.add_argument("--variant", default="code", choices=["paper", "code"])
    parser.add_argument("--epochs", type=int, default=6, help="measured epochs after t = 0")
    parser.add_argument("--warmup", type=int, default=5, help="epochs before t = 0 for the briefly trained model")
    parser.add_argument("--aux-size", type=int, default=100)
    parser.add_argument("--train-images", type=int, default=2000, help="cifar-shaped: synthetic training images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for warmup in (0, args.warmup):
        run(args, warmup)


if __name__ == "__main__":
    main()
