"""The optimizers and schedulers NeVe drives: arguments checked when it is built, and the lr changes it was not
told about seen at the next step."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import neve


def setup(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    return model, torch.optim.SGD(model.parameters(), lr=0.2), neve.gaussian_aux(16, (6,))


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: object = None, epoch: int = 0) -> None:
    generator = torch.Generator().manual_seed(epoch)
    for _ in range(4):
        x = torch.randn(16, 6, generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), (x[:, 0] > 0).long()).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize("optimizer, message", [
    (None, "optimizer is None: pass the optimizer that trains the model"),
    ([], "empty list"),
    ("parameters", r"got model parameters \(generator\), not an optimizer"),
    ("tensors", r"got model parameters \(Parameter\), not an optimizer"),
    ("scheduler", r"got a learning-rate scheduler \(StepLR\): pass its optimizer as optimizer="),
    ("model", "must be a torch.optim optimizer"),
])
def test_what_people_pass_as_the_optimizer_by_mistake(optimizer, message):
    model, sgd, aux = setup()
    named = {"parameters": model.parameters(), "tensors": list(model.parameters()), "model": model,
             "scheduler": torch.optim.lr_scheduler.StepLR(sgd, 10)}
    given = named[optimizer] if isinstance(optimizer, str) else optimizer
    with pytest.raises((TypeError, ValueError), match=message):
        neve.NeVe(model, given, aux)


def test_scheduler_arguments_are_checked():
    model, optimizer, aux = setup()
    with pytest.raises(TypeError, match="scheduler= got an optimizer"):
        neve.NeVe(model, optimizer, aux, scheduler=optimizer)
    _, other_optimizer, _ = setup()
    with pytest.raises(ValueError, match="drives an optimizer NeVe was not given"):
        neve.NeVe(model, optimizer, aux, scheduler=torch.optim.lr_scheduler.StepLR(other_optimizer, 10))
    with pytest.raises(ValueError, match="cannot compose with OneCycleLR"):
        neve.NeVe(model, optimizer, aux, scheduler=torch.optim.lr_scheduler.OneCycleLR(optimizer, 1.0, 100))


def test_an_optimizer_of_another_model_is_refused():
    model, _, aux = setup()
    _, other_optimizer, _ = setup()
    with pytest.raises(ValueError, match="none of the model's parameters is in the optimizer.*trainable="):
        neve.NeVe(model, other_optimizer, aux)


def test_a_scheduler_not_passed_is_seen_at_the_next_step():
    model, optimizer, aux = setup()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # undoes any cut of the lr
    controller = neve.NeVe(model, optimizer, aux, patience=0)
    train_epoch(model, optimizer, scheduler)
    with pytest.warns(UserWarning, match="'initial_lr'.*none was passed to NeVe as scheduler="):
        controller.step()


def test_an_lr_grown_back_after_a_cut_is_seen_at_the_next_step():
    model, optimizer, aux = setup()
    controller = neve.NeVe(model, optimizer, aux, patience=0, epsilon=1e-9)
    for epoch in range(12):  # patience 0: the plateau fires within a few epochs
        train_epoch(model, optimizer, epoch=epoch)
        if controller.step().lr_reduced:
            break
    assert optimizer.param_groups[0]["lr"] == 0.1
    optimizer.param_groups[0]["lr"] = 0.2  # something other than NeVe resets it
    train_epoch(model, optimizer)
    with pytest.warns(UserWarning, match=r"the lr grew from 0.1 \(NeVe's last cut\) to 0.2"):
        controller.step()


def test_a_scheduler_passed_to_neve_keeps_the_cut_without_a_warning():
    model, optimizer, aux = setup()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + 0.01 * step))
    controller = neve.NeVe(model, optimizer, aux, patience=0, epsilon=1e-9, scheduler=scheduler)
    cuts = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epoch in range(8):
            train_epoch(model, optimizer, scheduler, epoch)
            cuts += controller.step().lr_reduced
    assert cuts >= 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * 0.5 ** cuts / (1 + 0.01 * scheduler.last_epoch))
