"""Models by name: ``create_model("resnet32", num_classes=10)``; see ``list_models()`` for the names."""

from experiments.models import imagenet, mnist1d, resnet_cifar  # noqa: F401  (importing registers the models)
from experiments.models.registry import create_model, list_models, model_variants, register_model

__all__ = ["create_model", "list_models", "model_variants", "register_model"]
