"""What the tuning-free optimizers (schedule-free, Prodigy, D-Adaptation, DoG) share as methods.

Each is its authors' PyPI package driven by the one trainer: a :class:`TuningFreePolicy` builds the package's
optimizer with the settings its authors document, sets the lr multiplier of the epoch (1 unless the variant
adds their recommended schedule), never stops (NeVe's V < epsilon is recorded for every method anyway) and
records the optimizer's own step size each epoch (``step_size``, plus ``d`` / ``eta`` ...).

Each method runs at its authors' documented settings unless the run sets one of the method's ``options`` in
``RunConfig.extra`` (its authors' documented remedies and knobs: D-Adaptation's ``growth_rate``, Prodigy's
``d_coef`` and ``safeguard_warmup``...). Such a setting is recorded in the run's config and is part of its identity
(folder name); :func:`settings_beyond_defaults` drops a setting equal to the method's default, so a run declared
with its defaults spelled out is the run trained without them (``mnist1d-tuning-peers`` relies on it).
"""

from __future__ import annotations

import importlib
import math
from typing import Any, ClassVar

from experiments.methods.base import Decision, EpochResult, Policy, Stepper
from experiments.methods.registry import method_class


def import_package(module: str, package: str, method: str) -> Any:
    """The authors' package, with a clear error if it is missing (an optional dependency of the methods)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"--method {method} needs its authors' package: pip install {package}") from error


class TuningFreePolicy(Policy):
    """A tuning-free optimizer as a method: lr multiplier per epoch (constant 1 by default), no stop."""

    family = "tuning-free"
    #: Whether the method is told the training budget (a schedule or warm-up sized from ``epochs``).
    knows_horizon: ClassVar[bool] = False
    #: The ``RunConfig.extra`` keys this method reads (each overrides one of its documented settings).
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        unknown = sorted(set(config.extra) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ValueError(f"--method {self.name} takes no option {', '.join(unknown)}; its options: {allowed}")
        self.num_train_samples = 0

    def defaults(self) -> dict[str, Any]:
        """What the method uses for each of its ``options`` when the run does not set it (for this recipe)."""
        return {}

    def setting(self, key: str) -> Any:
        """A documented setting, or the run's override of it (``RunConfig.extra``)."""
        return self.config.extra.get(key, self.defaults()[key])

    def flag(self, key: str) -> bool:
        """A yes/no setting: only a real bool is accepted (a string "False" would read as true)."""
        value = self.setting(key)
        if not isinstance(value, bool):
            raise ValueError(f"--method {self.name}: option {key} is true or false, got {value!r}")
        return value

    def fraction(self, key: str) -> float:
        """A share of the training budget, in [0, 1)."""
        value = float(self.setting(key))
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--method {self.name}: option {key} is a fraction of the budget in [0, 1), got {value}")
        return value

    def start_training(self, num_train_samples: int) -> None:
        self.num_train_samples = num_train_samples

    @property
    def steps_per_epoch(self) -> int:
        if not self.num_train_samples:
            raise RuntimeError("start_training() must be called before the stepper is built")
        return math.ceil(self.num_train_samples / self.config.batch_size)

    def lr_factor(self, epoch: int) -> float:
        """The multiplier of the optimizer's lr in epoch ``epoch`` (1-based): 1, or the variant's schedule."""
        return 1.0

    def start_epoch(self, epoch: int, stepper: Stepper) -> None:
        stepper.set_lr(self.base_lr * self.lr_factor(epoch))

    @property
    def base_lr(self) -> float:
        """The lr the optimizer is built with (1 for the methods that estimate their own step size)."""
        return float(self.setting("lr"))

    def end_epoch(self, result: EpochResult, stepper: Stepper) -> Decision:
        return Decision(lr_reduced=self.lr_factor(result.epoch + 1) < self.lr_factor(result.epoch))


def group_value(optimizer: Any, key: str) -> float | None:
    """A float from the optimizer's first parameter group (tensor or number), None if not there yet."""
    value = optimizer.param_groups[0].get(key)
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = value[0]
    return float(value)


def settings_beyond_defaults(config: Any) -> dict[str, Any]:
    """``config.extra`` without the settings equal to what its method uses anyway: the canonical ``extra`` of the
    run, so that spelling out a default (D-Adaptation's ``growth_rate=inf``) names the same run folder."""
    policy = method_class(config.method)(config)
    if not isinstance(policy, TuningFreePolicy):
        return dict(config.extra)
    defaults = policy.defaults()
    return {key: value for key, value in config.extra.items() if value != defaults[key]}

