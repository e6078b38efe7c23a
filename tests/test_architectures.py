"""NeVe plug-and-play on the models people train: a timm ViT, GRU and LSTM, nn.MultiheadAttention, a GPT-2 built
from GPT2Config, a frozen-backbone fine-tune and a compiled model, each trained a few epochs on CPU data made
here. Each checks the modules measured, that the decisions make sense, and that building NeVe and measuring
leave the model exactly as they found it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from velocity_reference import StoredActivationsVelocity

import neve
from neve.selection import FROZEN, NEVER_CALLED

EPOCHS = 3


# ------------------------------------------------------------------------------------------------ helpers


def untouched(model: nn.Module, action: Callable[[], Any]) -> Any:
    """Run ``action`` and assert the model's tensors, modes, gradients and hooks, and the RNG, are as before."""
    state = {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}
    modes = {name: m.training for name, m in model.named_modules()}
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    rng = torch.get_rng_state()
    result = action()
    assert torch.equal(torch.get_rng_state(), rng)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    after = model.state_dict(keep_vars=False)
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())
    for name, p in model.named_parameters():
        assert (p.grad is None) == (grads[name] is None) and (p.grad is None or torch.equal(p.grad, grads[name]))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    return result


def train(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[Any], torch.Tensor],
          batches: list[Any]) -> None:
    model.train()
    for batch in batches:
        optimizer.zero_grad()
        loss(batch).backward()
        optimizer.step()


def run_neve(model: nn.Module, optimizer: torch.optim.Optimizer, aux: Any, loss: Callable[[Any], torch.Tensor],
             batches: list[Any], epochs: int = EPOCHS, **options: Any) -> tuple[neve.NeVe, list[neve.NeVeDecision]]:
    """Build NeVe, train ``epochs`` epochs with a step after each; building and every step leave the model as
    they found it."""
    controller = untouched(model, lambda: neve.NeVe(model, optimizer, aux, **options))
    decisions = []
    for _ in range(epochs):
        train(model, optimizer, loss, batches)
        decisions.append(untouched(model, controller.step))
    return controller, decisions


def assert_sensible(decisions: list[neve.NeVeDecision], lr: float) -> None:
    """A model that still learns at its initial lr: every epoch measured, velocities finite and well above
    epsilon, no stop, no cut (patience 10), the velocity change from epoch 2 on."""
    assert [d.epoch for d in decisions] == list(range(1, len(decisions) + 1))
    for d in decisions:
        assert d.measured and 1e-3 < d.model_velocity < 1.5 and not d.stop and not d.lr_reduced and d.lr == lr
        assert (d.velocity_change is None) == (d.epoch == 1)


def assert_matches_reference(model: nn.Module, aux: torch.Tensor, modules: list[str],
                             step: Callable[[], None]) -> None:
    """The streamed velocity equals the stored-activations definition on these layers (tuple outputs too)."""
    monitor = neve.VelocityMonitor(model, aux, batch_size=3, modules=modules)
    reference = StoredActivationsVelocity(model, aux, batch_size=3, modules=modules)
    for _ in range(2):
        step()
        got, expected = monitor.measure(), reference.measure()
        assert list(got.layers) == list(expected.layers) == modules
        for name in modules:
            torch.testing.assert_close(got.rho[name], expected.rho[name], atol=1e-6, rtol=0, check_dtype=False)
        assert got.model_velocity == pytest.approx(expected.model_velocity, abs=1e-6)


