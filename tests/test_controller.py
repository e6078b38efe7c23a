"""NeVe's decisions (spec section 3): plateau of D^t -> lr *= alpha, V^t < epsilon -> stop."""

import copy
import io
import math

import pytest
import torch
from torch import nn

from neve import NeVe, NeVeRule, Plateau, gaussian_aux
from neve.velocity import VelocityReport


def report(epoch: int, velocity: float, change: float | None) -> VelocityReport:
    return VelocityReport(epoch=epoch, model_velocity=velocity, layers={}, rho={}, velocity_change=change)


def fired(patience: int, values: list[float]) -> list[int]:
    """1-based positions at which a fresh Plateau fires."""
    plateau = Plateau(patience)
    return [i for i, value in enumerate(values, start=1) if plateau.step(value)]


# ------------------------------------------------------------------------------------------ Plateau


def test_plateau_patience_zero_on_a_constant_fires_every_other_step():
    # step 1: best = 1; step 2: not < best -> bad = 1 > 0 -> fire, best = inf; step 3: new best; ...
    assert fired(0, [1.0] * 8) == [2, 4, 6, 8]


def test_plateau_equal_values_count_as_bad_threshold_zero():
    assert fired(1, [1.0, 1.0, 1.0]) == [3]
    assert fired(1, [1.0, 1.0 - 1e-12, 1.0 - 2e-12]) == []  # any decrease is an improvement


def test_plateau_never_fires_on_a_decreasing_signal():
    assert fired(0, [10.0 / k for k in range(1, 30)]) == []


def test_plateau_patience_counts_bad_steps_and_restarts_after_firing():
    # patience 2: fire on the 3rd consecutive step without a new minimum, then start afresh (best = inf)
    values = [5, 4, 4.5, 4.2, 6, 3, 3.5, 3.1, 3.0, 9, 9, 9, 9]
    #         1  2  3    4    5  6  7    8    9    10 11 12 13
    # best 5, 4 (bad 0); 4.5 bad1; 4.2 bad2; 6 bad3 -> fire at 5; 3 best; 3.5 bad1; 3.1 bad2;
    # 3.0 < 3 is False -> bad3 -> fire at 9; 9 best (inf reset); 9 bad1; 9 bad2; 9 bad3 -> fire at 13
    assert fired(2, values) == [5, 9, 13]


def test_plateau_state_round_trip():
    plateau = Plateau(3)
    for value in (2.0, 1.0, 1.5):
        plateau.step(value)
    resumed = Plateau(0)
    resumed.load_state_dict(copy.deepcopy(plateau.state_dict()))
    assert (resumed.patience, resumed.best, resumed.bad_epochs) == (3, 1.0, 1)
    later = [1.2, 1.3, 1.4, 0.5]
    assert [plateau.step(v) for v in later] == [resumed.step(v) for v in later] == [False, False, True, False]


# ----------------------------------------------------------------------------------------- NeVeRule


def run_rule(rule: NeVeRule, velocities: list[float],
             changes: list[float | None]) -> tuple[list[int], list[int]]:
    reductions, stops = [], []
    for t, (v, d) in enumerate(zip(velocities, changes, strict=True), start=1):
        reduce, stop = rule.decide(report(t, v, d))
        if reduce:
            reductions.append(t)
        if stop:
            stops.append(t)
    return reductions, stops


def constant_change(epochs: int, value: float = 0.1) -> list[float | None]:
    return [None] + [value] * (epochs - 1)  # D^t exists from t = 2


@pytest.mark.parametrize("patience, expected", [
    (0, [3, 5, 7, 9, 11]),  # t=2 sets best; t=3 bad 1 > 0 -> reduce; t=4 new best; t=5 reduce; ...
    (1, [4, 7, 10]),
    (5, [8]),               # t=2 best, t=3..8 six bad epochs > 5 -> reduce at 8, next at 15
    (10, []),               # first reduction would be at t = 2 + 11 = 13
])
def test_rule_reduces_at_the_spec_epochs_on_a_constant_change(patience, expected):
    rule = NeVeRule(patience=patience)
    reductions, stops = run_rule(rule, [0.5] * 12, constant_change(12))
    assert reductions == expected and stops == []


def test_rule_default_patience_ten_reduces_at_13_and_25():
    rule = NeVeRule()
    assert rule.plateau.patience == 10 and rule.alpha == 0.5 and rule.epsilon == 1e-3
    reductions, _ = run_rule(rule, [0.5] * 30, constant_change(30))
    assert reductions == [13, 25]


def test_rule_waits_for_the_change_to_stop_decreasing():
    # D falls until t = 6 (best), then no new minimum: bad at t = 7, 8, 9 -> reduce at 9 (patience 2)
    changes = [None, 1.0, 0.8, 0.6, 0.4, 0.2, 0.3, 0.25, 0.21, 0.5]
    reductions, _ = run_rule(NeVeRule(patience=2), [0.5] * len(changes), changes)
    assert reductions == [9]


