"""Velocity measurement (spec sections 1-2): the streamed monitor against the direct definition."""

import copy
import io

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset
from velocity_reference import StoredActivationsVelocity

from neve import VelocityMonitor, VelocityTracker, gaussian_aux, select_modules
from neve.velocity import VelocityReport

TOL = 1e-6
METHODS = [VelocityMonitor, StoredActivationsVelocity]


# ---------------------------------------------------------------------------------------------- models


def conv_bn_model(seed: int = 0) -> nn.Module:
    """Conv/BN/Linear with BatchNorm running statistics far from their (0, 1) initial values.

    The ReLUs work in place on hooked outputs, as in torchvision's ResNet: a measurement that keeps
    a view of an output instead of a copy sees it change under it.
    """
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Conv2d(8, 6, 3, stride=2), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(inplace=True),
        nn.Linear(5, 4),
    )
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 8, 8) * 2 + 1)
    model.eval()
    return model


class TokenBlock(nn.Module):
    """A transformer-style block on (N, tokens, C): LayerNorm, then an MLP."""

    def __init__(self, channels: int = 6, hidden: int = 10) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


def token_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), TokenBlock(), TokenBlock())


def perturb(model: nn.Module, generator: torch.Generator, scale: float = 0.1) -> None:
    """A simulated epoch: noise on every parameter, and new BatchNorm statistics."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=generator))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.add_(0.2 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.mul_(torch.empty(buffer.shape).uniform_(0.5, 2.0, generator=generator))


def assert_reports_close(a: VelocityReport, b: VelocityReport, tol: float = TOL) -> None:
    assert a.epoch == b.epoch
    assert list(a.layers) == list(b.layers) and list(a.rho) == list(b.rho)
    for name in a.layers:
        assert a.rho[name].shape == b.rho[name].shape
        torch.testing.assert_close(a.rho[name], b.rho[name], atol=tol, rtol=0, check_dtype=False)
        torch.testing.assert_close(a.layers[name], b.layers[name], atol=tol, rtol=0, check_dtype=False)
    assert a.model_velocity == pytest.approx(b.model_velocity, abs=tol)
    if a.velocity_change is None:
        assert b.velocity_change is None
    else:
        assert a.velocity_change == pytest.approx(b.velocity_change, abs=tol)


def assert_reports_equal(a: VelocityReport, b: VelocityReport) -> None:
    assert a.epoch == b.epoch and list(a.layers) == list(b.layers)
    for name in a.layers:
        assert torch.equal(a.rho[name], b.rho[name]) and torch.equal(a.layers[name], b.layers[name])
    assert a.model_velocity == b.model_velocity and a.velocity_change == b.velocity_change


# ------------------------------------------------------------------------- streamed == direct definition


@pytest.mark.parametrize("batch_size", [1, 7, 23])
@pytest.mark.parametrize("make_model, shape", [(conv_bn_model, (3, 8, 8)), (token_model, (5, 4))])
def test_streamed_equals_stored_activations(make_model, shape, batch_size):
    model = make_model()
    aux = gaussian_aux(23, shape, seed=1)
    streamed = VelocityMonitor(model, aux, batch_size=batch_size)
    stored = StoredActivationsVelocity(model, aux, batch_size=23)
    generator = torch.Generator().manual_seed(2)
    for epoch in range(1, 4):
        perturb(model, generator)
        a, b = streamed.measure(), stored.measure()
        assert a.epoch == epoch
        assert_reports_close(a, b)
        assert 0.01 < a.model_velocity < 2  # the perturbation is visible: the comparison is not trivial
        assert (a.velocity_change is None) == (epoch == 1)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_streamed_equals_stored_activations_channels_last(batch_size):
    model = conv_bn_model().to(memory_format=torch.channels_last)
    aux = gaussian_aux(9, (3, 8, 8), seed=1).contiguous(memory_format=torch.channels_last)
    streamed, stored = VelocityMonitor(model, aux, batch_size=batch_size), StoredActivationsVelocity(model, aux)
    generator = torch.Generator().manual_seed(2)
    for _ in range(2):
        perturb(model, generator)
        assert_reports_close(streamed.measure(), stored.measure())


def test_stored_activations_matches_a_hand_computed_cosine():
    """The reference itself against y^t, y^{t-1} taken by hand for one Linear on (N, tokens, C)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    aux = torch.randn(6, 5, 4)
    before = model(aux).detach()
    reference = StoredActivationsVelocity(model, aux, batch_size=4)
    with torch.no_grad():
        model[0].weight.add_(torch.randn(3, 4))
    now = model(aux).detach()
    expected = torch.stack([torch.nn.functional.cosine_similarity(now[..., j].flatten().double(),
                                                                  before[..., j].flatten().double(), dim=0)
                            for j in range(3)])
    report = reference.measure()  # its float32 forward runs in batches of 4, ours on all 6 at once
    torch.testing.assert_close(report.rho["0"], expected, atol=TOL, rtol=0)
    torch.testing.assert_close(report.layers["0"], 1 - expected, atol=TOL, rtol=0)


