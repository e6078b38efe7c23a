"""D-Adaptation SGD (Defazio & Mishchenko, ICML 2023, arXiv 2301.07733), package ``dadaptation``.

Settings (README = github.com/facebookresearch/dadaptation, paper = arXiv 2301.07733 sec. 7 / App.):

- ``DAdaptSGD(lr=1, momentum=0.9)``: lr 1 is the README's "set the LR parameter to 1.0"; the package's default
  momentum is 0, and 0.9 is the momentum of the SGD recipes it replaces (the paper's CIFAR runs keep their
  SGD settings). d0 1e-6 and an unbounded growth rate are the package defaults.
- Weight decay: the recipe's, as the same L2 term SGD adds to the gradient. A note that D-Adapt may need a
  larger weight decay than the tuned baseline is not in the README version we read (commit 0074595); we keep
  the recipe's and report the outcome rather than tune it.
- ``dadapt``: a constant lr of 1. ``dadapt-multistep``: the README's "use the same learning rate scheduler you
  would normally use on the problem" -- the recipe's MultiStep (x0.1 at its milestones, as the paper's CIFAR
  runs did), applied to the lr multiplier; it knows the horizon.

Exact resume: d, numerator_weighted, g0_norm, k per group and z, s, x0 per parameter are all in the optimizer's
``state_dict``.
"""

from __future__ import annotations

from torch import nn

from experiments.methods.base import Stepper
from experiments.methods.registry import register_method
from experiments.methods.schedules import multistep_lr
from experiments.methods.tuning_free import TuningFreePolicy, group_value, import_package

#: The SGD recipes' momentum (the package default, 0, would be plain SGD).
MOMENTUM = 0.9


class DAdaptStepper(Stepper):
    def record(self) -> dict[str, float]:
        d, lr, g0 = (group_value(self.optimizer, key) for key in ("d", "lr", "g0_norm"))
        # The SGD step is d * lr / |g_0| times the gradient (dlr in the package).
        return {"d": d, "step_size": None if not g0 else d * lr / g0}


@register_method("dadapt", label="D-Adaptation (constant)", package="dadaptation")
class DAdaptation(TuningFreePolicy):
    """D-Adaptation SGD with momentum 0.9 at a constant lr of 1: the step size d is estimated."""

    options = ("lr", "weight_decay")

    def build_stepper(self, model: nn.Module) -> Stepper:
        dadaptation = import_package("dadaptation", self.package, self.name)
        optimizer = dadaptation.DAdaptSGD(model.parameters(), lr=self.base_lr, momentum=MOMENTUM,
                                          weight_decay=float(self.setting("weight_decay", self.config.weight_decay)))
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
