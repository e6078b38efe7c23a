"""Prodigy (Mishchenko & Defazio, ICML 2024, arXiv 2306.06101), package ``prodigyopt``.

Settings, checked against the installed ``prodigyopt`` 1.1.2 (README = the package's long description, in its
wheel's METADATA, the text of github.com/konstmish/prodigy; docstring = ``Prodigy``'s in ``prodigyopt/prodigy.py``):

- ``lr=1`` ("We recommend using `lr=1.` (default) for all networks") and ``d_coef=1`` (the default).
- Weight decay AdamW-style (``decouple=True``, the default). The recipe's SGD weight decay (L2, 5e-4) is not an
  AdamW value: SGD recipes get 1e-2, from the README's "Standard values of `weight_decay` to try are 0 (default in
  Prodigy), 0.001, 0.01 (default in AdamW), and 0.1"; AdamW recipes (Swin) keep theirs.
- ``prodigy``: no schedule. ``prodigy-cosine``: the README's "we recommend either using no scheduler or using
  cosine annealing with the method", ``CosineAnnealingLR(opt, T_max=...)`` over the whole run, stepped per epoch
  here; it knows the horizon. On a recipe whose cosine has a warm-up (Swin) its warm-up is kept.

Options (``RunConfig.extra``), each a documented knob, at the package default unless a run sets it:

- ``d_coef`` (default 1): docstring, "Values such as 0.5 and 2.0 typically work as well. Changing this parameter
  is the preferred way to tune the method"; README, "set it to 0.5 or even 0.1 if you want a smaller learning
  rate".
- ``safeguard_warmup`` (default off; on for a recipe whose own cosine warms up): docstring, "Remove lr from the
  denominator of D estimate to avoid issues during warm-up stage"; README, "To avoid issues with warm-up, use
  option `safeguard_warmup=True`". Its own option, so a run with ``warmup_fraction`` says whether it is on.
- ``use_bias_correction`` (default off): docstring, "Turn on Adam's bias correction. Off by default"; the README
  recommends it with ``safeguard_warmup`` (for diffusion models).
- ``growth_rate`` (default inf): docstring, "prevent the D estimate from growing faster than this multiplicative
  rate ... Values like 1.02 give a kind of learning rate warmup effect."
- ``warmup_fraction`` (default 0): a linear warm-up of the lr multiplier over this share of the epochs (0.05:
  the first 10 of 200 epochs at 1/10, 2/10 ... 1), before the variant's schedule; the README's "if you use
  linear warm-up at the beginning". A warm-up sized from the budget knows the horizon.
- ``lr``, ``weight_decay``.

Exact resume: d, d_max, d_numerator, k per group and p0, s, exp_avg, exp_avg_sq per parameter are all in the
optimizer's ``state_dict``.
"""

from __future__ import annotations

from typing import Any, ClassVar

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

    options = ("lr", "d_coef", "weight_decay", "safeguard_warmup", "use_bias_correction", "growth_rate",
               "warmup_fraction")
    #: This variant's lr follows the recipe's own cosine (warm-up included) when the recipe has one.
    follows_recipe_cosine: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.warmup_epochs = self._warmup_epochs()

    def defaults(self) -> dict[str, Any]:
        c = self.config
        return {"lr": 1.0, "d_coef": 1.0, "weight_decay": c.weight_decay if c.optimizer == "adamw"
                else DECOUPLED_WEIGHT_DECAY, "safeguard_warmup": self.recipe_warmup_epochs > 0,
                "use_bias_correction": False, "growth_rate": float("inf"), "warmup_fraction": 0.0}

    @property
    def recipe_warmup_epochs(self) -> int:
        c = self.config
        return c.warmup_epochs if self.follows_recipe_cosine and c.schedule == "cosine" else 0

    def _warmup_epochs(self) -> int:
        """Epochs of the ``warmup_fraction`` warm-up: at least one when the fraction is above 0."""
        fraction = self.fraction("warmup_fraction")
        if fraction and self.follows_recipe_cosine and self.config.schedule == "cosine":
            raise ValueError(f"--method {self.name} follows this recipe's cosine and its warm-up "
                             f"({self.config.warmup_epochs} epochs); drop warmup_fraction")
        return max(1, round(fraction * self.config.epochs)) if fraction else 0

    @property
    def knows_horizon(self) -> bool:
        """A warm-up sized from the budget knows it."""
        return self.warmup_epochs > 0

    def lr_factor(self, epoch: int) -> float:
        warmup = self.warmup_epochs
        return min(1.0, epoch / warmup) if warmup else 1.0

    def build_stepper(self, model: nn.Module) -> Stepper:
        c = self.config
        prodigyopt = import_package("prodigyopt", self.package, self.name)
        optimizer = prodigyopt.Prodigy(model.parameters(), lr=self.base_lr, betas=tuple(c.betas),
                                       weight_decay=float(self.setting("weight_decay")), decouple=True,
                                       d_coef=float(self.setting("d_coef")),
                                       safeguard_warmup=self.flag("safeguard_warmup"),
                                       use_bias_correction=self.flag("use_bias_correction"),
                                       growth_rate=float(self.setting("growth_rate")))
        return ProdigyStepper(optimizer)


@register_method("prodigy-cosine", label="Prodigy + cosine", package="prodigyopt")
class ProdigyCosine(ProdigyMethod):
    """Prodigy with the README's cosine annealing over the whole budget (knows the horizon)."""

    follows_recipe_cosine = True

    @property
    def knows_horizon(self) -> bool:
        return True

    def lr_factor(self, epoch: int) -> float:
        c = self.config
        if c.schedule == "cosine":  # the recipe's own cosine shape (warm-up, floor), as a multiplier of 1
            return cosine_lr(epoch, 1.0, c.epochs, c.warmup_epochs, c.warmup_lr / c.lr, c.min_lr / c.lr)
        warmup = self.warmup_epochs
        if epoch <= warmup:
            return epoch / warmup
        # CosineAnnealingLR(T_max=epochs after the warm-up), per epoch
        return cosine_lr(epoch - warmup, 1.0, c.epochs - warmup, 0, 0.0, 0.0)
