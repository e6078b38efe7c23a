"""NeVe in a plain PyTorch DDP loop under torchrun: every rank takes the same decision, no rank stops alone.

    python examples/torchrun_ddp.py                                   # one process
    torchrun --standalone --nproc_per_node 2 examples/torchrun_ddp.py  # 2 processes (gloo on CPU, nccl on GPUs)

neve.NeVe on the DDP model shards the aux set across ranks and reduces the velocity sums, so each rank does
1/W of the aux work and all get one process's velocities. Rank 0 prints each epoch and writes
<out>/decisions.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from digits_data import load_digits_tensors
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import neve

SEED, TRAIN_SAMPLES, GLOBAL_BATCH, LR = 0, 1024, 128, 0.2
NEVE = {"alpha": 0.5, "patience": 0, "epsilon": 1e-3}


def train(out: Path, epochs: int = 12) -> dict:
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 32), nn.ReLU(), nn.Linear(32, 10))
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
    data = load_digits_tensors()
    images = data["train_images"][:TRAIN_SAMPLES].float().div(255.0)
    dataset = TensorDataset(images, data["train_labels"][:TRAIN_SAMPLES])
    sampler = DistributedSampler(dataset, shuffle=False) if distributed else None  # shuffle=True in your runs
    loader = DataLoader(dataset, batch_size=GLOBAL_BATCH // world, sampler=sampler, shuffle=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    controller = neve.NeVe(model, optimizer, neve.gaussian_aux(n=64, shape=(1, 16, 16), seed=1), **NEVE)
    lrs, velocities = [], []
    for epoch in range(1, epochs + 1):
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        decision = controller.step()  # every rank, every epoch: the same collectives
        lrs.append(decision.lr)
        velocities.append(decision.model_velocity)
        if rank == 0:
            print(f"epoch {epoch}: velocity {decision.model_velocity:.5f} lr {decision.lr:g} stop {decision.stop}")
        if decision.stop:  # identical on every rank, so all leave the loop together
            break
    result = {"lr": lrs, "stop_epoch": controller.stop_epoch, "velocity": velocities}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "decisions.json").write_text(json.dumps(result))
    if distributed:
        dist.barrier()  # every rank done, gloo's workers free of your last collectives' tensors (docs/integrations.md)
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("runs/torchrun_ddp"))
    cli = parser.parse_args()
    train(cli.out, cli.epochs)
