"""Prodigy (Mishchenko & Defazio, ICML 2024, arXiv 2306.06101), package ``prodigyopt``.

Settings (README = github.com/konstmish/prodigy):

- ``lr=1`` ("we recommend using lr=1. (default) for all networks") and ``d_coef=1`` (the default; the README's
  preferred knob, left untouched).
- Weight decay AdamW-style (``decouple=True``, the default). The recipe's SGD weight decay (L2, 5e-4) is not an
  AdamW value: SGD recipes get 1e-2, from the README's "standard values to try" (0, 1e-3, 1e-2, 0.1) and torch's
  AdamW default; AdamW recipes (Swin) keep theirs.
- ``prodigy``: no schedule. ``prodigy-cosine``: the README's "we also recommend using cosine annealing",
  ``CosineAnnealingLR(opt, T_max=n_epoch)`` stepped per epoch, which knows the horizon; on a recipe whose
  cosine has a warm-up (Swin) its warm-up is kept, with ``safeguard_warmup=True`` as the README says for
  warm-up. Without a warm-up ``safeguard_warmup`` stays off (at a constant lr of 1 it changes nothing).

Exact resume: d, d_max, d_numerator, k per group and p0, s, exp_avg, exp_avg_sq per parameter are all in the
optimizer's ``state_dict``.
"""

from __future__ import annotations

from torch import nn

from experiments.methods.base import Stepper
from experiments.methods.registry import register_method
from experiments.methods.schedules import cosine_lr
from experiments.methods.tuning_free import TuningFreePolicy, group_value, import_package

#: Decoupled weight decay for recipes whose own is SGD's L2 (README's list; torch AdamW's default).
DECOUPLED_WEIGHT_DECAY = 1e-2


class ProdigyStepper(Stepper):
    def record(self) -> dict[str, float]:
        d, lr = group_value(self.optimizer, "d"), group_value(self.optimizer, "lr")
        return {"d": d, "step_size": d * lr}  # Adam's step size is d * lr


@register_method("prodigy", label="Prodigy", package="prodigyopt")
class ProdigyMethod(TuningFreePolicy):
    """Prodigy at lr 1: Adam whose step size d is estimated on the fly; no schedule."""

    options = ("lr", "d_coef", "weight_decay")

    @property
    def warmup_epochs(self) -> int:
        return 0

    def build_stepper(self, model: nn.Module) -> Stepper:
        c = self.config
        prodigyopt = import_package("prodigyopt", self.package, self.name)
        default_decay = c.weight_decay if c.optimizer == "adamw" else DECOUPLED_WEIGHT_DECAY
        optimizer = prodigyopt.Prodigy(model.parameters(), lr=self.base_lr, betas=tuple(c.betas),
                                       weight_decay=float(self.setting("weight_decay", default_decay)),
                                       decouple=True, d_coef=float(self.setting("d_coef", 1.0)),
                                       safeguard_warmup=self.warmup_epochs > 0)
        return ProdigyStepper(optimizer)


@register_method("prodigy-cosine", label="Prodigy + cosine", package="prodigyopt")
class ProdigyCosine(ProdigyMethod):
    """Prodigy with the README's cosine annealing over the whole budget (knows the horizon)."""

    knows_horizon = True

    @property
    def warmup_epochs(self) -> int:
        c = self.config
        return c.warmup_epochs if c.schedule == "cosine" else 0

    def lr_factor(self, epoch: int) -> float:
        c = self.config
        if c.schedule == "cosine":  # the recipe's own cosine shape (warm-up, floor), as a multiplier of 1
            return cosine_lr(epoch, 1.0, c.epochs, c.warmup_epochs, c.warmup_lr / c.lr, c.min_lr / c.lr)
        return cosine_lr(epoch, 1.0, c.epochs, 0, 0.0, 0.0)  # CosineAnnealingLR(T_max=epochs), per epoch
