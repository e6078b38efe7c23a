"""Velocity under torch.distributed (DDP, torchrun): every rank measures a shard of D_aux, one process's result.

The cosine of each neuron needs three sums over the aux samples, and sums add across shards: rank r
measures the aux batches r, r + W, r + 2W, ... and a reduction of the sums gives every rank the result
one process would get on the whole set, for 1/W of the aux work. The model replayed is rank 0's
(parameters and buffers broadcast first: DDP keeps parameters equal, but each rank's BatchNorm
running statistics follow its own batches), so the reference snapshot, the velocities and hence every
decision are bit-identical on every rank. Each measurement issues the same collectives in the same
order on every rank, whatever the data, so no rank can wait alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class Shard:
    """This process's place in the process group."""

    rank: int
    world_size: int

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.world_size == self.rank


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside a DDP / DataParallel wrapper (its forward would issue collectives); FSDP refused."""
    check_not_fsdp(model)
    while isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        model = model.module
    return model


def check_not_fsdp(model: nn.Module) -> None:
    from torch.distributed import fsdp

    sharded = tuple(getattr(fsdp, name) for name in ("FullyShardedDataParallel", "FSDPModule") if hasattr(fsdp, name))
    if any(isinstance(m, sharded) for m in model.modules()):
        raise TypeError("NeVe does not support FSDP: each rank holds only a shard of the parameters, so none can "
                        "snapshot and replay the whole network. Train with DDP (the model fits on one device), "
                        "or measure a full copy of the model outside FSDP")


def resolve_shard(distributed: bool | None) -> Shard | None:
    """The shard to measure: None measures the whole aux set alone.

    ``distributed=None`` shards whenever a process group of more than one rank is initialized (DDP,
    torchrun, Lightning, the HF Trainer), ``True`` requires one, ``False`` never shards (each rank then
    measures its own model alone; it must make the same decisions itself).
    """
    ready = dist.is_available() and dist.is_initialized()
    if distributed and not ready:
        raise RuntimeError("distributed=True needs an initialized process group: call "
                           "torch.distributed.init_process_group first (torchrun sets the environment)")
    if distributed is False or not ready or dist.get_world_size() == 1:
        return None
    return Shard(dist.get_rank(), dist.get_world_size())


def broadcast_state(state: dict[str, Tensor]) -> None:
    """Rank 0's values into every rank's ``state`` (in place; tensors shared by names sent once), one
    flat broadcast per dtype and device."""
    unique = list({id(t): t for t in state.values()}.values())
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for tensor in unique:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for (_, _), tensors in sorted(groups.items(), key=lambda item: str(item[0])):  # same order on every rank
        flat = torch.cat([t.reshape(-1) for t in tensors])
        settled(dist.broadcast, flat, src=0)
        offset = 0
        for tensor in tensors:
            tensor.copy_(flat[offset:offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


def agree(values: Sequence[float], device: torch.device) -> list[tuple[float, float]]:
    """(min, max) over the ranks of each value: one all-reduce, the same on every rank."""
    local = torch.tensor([v for value in values for v in (-value, value)], dtype=torch.float64, device=device)
    settled(dist.all_reduce, local, op=dist.ReduceOp.MAX)
    pairs = local.tolist()
    return [(-pairs[2 * i], pairs[2 * i + 1]) for i in range(len(values))]


def sum_over_ranks(flat: Tensor) -> Tensor:
    """The sum over ranks, computed once on rank 0 and broadcast, so every rank holds the same bits."""
    settled(dist.reduce, flat, dst=0, op=dist.ReduceOp.SUM)
    settled(dist.broadcast, flat, src=0)
    return flat


RELEASE_WAIT_S = 1.0


def settled(collective: Callable[..., object], tensor: Tensor, **kwargs: object) -> None:
    """Run a blocking collective and return once no backend thread references ``tensor`` any more.

    gloo completes a collective on a worker thread, which drops its reference to the tensor a moment
    after it wakes the caller. Had Python let the tensor go by then, that thread frees it and must take
    the GIL to do so; if the interpreter is already shutting down (a script whose last NeVe step ends
    the run) it cannot, and the process aborts with "terminate called without an active exception".
    Waiting the few microseconds until the worker lets go leaves Python the last owner. CUDA tensors
    are not waited for: NCCL's watchdog holds them until the GPU is done, by design.
    """
    collective(tensor, **kwargs)
    if tensor.device.type != "cpu":
        return
    deadline = time.monotonic() + RELEASE_WAIT_S
    while tensor._use_count() > 1 and time.monotonic() < deadline:
        time.sleep(1e-5)
