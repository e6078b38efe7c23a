"""Turning velocity into learning-rate and stopping decisions (spec section 3)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CyclicLR, LRScheduler, OneCycleLR

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


#: How the plateau detector drives the lr: ``paper`` (ReduceLROnPlateau on D^t, spec section 3) or ``code``
#: (the authors' scheduler: not stepped when D^t is exactly 0, and a cut that would lower the lr by
#: :data:`CODE_LR_EPS` or less is skipped).
PLATEAU_RULES = ("paper", "code")
#: torch ReduceLROnPlateau's ``eps``, which the authors' scheduler keeps (with ``min_lr`` 0): a cut that changes
#: the lr by 1e-8 or less is not applied, so the lr stops decaying just above 1e-8 (alpha 0.5 from 0.1: 1.19e-8).
CODE_LR_EPS = 1e-8


def check_plateau_rule(rule: str) -> None:
    if rule not in PLATEAU_RULES:
        raise ValueError(f"plateau_rule must be one of {PLATEAU_RULES}, got {rule!r}: 'paper' is spec section 3, "
                         "'code' the authors' scheduler")


def min_lr_change(plateau_rule: str) -> float | None:
    """The smallest lr cut the rule applies (None: every cut), for :func:`scale_lr`."""
    check_plateau_rule(plateau_rule)
    return CODE_LR_EPS if plateau_rule == "code" else None


def decayed_lr(lr: float, factor: float, min_change: float | None = None) -> float:
    """``lr * factor``; with ``min_change``, ``lr`` unchanged when the cut would be no larger than it
    (ReduceLROnPlateau: ``if old_lr - new_lr > eps``)."""
    new = lr * factor
    if min_change is not None and not lr - new > min_change:
        return lr
    return new


def neve_stops(model_velocity: float, epsilon: float) -> bool:
    """NeVe's stop test (spec section 3): the model's velocity V^t is below epsilon. The one definition, for
    :class:`NeVeRule` and for anyone recording where NeVe would have stopped (NaN never stops)."""
    return model_velocity < epsilon


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
    """NeVe's decisions from velocity reports alone: decay on a plateau of D^t, stop when V^t < epsilon.

    ``plateau_rule="code"`` reproduces the authors' scheduler: an epoch whose D^t is exactly 0 does not step
    the plateau detector (their ``if mse:`` test), and the caller applies the cut with
    ``min_change=rule.min_lr_change`` (no cut of 1e-8 or less).
    """

    def __init__(self, *, alpha: float = 0.5, patience: int = 10, epsilon: float = 1e-3,
                 plateau_rule: str = "paper") -> None:
        check_alpha(alpha)
        check_epsilon(epsilon)
        self.min_lr_change = min_lr_change(plateau_rule)
        self.alpha, self.epsilon, self.plateau_rule = alpha, epsilon, plateau_rule
        self.plateau = Plateau(patience)
        self.stop_epoch: int | None = None

    def decide(self, report: VelocityReport) -> tuple[bool, bool]:
        """(the plateau fired: cut the lr now, velocity is below epsilon now) for the epoch of ``report``."""
        change = report.velocity_change
        stepped = change is not None and not (self.plateau_rule == "code" and change == 0.0)
        reduce = stepped and self.plateau.step(change)
        stop = neve_stops(report.model_velocity, self.epsilon)
        if stop and self.stop_epoch is None:
            self.stop_epoch = report.epoch
        return reduce, stop

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "epsilon": self.epsilon, "plateau_rule": self.plateau_rule,
                "plateau": self.plateau.state_dict(), "stop_epoch": self.stop_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rule = state.get("plateau_rule", "paper")  # states written before the code rule existed are the paper's
        if rule != self.plateau_rule:
            raise ValueError(f"this NeVe state was taken with plateau_rule={rule!r}, this rule uses "
                             f"{self.plateau_rule!r}; resume with the same plateau rule (--plateau-rule / --fidelity)")
        self.alpha, self.epsilon, self.stop_epoch = state["alpha"], state["epsilon"], state["stop_epoch"]
        self.plateau.load_state_dict(state["plateau"])


def scale_lr(optimizer: Optimizer, factor: float, min_change: float | None = None) -> bool:
    """Every param group's lr times ``factor`` (see :func:`decayed_lr` for ``min_change``); True if one changed."""
    changed = False
    for group in optimizer.param_groups:
        new = decayed_lr(group["lr"], factor, min_change)
        changed = changed or new != group["lr"]
        group["lr"] = new
    return changed


#: Schedulers that set the lr from their own max/min lrs each step, so a cut of base_lrs does not last.
UNCOMPOSABLE_SCHEDULERS: tuple[type, ...] = (OneCycleLR, CyclicLR)


