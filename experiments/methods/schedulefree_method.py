"""Schedule-Free SGD / AdamW (Defazio et al., NeurIPS 2024, arXiv 2405.15682), package ``schedulefree``.

Settings, checked against the installed ``schedulefree`` 1.4.1 (README = the package's long description, in its
wheel's METADATA, the text of github.com/facebookresearch/schedule_free; docstrings = ``SGDScheduleFree``'s and
``AdamWScheduleFree``'s; paper = arXiv 2405.15682 sec. 4 / App. G):

- SGD recipes: ``SGDScheduleFree``, momentum 0.9 (README default). lr and weight decay: the paper's CIFAR values
  (CIFAR-10 lr 10, wd 1e-4; CIFAR-100 lr 5, wd 2e-4); elsewhere the README's starting point, "a learning rate
  10x-50x larger than classical rates" at its low end (10x the recipe's lr) with the recipe's weight decay.
- Adam / AdamW recipes (the Adam ablation, Swin): ``AdamWScheduleFree`` with the recipe's betas and weight
  decay and the README's "1x-10x larger" at its low end (the recipe's lr).
- ``schedulefree-adamw``: ``AdamWScheduleFree`` whatever the recipe, the AlgoPerf self-tuning winner, at its
  docstring's "lr: Learning rate parameter (default 0.0025)" and default betas (0.9, 0.999) (the run's
  ``betas``, which default to them). Its weight decay is applied at y to the Adam-normalised step, so scaled by
  the lr (AdamW-style): the recipe's for an AdamW recipe, else 1e-2 (torch AdamW's default, as Prodigy's).
- Warm-up: "Using learning rate warmup is recommended. This is supported through the `warmup_steps` parameter"
  (README); 5% of the training steps, as in the paper's experiments -- so these methods know the horizon,
  through their warm-up only.
- ``optimizer.train()`` / ``optimizer.eval()`` where the model switches (the stepper's train/eval mode), the
  checkpoint written in eval mode, and BatchNorm statistics recomputed at x before every evaluation and
  velocity measurement (README "Caveats"; ``experiments.training.batchnorm``).

Options (``RunConfig.extra``): ``lr`` (README: "This method does require tuning - it won't necessarily
out-perform a schedule approach without also tuning regularization and learning rate parameters"),
``weight_decay`` and ``warmup_fraction`` (the share of the training steps warmed up over; 0 for none).

Exact resume: the optimizer state (z, k, weight_sum, lr_max, train_mode) is saved in eval mode. The x <-> y
switch is a floating-point round trip, and a straight run makes it at every epoch end, exactly where a
resumed run makes it, so the two runs agree bit for bit.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from experiments.methods.base import Stepper
from experiments.methods.registry import register_method
from experiments.methods.tuning_free import TuningFreePolicy, group_value, import_package

#: The paper's App. G settings for its CIFAR workloads: (lr, weight decay).
PAPER_SGD_SETTINGS = {"cifar10": (10.0, 1e-4), "cifar100": (5.0, 2e-4)}
#: The README's "10x-50x larger than classical rates" (SGD) and "1x-10x" (AdamW), at their low end.
README_LR_FACTOR = {"sgd": 10.0, "adam": 1.0, "adamw": 1.0}
#: The README's default beta ("our default of 0.9 works on most problems").
MOMENTUM = 0.9
#: The paper's warm-up: 5% of the training steps.
WARMUP_FRACTION = 0.05
#: ``AdamWScheduleFree``'s default lr (schedulefree 1.4.1).
ADAMW_LR = 0.0025
#: Decoupled weight decay for recipes whose own is SGD's L2 (torch AdamW's default).
ADAMW_WEIGHT_DECAY = 1e-2


class ScheduleFreeStepper(Stepper):
    """The optimizer's train()/eval() switch at the trainer's train/eval points; BatchNorm recomputed at x."""

    recalibrates_batchnorm = True

    def train_mode(self) -> None:
        self.optimizer.train()

    def eval_mode(self) -> None:
        self.optimizer.eval()

    def record(self) -> dict[str, float]:
        # scheduled_lr: the lr of the last step, warm-up included (z's step size).
        return {"step_size": group_value(self.optimizer, "scheduled_lr")}


@register_method("schedulefree", label="schedule-free", package="schedulefree")
class ScheduleFree(TuningFreePolicy):
    """Schedule-free SGD (AdamW for Adam recipes): constant lr after a 5% warm-up, iterate averaging."""

    knows_horizon = True  # through the warm-up's length only
    options = ("lr", "weight_decay", "warmup_fraction")

    def defaults(self) -> dict[str, Any]:
        c = self.config
        if c.optimizer == "sgd" and c.dataset in PAPER_SGD_SETTINGS:
            lr, weight_decay = PAPER_SGD_SETTINGS[c.dataset]
        else:
            lr, weight_decay = c.lr * README_LR_FACTOR[c.optimizer], c.weight_decay
        return {"lr": lr, "weight_decay": weight_decay, "warmup_fraction": WARMUP_FRACTION}

    @property
    def uses_adamw(self) -> bool:
        return self.config.optimizer != "sgd"

    def build_stepper(self, model: nn.Module) -> Stepper:
        c = self.config
        schedulefree = import_package("schedulefree", self.package, self.name)
        weight_decay = float(self.setting("weight_decay"))
        warmup_steps = round(self.fraction("warmup_fraction") * c.epochs * self.steps_per_epoch)
        params: Any = model.parameters()
        if self.uses_adamw:
            optimizer = schedulefree.AdamWScheduleFree(params, lr=self.base_lr, betas=tuple(c.betas),
                                                       weight_decay=weight_decay, warmup_steps=warmup_steps)
        else:
            optimizer = schedulefree.SGDScheduleFree(params, lr=self.base_lr, momentum=MOMENTUM,
                                                     weight_decay=weight_decay, warmup_steps=warmup_steps)
        return ScheduleFreeStepper(optimizer)


@register_method("schedulefree-adamw", label="schedule-free AdamW", package="schedulefree")
class ScheduleFreeAdamW(ScheduleFree):
    """Schedule-free AdamW at its package defaults (lr 0.0025) whatever the recipe, 5% warm-up."""

    def defaults(self) -> dict[str, Any]:
        c = self.config
        return {"lr": ADAMW_LR, "weight_decay": c.weight_decay if c.optimizer == "adamw" else ADAMW_WEIGHT_DECAY,
                "warmup_fraction": WARMUP_FRACTION}

    @property
    def uses_adamw(self) -> bool:
        return True
