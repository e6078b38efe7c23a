"""The model registry: names -> factories, so a run config names its model by a string."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ModelFactory = Callable[..., nn.Module]
"""Called as ``factory(num_classes=..., in_chans=..., image_size=...)``; returns a fresh, untrained model."""

_FACTORIES: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: make ``create_model(name, ...)`` call the decorated factory."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"model {name!r} is already registered (by {_FACTORIES[name].__qualname__})")
        _FACTORIES[name] = factory
        return factory

    return decorate


def list_models() -> list[str]:
    return sorted(_FACTORIES)


def create_model(name: str, num_classes: int, *, in_chans: int = 3, image_size: int = 32) -> nn.Module:
    """Build the registered model ``name`` from scratch (random init; pretrained weights are never loaded)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None
    return factory(num_classes=num_classes, in_chans=in_chans, image_size=image_size)
