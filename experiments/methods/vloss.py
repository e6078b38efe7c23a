"""V.Loss: the plateau rule on the validation loss, and early stopping on it (needs a holdout)."""

from __future__ import annotations

import math
from typing import Any

from experiments.methods.base import Decision, EpochResult, Policy, Stepper
from experiments.methods.registry import register_method
from neve.controller import Plateau, min_lr_change


@register_method("vloss", label="V.Loss", family="paper")
class ValidationLoss(Policy):
    """Decay by alpha when the validation loss plateaus for more than ``patience`` epochs; stop when it
    has not reached a new minimum for more than ``stop_patience`` epochs; report the best-validation model.

    The authors' code leaves this early stop as a TODO; the rule here is classic early stopping. Their V.Loss
    runs use the same plateau scheduler object as NeVe, stepped every epoch (no D == 0 test, which only their
    velocity path has): under ``plateau_rule="code"`` only its 1e-8 minimum cut applies here.
    """

    needs_holdout = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.plateau = Plateau(config.patience)
        self.min_lr_change = min_lr_change(config.plateau_rule)
        self.best_loss = math.inf
        self.epochs_since_best = 0

    def end_epoch(self, result: EpochResult, stepper: Stepper) -> Decision:
        if result.val_loss is None:
            raise ValueError("vloss needs a validation split: pass --holdout 0.1 (or 0.3)")
        reduce = self.plateau.step(result.val_loss)
        reduce = reduce and stepper.scale_lr(self.config.alpha, self.min_lr_change)
        improved = result.val_loss < self.best_loss
        if improved:
            self.best_loss, self.epochs_since_best = result.val_loss, 0
        else:
            self.epochs_since_best += 1
        stop = self.epochs_since_best > self.config.stop_patience
        return Decision(lr_reduced=reduce, stop=stop, keep_weights=improved)

    def state_dict(self) -> dict[str, Any]:
        return {"plateau": self.plateau.state_dict(), "best_loss": self.best_loss,
                "epochs_since_best": self.epochs_since_best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau.load_state_dict(state["plateau"])
        self.best_loss, self.epochs_since_best = state["best_loss"], state["epochs_since_best"]
