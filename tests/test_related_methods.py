"""The two related-work methods of Table I (Ultimate Optimizer, Label Wave) and the label-noise setting."""

from __future__ import annotations

import gc
import io
import json
import weakref
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_runs import kill_after_first_checkpoint, records_without_seconds, resume_and_check_it_resumed
from torch import nn

from experiments.data import load_data, symmetric_label_noise
from experiments.methods import EpochResult, Stepper, method_class
from experiments.methods.labelwave import LabelWave
from experiments.methods.ultimate import UltimateStepper
from experiments.models import create_model
from experiments.training.config import RunConfig
from experiments.training.records import read_records
from experiments.training.trainer import Trainer, train

FAST = dict(dataset="digits", model="resnet8", batch_size=128, aux_size=16, wandb="disabled", progress=False,
            num_workers=0)
CLI_FAST = ["--dataset", "digits", "--model", "resnet8", "--batch-size", "128", "--aux-size", "16",
            "--wandb", "disabled", "--no-progress"]


def _roundtrip(state: dict) -> dict:
    """Through torch.save and torch.load, as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


# ----------------------------------------------------------------------------------------- Ultimate Optimizer
def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 3)).to(memory_format=torch.channels_last)


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 1, 8, 8, generator=generator).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 3, (16,), generator=generator)) for _ in range(n)]


def _train_steps(model: nn.Module, stepper: UltimateStepper, batches: list) -> None:
    model.train()
    for images, labels in batches:  # the trainer's order of calls
        stepper.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        stepper.backward(loss)
        stepper.step()


def _graph_size(tensor: torch.Tensor) -> int:
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def test_ultimate_learns_lr_and_momentum_with_flat_memory() -> None:
    model = _tiny_net()
    stepper = UltimateStepper(model, lr=0.1, momentum=0.9)
    assert stepper.lr == pytest.approx(0.1) and stepper.momentum == pytest.approx(0.9)
    batches = _batches(40)
    _train_steps(model, stepper, batches[:5])
    old_weight = weakref.ref(model[0].weight)
    graph_early = _graph_size(model[0].weight)
    _train_steps(model, stepper, batches[5:])
    gc.collect()
    # gdtuo keeps one step of history: older parameters (and their graphs) are freed, memory stays flat.
    assert old_weight() is None
    assert _graph_size(model[0].weight) == graph_early
    assert stepper.lr != pytest.approx(0.1, abs=1e-7) and stepper.momentum != pytest.approx(0.9, abs=1e-9)
    assert set(stepper.record()) == {"learned_lr", "learned_momentum"}
    # The model stays an ordinary module for everything else: detached weights, no-grad evaluation.
    assert all(not v.requires_grad for v in model.state_dict().values())
    with torch.no_grad():
        assert model(batches[0][0]).shape == (16, 3)
    with pytest.raises(NotImplementedError, match="learns its lr"):
        stepper.set_lr(0.01)
    with pytest.raises(NotImplementedError, match="learns its lr"):
        stepper.scale_lr(0.5)


def test_ultimate_state_restores_every_learned_hyperparameter_exactly() -> None:
    batches = _batches(10)
    model = _tiny_net()
    stepper = UltimateStepper(model, lr=0.1, momentum=0.9)
    _train_steps(model, stepper, batches[:5])
    saved_model, saved_stepper = _roundtrip(model.state_dict()), _roundtrip(stepper.state_dict())

    def resumed(state: dict) -> tuple[nn.Module, UltimateStepper]:
        again = _tiny_net()  # a fresh process: new model, checkpoint weights loaded, then the stepper
        again.load_state_dict(saved_model)
        stepper_again = UltimateStepper(again, lr=0.1, momentum=0.9)
        stepper_again.load_state_dict(state)
        return again, stepper_again

    again, stepper_again = resumed(saved_stepper)
    assert (stepper_again.lr, stepper_again.momentum) == (stepper.lr, stepper.momentum)
    _train_steps(model, stepper, batches[5:])
    _train_steps(again, stepper_again, batches[5:])
    assert stepper_again.record() == stepper.record()
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name

    # Without the last step's replay the first hypergradient after the resume is lost, and the run drifts:
    # the replay is what makes the resume exact.
    lossy, stepper_lossy = resumed({**saved_stepper, "last_step": None})
    _train_steps(lossy, stepper_lossy, batches[5:])
    assert stepper_lossy.lr != stepper.lr


def test_ultimate_takes_sgd_only() -> None:
    config = RunConfig(**FAST, method="ultimate", optimizer="adam").resolved()
    with pytest.raises(ValueError, match="--optimizer adam"):
        method_class("ultimate")(config).build_stepper(_tiny_net())


def test_ultimate_run_killed_with_sigkill_resumes_to_the_same_records(tmp_path: Path) -> None:
    epochs = 3
    straight = tmp_path / "straight"
    summary = train(RunConfig(**FAST, method="ultimate", epochs=epochs, out=str(straight)))
    records = read_records(straight)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(r["learned_lr"] is not None and r["learned_momentum"] is not None for r in records)
    # The lr column is the lr an epoch starts with: what the previous epoch had learned.
    assert records[0]["lr"] == pytest.approx(0.05)
    assert [r["lr"] for r in records[1:]] == [r["learned_lr"] for r in records[:-1]]
    assert records[-1]["learned_lr"] != pytest.approx(0.05, abs=1e-7)
    assert not any(r["method_stop"] or r["kept_weights"] or r["lr_reduced"] for r in records)
    assert summary["stop_epoch"] is None and summary["epochs_run"] == epochs and summary["kept_epoch"] is None

    killed = tmp_path / "killed"
    args = [*CLI_FAST, "--method", "ultimate", "--epochs", str(epochs)]
    before_kill = kill_after_first_checkpoint(args, killed)
    assert len(before_kill) < epochs
    resume_and_check_it_resumed(args, killed, before_kill, epochs)

    assert records_without_seconds(killed) == records_without_seconds(straight)
    final_straight = torch.load(straight / "model.pt", weights_only=True)
    final_killed = torch.load(killed / "model.pt", weights_only=True)
    assert all(torch.equal(final_straight[k], final_killed[k]) for k in final_straight)


# ------------------------------------------------------------------------------------------------- Label Wave
def _scripted_counts(policy: LabelWave, counts: list[int | None], samples: int = 24,
                     classes: int = 4) -> list:
    """Drive the policy epoch by epoch; each epoch's predictions differ from the previous epoch's in exactly
    ``counts[e]`` samples (epoch 1: anything). Returns the decisions."""
    stepper = Stepper(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    predicted = torch.arange(samples) % classes
    decisions = []
    for epoch, count in enumerate(counts, start=1):
        policy.start_epoch(epoch, stepper)
        if count:
            predicted = predicted.clone()
            predicted[:count] = (predicted[:count] + 1) % classes
        order = torch.randperm(samples, generator=torch.Generator().manual_seed(epoch))
        for indices in order.split(10):  # shuffled batches, as the training stream gives them
            logits = F.one_hot(predicted[indices], classes).float()
            policy.observe_batch(logits, predicted[indices], indices)
        decisions.append(policy.end_epoch(EpochResult(epoch, 1.0, 0.5, 1.0, 0.5, None, None, None), stepper))
    return decisions


def test_label_wave_stops_where_the_scripted_counts_say() -> None:
    config = RunConfig(**FAST, method="labelwave", patience=3, epochs=12).resolved()
    counts = [None, 10, 8, 8, 9, 3, 5, 3, 4, 0, 1]
    # epoch:    1   2   3  4  5  6  7  8  9  10 11
    # New minima (strictly lower) at 2, 3, 6; ties (4, 8) are none; 3 epochs without one after 6 -> stop at 9.
    # After the stop (--stop mark goes on) the kept model stays epoch 6's, even at epoch 10's lower count.
    decisions = _scripted_counts(LabelWave(config), counts)
    assert [d.extra["prediction_changes"] for d in decisions] == counts
    assert [e for e, d in enumerate(decisions, 1) if d.keep_weights] == [2, 3, 6]
    assert [e for e, d in enumerate(decisions, 1) if d.stop] == [9, 10, 11]
    assert not any(d.lr_reduced for d in decisions)  # the recipe's milestones are at 20 and 30

    # A checkpointed and restored policy decides the rest of the run exactly as the original.
    original = LabelWave(config)
    head = _scripted_counts(original, counts[:7])
    restored = LabelWave(config)
    restored.load_state_dict(_roundtrip(original.state_dict()))
    assert torch.equal(restored.predictions, original.predictions)
    stepper = Stepper(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    predicted = original.predictions.clone()
    tail = []
    for epoch, count in enumerate(counts[7:], start=8):
        predicted[:count] = (predicted[:count] + 1) % 4
        restored.observe_batch(F.one_hot(predicted, 4).float(), predicted, torch.arange(len(predicted)))
        tail.append(restored.end_epoch(EpochResult(epoch, 1.0, 0.5, 1.0, 0.5, None, None, None), stepper))
    assert [(d.stop, d.keep_weights, d.extra) for d in head + tail] == \
        [(d.stop, d.keep_weights, d.extra) for d in decisions]


def test_label_wave_follows_the_recipe_schedule() -> None:
    config = RunConfig(**FAST, method="labelwave", epochs=4, milestones=(2, 3)).resolved()
    decisions = _scripted_counts(LabelWave(config), [None, 5, 4, 3])
    assert [d.lr_reduced for d in decisions] == [False, True, True, False]


def test_label_wave_run_keeps_the_model_of_the_minimum_with_label_noise(tmp_path: Path) -> None:
    # Patience 0 stops at epoch 2 (its count is the first minimum); --stop mark trains on to epoch 3, so the
    # kept model (epoch 2) and the final model (epoch 3) differ.
    config = RunConfig(**FAST, method="labelwave", epochs=3, patience=0, stop="mark", label_noise=0.4,
                       out=str(tmp_path / "run"))
    summary = train(config)
    records = read_records(tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[0]["prediction_changes"] is None
    assert all(isinstance(r["prediction_changes"], int) and r["prediction_changes"] > 0 for r in records[1:])
    assert [r["method_stop"] for r in records] == [0, 1, 1]
    assert [r["kept_weights"] for r in records] == [0, 1, 0]
    assert summary["stop_epoch"] == summary["kept_epoch"] == 2
    assert summary["test_acc_at_kept"] == records[1]["test_acc"]

    kept = torch.load(tmp_path / "run" / "kept_model.pt", weights_only=True)
    assert kept["epoch"] == 2
    trainer = Trainer(config)
    data = load_data("digits", trainer.config.data_root, batch_size=128)
    model = create_model("resnet8", data.num_classes, in_chans=1, image_size=16)
    model.load_state_dict(kept["model"])
    assert trainer._evaluate(model, data.test).acc == records[1]["test_acc"]

    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["label_noise"] == 0.4 and written["method"] == "labelwave" and written["patience"] == 0


# ------------------------------------------------------------------------------------------------ label noise
def _training_labels(**options) -> tuple[torch.Tensor, torch.Tensor]:
    """The training labels a run with these options trains on (the trainer's own load_data call)."""
    c = RunConfig(**FAST, method="labelwave", **options).resolved()
    data = load_data(c.dataset, c.data_root, batch_size=c.batch_size, holdout=c.holdout,
                     label_noise=c.label_noise, seed=c.seed)
    return data.train.labels, data.train.clean_labels


def test_label_noise_rate_and_seed_give_the_same_corrupted_labels() -> None:
    noisy, clean = _training_labels(label_noise=0.4, seed=0)
    again, clean_again = _training_labels(label_noise=0.4, seed=0)
    assert torch.equal(noisy, again) and torch.equal(clean, clean_again)
    other_seed, clean_other = _training_labels(label_noise=0.4, seed=1)
    assert torch.equal(clean, clean_other) and not torch.equal(noisy, other_seed)
    assert torch.equal(noisy, symmetric_label_noise(clean, 0.4, 10, seed=0))
    # Symmetric: about 40% of the labels changed, each to another class, every class still present.
    changed = noisy != clean
    assert abs(float(changed.float().mean()) - 0.4) < 0.05
    assert set(noisy[changed].tolist()) == set(range(10))
    # Clean labels are the default.
    labels, clean_default = _training_labels(seed=0)
    assert torch.equal(labels, clean_default) and torch.equal(clean_default, clean)


def test_label_wave_sized_up_front_decides_as_when_it_grows() -> None:
    config = RunConfig(**FAST, method="labelwave", patience=3, epochs=12).resolved()
    counts = [None, 10, 8, 8, 9, 3, 5, 3, 4, 0, 1]
    grown = _scripted_counts(LabelWave(config), counts)
    sized_policy = LabelWave(config)
    sized_policy.start_training(24)
    sized = _scripted_counts(sized_policy, counts)
    assert len(sized_policy.predictions) == 24
    assert [(d.stop, d.keep_weights, d.extra) for d in sized] == [(d.stop, d.keep_weights, d.extra) for d in grown]
    other_size = LabelWave(config)
    other_size.start_training(30)
    with pytest.raises(ValueError, match="training samples"):
        other_size.load_state_dict(sized_policy.state_dict())
