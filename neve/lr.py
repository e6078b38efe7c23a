"""The optimizers and schedulers NeVe drives: argument checks, lr cuts that outlast a scheduler, and the
detection of lr changes made behind NeVe's back.

The rule for schedulers: NeVe replaces the baseline's schedule (spec section 3), so the usual setup has none.
A scheduler kept beside NeVe must be passed as ``scheduler=``: NeVe then cuts its ``base_lrs`` with the lr, so
schedulers that recompute the lr from them (LambdaLR, the HF linear/cosine schedules, CosineAnnealingLR, ...)
keep the cut. A scheduler NeVe was not given undoes the cut at its next step; NeVe cannot see it, but it can
see its traces: param groups carrying ``initial_lr`` (every torch scheduler writes it) without a scheduler
passed, and an lr that grows back after a cut. It warns on both.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CyclicLR, LRScheduler, OneCycleLR


def decayed_lr(lr: float, factor: float, min_change: float | None = None) -> float:
    """``lr * factor``; with ``min_change``, ``lr`` unchanged when the cut would be no larger than it
    (ReduceLROnPlateau: ``if old_lr - new_lr > eps``)."""
    new = lr * factor
    if min_change is not None and not lr - new > min_change:
        return lr
    return new


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



def check_optimizers(optimizer: Any) -> list[Optimizer]:
    """The optimizers NeVe cuts, as a list; a clear error for what people pass by mistake."""
    items = list(optimizer) if isinstance(optimizer, list | tuple) else [optimizer]
    if not items:
        raise ValueError("optimizer= got an empty list: pass the optimizer that trains the model (NeVe cuts its lr)")
    for item in items:
        _check_optimizer(item)
    return items


def _check_optimizer(item: Any) -> None:
    groups = getattr(item, "param_groups", None)
    if isinstance(groups, list) and groups and all(isinstance(g, dict) and "lr" in g for g in groups):
        return
    example = "e.g. NeVe(model, torch.optim.SGD(model.parameters(), lr=0.1), aux)"
    if item is None:
        raise TypeError(f"optimizer is None: pass the optimizer that trains the model (NeVe cuts its lr), {example}")
    if isinstance(item, LRScheduler) or hasattr(item, "base_lrs") or hasattr(item, "get_last_lr"):
        raise TypeError(f"optimizer= got a learning-rate scheduler ({type(item).__name__}): pass its optimizer as "
                        "optimizer= and the scheduler as scheduler=, NeVe(model, optimizer, aux, scheduler=scheduler)")
    if isinstance(item, Tensor | Iterator | types.GeneratorType):
        raise TypeError(f"optimizer= got model parameters ({type(item).__name__}), not an optimizer: pass the "
                        f"optimizer built from them, {example}")
    raise TypeError(f"optimizer= must be a torch.optim optimizer (anything with param_groups holding an 'lr'), or a "
                    f"list of them; got {type(item).__name__}: {example}")


def check_schedulers(scheduler: Any, optimizers: Sequence[Optimizer]) -> list[Any]:
    """The schedulers NeVe keeps its cuts in (see :func:`flat_schedulers`); each must drive one of ``optimizers``
    and be one NeVe can compose with."""
    if isinstance(scheduler, Optimizer) or hasattr(scheduler, "param_groups"):
        raise TypeError(f"scheduler= got an optimizer ({type(scheduler).__name__}); pass the optimizer as "
                        "optimizer= and its lr scheduler, if any, as scheduler=")
    check_composable(scheduler)
    schedulers = flat_schedulers(scheduler)
    ours = {id(group) for optimizer in optimizers for group in optimizer.param_groups}
    for item in schedulers:
        groups = getattr(getattr(item, "optimizer", None), "param_groups", None)
        if not isinstance(groups, list):
            raise TypeError(f"scheduler= must be a torch lr scheduler (or a list of them), got {type(item).__name__}")
        if not any(id(group) in ours for group in groups):
            raise ValueError(f"the scheduler {type(item).__name__} drives an optimizer NeVe was not given; pass that "
                             "optimizer as optimizer= too (a list of optimizers is fine)")
    return schedulers


class LrWatch:
    """Warnings for lr changes NeVe was not told about (see the module docstring); each warns once."""

    def __init__(self, schedulers: Sequence[Any]) -> None:
        self.schedulers = schedulers
        self.after_cut: dict[int, float] = {}
        self.warned: set[str] = set()

    def _unscheduled_groups(self, optimizers: Sequence[Optimizer]) -> list[dict[str, Any]]:
        covered = {id(group) for scheduler in self.schedulers for group in scheduler.optimizer.param_groups}
        return [group for optimizer in optimizers for group in optimizer.param_groups if id(group) not in covered]

    def check(self, optimizers: Sequence[Optimizer]) -> None:
        """Before a measurement: warn if a scheduler NeVe was not given exists, or undid the last cut."""
        unscheduled = self._unscheduled_groups(optimizers)
        if any("initial_lr" in group for group in unscheduled):
            self._warn("scheduler", "a param group carries 'initial_lr', so an lr scheduler drives this optimizer, "
                       "but none was passed to NeVe as scheduler=: a scheduler that recomputes the lr (LambdaLR, "
                       "cosine, the HF schedules) undoes NeVe's cuts at its next step. Pass it as scheduler=, or "
                       "drop it (NeVe replaces the schedule)")
        grown = [(self.after_cut[id(group)], group["lr"]) for group in unscheduled
                 if id(group) in self.after_cut and group["lr"] > self.after_cut[id(group)]]
        if grown:
            before, now = grown[0]
            self._warn("grown", f"the lr grew from {before:.6g} (NeVe's last cut) to {now:.6g} since the last "
                       "step(): something other than NeVe sets it (an lr scheduler not passed as scheduler=?), and "
                       "the cut NeVe reported is undone. Pass that scheduler as scheduler=")
        self.after_cut = {}

    def cut(self, optimizers: Sequence[Optimizer]) -> None:
        """After a cut: remember each group's new lr."""
        self.after_cut = {id(group): group["lr"] for optimizer in optimizers for group in optimizer.param_groups}

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, stacklevel=4)


def trained_parameters(optimizers: Iterable[Optimizer]) -> list[Tensor]:
    """The parameters the optimizers step: in a param group and requiring grad."""
    return [p for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]
            if isinstance(p, Tensor) and p.requires_grad]
