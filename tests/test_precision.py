"""The training precision choice: bf16 autocast only where the hardware has it, unless asked."""

from __future__ import annotations

import pytest
import torch

from experiments.training.config import RunConfig
from experiments.training.precision import autocast_dtype, cpu_has_native_bf16, native_bf16_in_cpuinfo

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\nbugs\t\t: avx512_bf16_is_not_a_flag_here\n"


def test_cpuinfo_flags_decide_native_bf16() -> None:
    assert native_bf16_in_cpuinfo(SAPPHIRE_RAPIDS)
    assert not native_bf16_in_cpuinfo(SKYLAKE)
    assert not native_bf16_in_cpuinfo("")


def test_explicit_choices_are_obeyed_on_any_device() -> None:
    for device in (torch.device("cpu"), torch.device("cuda")):
        assert autocast_dtype(device, "fp32") is None
        assert autocast_dtype(device, "bf16") is torch.bfloat16


def test_auto_uses_bf16_on_gpus_and_on_cpus_only_with_native_support() -> None:
    assert autocast_dtype(torch.device("cuda"), "auto") is torch.bfloat16
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert autocast_dtype(torch.device("cpu"), "auto") is expected


def test_an_unknown_precision_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="--precision"):
        autocast_dtype(torch.device("cpu"), "fp16")
    with pytest.raises(ValueError, match="--precision"):
        RunConfig(dataset="digits", precision="half").resolved()
