"""BatchNorm statistics recomputed for weights they were not gathered at.

Schedule-free optimizers evaluate at x while the training forward passes run at y, and DoG's averaged model
never runs a training forward at all: the running mean and variance their BatchNorm layers hold belong to
other weights. Both authors say to recompute them before evaluating. Here that is done as PreciseBN and
``torch.optim.swa_utils.update_bn`` do it: reset the running statistics, then forward training batches in
train mode under ``no_grad`` with a cumulative average (momentum None), so the result depends only on the
weights and the batches, not on what the buffers held before. The schedule-free README forwards 50 batches
(``itertools.islice(train_loader, 50)``); so do we.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

#: Training batches forwarded to recompute the statistics (the schedule-free README's 50).
RECALIBRATION_BATCHES = 50


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers that keep running statistics (nothing to recompute for the others)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[tuple[Any, ...]],
                          forward: Callable[[nn.Module, Tensor], Any],
                          num_batches: int = RECALIBRATION_BATCHES) -> int:
    """Recompute the running statistics of ``model``'s BatchNorm layers from the first ``num_batches`` of
    ``batches`` (tuples whose first item is the input); ``forward(model, inputs)`` runs one batch (the
    trainer's autocast and memory layout). Leaves the model in eval mode; returns the batches used (0 for
    a model without BatchNorm, which is not run at all)."""
    layers = batchnorm_layers(model)
    model.eval()
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches
    used = 0
    model.train()
    try:
        for batch in itertools.islice(batches, num_batches):
            forward(model, batch[0])
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.eval()
    if used == 0:
        raise ValueError("no training batch to recompute the BatchNorm statistics from")
    return used
