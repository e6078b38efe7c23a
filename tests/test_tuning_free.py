"""The tuning-free optimizers (schedule-free, Prodigy, D-Adaptation, DoG) as methods of the one trainer."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_runs import cli, records_without_seconds, wait_for
from torch import nn

from experiments.data import load_data
from experiments.methods import method_class, methods_of
from experiments.training.batchnorm import recalibrate_batchnorm
from experiments.training.config import RunConfig
from experiments.training.records import read_records
from experiments.training.trainer import Trainer, build_aux, build_model, seed_everything, train
from neve.velocity import VelocityMonitor

#: Every method registered in the tuning-free family (``experiments/methods``).
METHODS = tuple(method.name for method in methods_of("tuning-free"))
FAST = dict(dataset="digits", model="resnet8", batch_size=256, aux_size=16, wandb="disabled", progress=False, threads=1,
            num_workers=0)
CLI_FAST = ["--dataset", "digits", "--model", "resnet8", "--batch-size", "256", "--aux-size", "16", "--threads", "1",
            "--wandb", "disabled", "--no-progress"]
#: Each method's own step-size columns, recorded every epoch (``step_size`` at least, for any method).
STEP_COLUMNS = {"schedulefree": ("step_size",), "schedulefree-adamw": ("step_size",),
                "prodigy": ("step_size", "d"), "prodigy-cosine": ("step_size", "d"),
                "dadapt": ("step_size", "d"), "dadapt-multistep": ("step_size", "d"), "dog": ("step_size", "eta")}


@pytest.mark.parametrize("method", METHODS)
def test_run_killed_with_sigkill_resumes_to_the_same_records(method: str, tmp_path: Path) -> None:
    """Straight (in process) vs killed mid-run by SIGKILL and resumed (CLI): every record and the saved model
    agree bit for bit -- schedule-free's x/y switch around the checkpoint and DoG's averager included."""
    epochs = 2
    straight = tmp_path / "straight"
    train(RunConfig(**FAST, method=method, epochs=epochs, out=str(straight)))
    records = read_records(straight)
    for column in STEP_COLUMNS.get(method, ("step_size",)):
        assert all(r[column] > 0 for r in records), column
    assert not any(r["method_stop"] for r in records)

    killed = tmp_path / "killed"
    args = [*CLI_FAST, "--method", method, "--epochs", str(epochs), "--out", str(killed)]
    process = cli(*args)
    wait_for(killed / "checkpoint.pt", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    resumed = cli(*args)
    _, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert "resuming" in err

    assert records_without_seconds(killed) == records_without_seconds(straight)
    final_straight = torch.load(straight / "model.pt", weights_only=True)
    final_killed = torch.load(killed / "model.pt", weights_only=True)
    assert all(torch.equal(final_straight[k], final_killed[k]) for k in final_straight)
    if method == "dog":  # the saved model is the averaged one, not the trained one
        checkpoint = torch.load(straight / "checkpoint.pt", weights_only=True)
        averaged, trained = checkpoint["stepper"]["averager"]["av_model"], checkpoint["model"]
        assert all(torch.equal(final_straight[k], averaged[k]) for k in final_straight)
        assert not torch.equal(final_straight["fc.weight"], trained["fc.weight"])


@pytest.mark.parametrize("method", ["schedulefree", "schedulefree-adamw", "dog"])
def test_velocity_is_measured_on_the_evaluated_model_after_batchnorm_recalibration(method: str,
                                                                                   tmp_path: Path) -> None:
    """Epoch 1's velocity is the change from the initial model to the saved evaluated model (schedule-free's
    x, DoG's average) with the BatchNorm statistics it was evaluated with; for DoG not the trained model's."""
    config = RunConfig(**FAST, method=method, epochs=1, out=str(tmp_path / "run")).resolved()
    train(config)
    velocity = read_records(tmp_path / "run")[0]["model_velocity"]

    def velocity_from_start_to(state: dict) -> float:
        seed_everything(config.seed)  # the trainer's initial model and aux set
        data = load_data(config.dataset, config.data_root, batch_size=config.batch_size, seed=config.seed,
                         device=torch.device("cpu"), num_workers=0)
        model = build_model(config, data).to(memory_format=torch.channels_last)
        monitor = VelocityMonitor(model, build_aux(config, data), mu=config.mu, batch_size=config.aux_batch_size,
                                  velocity_form=config.velocity_form)
        model.load_state_dict(state)
        return monitor.measure().model_velocity

    assert velocity_from_start_to(torch.load(tmp_path / "run" / "model.pt", weights_only=True)) == \
        pytest.approx(velocity, rel=1e-6)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    if method == "dog":
        assert velocity_from_start_to(checkpoint["model"]) != pytest.approx(velocity, rel=1e-3)
    else:  # saved in eval mode (at x), with the statistics 50 training batches give at x
        assert not checkpoint["stepper"]["param_groups"][0]["train_mode"]
        data = load_data(config.dataset, config.data_root, batch_size=config.batch_size, seed=config.seed,
                         device=torch.device("cpu"), num_workers=0)
        model = build_model(config, data).to(memory_format=torch.channels_last)
        model.load_state_dict(checkpoint["model"])
        model.apply(lambda m: m.reset_running_stats() if isinstance(m, nn.BatchNorm2d) else None)
        recalibrate_batchnorm(model, data.train.batches(1), Trainer(config)._forward)
        assert all(torch.equal(value, checkpoint["model"][name]) for name, value in model.state_dict().items())


# --------------------------------------------------------------------------------------- BatchNorm recalibration
def test_recalibration_recomputes_statistics_from_the_batches_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3))
    batches = [(torch.randn(5, 2, 9) * 3 + 1,) for _ in range(4)]
    with torch.no_grad():
        outputs = [model[0](x) for x, in batches[:3]]
    model[1].running_mean.fill_(100.0)  # whatever the buffers held before (after training) does not matter
    model[1].num_batches_tracked.fill_(7)
    used = recalibrate_batchnorm(model, iter(batches), lambda m, x: m(x), num_batches=3)
    assert used == 3 and not model.training and model[1].momentum == 0.1
    expected = torch.stack([o.mean((0, 2)) for o in outputs]).mean(0)  # cumulative average of batch means
    assert torch.allclose(model[1].running_mean, expected, atol=1e-5)


def test_recalibration_leaves_a_model_without_batchnorm_unrun() -> None:
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(21, 4))
    calls = []
    assert recalibrate_batchnorm(model, iter([(torch.randn(2, 2, 9),)]), lambda m, x: calls.append(x)) == 0
    assert not calls and not model.training


# ----------------------------------------------------------------------------- no BatchNorm, Conv1d inputs
def _sequence_net(batchnorm: bool) -> nn.Module:
    torch.manual_seed(0)
    norm = [nn.BatchNorm1d(4)] if batchnorm else []
    return nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), *norm, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3))


@pytest.mark.parametrize("method", METHODS)
def test_methods_train_sequence_models_with_and_without_batchnorm(method: str) -> None:
    """Two epochs of (N, C, L) batches through the trainer's calls: the model learns, the step size is
    recorded, and the evaluated model runs on the same inputs."""
    config = RunConfig(dataset="digits", model="resnet8", method=method, epochs=2, batch_size=8, wandb="disabled",
                       progress=False, device="cpu").resolved()
    trainer = Trainer(config)
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(32, 1, 16, generator=generator)
    labels = (inputs.mean((1, 2)) > 0).long() + (inputs[:, 0, 0] > 1).long()
    batches = [(inputs[i:i + 8], labels[i:i + 8]) for i in range(0, 32, 8)]
    for batchnorm in (False, True):
        model = _sequence_net(batchnorm)
        policy = method_class(method)(config)
        policy.start_training(len(inputs))
        stepper = policy.build_stepper(model)
        before = F.cross_entropy(model(inputs), labels).item()
        for epoch in (1, 2):
            policy.start_epoch(epoch, stepper)
            model.train()
            stepper.train_mode()
            for x, y in batches:
                stepper.zero_grad()
                stepper.backward(F.cross_entropy(trainer._forward(model, x), y))
                stepper.step()
            stepper.eval_mode()
            evaluated = stepper.evaluated_model(model)
            if stepper.recalibrates_batchnorm:
                recalibrate_batchnorm(evaluated, iter(batches), trainer._forward)
            assert all(value is None or value > 0 for value in stepper.record().values())
        with torch.no_grad():
            after = F.cross_entropy(evaluated(inputs), labels).item()
        assert after < before, (method, batchnorm)
        if method == "dog":
            assert stepper.optimizer.param_groups[0]["reps_rel"] == (1e-4 if batchnorm else 1e-6)


# ------------------------------------------------------------------------------------------------ settings
def _stepper(method: str, **options):
    config = RunConfig(**{**FAST, "dataset": "cifar10", "model": "resnet20", "batch_size": 100, **options},
                       method=method).resolved()
    policy = method_class(method)(config)
    policy.start_training(50_000)
    return policy, policy.build_stepper(_sequence_net(batchnorm=True))


def test_each_method_is_built_with_its_authors_settings() -> None:
    policy, stepper = _stepper("schedulefree")  # the paper's CIFAR-10 values, 5% warm-up of 250 x 500 steps
    group = stepper.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"], group["warmup_steps"]) == (10.0, 1e-4, 0.9, 6250)
    assert policy.knows_horizon

    _, stepper = _stepper("schedulefree", optimizer="adam")  # Adam recipes: schedule-free AdamW at their lr
    assert type(stepper.optimizer).__name__ == "AdamWScheduleFree" and stepper.optimizer.param_groups[0]["lr"] == 1e-3

    policy, stepper = _stepper("prodigy")
    group = stepper.optimizer.param_groups[0]
    assert (group["lr"], group["d_coef"], group["decouple"], group["weight_decay"], group["safeguard_warmup"]) == \
        (1.0, 1.0, True, 1e-2, False)
    assert not policy.knows_horizon and policy.lr_factor(250) == 1.0
    policy, _ = _stepper("prodigy-cosine")
    assert policy.knows_horizon and policy.lr_factor(1) == 1.0 and policy.lr_factor(126) == pytest.approx(0.5)

    policy, stepper = _stepper("dadapt")
    group = stepper.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (1.0, 0.9, 5e-4)
    policy, _ = _stepper("dadapt-multistep")
    assert [policy.lr_factor(e) for e in (100, 101, 150, 151)] == pytest.approx([1.0, 0.1, 0.1, 0.01])

    policy, stepper = _stepper("dog")
    group = stepper.optimizer.param_groups[0]
    assert (group["lr"], group["reps_rel"], group["weight_decay"]) == (1.0, 1e-4, 5e-4)
    assert stepper.averager.gamma == 8.0 and not policy.knows_horizon


def test_a_documented_setting_can_be_overridden_and_an_unknown_one_is_refused() -> None:
    _, stepper = _stepper("schedulefree", extra={"lr": 5.0})
    assert stepper.optimizer.param_groups[0]["lr"] == 5.0
    with pytest.raises(ValueError, match="takes no option d_coef"):
        _stepper("dog", extra={"d_coef": 2.0})
    with pytest.raises(ValueError, match="use --method dadapt"):
        _stepper("dadapt-multistep", dataset="imagenet100", model="swinv2_tiny")[0].lr_factor(1)
