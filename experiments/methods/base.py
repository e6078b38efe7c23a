"""The contract between the trainer and a method: a policy decides the lr and when to stop.

The paper's methods differ only in that decision, so they share one training loop
(``experiments.training.trainer``). A policy sees each epoch's metrics (and, if it wants, each training batch's
predictions) and answers with a :class:`Decision`. How parameters are updated is a
:class:`Stepper`: a plain torch optimizer for most methods, a hyper-optimizer stack for the
Ultimate Optimizer, a tuning-free optimizer (schedule-free, Prodigy, D-Adaptation, DoG) for the others.

A stepper also says what is evaluated. The trainer calls :meth:`Stepper.train_mode` before each epoch's
training and :meth:`Stepper.eval_mode` before evaluating, measuring velocity and checkpointing;
:meth:`Stepper.evaluated_model` is the model that is evaluated, whose velocity is measured and which is saved
as the run's model (DoG's averaged model; the trained model for every other method); with
``recalibrates_batchnorm`` the trainer recomputes that model's BatchNorm statistics before each evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from neve.controller import scale_lr
from neve.velocity import VelocityReport


@dataclass
class EpochResult:
    """What one finished epoch measured; every method gets the velocity, measured on the aux set."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    val_loss: float | None
    val_acc: float | None
    velocity: VelocityReport


@dataclass
class Decision:
    """A policy's answer after an epoch."""

    lr_reduced: bool = False
    #: The method's stopping criterion holds at this epoch (the trainer halts or marks it).
    stop: bool = False
    #: This epoch's model is the one the method reports (best validation loss, Label Wave minimum...).
    keep_weights: bool = False
    #: Extra record columns, e.g. the Label Wave count.
    extra: dict[str, float | int | None] = field(default_factory=dict)


class Stepper:
    """One training step's optimizer mechanics around a torch optimizer."""

    #: The evaluated model's BatchNorm statistics are recomputed before each evaluation (see
    #: ``experiments.training.batchnorm``): its weights are not those the training batches' statistics were gathered at.
    recalibrates_batchnorm: ClassVar[bool] = False

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def train_mode(self) -> None:
        """Before each epoch's training batches (schedule-free: put the parameters at y)."""

    def eval_mode(self) -> None:
        """After each epoch's training, before evaluation, velocity and the checkpoint (schedule-free: x)."""

    def evaluated_model(self, model: nn.Module) -> nn.Module:
        """The model that is evaluated, whose velocity is measured and that is saved: the trained one."""
        return model

    def zero_grad(self) -> None:
        """Called before the forward pass of every batch."""
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.optimizer.step()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def scale_lr(self, factor: float, min_change: float | None = None) -> bool:
        """Every group's lr times ``factor``; with ``min_change``, no cut of that much or less (the authors'
        scheduler). True if an lr changed."""
        return scale_lr(self.optimizer, factor, min_change)

    def record(self) -> dict[str, float]:
        """Extra per-epoch record columns (the Ultimate Optimizer logs what it learned)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


def make_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, adam or adamw")


class Policy:
    """A method: lr and stop decisions. Subclasses override what they need; state is checkpointed."""

    name: ClassVar[str] = ""
    #: Declared at ``register_method`` (``experiments.methods.registry``): its row label, family and package.
    label: ClassVar[str] = ""
    family: ClassVar[str] = ""
    package: ClassVar[str] = ""
    #: Whether the method needs a validation split (``--holdout``).
    needs_holdout: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config

    def build_stepper(self, model: nn.Module) -> Stepper:
        c = self.config
        return Stepper(make_optimizer(model, c.optimizer, lr=c.lr, momentum=c.momentum,
                                      weight_decay=c.weight_decay, betas=tuple(c.betas)))

    def start_training(self, num_train_samples: int) -> None:
        """Once, before the first training batch (also on resume): how many samples the training set has."""

    def start_epoch(self, epoch: int, stepper: Stepper) -> None:
        """Before epoch ``epoch`` (1-based) trains: a schedule sets its lr here."""

    def observe_batch(self, logits: Tensor, labels: Tensor, indices: Tensor) -> None:
        """After each training step, with that step's (detached) predictions and sample indices."""

    def end_epoch(self, result: EpochResult, stepper: Stepper) -> Decision:
        return Decision()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
