"""Turning velocity into learning-rate and stopping decisions (spec section 3)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist
from torch import nn
from torch.optim import Optimizer

from neve.distributed import agree
from neve.forward import model_device, unwrap_model
from neve.lr import (  # noqa: F401  (decayed_lr, scale_lr, ... are part of this module's API)
    UNCOMPOSABLE_SCHEDULERS,
    LrWatch,
    check_composable,
    check_optimizers,
    check_schedulers,
    decay_lr,
    decayed_lr,
    flat_schedulers,
    scale_lr,
    trained_parameters,
)
from neve.resume import check_settings_choice, reconcile
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
        """The patience, the best value so far and the count of epochs without a new best."""
        return {"patience": self.patience, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the detector, its saved patience included (NeVeRule checks settings against its own)."""
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
        """Settings, the plateau detector and the stop epoch: what a resumed run needs to decide alike."""
        return {"alpha": self.alpha, "epsilon": self.epsilon, "plateau_rule": self.plateau_rule,
                "plateau": self.plateau.state_dict(), "stop_epoch": self.stop_epoch}

    def check_plateau_rule(self, state: dict[str, Any]) -> None:
        """Refuse a state taken under the other plateau rule (its counters mean something else)."""
        rule = state.get("plateau_rule", "paper")  # states written before the code rule existed are the paper's
        if rule != self.plateau_rule:
            raise ValueError(f"this NeVe state was taken with plateau_rule={rule!r}, this rule uses "
                             f"{self.plateau_rule!r}; resume with the same plateau rule (--plateau-rule / --fidelity)")

    def settings(self) -> dict[str, Any]:
        """The constructor's settings a saved state is checked against."""
        return {"alpha": self.alpha, "patience": self.plateau.patience, "epsilon": self.epsilon}

    def load_state_dict(self, state: dict[str, Any], *, settings: str = "same") -> dict[str, tuple[Any, Any]]:
        """Restore the plateau detector and the stop epoch. If the state's ``alpha``, ``patience`` or ``epsilon``
        differ from this rule's, ``settings="same"`` raises, ``"new"`` keeps this rule's, ``"saved"`` takes the
        state's. Returns the settings that differed, name -> (saved, now)."""
        self.check_plateau_rule(state)
        saved = {"alpha": state["alpha"], "patience": state["plateau"]["patience"], "epsilon": state["epsilon"]}
        ours = self.settings()
        changed = reconcile(saved, ours, settings, "NeVe rule")
        chosen = saved if settings == "saved" else ours
        self.plateau.load_state_dict(state["plateau"])
        self.alpha, self.epsilon, self.plateau.patience = chosen["alpha"], chosen["epsilon"], chosen["patience"]
        self.stop_epoch = state["stop_epoch"]
        return changed




@dataclass
class NeVeDecision:
    """What NeVe decided after one epoch."""

    epoch: int
    model_velocity: float
    velocity_change: float | None
    lr: float
    lr_reduced: bool
    stop: bool
    #: The measurement (None if nothing was measured yet).
    report: VelocityReport | None
    #: False when ``step()`` measured nothing because no trained parameter changed since the last measurement;
    #: the other fields then repeat the last measurement's (V = nan before the first), never with a cut or stop.
    measured: bool = True


