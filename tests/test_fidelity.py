"""The authors'-code behaviours behind ``--fidelity code`` (spec section 6), each against what it must do.

Every test here fails if its behaviour is switched back to the paper's: the signed velocity recursion, the
uint8-wrapped aux noise, the plateau rule's zero-D skip and 1e-8 minimum cut, the ResNet variant's shortcut
and initialization, the augmented test set, and a whole ``--fidelity code`` run resumed after SIGKILL.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from cli_runs import records_without_seconds, straight_and_resumed
from torch import nn

from experiments.data import load_data
from experiments.methods import EpochResult, method_class
from experiments.methods.base import Stepper
from experiments.models import create_model, model_variants
from experiments.models.resnet_cifar import ZeroPadShortcut
from experiments.training.config import RunConfig
from neve import NeVe, NeVeRule, VelocityMonitor, VelocityTracker, gaussian_aux
from neve.controller import CODE_LR_EPS, decayed_lr, scale_lr
from neve.velocity import VelocityReport

# ---------------------------------------------------------------------------------- signed velocity

RHO = {"a": [[0.2, 1.0], [0.9, 1.0], [0.95, 1.0]], "b": [[0.5], [0.5], [0.5]]}  # per epoch, per neuron


def track(form: str) -> list[VelocityReport]:
    tracker = VelocityTracker(mu=0.5, form=form)
    return [tracker.update({name: torch.tensor(values[t], dtype=torch.float64) for name, values in RHO.items()})
            for t in range(3)]


def test_signed_recursion_matches_hand_computed_values_with_a_negative_neuron():
    # v^t = (1 - rho^t) - 0.5 v^{t-1}, no absolute value: neuron a0 goes 0.8 -> 0.1 - 0.4 = -0.3 -> 0.05 + 0.15.
    reports = track("signed")
    assert reports[0].layers["a"].tolist() == pytest.approx([0.8, 0.0])
    assert reports[1].layers["a"].tolist() == pytest.approx([-0.3, 0.0])
    assert reports[2].layers["a"].tolist() == pytest.approx([0.2, 0.0])
    assert [r.layers["b"].item() for r in reports] == pytest.approx([0.5, 0.25, 0.375])
    # V^t = mean |v| over the three neurons; D^t = mean over layers of mean (v^t - v^{t-1})^2, signed v.
    assert [r.model_velocity for r in reports] == pytest.approx([1.3 / 3, 0.55 / 3, 0.575 / 3])
    assert reports[0].velocity_change is None
    assert reports[1].velocity_change == pytest.approx(((1.1**2 + 0) / 2 + 0.25**2) / 2)
    assert reports[2].velocity_change == pytest.approx(((0.5**2 + 0) / 2 + 0.125**2) / 2)
    # The paper's eq. 2 differs exactly where the signed v went negative.
    paper = track("paper")
    assert paper[1].layers["a"].tolist() == pytest.approx([0.3, 0.0])
    assert paper[2].layers["a"].tolist() == pytest.approx([0.1, 0.0])


def test_signed_form_state_round_trips_and_refuses_the_other_form():
    tracker = VelocityTracker(mu=0.5, form="signed")
    tracker.update({"a": torch.tensor([0.2])})
    tracker.update({"a": torch.tensor([0.9])})
    resumed = VelocityTracker(mu=0.5, form="signed")
    resumed.load_state_dict(tracker.state_dict())
    assert resumed.update({"a": torch.tensor([0.95])}).layers["a"].tolist() == pytest.approx([0.2])
    with pytest.raises(ValueError, match="velocity_form='signed'.*'paper'"):
        VelocityTracker(mu=0.5).load_state_dict(tracker.state_dict())
    with pytest.raises(ValueError, match="velocity_form"):
        VelocityTracker(mu=0.5, form="abs")
    legacy = VelocityTracker(mu=0.5).state_dict()
    del legacy["form"]  # a checkpoint written before the option existed is the paper's form
    VelocityTracker(mu=0.5).load_state_dict(legacy)


def test_monitor_and_neve_measure_the_signed_form_on_a_real_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    aux = torch.randn(10, 6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    paper = VelocityMonitor(model, aux)
    neve = NeVe(model, optimizer, aux, velocity_form="signed", plateau_rule="code")
    assert neve.monitor.tracker.form == "signed" and neve.rule.plateau_rule == "code"
    velocity_before: dict[str, torch.Tensor] = {}
    negative = 0
    for scale in (1.0, 0.01, 0.01):  # a large change, then small ones: 1 - rho < 0.5 v^{t-1}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * scale)
        expected = paper.measure()
        decision = neve.step()
        report = decision.report
        for name, rho in report.rho.items():
            assert torch.allclose(rho, expected.rho[name])  # the same cosines, another recursion
            signed = (1 - rho) - 0.5 * velocity_before.get(name, torch.zeros_like(rho))
            assert torch.allclose(report.layers[name], signed)
        velocity_before = report.layers
        all_v = torch.cat(list(report.layers.values()))
        negative += int((all_v < 0).sum())
        assert decision.model_velocity == pytest.approx(float(all_v.abs().mean()))
    assert negative > 0


# ---------------------------------------------------------------------------------------- uint8 aux


def test_uint8_aux_is_the_authors_wrapped_noise_with_pinned_values():
    aux = gaussian_aux(100, (3, 32, 32), seed=0, noise="uint8")
    pixels = (aux * 255).round().to(torch.int64)
    assert torch.equal(pixels.float() / 255, aux)  # exactly k / 255: 8-bit pixels through ToTensor
    assert aux.min() >= 0 and aux.max() <= 1
    assert float(aux.mean()) == pytest.approx(0.50, abs=0.01) and float(aux.std()) == pytest.approx(0.29, abs=0.01)
    # randn -1.1258 -> x255 = -287.09 -> truncated -287 -> wraps to 225 (mod 256); pinned for seed 0.
    # Derived, not copied from output: each image's randn x 255, truncated toward zero, taken mod 256.
    generator = torch.Generator().manual_seed(0)
    raw = torch.stack([torch.randn(3, 32, 32, generator=generator) for _ in range(100)])
    assert float(raw[0, 0, 0, 0]) == pytest.approx(-1.1258, abs=1e-4) and pixels[0, 0, 0, 0] == 225
    assert torch.equal(pixels, torch.remainder(torch.trunc(raw * 255).to(torch.int64), 256))
    normal = gaussian_aux(100, (3, 32, 32), seed=0)
    assert float(normal.min()) < 0 and abs(float(normal.mean())) < 0.01  # the paper's N(0, 1) is another set
    with pytest.raises(ValueError, match="noise"):
        gaussian_aux(4, (1, 8, 8), noise="uniform")


def test_uint8_aux_equals_the_authors_torchvision_pipeline():
    T = pytest.importorskip("torchvision.transforms")
    torch.manual_seed(0)  # their generator: the global one, seeded 0, one randn image after another
    theirs = torch.stack([T.ToTensor()(T.Resize((32, 32))(T.ToPILImage()(torch.randn(3, 32, 32))))
                          for _ in range(100)])
    assert torch.equal(gaussian_aux(100, (3, 32, 32), seed=0, noise="uint8"), theirs)  # every image of the set


# ----------------------------------------------------------------------------------- plateau rule


def report(epoch: int, change: float | None, velocity: float = 1.0) -> VelocityReport:
    return VelocityReport(epoch=epoch, model_velocity=velocity, layers={}, rho={}, velocity_change=change)


def fired(rule: NeVeRule, changes: list[float | None]) -> list[int]:
    return [t for t, d in enumerate(changes, start=1) if rule.decide(report(t, d))[0]]


def test_code_rule_does_not_step_the_plateau_when_the_change_is_exactly_zero():
    changes = [None, 0.1, 0.0, 0.0, 0.0, 0.2]
    # paper, patience 0: 0.1 best; 0.0 new best; 0.0 bad -> fire (reset); 0.0 best; 0.2 bad -> fire
    assert fired(NeVeRule(patience=0), changes) == [4, 6]
    # code: the zeros are skipped; 0.2 is the first bad epoch after the best 0.1 -> fire at 6 only
    assert fired(NeVeRule(patience=0, plateau_rule="code"), changes) == [6]
    assert fired(NeVeRule(patience=0, plateau_rule="code"), [None, 0.3, 1e-30, 1e-30]) == [4]  # tiny != zero


class LocalPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """The authors' scheduler (their ReduceLROnLocalPlateau): torch's ReduceLROnPlateau, which also forgets its
    best value whenever the patience runs out, whether or not eps let the cut through."""

    def _reduce_lr(self, epoch) -> None:
        super()._reduce_lr(epoch)
        self.best = self.mode_worse


def test_code_rule_cuts_the_lr_as_the_authors_plateau_scheduler_with_eps_1e8():
    # Their scheduler: 'min', threshold 0, min_lr 0, torch's eps 1e-8, stepped only when D != 0.
    changes = [None] + [0.5 if t % 7 else 0.0 for t in range(2, 120)]
    param = nn.Parameter(torch.zeros(1))
    ours = torch.optim.SGD([param], lr=0.1)
    theirs = torch.optim.SGD([param], lr=0.1)
    scheduler = LocalPlateau(theirs, mode="min", factor=0.5, patience=1, threshold=0.0, min_lr=0.0, eps=1e-8)
    rule = NeVeRule(alpha=0.5, patience=1, plateau_rule="code")
    lrs, reductions = [], 0
    for t, change in enumerate(changes, start=1):
        reduce, _ = rule.decide(report(t, change))
        reductions += bool(reduce and scale_lr(ours, rule.alpha, rule.min_lr_change))
        if change:  # their `if velocity_data["model_metric_mse"]:`
            scheduler.step(change)
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"], t
        lrs.append(ours.param_groups[0]["lr"])
    assert reductions == 23 and lrs[-1] == 0.1 * 0.5**23 == pytest.approx(1.19e-8, rel=1e-2)  # stops at 1.19e-8
    # The paper's rule keeps halving below 1e-8.
    paper = NeVeRule(alpha=0.5, patience=1)
    lr = 0.1
    for t, change in enumerate(changes, start=1):
        if paper.decide(report(t, change))[0]:
            lr = decayed_lr(lr, 0.5)
    assert lr < 1e-9


def test_a_skipped_cut_is_no_lr_reduction_for_neve_and_vloss():
    assert decayed_lr(2.5e-8, 0.5, CODE_LR_EPS) == 1.25e-8 and decayed_lr(2e-8, 0.5, CODE_LR_EPS) == 2e-8
    config = RunConfig(dataset="digits", model="resnet8", method="neve", patience=0, fidelity="code").resolved()
    for method, field in (("neve", "velocity_change"), ("vloss", "val_loss")):
        config.method = method
        policy = method_class(method)(config)
        stepper = Stepper(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.5e-8))
        reduced = []
        for t in range(1, 6):
            values = {"velocity_change": None if t == 1 else 0.3, "val_loss": 0.3}
            result = EpochResult(t, 1.0, 0.5, 1.0, 0.5, values["val_loss"], 0.5, report(t, values["velocity_change"]))
            reduced.append(policy.end_epoch(result, stepper).lr_reduced)
        assert not any(reduced), (method, field)  # fired, but a cut of 7.5e-9 <= 1e-8 is not applied
        assert stepper.lr == 1.5e-8


def test_neve_state_refuses_another_plateau_rule():
    rule = NeVeRule(patience=2, plateau_rule="code")
    rule.decide(report(1, None))
    with pytest.raises(ValueError, match="plateau_rule='code'"):
        NeVeRule(patience=2).load_state_dict(rule.state_dict())
    with pytest.raises(ValueError, match="plateau_rule"):
        NeVeRule(plateau_rule="authors")


# ---------------------------------------------------------------------------------- ResNet variant


def shortcuts(model: nn.Module) -> list[ZeroPadShortcut]:
    return [m for m in model.modules() if isinstance(m, ZeroPadShortcut)]


def test_code_resnet32_appends_the_zero_channels_after_the_input_channels():
    assert model_variants("resnet32") == ("paper", "code") and model_variants("resnet50") == ("paper",)
    code, paper = create_model("resnet32", 10, variant="code"), create_model("resnet32", 10)
    count = [sum(p.numel() for p in m.parameters()) for m in (code, paper)]
    assert count == [464_154, 464_154]
    assert [(s.pad_before, s.pad_after) for s in shortcuts(code)] == [(0, 16), (0, 32)]
    assert [(s.pad_before, s.pad_after) for s in shortcuts(paper)] == [(8, 8), (16, 16)]
    x = torch.randn(2, 16, 8, 8)
    out = shortcuts(code)[0](x)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()
    out = shortcuts(paper)[0](x)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and not out[:, :8].any() and not out[:, 24:].any()
    with pytest.raises(ValueError, match="no variant 'code'"):
        create_model("resnet50", 10, variant="code")


def test_code_resnet32_initializes_convolutions_with_kaiming_fan_out():
    torch.manual_seed(0)
    code, paper = create_model("resnet32", 10, variant="code"), create_model("resnet32", 10)

    def std_over_expected(model: nn.Module, fan: str) -> list[float]:
        ratios = []
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                out_ch, in_ch, kh, kw = m.weight.shape
                fan_size = (out_ch if fan == "out" else in_ch) * kh * kw
                ratios.append(float(m.weight.detach().std()) / math.sqrt(2.0 / fan_size))
        return ratios

    assert all(r == pytest.approx(1.0, abs=0.12) for r in std_over_expected(code, "out"))
    assert all(r == pytest.approx(1.0, abs=0.12) for r in std_over_expected(paper, "in"))
    # Where fan-in and fan-out differ, they are told apart: the stem (3 -> 16) and each stage's first conv.
    assert float(code.conv1.weight.detach().std()) == pytest.approx(math.sqrt(2 / 144), rel=0.12)
    assert float(paper.conv1.weight.detach().std()) == pytest.approx(math.sqrt(2 / 27), rel=0.12)
    assert float(code.layer2[0].conv1.weight.detach().std()) == pytest.approx(math.sqrt(2 / 288), rel=0.06)
    assert float(paper.layer2[0].conv1.weight.detach().std()) == pytest.approx(math.sqrt(2 / 144), rel=0.06)
    for model in (code, paper):  # the head stays Kaiming fan-in, as in theirs
        assert float(model.fc.weight.detach().std()) == pytest.approx(math.sqrt(2 / 64), rel=0.12)


# ------------------------------------------------------------------------------- test augmentation


def test_the_augmented_test_stream_is_the_training_augmentation_seeded_per_epoch():
    kwargs = dict(batch_size=128, seed=3)
    clean = load_data("digits", "", **kwargs).test
    augmented = load_data("digits", "", test_augmentation=True, **kwargs).test
    assert augmented.augmented and not clean.augmented

    def images(stream, epoch):
        parts = list(stream.batches(epoch))
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    x_clean, y_clean = images(clean, 1)
    x1, y1 = images(augmented, 1)
    assert torch.equal(y1, y_clean)  # same samples, same order
    assert torch.equal(x1, images(augmented, 1)[0])  # an epoch's draws are fixed (exact resume)
    assert not torch.equal(x1, x_clean) and not torch.equal(x1, images(augmented, 2)[0])
    assert torch.equal(images(clean, 1)[0], images(clean, 2)[0])
    # digits' training augmentation: shifts of up to 2 pixels with zero padding, no flip: each image is its clean
    # version shifted (the zero background may hide a shift, so compare the shifted positions that exist).
    shifted = sum(any(torch.equal(x1[i, :, 2:-2, 2:-2], x_clean[i, :, 2 + dy:14 + dy, 2 + dx:14 + dx])
                      for dy in range(-2, 3) for dx in range(-2, 3)) for i in range(20))
    assert shifted == 20


def test_the_imagenet100_test_stream_can_be_augmented(tmp_path: Path):
    from synthetic_data import write_synthetic_imagenet

    from experiments.data.imagenet100 import imagenet100_classes

    write_synthetic_imagenet(tmp_path, imagenet100_classes(), per_class=1, image_size=36)
    kwargs = dict(batch_size=64, image_size=32, num_workers=0, seed=1)
    clean = load_data("imagenet100", tmp_path, **kwargs).test
    augmented = load_data("imagenet100", tmp_path, test_augmentation=True, **kwargs).test
    first = [x for x, _ in augmented.batches(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, [x for x, _ in augmented.batches(1)], strict=True))
    assert not torch.equal(first[0], next(iter(augmented.batches(2)))[0])
    assert not torch.equal(first[0], next(iter(clean.batches(1)))[0])
    assert torch.equal(torch.cat([y for _, y in augmented.batches(1)]), torch.cat([y for _, y in clean]))


# ------------------------------------------------------------------------------------ run config


def test_fidelity_code_resolves_every_option_and_labels_the_label_wave_test_set():
    code = RunConfig(dataset="digits", model="resnet8", method="neve", fidelity="code").resolved()
    assert (code.velocity_form, code.aux_noise, code.plateau_rule, code.resnet_variant, code.test_augmentation) == (
        "signed", "uint8", "code", "code", False)
    labelwave = RunConfig(dataset="digits", model="resnet8", method="labelwave", fidelity="code").resolved()
    assert labelwave.test_augmentation is True
    paper = RunConfig(dataset="digits", model="resnet8", method="labelwave").resolved()
    assert (paper.velocity_form, paper.aux_noise, paper.plateau_rule, paper.resnet_variant,
            paper.test_augmentation) == ("paper", "normal", "paper", "paper", False)
    one = RunConfig(dataset="digits", model="resnet8", velocity_form="signed").resolved()  # one difference alone
    assert (one.velocity_form, one.aux_noise, one.plateau_rule) == ("signed", "normal", "paper")


def test_a_code_fidelity_run_builds_what_its_config_says(tmp_path: Path):
    from experiments.training.trainer import build_aux, build_model, train

    config = RunConfig(dataset="digits", model="resnet8", method="labelwave", fidelity="code", epochs=2,
                       batch_size=128, aux_size=16, wandb="disabled", progress=False, num_workers=0,
                       precision="fp32", out=str(tmp_path / "run")).resolved()
    data = load_data("digits", "", batch_size=128, test_augmentation=True)
    aux = build_aux(config, data)
    assert aux.shape == (16, 1, 16, 16) and aux.min() >= 0 and aux.max() <= 1
    model = build_model(config, data)
    assert [(s.pad_before, s.pad_after) for s in shortcuts(model)] == [(0, 16), (0, 32)]
    summary = train(config)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["monitor"]["tracker"]["form"] == "signed"
    assert summary["test_augmentation"] is True
    # The recorded test accuracy is the one on the augmented test images of that epoch.
    model.load_state_dict(torch.load(tmp_path / "run" / "model.pt", weights_only=True))
    model.eval().to(memory_format=torch.channels_last)

    def accuracy(batches) -> float:
        with torch.no_grad():
            hits = sum(int((model(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum())
                       for x, y in batches)
        return hits / data.test.num_samples

    # Two epochs of training leave a weak model, so two augmentations may tie on accuracy: the recorded one
    # must be epoch 2's, and some other epoch's augmentation must score differently (else this proves nothing).
    by_epoch = {epoch: accuracy(data.test.batches(epoch)) for epoch in range(1, 9)}
    assert summary["final_test_acc"] == by_epoch[2]
    assert len(set(by_epoch.values())) > 1


def test_a_code_fidelity_run_killed_with_sigkill_resumes_to_the_same_records(tmp_path: Path):
    args = ["--dataset", "digits", "--model", "resnet8", "--method", "neve", "--fidelity", "code",
            "--test-augmentation", "--epochs", "3", "--patience", "0", "--aux-size", "16", "--wandb", "disabled",
            "--no-progress"]
    _, killed = straight_and_resumed(args, tmp_path, epochs=3)

    records = records_without_seconds(killed)
    assert records == records_without_seconds(tmp_path / "straight")
    assert len(records) == 3 and records[1]["velocity_change"] is not None
    config = json.loads((killed / "config.json").read_text())
    assert (config["fidelity"], config["velocity_form"], config["aux_noise"], config["plateau_rule"],
            config["resnet_variant"], config["test_augmentation"]) == ("code", "signed", "uint8", "code", "code", True)
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (killed, tmp_path / "straight")]
    assert summaries[0]["final_test_acc"] == summaries[1]["final_test_acc"]
    assert summaries[0]["test_augmentation"] is True
