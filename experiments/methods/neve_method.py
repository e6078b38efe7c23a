"""NeVe as a method: the library's rule applied to the trainer's velocity report."""

from __future__ import annotations

from typing import Any

from experiments.methods.base import Decision, EpochResult, Policy, Stepper
from experiments.methods.registry import register_method
from neve.controller import NeVeRule


@register_method("neve", label="NeVe", family="paper")
class NeVeMethod(Policy):
    """Constant lr decayed by alpha on a velocity-change plateau; stop when velocity < epsilon."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.rule = NeVeRule(alpha=config.alpha, patience=config.patience, epsilon=config.epsilon,
                             plateau_rule=config.plateau_rule)

    def end_epoch(self, result: EpochResult, stepper: Stepper) -> Decision:
        reduce, stop = self.rule.decide(result.velocity)
        reduced = reduce and stepper.scale_lr(self.rule.alpha, self.rule.min_lr_change)
        return Decision(lr_reduced=reduced, stop=stop)

    def state_dict(self) -> dict[str, Any]:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state)
