"""Baseline: the recipe's schedule, no stopping; and ``none``: a constant lr (Fig. 7)."""

from __future__ import annotations

from experiments.methods.base import Decision, EpochResult, Policy, Stepper
from experiments.methods.registry import register_method
from experiments.methods.schedules import recipe_lr


@register_method("baseline", label="Baseline", family="paper")
class Baseline(Policy):
    """The recipe's schedule (MultiStep, or warm-up and cosine), no stop: the reference every table tests against."""

    def start_epoch(self, epoch: int, stepper: Stepper) -> None:
        stepper.set_lr(recipe_lr(epoch, self.config))

    def end_epoch(self, result: EpochResult, stepper: Stepper) -> Decision:
        # The record says whether the next epoch trains with a lower lr.
        return Decision(lr_reduced=recipe_lr(result.epoch + 1, self.config) < recipe_lr(result.epoch, self.config))


@register_method("none", label="constant lr", family="paper")
class ConstantLR(Policy):
    """The recipe's optimizer at its initial lr throughout: no schedule, no stop."""