def flat_schedulers(schedulers: Any) -> list[Any]:
    """The schedulers inside ``schedulers`` (one, a sequence, SequentialLR / ChainedScheduler, an
    accelerate wrapper), each once, in order."""
    if schedulers is None:
        return []
    if isinstance(schedulers, Iterable) and not isinstance(schedulers, LRScheduler):
        return [leaf for item in schedulers for leaf in flat_schedulers(item)]
    inner = getattr(schedulers, "_schedulers", None)  # SequentialLR, ChainedScheduler
    if inner is not None:
        return flat_schedulers(list(inner))
    wrapped = getattr(schedulers, "scheduler", None)  # accelerate's AcceleratedScheduler
    if wrapped is not None and not hasattr(schedulers, "base_lrs"):
        return flat_schedulers(wrapped)
    return [schedulers]


def check_composable(schedulers: Any) -> None:
    """NeVe composes with a scheduler by scaling its ``base_lrs`` with the lr; refuse those it cannot."""
    for scheduler in flat_schedulers(schedulers):
        if isinstance(scheduler, UNCOMPOSABLE_SCHEDULERS):
            raise ValueError(f"NeVe cannot compose with {type(scheduler).__name__}: it recomputes the lr from its "
                             "own max_lr at every step and would undo NeVe's decays. Use a scheduler that scales "
                             "base_lrs (LambdaLR, the HF linear/cosine schedules, StepLR, CosineAnnealingLR, ...), "
                             "or none")


def decay_lr(optimizers: Sequence[Optimizer], factor: float, min_change: float | None = None,
             schedulers: Any = None) -> bool:
    """Every param group of every optimizer times ``factor`` (see :func:`decayed_lr` for ``min_change``),
    and so that the cut outlasts a scheduler's next step, its ``base_lrs`` (and the groups' ``initial_lr``) for
    the groups cut; True if one changed."""
    cut: set[int] = set()
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            new = decayed_lr(group["lr"], factor, min_change)
            if new != group["lr"]:
                cut.add(id(group))
                group["lr"] = new
                if "initial_lr" in group:
                    group["initial_lr"] *= factor
    for scheduler in flat_schedulers(schedulers):
        groups = scheduler.optimizer.param_groups
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr * factor if id(g) in cut else lr for lr, g in zip(scheduler.base_lrs, groups,
                                                                                      strict=True)]
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [g["lr"] for g in groups]  # get_last_lr() reports the cut at once
    return bool(cut)


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
    Extra keyword arguments (``modules=``, ``batch_size=``, ``distributed=``) go to :class:`VelocityMonitor`.

    ``optimizer`` may be several optimizers (each decayed); ``scheduler`` (one or several lr schedulers)
    gets its ``base_lrs`` cut with the lr, so schedulers that recompute the lr from them (LambdaLR, HF's
    warmup/linear schedules) keep the decay. Under DDP / torchrun every rank measures a shard of the aux
    set and gets the same velocities, so every rank takes the same decision (see :mod:`neve.distributed`).

    The paper's text is the default; the authors' code differs in two places, each selectable:
    ``velocity_form="signed"`` (no absolute value in the recursion, see
    :class:`~neve.velocity.VelocityTracker`) and ``plateau_rule="code"`` (no plateau step when D^t == 0,
    no lr cut of 1e-8 or less).
    """

    def __init__(self, model: nn.Module, optimizer: Optimizer | Sequence[Optimizer], aux: AuxSet, *,
                 alpha: float = 0.5, patience: int = 10, epsilon: float = 1e-3, mu: float = 0.5,
                 velocity_form: str = "paper", plateau_rule: str = "paper", scheduler: Any = None,
                 **monitor_options: Any) -> None:
        self.rule = NeVeRule(alpha=alpha, patience=patience, epsilon=epsilon, plateau_rule=plateau_rule)
        self.optimizers: list[Optimizer] = [optimizer] if hasattr(optimizer, "param_groups") else list(optimizer)
        check_composable(scheduler)
        self.schedulers = flat_schedulers(scheduler)
        self.monitor = VelocityMonitor(model, aux, mu=mu, velocity_form=velocity_form, **monitor_options)

    @property
    def optimizer(self) -> Optimizer:
        """The first optimizer (the one whose lr the decisions report)."""
        return self.optimizers[0]

    @property
    def stop_epoch(self) -> int | None:
        """The first epoch whose velocity was below epsilon, if any."""
        return self.rule.stop_epoch

    def step(self) -> NeVeDecision:
        report = self.monitor.measure()
        reduce, stop = self.rule.decide(report)
        reduced = reduce and decay_lr(self.optimizers, self.rule.alpha, self.rule.min_lr_change, self.schedulers)
        lr = self.optimizers[0].param_groups[0]["lr"]
        return NeVeDecision(report.epoch, report.model_velocity, report.velocity_change, lr, reduced, stop, report)

    def state_dict(self) -> dict[str, Any]:
        """Controller and monitor state; the optimizers and schedulers (and the lr) are saved by their owner."""
        return {"rule": self.rule.state_dict(), "monitor": self.monitor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state["rule"])
        self.monitor.load_state_dict(state["monitor"])
