import pytest
import torch
from torch import nn

from experiments.models import create_model, list_models, register_model, registry
from experiments.models.resnet_cifar import CifarResNet, ZeroPadShortcut

CIFAR_RESNETS = ["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_model_sorted():
    names = list_models()
    assert names == sorted(names)
    assert set(CIFAR_RESNETS + ["resnet50", "swinv2_tiny"]) <= set(names)


def test_unknown_name_lists_known_models():
    with pytest.raises(ValueError, match="resnet32") as info:
        create_model("resnet33", num_classes=10)
    assert "resnet33" in str(info.value) and "swinv2_tiny" in str(info.value)


def test_register_model_adds_a_name_and_refuses_a_clash(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))  # leave the real registry alone

    @register_model("_test_linear")
    def linear(num_classes, in_chans=3, image_size=32):
        return nn.Linear(in_chans * image_size * image_size, num_classes)

    assert isinstance(create_model("_test_linear", 4, in_chans=1, image_size=2), nn.Linear)
    with pytest.raises(ValueError, match="already registered"):
        register_model("_test_linear")(lambda **kwargs: nn.Identity())


@pytest.mark.parametrize("name", CIFAR_RESNETS)
def test_cifar_resnet_output_shape(name):
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.depth == int(name.removeprefix("resnet"))


def test_cifar_resnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21, num_classes=10)


@pytest.mark.parametrize(
    ("name", "num_classes", "expected"),
    # He et al. 2016, Table 6: ResNet-20 0.27M, ResNet-32 0.46M, ResNet-56 0.85M (CIFAR-10 head).
    [("resnet20", 10, 0.27e6), ("resnet32", 10, 0.46e6), ("resnet56", 10, 0.85e6)],
)
def test_cifar_resnet_parameter_count_matches_paper(name, num_classes, expected):
    assert n_params(create_model(name, num_classes)) == pytest.approx(expected, abs=0.005e6)


def test_resnet32_exact_parameter_counts():
    # 464,154 with 10 classes; the 100-class head adds 90 x (64 + 1).
    assert n_params(create_model("resnet32", 10)) == 464_154
    assert n_params(create_model("resnet32", 100)) == 464_154 + 90 * 65


def test_option_a_shortcut_is_parameter_free_and_zero_pads():
    model = create_model("resnet20", 10)
    shortcuts = [m for m in model.modules() if isinstance(m, ZeroPadShortcut)]
    assert len(shortcuts) == 2  # the first block of stages 2 and 3
    assert all(n_params(s) == 0 and not list(s.buffers()) for s in shortcuts)
    assert not any("shortcut" in name for name, _ in model.named_parameters())

    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 9, 9)
    y = shortcut(x)
    assert y.shape == (2, 32, 5, 5)  # same as a stride-2 3x3 conv with padding 1 on odd sizes
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_in_chans_and_other_image_sizes():
    model = create_model("resnet8", num_classes=10, in_chans=1, image_size=16).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(3, 1, 16, 16)).shape == (3, 10)
        assert model(torch.randn(1, 1, 13, 13)).shape == (1, 10)


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_resnet50_forward_and_in_chans():
    model = create_model("resnet50", num_classes=100, image_size=224).eval()
    assert n_params(model) == pytest.approx(23.7e6, rel=0.01)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 100)
    gray = create_model("resnet50", num_classes=5, in_chans=1)
    assert gray.conv1.in_channels == 1 and gray.fc.out_features == 5


def test_swinv2_tiny_forward():
    model = create_model("swinv2_tiny", num_classes=100, image_size=256).eval()
    assert n_params(model) == pytest.approx(27.7e6, rel=0.01)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 100)


def test_swinv2_tiny_small_images_and_in_chans():
    model = create_model("swinv2_tiny", num_classes=10, in_chans=1, image_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 10)
