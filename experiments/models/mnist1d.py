"""Models for MNIST-1D's (N, 1, 40) sequences.

``mnist1d_cnn`` and ``mnist1d_mlp`` are the published baselines of Greydanus & Kobak (their repository's
``notebooks/models.py``: ``ConvBase`` and ``MLPBase``, with the ``hidden_size`` 256 of their
``notebooks/train.py``), rebuilt layer for layer so the parameter counts match (5,210 and 78,858).
``mnist1d_resnet`` is this project's: a small 1-D ResNet with BatchNorm, so that NeVe measures BatchNorm
neurons as it does on CIFAR's ResNet-32. On Conv1d and BatchNorm1d a neuron is an output channel.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from experiments.models.registry import register_model

MNIST1D_LENGTH = 40


def _conv_output_length(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class ConvBase(nn.Module):
    """The published CNN: three stride-2 Conv1d layers of 25 channels with ReLU, then a linear classifier on
    the flattened features (93.9-94% test accuracy with Adam 1e-2 for 8,000 steps, their Table 1)."""

    def __init__(self, num_classes: int = 10, channels: int = 25, length: int = MNIST1D_LENGTH) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        out = length
        for kernel in (5, 3, 3):
            out = _conv_output_length(out, kernel, 2, 1)
        self.linear = nn.Linear(channels * out, num_classes)  # 125 inputs for length 40, as published

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], 1, x.shape[-1])
        h = self.conv3(self.conv2(self.conv1(h).relu()).relu()).relu()
        return self.linear(h.flatten(1))


class MLPBase(nn.Module):
    """The published MLP: Linear-ReLU, a residual Linear-ReLU (``h + relu(W h)``, as in their code), Linear."""

    def __init__(self, num_classes: int = 10, hidden_size: int = 256, length: int = MNIST1D_LENGTH) -> None:
        super().__init__()
        self.linear1 = nn.Linear(length, hidden_size)
        self.linear2 = nn.Linear(hidden_size, hidden_size)
        self.linear3 = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.linear1(x.flatten(1)).relu()
        h = h + self.linear2(h).relu()
        return self.linear3(h)


class BasicBlock1d(nn.Module):
    """Two 3-tap convolutions with BatchNorm; a 1x1 convolution + BatchNorm shortcut when the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv1d(in_channels, channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm1d(channels))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNet1d(nn.Module):
    """A stem (Conv1d + BatchNorm) and three stages of basic blocks at ``widths``, stride 2 from the second
    stage on (40 -> 20 -> 10 positions), global average pooling and a linear head; Kaiming-normal convolutions,
    BatchNorm weights 1 and biases 0."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (32, 64, 128), blocks: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, widths[0], 3, padding=1, bias=False), nn.BatchNorm1d(widths[0]),
                                  nn.ReLU())
        layers, in_channels = [], widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock1d(in_channels, width, stride))
                in_channels = width
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        h = self.layers(self.stem(x.reshape(x.shape[0], 1, x.shape[-1])))
        return self.head(h.mean(-1))


def _check_input(name: str, in_chans: int, image_size: int) -> None:
    if in_chans != 1:
        raise ValueError(f"{name} takes MNIST-1D's single-channel sequences, got in_chans={in_chans}")
    if image_size < 8:
        raise ValueError(f"{name} needs sequences of at least 8 positions, got {image_size}")


@register_model("mnist1d_cnn")
def mnist1d_cnn(num_classes: int, in_chans: int = 1, image_size: int = MNIST1D_LENGTH) -> nn.Module:
    _check_input("mnist1d_cnn", in_chans, image_size)
    return ConvBase(num_classes, length=image_size)


@register_model("mnist1d_mlp")
def mnist1d_mlp(num_classes: int, in_chans: int = 1, image_size: int = MNIST1D_LENGTH) -> nn.Module:
    _check_input("mnist1d_mlp", in_chans, image_size)
    return MLPBase(num_classes, length=image_size)


@register_model("mnist1d_resnet")
def mnist1d_resnet(num_classes: int, in_chans: int = 1, image_size: int = MNIST1D_LENGTH) -> nn.Module:
    _check_input("mnist1d_resnet", in_chans, image_size)
    return ResNet1d(num_classes)
