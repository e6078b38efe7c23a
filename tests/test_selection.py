"""The construction probe: aux mistakes fail when NeVe is built, with what to pass; a failed probe, like a
successful one, leaves the model as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neve
from neve.selection import PROBE_SAMPLES


def image_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))


class TokenModel(nn.Module):
    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids).mean(1))


class MaskedModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc(x * mask)


class Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": x, "b": x}


def built_or_error(model: nn.Module, aux: object) -> str:
    """The error message of building NeVe; the model must come out of the failed probe untouched."""
    model.train()
    with pytest.raises(ValueError) as error:
        neve.NeVe(model, torch.optim.SGD(model.parameters(), lr=0.1), aux)
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    return str(error.value)


def test_a_wrong_aux_shape_fails_at_construction_saying_what_to_pass():
    message = built_or_error(image_model(), neve.gaussian_aux(8, (3, 32, 32)))
    assert "mat1 and mat2 shapes cannot be multiplied" in message  # the torch error itself
    assert f"aux batch: a float32 tensor of shape ({PROBE_SAMPLES}, 3, 32, 32)" in message
    assert "one training input without the batch dimension" in message and "gaussian_aux" in message


def test_integer_aux_for_an_image_model_and_float_aux_for_a_token_model():
    assert "holds integers but the model has no nn.Embedding" in built_or_error(
        image_model(), neve.token_aux(8, 16, vocab_size=10))
    message = built_or_error(TokenModel(), neve.gaussian_aux(8, (6,)))
    assert "module 'embed' (nn.Embedding) takes integer token ids" in message and "token_aux" in message


def test_aux_in_another_dtype_than_the_model():
    message = built_or_error(image_model(), neve.gaussian_aux(8, (3, 16, 16)).double())
    assert "the aux set is torch.float64, the model's parameters are torch.float32" in message


def test_token_ids_beyond_the_vocabulary_name_the_embedding():
    message = built_or_error(TokenModel(vocab=50), neve.token_aux(8, 6, vocab_size=30522))
    assert "module 'embed' (nn.Embedding with 50 rows) got index" in message
    assert "vocab_size=model.config.vocab_size" in message


def test_a_forward_with_more_arguments_asks_for_a_dict_aux():
    message = built_or_error(MaskedModel(), neve.gaussian_aux(8, (4,)))
    assert "missing 1 required positional argument: 'mask'" in message
    assert "dict of keyword arguments" in message
    aux = {"x": torch.randn(8, 4), "mask": torch.ones(8, 4)}  # what the message says to pass
    monitor = neve.VelocityMonitor(MaskedModel(), aux)
    assert monitor.neurons == {"fc": 2}


def test_the_probe_runs_only_a_few_samples_of_the_first_batch():
    calls = []
    model = nn.Sequential(nn.Linear(4, 3))
    model[0].register_forward_pre_hook(lambda module, inputs: calls.append(inputs[0].shape[0]))
    neve.VelocityMonitor(model, torch.randn(40, 4), batch_size=16)
    assert calls == [PROBE_SAMPLES]  # the probe; the t = 0 reference is a copy of the weights, not a forward


def test_modules_chosen_by_name_are_measured_even_when_frozen_and_must_run():
    model = image_model()
    model[0].requires_grad_(False)
    chosen = neve.VelocityMonitor(model, neve.gaussian_aux(4, (3, 16, 16)), modules=["0", "4"])
    assert list(chosen.modules) == ["0", "4"]  # "0" is frozen: measured because it was named
    # by default the frozen conv is left out, and its BatchNorm (trained affine parameters) measured
    assert list(neve.VelocityMonitor(model, neve.gaussian_aux(4, (3, 16, 16))).modules) == ["1", "4"]
    with pytest.raises(ValueError, match="'1' .*returning dict"):  # a module whose output is no tensor
        neve.VelocityMonitor(nn.Sequential(nn.Linear(4, 4), Pair()), torch.randn(4, 4), modules=["0", "1"])
    with pytest.raises(TypeError, match="a list of names"):
        neve.VelocityMonitor(model, neve.gaussian_aux(4, (3, 16, 16)), modules="4")


def test_the_measured_modules_are_logged_once(caplog):
    model = image_model()
    model[0].requires_grad_(False)
    model[1].requires_grad_(False)
    with caplog.at_level("INFO", logger="neve"):
        monitor = neve.VelocityMonitor(model, neve.gaussian_aux(4, (3, 16, 16)))
    assert [record.getMessage() for record in caplog.records] == [monitor.summary()]
    assert monitor.summary() == ("NeVe measures 1 module, 2 neurons (1 Linear): '4'; left out 2 frozen: its output "
                                 "depends on no trained parameter: '0', '1'")