def test_rule_stops_when_velocity_below_epsilon_and_records_the_first_epoch():
    rule = NeVeRule(epsilon=1e-3)
    velocities = [0.5, 0.1, 1e-3, 0.0009, 0.002, 0.0005]  # 1e-3 itself is not below epsilon
    _, stops = run_rule(rule, velocities, constant_change(6))
    assert stops == [4, 6] and rule.stop_epoch == 4


def test_rule_state_round_trip():
    rule = NeVeRule(patience=2, alpha=0.25, epsilon=0.01)
    run_rule(rule, [0.5, 0.005, 0.5], [None, 0.1, 0.2])
    resumed = NeVeRule()
    with pytest.raises(ValueError, match="alpha=0.25 \\(saved\\) vs 0.5 \\(now\\)"):
        resumed.load_state_dict(copy.deepcopy(rule.state_dict()))  # built with other settings: refused
    assert resumed.load_state_dict(copy.deepcopy(rule.state_dict()), settings="saved") == {
        "alpha": (0.25, 0.5), "patience": (2, 10), "epsilon": (0.01, 1e-3)}
    assert (resumed.alpha, resumed.epsilon, resumed.plateau.patience, resumed.stop_epoch) == (0.25, 0.01, 2, 2)
    later = [report(t, 0.5, 0.3) for t in range(4, 10)]
    assert [rule.decide(r) for r in later] == [resumed.decide(r) for r in later]


# ------------------------------------------------------------------------------------ NeVe end to end


def tiny_setup(seed: int = 0, lr: float = 0.2):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD([{"params": model[0].parameters()},
                                 {"params": [*model[1].parameters(), *model[3].parameters()], "lr": lr / 4}],
                                lr=lr, momentum=0.9)
    return model, optimizer


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    generator = torch.Generator().manual_seed(1000 + epoch)  # the epoch's data, the same on every run
    x = torch.randn(64, 6, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model.train()
    for xb, yb in zip(x.split(16), y.split(16), strict=True):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()


def test_neve_scales_every_param_group_exactly_when_it_decides_to():
    model, optimizer = tiny_setup()
    neve = NeVe(model, optimizer, gaussian_aux(20, (6,)), patience=0, alpha=0.5, epsilon=1e-6)
    check = Plateau(0)
    reduced_at = []
    for epoch in range(1, 13):
        train_epoch(model, optimizer, epoch)
        lrs = [g["lr"] for g in optimizer.param_groups]
        decision = neve.step()
        assert decision.epoch == epoch
        factor = 0.5 if decision.lr_reduced else 1.0
        assert [g["lr"] for g in optimizer.param_groups] == [lr * factor for lr in lrs]
        assert decision.lr == optimizer.param_groups[0]["lr"]
        expected = decision.velocity_change is not None and check.step(decision.velocity_change)
        assert decision.lr_reduced == expected
        assert decision.model_velocity == decision.report.model_velocity > 0
        assert (decision.velocity_change is None) == (epoch == 1)
        if decision.lr_reduced:
            reduced_at.append(epoch)
    assert reduced_at  # the run exercised at least one reduction
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * 0.5 ** len(reduced_at))
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.05 * 0.5 ** len(reduced_at))


def test_neve_reports_the_stop_and_keeps_going_if_asked():
    model, optimizer = tiny_setup()
    neve = NeVe(model, optimizer, gaussian_aux(20, (6,)), epsilon=10.0)  # every velocity is below 10
    assert neve.stop_epoch is None
    for epoch in range(1, 4):
        train_epoch(model, optimizer, epoch)
        assert neve.step().stop
    assert neve.stop_epoch == 1


