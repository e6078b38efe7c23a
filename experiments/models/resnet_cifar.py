"""CIFAR ResNets of depth 6n+2 (He et al. 2016, section 4.2): 16/32/64 channels, option-A shortcuts.

Two variants with the same layers and parameter count: ``paper`` (zero channels padded on both sides of the
shortcut, Kaiming fan-in convolutions) and ``code``, the NeVe authors' ResNet-32 (zero channels appended after
the input channels, convolutions drawn from N(0, 2 / (k * k * out_channels)), i.e. Kaiming fan-out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.models.registry import register_model

#: ``paper``: this project's ResNet; ``code``: the authors' shortcut layout and initialization.
RESNET_VARIANTS = ("paper", "code")


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the new channels, so the shortcut has no parameters.

    ``zeros="both"`` splits the new channels before and after the input's; ``zeros="after"`` appends them
    all after (the authors' ``cat((x, x * 0), 1)``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, zeros: str = "both"):
        super().__init__()
        if zeros not in ("both", "after"):
            raise ValueError(f"zeros must be 'both' or 'after', got {zeros!r}")
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_before = extra // 2 if zeros == "both" else 0
        self.pad_after = extra - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads dimensions last-first: (W left, W right, H top, H bottom, C front, C back).
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, zeros: str = "both"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ZeroPadShortcut(in_channels, out_channels, stride, zeros)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2): a 3x3 stem, three stages of n blocks (16, 32, 64 channels), avg pool, linear head."""

    stage_channels = (16, 32, 64)

    def __init__(self, depth: int, num_classes: int, in_chans: int = 3, variant: str = "paper"):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        if variant not in RESNET_VARIANTS:
            raise ValueError(f"CIFAR ResNet variant must be one of {RESNET_VARIANTS}, got {variant!r}")
        blocks_per_stage = (depth - 2) // 6
        self.depth, self.variant = depth, variant
        zeros = "after" if variant == "code" else "both"
        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        in_channels = 16
        for index, channels in enumerate(self.stage_channels):
            blocks = []
            for block_index in range(blocks_per_stage):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(BasicBlock(in_channels, channels, stride, zeros))
                in_channels = channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Kaiming-normal convolutions and linear head, as the usual CIFAR ResNet reproductions do; the authors'
        # convolutions use the fan-out (their std sqrt(2 / (k * k * out_channels))), their head the fan-in.
        conv_mode = "fan_out" if self.variant == "code" else "fan_in"
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode=conv_mode)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _register_depth(depth: int) -> None:
    @register_model(f"resnet{depth}", variants=RESNET_VARIANTS)
    def factory(num_classes: int, in_chans: int = 3, image_size: int = 32, variant: str = "paper") -> nn.Module:
        del image_size  # any input size works: the pool is adaptive
        return CifarResNet(depth, num_classes, in_chans, variant)

    factory.__name__ = factory.__qualname__ = f"resnet{depth}"


for _depth in (8, 14, 20, 32, 44, 56):
    _register_depth(_depth)