# ---------------------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("method", METHODS)
def test_unchanged_model_has_rho_one_everywhere(method):
    model = conv_bn_model()
    monitor = method(model, gaussian_aux(10, (3, 8, 8)), batch_size=4)
    for _ in range(2):
        report = monitor.measure()
        for name, rho in report.rho.items():
            torch.testing.assert_close(rho, torch.ones_like(rho), atol=1e-7, rtol=0, msg=name)
        assert report.model_velocity < 1e-7


@pytest.mark.parametrize("method", METHODS)
def test_positive_scaling_of_a_neuron_keeps_rho_one_and_negative_flips_it(method):
    model = conv_bn_model()
    monitor = method(model, gaussian_aux(10, (3, 8, 8)), batch_size=4)
    conv = model[0]
    with torch.no_grad():
        conv.weight[2] *= 3.0
        conv.bias[2] *= 3.0
        conv.weight[5] *= -2.0
        conv.bias[5] *= -2.0
    report = monitor.measure()
    rho = report.rho["0"]
    expected = torch.ones(8, dtype=rho.dtype)
    expected[5] = -1.0
    torch.testing.assert_close(rho, expected, atol=1e-7, rtol=0)
    torch.testing.assert_close(report.layers["0"], 1 - expected, atol=1e-7, rtol=0)  # v^1 = 1 - rho^1
    # BatchNorm after the conv subtracts its running mean: the scaled channel there did change.
    assert report.rho["1"][2] < 1 - 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_dead_neuron_gets_rho_zero_then_one_while_it_stays_dead(method):
    model = conv_bn_model()
    monitor = method(model, gaussian_aux(10, (3, 8, 8)), batch_size=4)
    with torch.no_grad():
        model[0].weight[3] = 0.0
        model[0].bias[3] = 0.0
    first = monitor.measure()
    assert first.rho["0"][3] == 0.0 and first.layers["0"][3] == pytest.approx(1.0)
    second = monitor.measure()
    assert second.rho["0"][3] == 1.0
    assert second.layers["0"][3] == pytest.approx(0.5)  # |(1 - 1) - 0.5 * 1|
    # and a neuron that comes back to life after being dead: one zero vector -> rho = 0 again
    with torch.no_grad():
        model[0].bias[3] = 1.0
    assert monitor.measure().rho["0"][3] == 0.0


