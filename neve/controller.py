"""Turning velocity into learning-rate and stopping decisions (spec section 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.optim import Optimizer

from neve.velocity import AuxSet, VelocityMonitor, VelocityReport


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha (the lr decay factor) must be in (0, 1), got {alpha}; the paper uses 0.5")


def check_patience(patience: int) -> None:
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ValueError(f"patience must be an integer >= 0, got {patience!r}; the paper uses 5 or 10")


def check_epsilon(epsilon: float) -> None:
    if not epsilon > 0:
        raise ValueError(f"epsilon (the stop threshold) must be > 0, got {epsilon}; the paper uses 1e-3")


class Plateau:
    """ReduceLROnPlateau's rule in 'min' mode with threshold 0, on any signal.

    A value below the best so far resets the count; otherwise the count grows, and once it exceeds
    ``patience`` the plateau fires (the caller decays the lr) and the detector starts afresh.
    """

    def __init__(self, patience: int) -> None:
        check_patience(patience)
        self.patience = patience
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, value: float) -> bool:
        """Feed one epoch's value; True when the plateau fires."""
        if value < self.best:
            self.best, self.bad_epochs = value, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.best, self.bad_epochs = math.inf, 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"patience": self.patience, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.patience, self.best, self.bad_epochs = state["patience"], state["best"], state["bad_epochs"]


class NeVeRule:
    """NeVe's decisions from velocity reports alone: decay on a plateau of D^t, stop when V^t < epsilon."""

    def __init__(self, *, alpha: float = 0.5, patience: int = 10, epsilon: float = 1e-3) -> None:
        check_alpha(alpha)
        check_epsilon(epsilon)
        self.alpha, self.epsilon = alpha, epsilon
        self.plateau = Plateau(patience)
        self.stop_epoch: int | None = None

    def decide(self, report: VelocityReport) -> tuple[bool, bool]:
        """(reduce the lr now, velocity is below epsilon now) for the epoch of ``report``."""
        reduce = report.velocity_change is not None and self.plateau.step(report.velocity_change)
        stop = report.model_velocity < self.epsilon
        if stop and self.stop_epoch is None:
            self.stop_epoch = report.epoch
        return reduce, stop

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "epsilon": self.epsilon, "plateau": self.plateau.state_dict(),
                "stop_epoch": self.stop_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha, self.epsilon, self.stop_epoch = state["alpha"], state["epsilon"], state["stop_epoch"]
        self.plateau.load_state_dict(state["plateau"])


def scale_lr(optimizer: Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] *= factor


@dataclass
class NeVeDecision:
    """What NeVe decided after one epoch."""

    epoch: int
    model_velocity: float
    velocity_change: float | None
    lr: float
    lr_reduced: bool
    stop: bool
    report: VelocityReport


class NeVe:
    """Velocity-driven lr decay and stopping for any training loop: call ``step()`` after each epoch.

    Construction takes the t = 0 reference, so build it before the first epoch. ``step()`` measures
    the velocity, decays every param group's lr by ``alpha`` when the velocity change plateaus for
    more than ``patience`` epochs, and reports ``stop`` when the velocity is below ``epsilon``.
    Extra keyword arguments (``modules=``, ``batch_size=``) go to :class:`VelocityMonitor`.
    """

    def __init__(self, model: nn.Module, optimizer: Optimizer, aux: AuxSet, *, alpha: float = 0.5,
                 patience: int = 10, epsilon: float = 1e-3, mu: float = 0.5, **monitor_options: Any) -> None:
        self.rule = NeVeRule(alpha=alpha, patience=patience, epsilon=epsilon)
        self.optimizer = optimizer
        self.monitor = VelocityMonitor(model, aux, mu=mu, **monitor_options)

    @property
    def stop_epoch(self) -> int | None:
        """The first epoch whose velocity was below epsilon, if any."""
        return self.rule.stop_epoch

    def step(self) -> NeVeDecision:
        report = self.monitor.measure()
        reduce, stop = self.rule.decide(report)
        if reduce:
            scale_lr(self.optimizer, self.rule.alpha)
        lr = self.optimizer.param_groups[0]["lr"]
        return NeVeDecision(report.epoch, report.model_velocity, report.velocity_change, lr, reduce, stop, report)

    def state_dict(self) -> dict[str, Any]:
        """Controller and monitor state; the optimizer (and its lr) is saved by its owner."""
        return {"rule": self.rule.state_dict(), "monitor": self.monitor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state["rule"])
        self.monitor.load_state_dict(state["monitor"])
