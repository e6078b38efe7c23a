"""ImageNet-100 models: torchvision ResNet-50 and timm SwinV2-T, always from scratch.

torchvision and timm are imported when a model is built, not when ``experiments.models`` is imported.
"""

from __future__ import annotations

from torch import nn

from experiments.models.registry import register_model


@register_model("resnet50")
def resnet50(num_classes: int, in_chans: int = 3, image_size: int = 224) -> nn.Module:
    from torchvision.models import resnet50 as torchvision_resnet50

    del image_size  # the adaptive pool takes any size; the recipe uses 224
    model = torchvision_resnet50(weights=None, num_classes=num_classes)
    if in_chans != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(
            in_chans, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding, bias=False
        )
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_model("swinv2_tiny")
def swinv2_tiny(num_classes: int, in_chans: int = 3, image_size: int = 256) -> nn.Module:
    """SwinV2-T, window 8, with the stochastic depth of the authors' config (drop path 0.2)."""
    import timm

    return timm.create_model(
        "swinv2_tiny_window8_256",
        pretrained=False,
        num_classes=num_classes,
        img_size=image_size,
        in_chans=in_chans,
        drop_path_rate=0.2,
    )