def test_tracker_follows_eq2_on_hand_computed_values():
    tracker = VelocityTracker(mu=0.5)
    rhos = [
        {"a": [0.2], "b": [1.0, -1.0]},
        {"a": [0.9], "b": [0.5, 0.0]},  # a: (1 - 0.9) - 0.5 * 0.8 = -0.3 -> the abs matters
        {"a": [1.0], "b": [1.0, 1.0]},
        {"a": [0.4], "b": [0.4, 0.4]},
    ]
    expected_v = [
        {"a": [0.8], "b": [0.0, 2.0]},
        {"a": [0.3], "b": [0.5, 0.0]},
        {"a": [0.15], "b": [0.25, 0.0]},
        {"a": [0.525], "b": [0.475, 0.6]},
    ]
    expected_model = [2.8 / 3, 0.8 / 3, 0.4 / 3, 1.6 / 3]
    # D^t: mean over layers (not neurons) of the mean squared change
    expected_change = [None, (0.25 + 2.125) / 2, (0.0225 + 0.03125) / 2, (0.140625 + 0.2053125) / 2]
    for t, (rho, v, model_v, change) in enumerate(zip(rhos, expected_v, expected_model, expected_change,
                                                      strict=True), start=1):
        report = tracker.update({k: torch.tensor(x, dtype=torch.float64) for k, x in rho.items()})
        assert report.epoch == t
        for name in v:
            torch.testing.assert_close(report.layers[name], torch.tensor(v[name], dtype=torch.float64))
        assert report.model_velocity == pytest.approx(model_v)
        assert report.velocity_change == (None if change is None else pytest.approx(change))


def test_tracker_mu_zero_is_one_minus_rho_and_state_round_trip():
    tracker = VelocityTracker(mu=0.0)
    tracker.update({"a": torch.tensor([0.5, 1.0])})
    saved = tracker.state_dict()
    resumed = VelocityTracker(mu=0.3)
    resumed.load_state_dict(saved)
    for t in (tracker, resumed):
        report = t.update({"a": torch.tensor([0.9, -0.5])})
        torch.testing.assert_close(report.layers["a"], torch.tensor([0.1, 1.5]))
        assert report.epoch == 2 and report.velocity_change == pytest.approx((0.4**2 + 1.5**2) / 2)


def test_tracker_refuses_changed_layers():
    tracker = VelocityTracker(mu=0.5)
    tracker.update({"a": torch.ones(3)})
    with pytest.raises(ValueError, match="layers changed"):
        tracker.update({"b": torch.ones(3)})
    with pytest.raises(ValueError, match="neurons"):
        tracker.update({"a": torch.ones(4)})


@pytest.mark.parametrize("mu", [-0.1, 1.0, 1.5, float("nan")])
def test_mu_outside_unit_interval_raises(mu):
    with pytest.raises(ValueError, match="mu"):
        VelocityTracker(mu)
    with pytest.raises(ValueError, match="mu"):
        VelocityMonitor(conv_bn_model(), gaussian_aux(2, (3, 8, 8)), mu=mu)


# ---------------------------------------------------------------------- measuring leaves the model alone


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}


@pytest.mark.parametrize("method", METHODS)
def test_measuring_leaves_the_model_exactly_as_found(method):
    model = conv_bn_model()
    model.train()
    model[1].eval()  # mixed modes: one BatchNorm in eval, the other in train
    modes = {name: m.training for name, m in model.named_modules()}
    assert len(set(modes.values())) == 2
    monitor = method(model, gaussian_aux(9, (3, 8, 8)), batch_size=4)
    perturb(model, torch.Generator().manual_seed(0))
    before = full_state(model)
    monitor.measure()
    after = full_state(model)
    assert before.keys() == after.keys()
    for key in before:  # parameters, running stats and num_batches_tracked
        assert torch.equal(before[key], after[key]), key
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