def save_load(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_neve_state_round_trip_mid_run_gives_identical_decisions():
    aux = gaussian_aux(20, (6,))
    model, optimizer = tiny_setup()
    neve = NeVe(model, optimizer, aux, patience=1, batch_size=7)
    for epoch in range(1, 5):
        train_epoch(model, optimizer, epoch)
        neve.step()
    saved = save_load({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "neve": neve.state_dict()})

    resumed_model, resumed_optimizer = tiny_setup(seed=1, lr=0.7)  # fresh objects, other weights and lr
    resumed_model.load_state_dict(saved["model"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed = NeVe(resumed_model, resumed_optimizer, aux, patience=1, batch_size=7)
    assert resumed.load_state_dict(saved["neve"]) == {}

    original, again = [], []
    for epoch in range(5, 13):
        runs = ((model, optimizer, neve, original), (resumed_model, resumed_optimizer, resumed, again))
        for m, opt, n, out in runs:
            train_epoch(m, opt, epoch)
            d = n.step()
            out.append((d.epoch, d.model_velocity, d.velocity_change, d.lr, d.lr_reduced, d.stop))
    assert original == again
    assert any(entry[4] for entry in original)  # reductions happened after the resume


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, 0.0, 1.0, math.nan])
def test_alpha_outside_open_unit_interval_raises(alpha):
    model, optimizer = tiny_setup()
    with pytest.raises(ValueError, match="alpha"):
        NeVe(model, optimizer, gaussian_aux(4, (6,)), alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        NeVeRule(alpha=alpha)


@pytest.mark.parametrize("patience", [-1, 1.5, 2.0, "3", True, None])
def test_patience_must_be_a_non_negative_int(patience):
    model, optimizer = tiny_setup()
    with pytest.raises(ValueError, match="patience"):
        NeVe(model, optimizer, gaussian_aux(4, (6,)), patience=patience)
    with pytest.raises(ValueError, match="patience"):
        Plateau(patience)


@pytest.mark.parametrize("epsilon", [0, 0.0, -1e-3, math.nan])
def test_epsilon_must_be_positive(epsilon):
    model, optimizer = tiny_setup()
    with pytest.raises(ValueError, match="epsilon"):
        NeVe(model, optimizer, gaussian_aux(4, (6,)), epsilon=epsilon)


@pytest.mark.parametrize("mu", [-0.1, 1.0, 1.5])
def test_mu_outside_unit_interval_raises(mu):
    model, optimizer = tiny_setup()
    with pytest.raises(ValueError, match="mu"):
        NeVe(model, optimizer, gaussian_aux(4, (6,)), mu=mu)


def test_valid_edge_values_are_accepted():
    model, optimizer = tiny_setup()
    neve = NeVe(model, optimizer, gaussian_aux(4, (6,)), alpha=0.999, patience=0, epsilon=1e-12, mu=0.0)
    assert neve.rule.plateau.patience == 0 and neve.monitor.tracker.mu == 0.0


# --------------------------------------------------------------------------------- misuse and conveniences


def test_step_without_an_optimizer_step_warns_and_never_stops():
    model, optimizer = tiny_setup()
    controller = NeVe(model, optimizer, gaussian_aux(20, (6,)), epsilon=10.0)  # any measured V would stop
    with pytest.warns(UserWarning, match="no trained parameter changed since the last measurement"):
        before = controller.step()  # before any training: used to give V = 0 and stop
    assert not before.measured and not before.stop and not before.lr_reduced and math.isnan(before.model_velocity)
    assert controller.monitor.epoch == 0 and controller.stop_epoch is None
    train_epoch(model, optimizer, 1)
    first = controller.step()
    assert first.measured and first.epoch == 1 and first.stop
    with pytest.warns(UserWarning, match="no trained parameter changed"):
        again = controller.step()  # twice in a row
    assert not again.measured and not again.stop and again.epoch == 1 and again.model_velocity == first.model_velocity


def test_neve_refuses_a_state_saved_with_other_settings_unless_asked():
    model, optimizer = tiny_setup()
    aux = gaussian_aux(20, (6,))
    controller = NeVe(model, optimizer, aux, patience=1)
    train_epoch(model, optimizer, 1)
    controller.step()
    state = save_load(controller.state_dict())
    other = NeVe(model, optimizer, aux, patience=4, alpha=0.25)
    with pytest.raises(ValueError, match=r"alpha=0.5 \(saved\) vs 0.25 \(now\), patience=1 \(saved\) vs 4 \(now\)"):
        other.load_state_dict(state)
    assert other.monitor.epoch == 0  # nothing was loaded
    assert other.load_state_dict(state, settings="new") == {"alpha": (0.5, 0.25), "patience": (1, 4)}
    assert (other.rule.alpha, other.rule.plateau.patience, other.monitor.epoch) == (0.25, 4, 1)
    saved = NeVe(model, optimizer, aux, patience=4, alpha=0.25)
    saved.load_state_dict(state, settings="saved")
    assert (saved.rule.alpha, saved.rule.plateau.patience) == (0.5, 1)


def test_verbose_prints_the_modules_measured_each_cut_and_the_stop(capsys):
    model, optimizer = tiny_setup()
    controller = NeVe(model, optimizer, gaussian_aux(20, (6,)), patience=0, epsilon=0.05, verbose=True)
    assert capsys.readouterr().out.startswith("NeVe measures 3 modules, 35 neurons (2 Linear, 1 BatchNorm1d)")
    decisions = []
    for epoch in range(1, 13):
        train_epoch(model, optimizer, epoch)
        decisions.append(controller.step())
    printed = capsys.readouterr().out.splitlines()
    cuts = [d for d in decisions if d.lr_reduced]
    assert cuts and controller.stop_epoch is not None
    assert [line for line in printed if "lr " in line] == [
        f"NeVe epoch {d.epoch}: the velocity change has not decreased for more than 0 epochs; "
        f"lr {d.lr * 2:.6g} -> {d.lr:.6g}" for d in cuts]
    stops = [line for line in printed if "converged" in line]
    assert len(stops) == 1 and stops[0].startswith(f"NeVe epoch {controller.stop_epoch}: velocity ")


def test_public_methods_have_docstrings():
    import inspect

    import neve

    for name in neve.__all__:
        thing = getattr(neve, name)
        assert inspect.getdoc(thing), name
        if inspect.isclass(thing):
            for method, member in vars(thing).items():
                if callable(member) and not method.startswith("_"):
                    assert inspect.getdoc(member), f"{name}.{method}"
