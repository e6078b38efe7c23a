"""The compared methods, one small policy each, all run by the same trainer."""

from experiments.methods import (  # noqa: F401  (registration)
    baseline,
    dadapt_method,
    dog_method,
    labelwave,
    neve_method,
    prodigy_method,
    schedulefree_method,
    ultimate,
    vloss,
)
from experiments.methods.base import Decision, EpochResult, Policy, Stepper, make_optimizer
from experiments.methods.registry import METHODS, method_class, register_method

__all__ = ["METHODS", "Decision", "EpochResult", "Policy", "Stepper", "make_optimizer", "method_class",
           "register_method"]