@pytest.mark.parametrize("method", METHODS)
def test_measurement_is_fp32_inside_autocast(method):
    model = conv_bn_model()
    twin = copy.deepcopy(model)
    aux = gaussian_aux(9, (3, 8, 8))
    plain, inside = method(model, aux, batch_size=4), method(twin, aux, batch_size=4)
    for m in (model, twin):
        perturb(m, torch.Generator().manual_seed(3), scale=0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert twin[0](aux[:1]).dtype == torch.bfloat16  # autocast really is active here
        in_autocast = inside.measure()
    assert_reports_equal(plain.measure(), in_autocast)


# -------------------------------------------------------------------------------------------- layout


def test_token_layout_reports_one_velocity_per_feature():
    model = token_model()
    monitor = VelocityMonitor(model, gaussian_aux(4, (5, 4)), batch_size=3)  # 5 tokens, 4 input features
    report = monitor.measure()
    sizes = {name: v.shape for name, v in report.layers.items()}
    assert sizes == {"0": (6,), "1.norm": (6,), "1.fc1": (10,), "1.fc2": (6,),
                     "2.norm": (6,), "2.fc1": (10,), "2.fc2": (6,)}


def test_transformer_encoder_layer_default_selection_and_sizes():
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=12, dropout=0.0, batch_first=True)
    aux = gaussian_aux(4, (5, 8))  # 5 tokens
    monitor, reference = VelocityMonitor(model, aux, batch_size=3), StoredActivationsVelocity(model, aux)
    perturb(model, torch.Generator().manual_seed(0))
    report = monitor.measure()
    # nn.MultiheadAttention is measured on its output (element 0); it applies out_proj's weights with F.linear,
    # so out_proj is never called and is left out
    assert {name: v.shape for name, v in report.layers.items()} == {
        "self_attn": (8,), "linear1": (12,), "linear2": (8,), "norm1": (8,), "norm2": (8,)}
    assert monitor.left_out == {"self_attn.out_proj": "never called by the forward"}
    assert_reports_close(report, reference.measure())


def test_linear_on_nhwc_uses_the_last_dim():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    aux = torch.randn(6, 7, 5, 4)  # N, H, W, C
    before = model(aux).detach()
    monitor = VelocityMonitor(model, aux, batch_size=4)
    with torch.no_grad():
        model[0].weight.add_(torch.randn(3, 4))
        model[0].bias.add_(torch.randn(3))
    now = model(aux).detach()
    expected = torch.stack([torch.nn.functional.cosine_similarity(
        now[..., j].flatten().double(), before[..., j].flatten().double(), dim=0) for j in range(3)])
    report = monitor.measure()
    assert report.rho["0"].shape == (3,)
    torch.testing.assert_close(report.rho["0"], expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_and_batchnorm_use_dim_one(channels_last):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5))
    aux = torch.randn(6, 3, 9, 7)
    model.eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        aux = aux.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        before = [model[0](aux), model(aux)]
    monitor = VelocityMonitor(model, aux, batch_size=4)
    perturb(model, torch.Generator().manual_seed(0), scale=0.5)
    with torch.no_grad():
        now = [model[0](aux), model(aux)]
    report = monitor.measure()
    for name, b, n in zip(["0", "1"], before, now, strict=True):
        expected = torch.stack([torch.nn.functional.cosine_similarity(
            n[:, j].flatten().double(), b[:, j].flatten().double(), dim=0) for j in range(5)])
        assert report.rho[name].shape == (5,)
        torch.testing.assert_close(report.rho[name], expected, atol=TOL, rtol=0)


# ---------------------------------------------------------------------------------------------- aux sets


def test_loader_of_batches_gives_the_same_result_as_the_tensor():
    """400 aux images: tensor chunks vs a real DataLoader of (x, y), and a different batch size."""
    aux = gaussian_aux(400, (3, 8, 8), seed=5)
    loader = DataLoader(TensorDataset(aux, torch.zeros(400, dtype=torch.long)), batch_size=50, shuffle=False)
    models = [conv_bn_model() for _ in range(3)]
    monitors = [VelocityMonitor(models[0], aux, batch_size=50), VelocityMonitor(models[1], loader),
                VelocityMonitor(models[2], aux, batch_size=128)]
    for epoch in range(2):
        for m in models:
            perturb(m, torch.Generator().manual_seed(epoch))
        tensor_report, loader_report, other = (m.measure() for m in monitors)
        assert_reports_equal(tensor_report, loader_report)  # same batches -> bit-identical
        assert_reports_close(tensor_report, other)


