"""Training precision: bf16 autocast where the hardware runs it natively, fp32 elsewhere.

Velocity is always measured in fp32 (the monitor turns autocast off); this only concerns the
training and evaluation passes. On CPUs, bf16 pays off only with native instructions
(AVX512-BF16 or AMX): elsewhere it is emulated and slower than fp32, so "auto" checks.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def native_bf16_in_cpuinfo(cpuinfo: str) -> bool:
    """Whether the "flags" lines of a /proc/cpuinfo text list AVX512-BF16 or AMX-BF16."""
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    return bool(flags & _NATIVE_BF16_FLAGS)


@cache
def cpu_has_native_bf16() -> bool:
    """This machine's answer (False where /proc/cpuinfo cannot be read, e.g. not Linux)."""
    try:
        return native_bf16_in_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for training on ``device``, or None for plain fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    return torch.bfloat16 if native else None