def classification(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[Callable[[Any], torch.Tensor],
                                                                               list[Any]]:
    batches = list(zip(x.split(16), y.split(16), strict=True))
    return (lambda batch: nn.functional.cross_entropy(model(batch[0]), batch[1])), batches


# ---------------------------------------------------------------------------------------------- timm ViT


def test_timm_vit_measures_every_linear_layernorm_and_the_patch_embedding():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(img_size=16, patch_size=4, num_classes=3, embed_dim=32,
                                                            depth=2, num_heads=2, mlp_ratio=2.0)
    x = torch.randn(64, 3, 16, 16)
    y = x.mean(dim=(2, 3)).argmax(1)  # the brightest channel
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    controller, decisions = run_neve(model, optimizer, neve.gaussian_aux(8, (3, 16, 16)),
                                     *classification(model, x, y))
    block = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    assert list(controller.monitor.modules) == ["patch_embed.proj", *[f"blocks.{i}.{n}" for i in range(2)
                                                                       for n in block], "norm", "head"]
    assert controller.monitor.left_out == {}
    assert controller.monitor.neurons["blocks.0.attn.qkv"] == 96 and controller.monitor.neurons["head"] == 3
    assert_sensible(decisions, 1e-3)


# --------------------------------------------------------------------------------------------- RNN, GRU, LSTM


class Recurrent(nn.Module):
    def __init__(self, kind: type[nn.RNNBase], bidirectional: bool = False) -> None:
        super().__init__()
        self.rnn = kind(input_size=3, hidden_size=8, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(16 if bidirectional else 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("kind, bidirectional", [(nn.GRU, False), (nn.LSTM, False), (nn.LSTM, True), (nn.RNN, False)])
def test_recurrent_layers_are_measured_on_their_output_tensor(kind, bidirectional):
    torch.manual_seed(0)
    model = Recurrent(kind, bidirectional)
    x = torch.randn(64, 10, 3)
    y = (x[:, :, 0].sum(1) > 0).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    aux = neve.gaussian_aux(8, (10, 3))
    controller, decisions = run_neve(model, optimizer, aux, *classification(model, x, y))
    width = 16 if bidirectional else 8
    assert controller.monitor.neurons == {"rnn": width, "head": 2}
    assert_sensible(decisions, 0.1)
    loss, batches = classification(model, x, y)
    assert_matches_reference(model, aux, ["rnn"], lambda: train(model, optimizer, loss, batches[:1]))


def test_a_packed_sequence_output_is_measured_on_its_data():
    class Packed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(3, 5, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            lengths = torch.full((x.shape[0],), x.shape[1]) - torch.arange(x.shape[0]) % 3
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            return self.gru(packed)[1]

    torch.manual_seed(0)
    model = Packed()
    monitor = neve.VelocityMonitor(model, torch.randn(6, 4, 3))
    assert monitor.neurons == {"gru": 5}
    with torch.no_grad():
        model.gru.weight_hh_l0.mul_(1.5)
    assert 0 < monitor.measure().model_velocity < 1


# ------------------------------------------------------------------------------------ nn.MultiheadAttention


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, num_heads=2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.head(self.attn(h, h, h)[0].mean(1))


def test_multihead_attention_is_measured_on_its_output_and_its_out_proj_left_out():
    torch.manual_seed(0)
    model = Attention()
    x = torch.randn(64, 6, 4)
    y = (x[:, :, 1].max(1).values > x[:, :, 2].max(1).values).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    aux = neve.gaussian_aux(8, (6, 4))
    controller, decisions = run_neve(model, optimizer, aux, *classification(model, x, y))
    assert controller.monitor.neurons == {"embed": 8, "attn": 8, "head": 2}
    assert controller.monitor.left_out == {"attn.out_proj": NEVER_CALLED}  # applied with F.linear, never called
    assert_sensible(decisions, 1e-2)
    loss, batches = classification(model, x, y)
    assert_matches_reference(model, aux, ["attn"], lambda: train(model, optimizer, loss, batches[:1]))


# ----------------------------------------------------------------------------------------- GPT-2 (transformers)


def tiny_gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    return transformers.GPT2LMHeadModel(config)


def test_gpt2_measures_its_conv1d_projections():
    model = tiny_gpt2()
    starts = torch.randint(0, 64, (64, 1), generator=torch.Generator().manual_seed(0))
    tokens = (starts + torch.arange(16) * 3) % 64  # arithmetic sequences: the next token is predictable
    batches = list(tokens.split(16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    aux = neve.token_aux(n=8, seq_len=16, vocab_size=64)
    controller, decisions = run_neve(model, optimizer, aux, lambda ids: model(ids, labels=ids).loss, batches)
    layer = {"ln_1": 32, "attn.c_attn": 96, "attn.c_proj": 32, "ln_2": 32, "mlp.c_fc": 128, "mlp.c_proj": 32}
    expected = {f"transformer.h.{i}.{name}": n for i in range(2) for name, n in layer.items()}
    assert controller.monitor.neurons == {**expected, "transformer.ln_f": 32, "lm_head": 64}
    assert sum(controller.monitor.neurons.values()) == 800  # neve 0.1: 224 of them (the LayerNorms and lm_head)
    assert sum(type(m).__name__ == "Conv1D" for m in controller.monitor.modules.values()) == 8
    assert_sensible(decisions, 3e-3)
    assert_matches_reference(model, aux, ["transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_proj"],
                             lambda: train(model, optimizer, lambda ids: model(ids, labels=ids).loss, batches[:1]))


def test_explicit_names_measure_modules_that_return_tuples():
    model = tiny_gpt2()  # a GPT2Block returns a tuple whose first element is the hidden states
    monitor = neve.VelocityMonitor(model, neve.token_aux(n=4, seq_len=8, vocab_size=64),
                                   modules=["transformer.h.0", "transformer.h.1.attn"])
    assert monitor.neurons == {"transformer.h.0": 32, "transformer.h.1.attn": 32}


# --------------------------------------------------------------------------------- frozen-backbone fine-tune


def backbone_and_head() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 64, 3),
                             nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return backbone, nn.Linear(64, 3)


def fine_tune_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(96, 1, 8, 8, generator=generator)
    return x, (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + (x.mean((1, 2, 3)) > 0).long()


@pytest.mark.parametrize("freeze", ["requires_grad", "optimizer"])
def test_a_frozen_backbone_is_left_out_and_does_not_stop_the_fine_tune(freeze):
    """The backbone's velocity is 0 by construction; averaged in, it pulls V below epsilon while the head still
    moves (the stop the issue saw). Frozen with requires_grad=False, or simply kept out of the optimizer."""
    results = {}
    for rule in ("default", "every module"):
        backbone, head = backbone_and_head()
        model = nn.Sequential(backbone, head)
        if freeze == "requires_grad":
            backbone.requires_grad_(False)
        optimizer = torch.optim.SGD(head.parameters(), lr=0.01)  # backbone out of the optimizer either way
        x, y = fine_tune_data()
        loss, batches = classification(model, x, y)

        def loss_in_eval(batch: Any, loss: Callable[[Any], torch.Tensor] = loss, backbone: nn.Module = backbone
                         ) -> torch.Tensor:
            backbone.eval()  # a frozen backbone keeps its BatchNorm statistics
            return loss(batch)

        modules = None if rule == "default" else (lambda name, m: neve.is_default_module(m))
        results[rule] = run_neve(model, optimizer, neve.gaussian_aux(16, (1, 8, 8)), loss_in_eval, batches,
                                 modules=modules)
    controller, decisions = results["default"]
    assert list(controller.monitor.modules) == ["1"]
    assert controller.monitor.left_out == {name: FROZEN for name in ["0.0", "0.1", "0.3", "0.4"]}
    assert all(d.model_velocity > 1e-2 and not d.stop for d in decisions)  # the head moves: 10x epsilon and more
    everything, diluted = results["every module"]
    assert len(everything.monitor.modules) == 5
    assert diluted[0].stop and diluted[0].model_velocity < 1e-3  # the old default stopped at the first epoch
    head_share = 3 / (32 + 32 + 64 + 64 + 3)  # the backbone's 192 neurons add velocity 0
    for got, head_only in zip(diluted, decisions, strict=True):
        assert got.model_velocity == pytest.approx(head_only.model_velocity * head_share, rel=1e-6)


def test_a_fully_frozen_model_is_refused_with_what_to_do():
    backbone, head = backbone_and_head()
    model = nn.Sequential(backbone, head)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no module to measure.*5 are frozen.*after unfreezing"):
        neve.VelocityMonitor(model, neve.gaussian_aux(4, (1, 8, 8)))


def test_unfreezing_after_construction_warns_that_the_selection_is_kept():
    backbone, head = backbone_and_head()
    model = nn.Sequential(backbone, head)
    backbone.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    controller = neve.NeVe(model, optimizer, neve.gaussian_aux(4, (1, 8, 8)))
    backbone.requires_grad_(True)
    x, y = fine_tune_data()
    loss, batches = classification(model, x, y)
    train(model, optimizer, loss, batches)
    with pytest.warns(UserWarning, match="trained parameters changed since NeVe was built"):
        controller.step()
    assert list(controller.monitor.modules) == ["1"]


# ------------------------------------------------------------------------------------------- compiled models


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def test_a_compiled_model_is_measured_through_its_original_module_without_recompiling():
    dynamo = pytest.importorskip("torch._dynamo")
    model = mlp()
    compiled = torch.compile(model, backend="eager")
    x = torch.randn(64, 4)
    y = (x[:, 0] > x[:, 1]).long()
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.1)
    loss, batches = classification(compiled, x, y)
    controller = neve.NeVe(compiled, optimizer, neve.gaussian_aux(8, (4,)))
    assert controller.monitor.model is model and list(controller.monitor.modules) == ["0", "2"]
    train(compiled, optimizer, loss, batches)  # compiles the training forward
    frames = dict(dynamo.utils.counters["frames"])
    decisions = [untouched(model, controller.step)]
    for _ in range(EPOCHS - 1):
        train(compiled, optimizer, loss, batches)
        decisions.append(untouched(model, controller.step))
    assert dict(dynamo.utils.counters["frames"]) == frames  # measuring compiled nothing, training recompiled nothing
    assert_sensible(decisions, 0.1)
    eager = mlp()  # the same run without compile gives the same velocities
    eager_optimizer = torch.optim.SGD(eager.parameters(), lr=0.1)
    _, expected = run_neve(eager, eager_optimizer, neve.gaussian_aux(8, (4,)), *classification(eager, x, y))
    assert [d.model_velocity for d in decisions] == pytest.approx([d.model_velocity for d in expected], rel=1e-5)


def test_a_model_compiled_in_place_is_measured_eagerly():
    dynamo = pytest.importorskip("torch._dynamo")
    model = mlp()
    model.compile(backend="eager")
    frames = dict(dynamo.utils.counters["frames"])
    monitor = untouched(model, lambda: neve.VelocityMonitor(model, neve.gaussian_aux(8, (4,))))
    with torch.no_grad():
        model[0].weight.mul_(1.1)
    untouched(model, monitor.measure)
    assert dict(dynamo.utils.counters["frames"]) == frames  # no forward went through the compiler
    assert model._compiled_call_impl is not None  # and the module is still compiled