def test_iterable_dataset_loader_without_len_is_accepted():
    class Noise(IterableDataset):
        def __iter__(self):
            yield from gaussian_aux(8, (3, 8, 8)).split(3)

    model = conv_bn_model()
    loader = DataLoader(Noise(), batch_size=None)
    streamed, tensor = VelocityMonitor(model, loader), VelocityMonitor(model, gaussian_aux(8, (3, 8, 8)))
    perturb(model, torch.Generator().manual_seed(0))
    assert_reports_close(streamed.measure(), tensor.measure())


@pytest.mark.parametrize("method", METHODS)
def test_empty_aux_raises(method):
    model = conv_bn_model()
    with pytest.raises(ValueError, match="empty"):
        method(model, torch.empty(0, 3, 8, 8))
    empty_loader = DataLoader(TensorDataset(torch.empty(0, 3, 8, 8)), batch_size=4)
    with pytest.raises(ValueError, match="empty"):
        method(model, empty_loader)
    with pytest.raises(ValueError, match="batch_size"):
        method(model, gaussian_aux(2, (3, 8, 8)), batch_size=0)


def test_aux_that_yields_nothing_or_only_once_raises_at_construction():
    with pytest.raises(ValueError, match="empty"):
        VelocityMonitor(conv_bn_model(), [])
    with pytest.raises(TypeError, match="one-shot iterator"):  # read at every measurement: an iterator runs dry
        VelocityMonitor(conv_bn_model(), iter([torch.randn(2, 3, 8, 8)]))


def test_gaussian_aux_shape_and_seed():
    a = gaussian_aux(7, (3, 4, 5), seed=11)
    assert a.shape == (7, 3, 4, 5) and a.dtype == torch.float32
    assert torch.equal(a, gaussian_aux(7, (3, 4, 5), seed=11))
    assert not torch.equal(a, gaussian_aux(7, (3, 4, 5), seed=12))
    assert gaussian_aux().shape == (100, 3, 32, 32)
    big = gaussian_aux(2000, (3, 32, 32))
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01  # N(0, 1) per pixel
    for n in (0, -3):
        with pytest.raises(ValueError, match="at least one"):
            gaussian_aux(n)


# --------------------------------------------------------------------------------------- module choice


def test_default_selection_hooks_conv_linear_batchnorm_layernorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2),
                          nn.LayerNorm(2), nn.Dropout())
    assert list(select_modules(model)) == ["0", "1", "4", "5"]


def test_modules_by_name_and_by_predicate():
    model = conv_bn_model()
    aux = gaussian_aux(6, (3, 8, 8))
    by_name = VelocityMonitor(model, aux, modules=["3", "0"])
    by_predicate = VelocityMonitor(model, aux, modules=lambda name, m: isinstance(m, nn.Conv2d))
    everything = VelocityMonitor(model, aux)
    perturb(model, torch.Generator().manual_seed(0))
    named, predicated, full = by_name.measure(), by_predicate.measure(), everything.measure()
    assert list(named.layers) == ["3", "0"] and list(predicated.layers) == ["0", "3"]
    assert len(full.layers) == 7
    for name in ("0", "3"):
        assert torch.equal(named.layers[name], full.layers[name])
        assert torch.equal(predicated.layers[name], full.layers[name])
    conv_only = torch.cat([full.layers["0"], full.layers["3"]]).mean()
    assert named.model_velocity == pytest.approx(float(conv_only))


def test_unknown_module_names_raise():
    with pytest.raises(ValueError, match="not in the model"):
        VelocityMonitor(conv_bn_model(), gaussian_aux(2, (3, 8, 8)), modules=["0", "conv9"])


def test_no_hookable_layer_raises():
    with pytest.raises(ValueError, match="no hookable layer"):
        VelocityMonitor(nn.Sequential(nn.ReLU(), nn.Flatten()), gaussian_aux(2, (3, 8, 8)))
    with pytest.raises(ValueError, match="no hookable layer"):
        VelocityMonitor(conv_bn_model(), gaussian_aux(2, (3, 8, 8)), modules=lambda name, m: False)


