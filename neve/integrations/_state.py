"""What both callbacks store in their framework's checkpoint: NeVe's state as CPU tensors and Python values
(Lightning and the HF Trainer save from rank 0 and may load on another device)."""

from __future__ import annotations

from typing import Any

import torch


def state_on_cpu(value: Any) -> Any:
    """``value`` with every tensor, at any depth of nested dicts, detached and moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: state_on_cpu(v) for k, v in value.items()}
    return value
