"""Worker bodies for tests/test_distributed.py, run in 2 gloo processes by torch.multiprocessing.spawn."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from neve import NeVe, gaussian_aux
from neve.distributed import sum_over_ranks

AUX_N, AUX_BATCH = 40, 8  # 5 batches: rank 0 measures 3, rank 1 measures 2
EPOCHS = 5
NEVE_OPTIONS = {"patience": 0, "epsilon": 0.3, "batch_size": AUX_BATCH}


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def init(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)


def all_cases(rank: int, world: int, port: int, out: str) -> None:
    """The cases below in one process group (each spawn costs seconds of imports)."""
    init(rank, world, port)
    train_and_measure(rank, out)
    too_few_batches(rank, out)
    fsdp_refused(rank, out)
    references_left_to_workers(rank, out)
    dist.destroy_process_group()


def train_and_measure(rank: int, out: str) -> None:
    """DDP training whose ranks see different batches (so their BatchNorm statistics differ), NeVe after each
    epoch; every rank saves its decisions and NeVe state, rank 0 also the model at each measurement."""
    model = nn.parallel.DistributedDataParallel(bn_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    neve = NeVe(model, optimizer, gaussian_aux(AUX_N, (1, 8, 8), seed=3), **NEVE_OPTIONS)
    states = [{k: v.clone() for k, v in neve.monitor.model.state_dict().items()}]
    decisions = []
    data = torch.Generator().manual_seed(100 + rank)
    for _ in range(EPOCHS):
        for _ in range(3):
            x, y = torch.randn(16, 1, 8, 8, generator=data), torch.randint(0, 3, (16,), generator=data)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        decision = neve.step()
        decisions.append((decision.model_velocity, decision.velocity_change, decision.lr, decision.stop))
        states.append({k: v.clone() for k, v in model.module.state_dict().items()})
    torch.save({"decisions": decisions, "neve": neve.state_dict(), "states": states}, Path(out) / f"rank{rank}.pt")


class OneBatch(torch.utils.data.IterableDataset):
    """An aux loader of unknown length that yields a single batch."""

    def __iter__(self):
        yield gaussian_aux(4, (1, 8, 8))


def too_few_batches(rank: int, out: str) -> None:
    """An aux set of one batch for two ranks: both ranks must raise the same error (neither waits alone), at
    construction when the number of batches is known, else at the first measurement."""
    model = nn.parallel.DistributedDataParallel(bn_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    errors = []
    try:
        NeVe(model, optimizer, gaussian_aux(4, (1, 8, 8)), batch_size=8)
    except ValueError as error:
        errors.append(str(error))
    neve = NeVe(model, optimizer, torch.utils.data.DataLoader(OneBatch(), batch_size=None))
    optimizer.zero_grad()
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    optimizer.step()
    try:
        neve.step()
    except ValueError as error:
        errors.append(str(error))
    Path(out, f"few{rank}.txt").write_text("\n".join(errors))


def fsdp_refused(rank: int, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    model = bn_model()
    fully_shard(model)
    try:
        NeVe(model, torch.optim.SGD(model.parameters(), lr=0.1), gaussian_aux(8, (1, 8, 8)))
    except TypeError as error:
        Path(out, f"fsdp{rank}.txt").write_text(str(error))


def references_left_to_workers(rank: int, out: str, calls: int = 100) -> None:
    """How many of ``calls`` reductions returned while a gloo worker thread still referenced the result
    (a use count above Python's own 1). Such a worker frees the tensor later, under the GIL, and aborts
    the process if the interpreter is exiting by then (what a torchrun script ending on NeVe's stop hit)."""
    held = 0
    for i in range(calls):
        flat = sum_over_ranks(torch.full((256,), float(rank + i)))
        held += flat._use_count() > 1
    Path(out, f"held{rank}.txt").write_text(str(held))