class NeVe:
    """Velocity-driven lr decay and stopping for any training loop: call ``step()`` after each epoch.

    Construction runs the model once on an aux batch, settles which modules are measured (logged, and in
    ``neve.monitor.modules``; see :class:`~neve.velocity.VelocityMonitor`) and takes the t = 0 reference, so
    build it before the first epoch. ``step()`` measures the velocity, decays every param group's lr by
    ``alpha`` when the velocity change plateaus for more than ``patience`` epochs, and reports ``stop`` when
    the velocity is below ``epsilon``. Extra keyword arguments (``modules=``, ``batch_size=``,
    ``distributed=``, ``trainable=``) go to :class:`~neve.velocity.VelocityMonitor`; by default the parameters
    that train are those in the optimizers' param groups with ``requires_grad``, and modules no trained
    parameter reaches (a frozen backbone) are not measured.

    ``optimizer`` may be several optimizers (each decayed). ``scheduler`` (one or several lr schedulers) gets
    its ``base_lrs`` cut with the lr, so schedulers that recompute the lr from them (LambdaLR, HF's
    warmup/linear schedules) keep the decay; a scheduler not passed here would undo it, and NeVe warns when it
    sees signs of one. Under DDP / torchrun every rank measures a shard of the aux set and gets the same
    velocities, so every rank takes the same decision (see :mod:`neve.distributed`). ``verbose=True`` prints a
    line (on rank 0) for the modules measured, each lr cut, and the stop.

    The paper's text is the default; the authors' code differs in two places, each selectable:
    ``velocity_form="signed"`` (no absolute value in the recursion, see
    :class:`~neve.velocity.VelocityTracker`) and ``plateau_rule="code"`` (no plateau step when D^t == 0,
    no lr cut of 1e-8 or less).
    """

    def __init__(self, model: nn.Module, optimizer: Optimizer | Sequence[Optimizer], aux: AuxSet, *,
                 alpha: float = 0.5, patience: int = 10, epsilon: float = 1e-3, mu: float = 0.5,
                 velocity_form: str = "paper", plateau_rule: str = "paper", scheduler: Any = None,
                 verbose: bool = False, **monitor_options: Any) -> None:
        self.rule = NeVeRule(alpha=alpha, patience=patience, epsilon=epsilon, plateau_rule=plateau_rule)
        self.optimizers: list[Optimizer] = check_optimizers(optimizer)
        self.schedulers = check_schedulers(scheduler, self.optimizers)
        self.verbose = verbose
        trained = trained_parameters(self.optimizers)
        if "trainable" not in monitor_options:
            ids = {id(p) for p in trained}
            if not any(id(p) in ids for p in unwrap_model(model).parameters()):
                raise ValueError("none of the model's parameters is in the optimizer with requires_grad=True: pass "
                                 "the optimizer that trains this model; to measure a copy of it (an EMA or averaged "
                                 "model), pass trainable=<the copy's parameters that change>")
            monitor_options["trainable"] = trained
        self.monitor = VelocityMonitor(model, aux, mu=mu, velocity_form=velocity_form, **monitor_options)
        self._trained_ids = {id(p) for p in trained}
        self._lr_watch = LrWatch(self.schedulers)
        self._warned_frozen_change = False
        self._last: NeVeDecision | None = None
        self._say(self.monitor.summary())

    @property
    def optimizer(self) -> Optimizer:
        """The first optimizer (the one whose lr the decisions report)."""
        return self.optimizers[0]

    @property
    def stop_epoch(self) -> int | None:
        """The first epoch whose velocity was below epsilon, if any."""
        return self.rule.stop_epoch

    def step(self) -> NeVeDecision:
        """Measure the velocity now and decide: call it once after each training epoch (on every rank).

        Compares the model with the last measurement (construction for the first call), updates the velocity,
        cuts every param group's lr by ``alpha`` when the velocity change has plateaued for more than
        ``patience`` calls, and reports ``stop`` once the velocity is below ``epsilon`` (stopping is the
        caller's: break out of the loop). If no trained parameter changed since the last measurement (no
        optimizer step, e.g. ``step()`` before training), it warns and measures nothing: the decision has
        ``measured=False`` and neither cuts nor stops.
        """
        self._lr_watch.check(self.optimizers)  # read now: a framework may have replaced them
        self._check_frozen_unchanged()
        if not self._trained_since_last():
            warnings.warn("NeVe.step(): no trained parameter changed since the last measurement (no optimizer "
                          "step?), so there is no velocity to measure; nothing was measured, cut or stopped. "
                          "Call step() after each epoch of training", stacklevel=2)
            return self._unmeasured()
        report = self.monitor.measure()
        reduce, stop = self.rule.decide(report)
        lr_before = self.optimizers[0].param_groups[0]["lr"]
        reduced = reduce and decay_lr(self.optimizers, self.rule.alpha, self.rule.min_lr_change, self.schedulers)
        lr = self.optimizers[0].param_groups[0]["lr"]
        if reduced:
            self._lr_watch.cut(self.optimizers)
            self._say(f"NeVe epoch {report.epoch}: the velocity change has not decreased for more than "
                      f"{self.rule.plateau.patience} epochs; lr {lr_before:.6g} -> {lr:.6g}")
        if stop and self.rule.stop_epoch == report.epoch:
            self._say(f"NeVe epoch {report.epoch}: velocity {report.model_velocity:.6g} < epsilon "
                      f"{self.rule.epsilon:g}: training has converged, stop")
        decision = NeVeDecision(report.epoch, report.model_velocity, report.velocity_change, lr, reduced, stop, report)
        self._last = decision
        return decision

    def _trained_since_last(self) -> bool:
        moved = self.monitor.trained_since_reference()
        if self.monitor.shard is not None:  # measure on every rank or on none: a measurement has collectives
            (_, moved_anywhere), = agree([float(moved)], model_device(self.monitor.model))
            moved = bool(moved_anywhere)
        return moved

    def _unmeasured(self) -> NeVeDecision:
        last = self._last
        lr = self.optimizers[0].param_groups[0]["lr"]
        if last is None:
            return NeVeDecision(self.monitor.epoch, math.nan, None, lr, False, False, None, measured=False)
        return NeVeDecision(last.epoch, last.model_velocity, last.velocity_change, lr, False, False, last.report,
                            measured=False)

    def _check_frozen_unchanged(self) -> None:
        """The modules measured were chosen from what trained at construction; say so once if that changed."""
        if self._warned_frozen_change:
            return
        now = {id(p) for p in trained_parameters(self.optimizers)}
        if now != self._trained_ids:
            self._warned_frozen_change = True
            warnings.warn("the trained parameters changed since NeVe was built (layers frozen or unfrozen, param "
                          "groups added): NeVe still measures the modules chosen then "
                          f"({len(self.monitor.modules)} modules). Build a new NeVe to choose again, or pass "
                          "modules= to choose yourself", stacklevel=3)

    def _say(self, message: str) -> None:
        if self.verbose and (not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0):
            print(message, flush=True)

    def settings(self) -> dict[str, Any]:
        """The constructor's settings a saved state is checked against: alpha, patience, epsilon, mu, batch_size."""
        return {**self.rule.settings(), **self.monitor.settings()}

    def state_dict(self) -> dict[str, Any]:
        """Controller and monitor state; the optimizers and schedulers (and the lr) are saved by their owner."""
        return {"rule": self.rule.state_dict(), "monitor": self.monitor.state_dict()}

    def load_state_dict(self, state: dict[str, Any], *, settings: str = "same") -> dict[str, tuple[Any, Any]]:
        """Restore a :meth:`state_dict` (after loading the model's weights), so later decisions equal an
        uninterrupted run's.

        If the state was saved with another ``alpha``, ``patience``, ``epsilon``, ``mu`` or ``batch_size``:
        ``settings="same"`` (default) raises, ``"new"`` keeps this NeVe's, ``"saved"`` takes the state's.
        Returns the settings that differed, name -> (saved, now). A state of another model or layer selection,
        velocity form or plateau rule is always refused.
        """
        check_settings_choice(settings)
        rule, monitor = state["rule"], state["monitor"]
        saved = {"alpha": rule["alpha"], "patience": rule["plateau"]["patience"], "epsilon": rule["epsilon"],
                 "mu": float(monitor["tracker"]["mu"]), "batch_size": int(monitor["batch_size"])}
        changed = reconcile(saved, self.settings(), settings, "NeVe")
        self.rule.check_plateau_rule(rule)
        self.monitor.load_state_dict(monitor, settings=settings)  # checks model and layers before changing any
        self.rule.load_state_dict(rule, settings=settings)
        self._last = None
        return changed
