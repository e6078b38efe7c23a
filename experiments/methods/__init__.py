"""The compared methods, one small policy each, all run by the same trainer.

Every module of this package is imported here, so a method module registers itself (``@register_method``): a
new method is its module (and its package's line in the dependency files), nothing else. Modules are imported
in name order, which is the order methods are listed in (a family's rows in the catalog, the CLI's help).
"""

import importlib
import pkgutil

from experiments.methods.base import Decision, EpochResult, Policy, Stepper, make_optimizer
from experiments.methods.registry import (
    FAMILIES,
    METHODS,
    method_class,
    method_help,
    method_names,
    methods_of,
    register_method,
)

for _module in sorted(module.name for module in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["FAMILIES", "METHODS", "Decision", "EpochResult", "Policy", "Stepper", "make_optimizer", "method_class",
           "method_help", "method_names", "methods_of", "register_method"]
