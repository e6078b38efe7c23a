"""Methods by name: ``@register_method`` on a Policy subclass makes it available to the trainer, with the facts
the rest of the harness reads instead of keeping lists of its own.

A method declares its ``label`` (its row in tables and its line in figures), its ``family`` (:data:`FAMILIES`)
and the PyPI ``package`` its optimizer comes from (the dependency files must list it); its summary is the first
paragraph of its class docstring (the command line's help), and its ``options`` (the ``RunConfig.extra`` keys it
reads) a class attribute. The catalog's tuning-free rows, the performance profile's line styles and
``python -m experiments.train --method``'s choices and help all read these.
"""

from __future__ import annotations

from collections.abc import Callable

from experiments.methods.base import Policy

#: ``paper``: the paper's own methods and reference (Table II, Fig. 7's constant lr); ``related``: the related
#: work it compares with (Table I); ``tuning-free``: the tuning-free optimizers compared beyond the paper.
FAMILIES = ("paper", "related", "tuning-free")

METHODS: dict[str, type[Policy]] = {}


def register_method(name: str, *, label: str = "", family: str = "", package: str = ""
                    ) -> Callable[[type[Policy]], type[Policy]]:
    """Register a policy under ``name``. ``label`` defaults to the name; ``family`` to the class's own (the
    tuning-free base class sets ``tuning-free``); ``package``: the PyPI package it needs, "" for none."""

    def register(cls: type[Policy]) -> type[Policy]:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        cls.name = name
        cls.label = label or name
        cls.family = family or cls.family
        cls.package = package
        if cls.family not in FAMILIES:
            raise ValueError(f"method {name!r}: family must be one of {FAMILIES}, got {cls.family!r} (pass "
                             "register_method(..., family=...))")
        if not summary(cls):
            raise ValueError(f"method {name!r}: give its class a docstring, whose first line is its --method help")
        METHODS[name] = cls
        return cls

    return register


def method_class(name: str) -> type[Policy]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def summary(cls: type[Policy]) -> str:
    """The first paragraph of the class's own docstring (not an inherited one), as one line of plain text."""
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "").rstrip(".")


def methods_of(family: str) -> list[type[Policy]]:
    """The methods of ``family``, in registration order."""
    if family not in FAMILIES:
        raise ValueError(f"unknown method family {family!r}; choose one of {FAMILIES}")
    return [cls for cls in METHODS.values() if cls.family == family]


def method_names() -> list[str]:
    """Every method's name, sorted: the command line's ``--method`` choices."""
    return sorted(METHODS)


def method_help() -> str:
    """``--method``'s help: each method and what it does, by family."""
    parts = []
    for family in FAMILIES:
        listed = " | ".join(f"{cls.name}: {summary(cls)}" + (f" (pip package {cls.package})" if cls.package else "")
                            for cls in methods_of(family))
        parts.append(f"[{family}] {listed}")
    return " ".join(parts)
