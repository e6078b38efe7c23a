"""The tuning-free peers' documented remedies as options, and their tuning grid on the MNIST-1D tuning set (issue 26).

Every option must reach the authors' optimizer (a run that sets it and trains without it would report the
package default under another name); the grid must give every peer as many settings as the Baseline's lr got."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments import catalog
from experiments.catalog import Cell, best_peer_settings, check_peer_tuning, get_experiment
from experiments.methods import METHODS, method_class
from experiments.methods.tuning_free import TuningFreePolicy, settings_beyond_defaults
from experiments.training.config import RunConfig, run_name

PEERS = ("dadapt", "dadapt-multistep", "prodigy", "prodigy-cosine", "schedulefree", "schedulefree-adamw", "dog")
#: (method, option, a value other than its default, the optimizer's parameter-group key it must reach).
OPTIONS = [
    ("dadapt", "growth_rate", 1.02, "growth_rate"), ("dadapt", "d0", 1e-5, "d"), ("dadapt", "lr", 0.5, "lr"),
    ("dadapt", "weight_decay", 0.0, "weight_decay"), ("dadapt-multistep", "growth_rate", 1.01, "growth_rate"),
    ("prodigy", "d_coef", 0.1, "d_coef"), ("prodigy", "safeguard_warmup", True, "safeguard_warmup"),
    ("prodigy", "use_bias_correction", True, "use_bias_correction"), ("prodigy", "growth_rate", 1.02, "growth_rate"),
    ("prodigy", "weight_decay", 0.0, "weight_decay"), ("prodigy", "lr", 0.5, "lr"),
    ("prodigy-cosine", "d_coef", 0.5, "d_coef"), ("prodigy-cosine", "safeguard_warmup", True, "safeguard_warmup"),
    ("prodigy-cosine", "use_bias_correction", True, "use_bias_correction"),
    ("dog", "weight_decay", 0.0, "weight_decay"), ("dog", "reps_rel", 1e-8, "reps_rel"), ("dog", "lr", 0.5, "lr"),
    ("schedulefree", "lr", 2.0, "lr"), ("schedulefree", "weight_decay", 0.0, "weight_decay"),
    ("schedulefree-adamw", "lr", 1e-2, "lr"), ("schedulefree-adamw", "weight_decay", 0.0, "weight_decay"),
]
#: MNIST-1D's CNN at the SGD recipe (200 epochs of 40 batches), the table's setting.
STEPS_PER_EPOCH = 40


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 16, 3))


def _policy(method: str, extra: dict[str, Any] | None = None, **options: Any) -> TuningFreePolicy:
    config = RunConfig(**{"dataset": "mnist1d", "model": "mnist1d_cnn", **options}, method=method,
                       extra=extra or {}).resolved()
    policy = method_class(method)(config)
    policy.start_training(STEPS_PER_EPOCH * config.batch_size)
    return policy


def _group(method: str, extra: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    return _policy(method, extra, **options).build_stepper(_net()).optimizer.param_groups[0]


@pytest.mark.parametrize(("method", "option", "value", "key"), OPTIONS)
def test_each_option_reaches_the_optimizer(method: str, option: str, value: Any, key: str) -> None:
    default = _policy(method).defaults()[option]
    assert value != default and _group(method)[key] != value  # the value is not what the method uses anyway
    assert _group(method, {option: value})[key] == value


def test_every_peer_declares_a_default_for_each_of_its_options() -> None:
    for method in PEERS:
        policy = _policy(method)
        assert set(policy.defaults()) == set(policy.options), method


def test_the_defaults_are_the_packages_where_the_method_does_not_say_otherwise() -> None:
    dadapt = _group("dadapt")  # dadaptation 3.2
    assert (dadapt["growth_rate"], dadapt["d"], dadapt["lr"], dadapt["momentum"]) == (math.inf, 1e-6, 1.0, 0.9)
    prodigy = _group("prodigy")  # prodigyopt 1.1.2
    assert (prodigy["d_coef"], prodigy["safeguard_warmup"], prodigy["use_bias_correction"], prodigy["growth_rate"]) \
        == (1.0, False, False, math.inf)
    adamw = _group("schedulefree-adamw")  # schedulefree 1.4.1's lr and betas; 5% warm-up; decoupled decay
    assert (adamw["lr"], adamw["betas"], adamw["weight_decay"]) == (0.0025, (0.9, 0.999), 1e-2)
    assert adamw["warmup_steps"] == round(0.05 * 200 * STEPS_PER_EPOCH)
    assert type(_policy("schedulefree-adamw").build_stepper(_net()).optimizer).__name__ == "AdamWScheduleFree"
    assert _group("schedulefree-adamw", betas=(0.9, 0.99))["betas"] == (0.9, 0.99)


def test_prodigy_keeps_safeguard_warmup_on_where_the_recipes_cosine_warms_up() -> None:
    swin = {"dataset": "imagenet100", "model": "swinv2_tiny", "warmup_epochs": 5}  # a cosine that warms up
    assert _group("prodigy-cosine", **swin)["safeguard_warmup"]
    assert not _group("prodigy-cosine", {"safeguard_warmup": False}, **swin)["safeguard_warmup"]
    assert not _group("prodigy", **swin)["safeguard_warmup"]  # no schedule: no warm-up


def test_prodigys_warmup_fraction_shapes_the_lr_linearly_then_hands_over_to_its_schedule() -> None:
    remedies = {"warmup_fraction": 0.05}  # 10 of 200 epochs
    policy = _policy("prodigy", remedies)
    stepper = policy.build_stepper(_net())
    lrs = []
    for epoch in (1, 5, 10, 11, 200):
        policy.start_epoch(epoch, stepper)
        lrs.append(stepper.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])
    assert policy.knows_horizon and not _policy("prodigy").knows_horizon
    assert _policy("prodigy").lr_factor(1) == 1.0

    cosine = _policy("prodigy-cosine", remedies)
    assert [cosine.lr_factor(e) for e in (1, 10, 11)] == pytest.approx([0.1, 1.0, 1.0])
    assert cosine.lr_factor(11 + 95) == pytest.approx(0.5)  # half-way through the 190 epochs after the warm-up
    assert cosine.lr_factor(200) < 0.001
    assert _policy("prodigy-cosine").lr_factor(1) == 1.0  # without the option, today's cosine from epoch 1


def test_schedule_free_warms_up_over_the_fraction_of_the_steps() -> None:
    for method, lr in (("schedulefree", 1.0), ("schedulefree-adamw", 0.0025)):
        stepper = _policy(method, {"warmup_fraction": 0.01}).build_stepper(net := _net())
        assert stepper.optimizer.param_groups[0]["warmup_steps"] == 80  # 1% of 200 x 40
        stepper.train_mode()
        inputs, labels = torch.randn(8, 1, 16), torch.arange(8) % 3
        for _ in range(4):
            stepper.zero_grad()
            stepper.backward(F.cross_entropy(net(inputs), labels))
            stepper.step()
        assert stepper.record()["step_size"] == pytest.approx(lr * 4 / 80)


@pytest.mark.parametrize(("method", "extra", "message"), [
    ("prodigy", {"safeguard_warmup": "yes"}, "true or false"),
    ("prodigy", {"warmup_fraction": 1.5}, "fraction of the budget"),
    ("schedulefree-adamw", {"warmup_fraction": -0.1}, "fraction of the budget"),
    ("dadapt", {"d_coef": 0.5}, "takes no option d_coef"),
])
def test_a_bad_option_is_a_clear_error(method: str, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _policy(method, extra).build_stepper(_net())


def test_prodigy_cosine_refuses_a_second_warmup_on_a_recipe_that_warms_up() -> None:
    with pytest.raises(ValueError, match="drop warmup_fraction"):
        _policy("prodigy-cosine", {"warmup_fraction": 0.05}, dataset="imagenet100", model="swinv2_tiny")


def test_a_setting_spelled_out_at_its_default_names_the_run_trained_without_it() -> None:
    def canonical(method: str, extra: dict[str, Any]) -> str:
        config = RunConfig(dataset="mnist1d", model="mnist1d_cnn", method=method, extra=extra).resolved()
        return run_name(dataclasses.replace(config, extra=settings_beyond_defaults(config)))

    plain = {m: canonical(m, {}) for m in PEERS}
    assert canonical("dadapt", {"growth_rate": math.inf, "d0": 1e-6}) == plain["dadapt"]
    assert canonical("dog", {"weight_decay": 5e-4}) == plain["dog"]  # the SGD recipe's
    assert canonical("schedulefree", {"lr": 1.0, "warmup_fraction": 0.05}) == plain["schedulefree"]
    assert canonical("prodigy", {"d_coef": 1.0, "safeguard_warmup": False}) == plain["prodigy"]
    assert canonical("dadapt", {"growth_rate": 1.02}) != plain["dadapt"]


# ------------------------------------------------------------------------------------------------ the grid
def test_every_peer_gets_three_settings_of_its_main_knob_on_the_tuning_set_for_both_networks() -> None:
    experiment = get_experiment("mnist1d-tuning-peers")
    assert (experiment.kind, experiment.seeds, experiment.defaults) == ("table", 2, catalog.MNIST1D_RUN)
    runs = experiment.runs(2)
    assert {r.config.data_options["seed"] for r in runs} == {43}  # the tuning set, never the published 42
    growth_rates = {math.inf, 1.02, 1.01}
    knobs = {"dadapt": ("growth_rate", growth_rates), "dadapt-multistep": ("growth_rate", growth_rates),
             "prodigy": ("d_coef", {1.0, 0.5, 0.1}), "prodigy-cosine": ("d_coef", {1.0, 0.5, 0.1}),
             "schedulefree": ("lr", {0.5, 1.0, 2.0}), "schedulefree-adamw": ("lr", {1e-3, 2.5e-3, 1e-2}),
             "dog": ("weight_decay", {0.0, 1e-4, 5e-4})}
    trained: dict[tuple[str, str], set[Any]] = {}
    for run in runs:
        policy = method_class(run.config.method)(run.config)  # what the run will train with
        knob, _ = knobs[run.config.method]
        trained.setdefault((run.config.model, run.config.method), set()).add(policy.setting(knob))
        if run.config.method.startswith("prodigy"):  # the remedies, in every Prodigy run's recorded config
            assert policy.flag("safeguard_warmup") and policy.flag("use_bias_correction")
            assert policy.warmup_epochs == 10 and run.config.extra["safeguard_warmup"] is True
        if run.config.method.startswith("schedulefree"):
            assert policy.fraction("warmup_fraction") == 0.05
        assert {"network", "method", "setting"} <= set(run.cell.values)
    assert trained == {(model, method): values for model in ("mnist1d_cnn", "mnist1d_resnet")
                       for method, (_, values) in knobs.items()}
    assert set(knobs) == {m for m in METHODS if m in PEERS}


def test_the_default_settings_rows_are_the_runs_trained_without_options() -> None:
    runs = get_experiment("mnist1d-tuning-peers").runs(1)
    defaults = [r for r in runs if r.cell.label.endswith(("growth_rate=inf", "schedule-free lr=1", "lr=0.0025",
                                                          "weight_decay=0.0005"))]
    assert len(defaults) == 2 * 5  # D-Adaptation x 2, schedule-free x 2, DoG
    for run in defaults:
        assert run.config.extra == {}
        plain = RunConfig(**{**catalog.MNIST1D_RUN, "model": run.config.model, "method": run.config.method,
                             **catalog.MNIST1D_TUNING_SET}).resolved()
        assert run_name(plain) == run.name


def _cells() -> list[Cell]:
    return list(get_experiment("mnist1d-tuning-peers").cells)


@pytest.mark.parametrize("defect", ["a setting dropped", "on the test set", "a setting twice", "unlabelled",
                                    "a peer missing"])
def test_a_planted_grid_defect_is_refused(defect: str) -> None:
    cells = _cells()
    check_peer_tuning(cells)
    if defect == "a setting dropped":
        cells.pop(1)
    elif defect == "on the test set":
        cells[4] = dataclasses.replace(cells[4], options={k: v for k, v in cells[4].options.items()
                                                         if k != "data_options"})
    elif defect == "a setting twice":
        cells[2] = dataclasses.replace(cells[2], options=cells[1].options, label=cells[2].label + " again")
    elif defect == "unlabelled":
        cells[3] = dataclasses.replace(cells[3], values={"network": "CNN", "method": "D-Adaptation (MultiStep)"})
    else:
        cells = [c for c in cells if c.options["method"] != "dog" or c.options["model"] != "mnist1d_resnet"]
    with pytest.raises(ValueError, match="tuning set|distinct tuning settings|method and setting"):
        check_peer_tuning(cells)


# ------------------------------------------------------------------------------------------ the best setting
def _write_tuning_csv(path: Path, means: dict[str, float], unfinished: frozenset[str] | set[str] = frozenset()) -> Path:
    columns = ["block", "cell", "network", "method", "setting", "n", "n_asked", "mean"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for cell in _cells():
            done = cell.label not in unfinished
            writer.writerow({"block": cell.block, "cell": cell.label, **cell.values, "n": 2 if done else 1,
                             "n_asked": 2, "mean": means.get(cell.label, 90.0)})
    return path


def test_the_best_setting_is_each_peers_highest_mean_on_the_tuning_set(tmp_path: Path) -> None:
    means = {"CNN D-Adaptation (constant) growth_rate=1.02": 95.3, "CNN D-Adaptation (constant) growth_rate=1.01": 95.1,
             "CNN DoG weight_decay=0": 93.3, "ResNet-1D DoG weight_decay=0.0001": 99.9,
             "CNN schedule-free lr=2": 89.0}
    path = _write_tuning_csv(tmp_path / "peers.csv", means)
    best = best_peer_settings("CNN", path)
    assert list(best) == [peer.label for peer in catalog.PEER_GRIDS]
    assert best["D-Adaptation (constant)"].options["extra"] == {"growth_rate": 1.02}
    assert best["DoG"].options["extra"] == {"weight_decay": 0.0}
    assert best["Prodigy"].options["extra"] == catalog.PRODIGY_REMEDIES  # all tie at 90: the first, d_coef 1
    assert best["schedule-free"].options["extra"] == {}  # lr 1 and 0.5 tie at 90: the first; lr 2 is lower
    assert best_peer_settings("ResNet-1D", path)["DoG"].options["extra"] == {"weight_decay": 1e-4}


def test_the_best_setting_needs_every_setting_finished_and_a_committed_table(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sweep and aggregate"):
        best_peer_settings("CNN", tmp_path / "missing.csv")
    path = _write_tuning_csv(tmp_path / "peers.csv", {}, unfinished={"CNN DoG weight_decay=0"})
    with pytest.raises(ValueError, match="DoG on CNN lack finished settings"):
        best_peer_settings("CNN", path)
    with pytest.raises(ValueError, match="no tuning cells for network"):
        best_peer_settings("MLP", path)


def test_tuned_peers_are_the_tuning_sets_best() -> None:
    """mnist1d-tuning-free-tuned runs each peer at the setting the committed tuning CSV ranks best (the test set
    chooses nothing); a hand-edited setting, or a CSV aggregated again with another winner, goes red."""
    from experiments.catalog import MNIST1D_TUNED_PEERS_CNN, best_peer_settings, get_experiment

    best = best_peer_settings("CNN")
    tuned = {cell.options["method"]: cell for cell in get_experiment("mnist1d-tuning-free-tuned").cells
             if cell.label.endswith(", tuned")}
    assert set(tuned) == set(MNIST1D_TUNED_PEERS_CNN)
    for cell in best.values():
        assert tuned[cell.options["method"]].options.get("extra", {}) == cell.options.get("extra", {}), cell.label
