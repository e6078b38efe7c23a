"""D-Adaptation SGD (Defazio & Mishchenko, ICML 2023, arXiv 2301.07733), package ``dadaptation``.

Settings, checked against the installed ``dadaptation`` 3.2 (README = the package's long description, in its
wheel's METADATA; docstring = ``DAdaptSGD``'s in ``dadaptation/dadapt_sgd.py``):

- ``DAdaptSGD(lr=1, momentum=0.9)``: lr 1 is the README's "Set the LR parameter to 1.0"; the package's default
  momentum is 0, and 0.9 is the momentum of the SGD recipes it replaces (the paper's CIFAR runs keep their
  SGD settings).
- Weight decay: the recipe's, as the same L2 term SGD adds to the gradient. The README's "it may be necessary to
  use larger weight decay than you would normally use, try a factor of 2 or 4 bigger if you see overfitting" is
  a remedy for overfitting, not for the divergence seen on MNIST-1D; the recipe's is kept unless a run sets it.
- ``dadapt``: a constant lr of 1. ``dadapt-multistep``: the README's "use the same learning rate scheduler you
  would normally use on the problem" -- the recipe's MultiStep (x0.1 at its milestones, as the paper's CIFAR
  runs did), applied to the lr multiplier; it knows the horizon.

Options (``RunConfig.extra``), each a documented knob, at the package default unless a run sets it:

- ``growth_rate`` (default inf): docstring, "prevent the D estimate from growing faster than this multiplicative
  rate. Default is inf, for unrestricted. More conservative values like 1.02 may help if training is
  unstable." The remedy for the MNIST-1D CNN, where d grows from 1e-6 to ~2.6 in the first plateau and the run
  diverges (issue 26).
- ``d0`` (default 1e-6): docstring, "Initial D estimate for D-adaptation (default 1e-6). Rarely needs changing."
- ``lr`` (default 1): docstring, "Leave LR set to 1 unless you encounter instability"; it scales the estimate.
- ``weight_decay`` (default: the recipe's).

Exact resume: d, numerator_weighted, g0_norm, k per group and z, s, x0 per parameter are all in the optimizer's
``state_dict``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from experiments.methods.base import Stepper
from experiments.methods.registry import register_method
from experiments.methods.schedules import multistep_lr
from experiments.methods.tuning_free import TuningFreePolicy, group_value, import_package

#: The SGD recipes' momentum (the package default, 0, would be plain SGD).
MOMENTUM = 0.9
#: ``DAdaptSGD``'s defaults (dadaptation 3.2): no bound on d's growth, d starts at 1e-6.
GROWTH_RATE, D0 = float("inf"), 1e-6


class DAdaptStepper(Stepper):
    def record(self) -> dict[str, float]:
        d, lr, g0 = (group_value(self.optimizer, key) for key in ("d", "lr", "g0_norm"))
        # The SGD step is d * lr / |g_0| times the gradient (dlr in the package).
        return {"d": d, "step_size": None if not g0 else d * lr / g0}


@register_method("dadapt", label="D-Adaptation (constant)", package="dadaptation")
class DAdaptation(TuningFreePolicy):
    """D-Adaptation SGD with momentum 0.9 at a constant lr of 1: the step size d is estimated."""

    options = ("lr", "weight_decay", "growth_rate", "d0")

    def defaults(self) -> dict[str, Any]:
        return {"lr": 1.0, "weight_decay": self.config.weight_decay, "growth_rate": GROWTH_RATE, "d0": D0}

    def build_stepper(self, model: nn.Module) -> Stepper:
        dadaptation = import_package("dadaptation", self.package, self.name)
        optimizer = dadaptation.DAdaptSGD(model.parameters(), lr=self.base_lr, momentum=MOMENTUM,
                                          weight_decay=float(self.setting("weight_decay")),
                                          growth_rate=float(self.setting("growth_rate")),
                                          d0=float(self.setting("d0")))
        return DAdaptStepper(optimizer)


@register_method("dadapt-multistep", label="D-Adaptation (MultiStep)", package="dadaptation")
class DAdaptationMultiStep(DAdaptation):
    """D-Adaptation SGD under the recipe's MultiStep schedule (knows the horizon)."""

    knows_horizon = True

    def lr_factor(self, epoch: int) -> float:
        c = self.config
        if c.schedule != "multistep":
            raise ValueError(f"--method dadapt-multistep follows the recipe's MultiStep schedule; this recipe's "
                             f"is {c.schedule!r}: use --method dadapt")
        return multistep_lr(epoch, 1.0, tuple(c.milestones), c.gamma)
