"""The model registry: names -> factories, so a run config names its model by a string."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

ModelFactory = Callable[..., nn.Module]
"""Called as ``factory(num_classes=..., in_chans=..., image_size=...)`` (plus ``variant=...`` for a model
registered with variants); returns a fresh, untrained model."""

_FACTORIES: dict[str, ModelFactory] = {}
_VARIANTS: dict[str, tuple[str, ...]] = {}
#: The variant every model has: the architecture as this project builds it.
DEFAULT_VARIANT = "paper"


def register_model(name: str, variants: Sequence[str] = (DEFAULT_VARIANT,)) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: make ``create_model(name, ...)`` call the decorated factory.

    ``variants``: the architecture variants the factory builds (e.g. the CIFAR ResNets' ``"code"``, the
    authors' layout); a factory with more than the default one takes a ``variant=`` keyword.
    """

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"model {name!r} is already registered (by {_FACTORIES[name].__qualname__})")
        _FACTORIES[name] = factory
        _VARIANTS[name] = tuple(variants)
        return factory

    return decorate


def list_models() -> list[str]:
    return sorted(_FACTORIES)


def model_variants(name: str) -> tuple[str, ...]:
    """The variants ``create_model(name, variant=...)`` accepts."""
    _factory(name)
    return _VARIANTS[name]


def _factory(name: str) -> ModelFactory:
    try:
        return _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int, *, in_chans: int = 3, image_size: int = 32,
                 variant: str = DEFAULT_VARIANT) -> nn.Module:
    """Build the registered model ``name`` from scratch (random init; pretrained weights are never loaded)."""
    factory = _factory(name)
    if variant not in _VARIANTS[name]:
        raise ValueError(f"model {name!r} has no variant {variant!r}; it has: {', '.join(_VARIANTS[name])}")
    options = {"variant": variant} if len(_VARIANTS[name]) > 1 else {}
    return factory(num_classes=num_classes, in_chans=in_chans, image_size=image_size, **options)