@pytest.mark.parametrize("method", METHODS)
def test_layers_the_forward_never_calls(method):
    """Default selection: left out of the reports; chosen by the caller: an error."""
    class WithSpareHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    model = WithSpareHead()
    report = method(model, torch.randn(3, 4)).measure()
    assert list(report.layers) == ["body"]
    with pytest.raises(ValueError, match="never called"):
        method(model, torch.randn(3, 4), modules=["body", "unused"]).measure()
    with pytest.raises(ValueError, match="never called|none of the modules"):
        method(model, torch.randn(3, 4), modules=["unused"]).measure()


def reused_module_model() -> nn.Module:
    torch.manual_seed(0)
    shared = nn.Linear(4, 4)
    return nn.Sequential(shared, nn.Tanh(), shared, nn.Linear(4, 2))


def tied_parameter_model() -> nn.Module:
    torch.manual_seed(0)
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    return nn.Sequential(first, nn.Tanh(), second, nn.Linear(4, 2))


@pytest.mark.parametrize("make_model", [reused_module_model, tied_parameter_model])
def test_shared_weights_are_measured_and_left_tied(make_model):
    """A module called twice, or a Parameter held by two modules: replaying the snapshot must neither
    fail nor leave snapshot tensors in the model."""
    model = make_model()
    aux = torch.randn(9, 4)
    monitor, reference = VelocityMonitor(model, aux, batch_size=4), StoredActivationsVelocity(model, aux)
    for epoch in range(2):
        perturb(model, torch.Generator().manual_seed(epoch))
        live = {name: p for name, p in model.named_parameters(remove_duplicate=False)}
        values = {name: p.detach().clone() for name, p in live.items()}
        assert_reports_close(monitor.measure(), reference.measure())
        for report in (monitor.measure(), reference.measure()):  # unchanged since the last measurement
            for rho in report.rho.values():
                torch.testing.assert_close(rho, torch.ones_like(rho), atol=1e-7, rtol=0)
        for name, p in model.named_parameters(remove_duplicate=False):
            assert p is live[name] and torch.equal(p, values[name]), name
    assert model[0].weight is model[2].weight


# ------------------------------------------------------------------------------------------ resuming


def checkpoint(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_round_trip_mid_run_gives_identical_reports():
    model = conv_bn_model()
    aux = gaussian_aux(10, (3, 8, 8))
    monitor = VelocityMonitor(model, aux, batch_size=4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        perturb(model, generator)
        monitor.measure()
    saved_monitor, saved_model = checkpoint(monitor.state_dict()), checkpoint(model.state_dict())
    saved_generator = generator.get_state()

    resumed_model = conv_bn_model(seed=123)  # same architecture, other weights
    resumed_model.load_state_dict(saved_model)
    resumed = VelocityMonitor(resumed_model, aux)  # its own t = 0 reference is wrong until loaded
    fresh = VelocityMonitor(copy.deepcopy(resumed_model), aux, batch_size=4)
    with pytest.raises(ValueError, match=r"batch_size=4 \(saved\) vs 16 \(now\).*settings='new'"):
        resumed.load_state_dict(saved_monitor)  # built with another batch size: refused unless asked
    assert resumed.epoch == 0
    assert resumed.load_state_dict(saved_monitor, settings="saved") == {"batch_size": (4, 16)}
    assert resumed.epoch == 2 and resumed.batch_size == 4
    resumed_generator = torch.Generator()
    resumed_generator.set_state(saved_generator)
    for _ in range(2):
        perturb(model, generator)
        perturb(resumed_model, resumed_generator)
        perturb(fresh.model, torch.Generator().manual_seed(99))
        report = monitor.measure()
        assert_reports_equal(report, resumed.measure())
        assert report.velocity_change is not None
    assert fresh.measure().model_velocity != report.model_velocity  # without the state it differs


def test_state_with_other_settings_keeps_the_new_ones_when_asked():
    model = conv_bn_model()
    aux = gaussian_aux(10, (3, 8, 8))
    saved = VelocityMonitor(model, aux, mu=0.5, batch_size=4).state_dict()
    resumed = VelocityMonitor(model, aux, mu=0.25, batch_size=5)
    with pytest.raises(ValueError, match="mu=0.5 \\(saved\\) vs 0.25"):
        resumed.load_state_dict(saved)
    assert resumed.load_state_dict(saved, settings="new") == {"mu": (0.5, 0.25), "batch_size": (4, 5)}
    assert (resumed.tracker.mu, resumed.batch_size) == (0.25, 5)
    with pytest.raises(ValueError, match="settings must be one of"):
        resumed.load_state_dict(saved, settings="override")


def test_state_dict_into_another_architecture_raises():
    aux = gaussian_aux(4, (3, 8, 8))
    state = VelocityMonitor(conv_bn_model(), aux).state_dict()
    other = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 4))
    with pytest.raises(ValueError, match="another model"):
        VelocityMonitor(other, aux).load_state_dict(state)
    wider = conv_bn_model()
    wider[8], wider[9], wider[11] = nn.Linear(6, 7), nn.BatchNorm1d(7), nn.Linear(7, 4)  # same names
    with pytest.raises(ValueError, match="another model"):
        VelocityMonitor(wider, aux).load_state_dict(state)
    model = conv_bn_model()
    with pytest.raises(ValueError, match="layer selection"):
        VelocityMonitor(model, aux, modules=["0"]).load_state_dict(VelocityMonitor(model, aux).state_dict())


