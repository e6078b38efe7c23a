"""Recipe lr schedules, per 1-based epoch."""

from __future__ import annotations

import math

import pytest

from experiments.methods.schedules import cosine_lr, multistep_lr


def test_multistep_decays_after_each_milestone() -> None:
    lrs = [multistep_lr(e, 0.1, (100, 150), 0.1) for e in (1, 100, 101, 150, 151, 250)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_cosine_warms_up_linearly_then_decays_to_the_minimum() -> None:
    lr = [cosine_lr(e, 1.0, epochs=12, warmup_epochs=2, warmup_lr=0.0, min_lr=0.1) for e in range(1, 13)]
    assert lr[:3] == pytest.approx([0.0, 0.5, 1.0])  # warm-up over epochs 1-2; the cosine starts at the base lr
    assert all(a > b for a, b in zip(lr[2:], lr[3:], strict=False))
    assert lr[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 9 / 10)))
    no_warmup = [cosine_lr(e, 1.0, epochs=4, warmup_epochs=0, warmup_lr=0.0, min_lr=0.0) for e in range(1, 5)]
    assert no_warmup == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])
