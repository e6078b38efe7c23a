"""Methods by name: ``@register_method`` on a Policy subclass makes it available to the trainer."""

from __future__ import annotations

from collections.abc import Callable

from experiments.methods.base import Policy

METHODS: dict[str, type[Policy]] = {}


def register_method(name: str) -> Callable[[type[Policy]], type[Policy]]:
    def register(cls: type[Policy]) -> type[Policy]:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls
    return register


def method_class(name: str) -> type[Policy]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]