# ------------------------------------------------------------------------------------- real networks


def check_real_network(model: nn.Module, image_size: int, uncalled: int = 0) -> VelocityReport:
    """Every default layer the forward calls reports a finite velocity of its width."""
    aux = gaussian_aux(2, (3, image_size, image_size))
    monitor = VelocityMonitor(model, aux, batch_size=2)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(1e-2 * torch.randn(p.shape, generator=generator) * (p.abs().mean() + 1e-3))
    report = monitor.measure()
    selected = select_modules(model)
    assert len(selected) - len(report.layers) == uncalled
    assert list(report.layers) == [name for name in selected if name in report.layers]
    for name in report.layers:
        module = selected[name]
        v = report.layers[name]
        size = (module.out_channels if isinstance(module, nn.modules.conv._ConvNd)
                else module.num_features if isinstance(module, nn.modules.batchnorm._BatchNorm)
                else module.out_features if isinstance(module, nn.Linear)
                else module.normalized_shape[-1])
        assert v.shape == (size,), name
        assert torch.isfinite(v).all() and torch.isfinite(report.rho[name]).all(), name
    assert 0 < report.model_velocity < 1
    return report


def test_resnet50_at_224():
    torchvision = pytest.importorskip("torchvision")
    report = check_real_network(torchvision.models.resnet50(weights=None), 224)
    assert len(report.layers) == 53 + 53 + 1  # convs (incl. downsample), their BatchNorms, fc


def test_swinv2_tiny_at_256():
    timm = pytest.importorskip("timm")
    model = timm.create_model("swinv2_tiny_window8_256", pretrained=False)
    report = check_real_network(model, 256, uncalled=12)
    # SwinV2 applies attn.qkv's weight with F.linear (q and v biases only): never called, not reported
    assert [n for n in select_modules(model) if n not in report.layers] == [
        f"layers.{i}.blocks.{j}.attn.qkv" for i, depth in enumerate([2, 2, 6, 2]) for j in range(depth)]
    layer_norms = [name for name, m in select_modules(model).items() if isinstance(m, nn.LayerNorm)]
    linears = [name for name, m in select_modules(model).items() if isinstance(m, nn.Linear)]
    assert len(layer_norms) > 20 and len(linears) > 40
    # the C-sized vectors of the transformer stages, e.g. 96 channels at stage 0, 768 at stage 3
    assert report.layers["layers.0.blocks.0.norm1"].shape == (96,)
    assert report.layers["layers.3.blocks.1.mlp.fc2"].shape == (768,)
