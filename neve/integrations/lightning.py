"""NeVe as a Lightning (``lightning.pytorch`` 2.x) callback: lr decay and stopping without a validation set.

The callback is glue only: :class:`neve.NeVe` measures, decides and decays. Under DDP every rank gets the
same velocities (the aux set is sharded and the sums reduced, see :mod:`neve.distributed`), so every rank
decays alike and the stop flag, reduced by the strategy, is the same everywhere.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from neve.controller import NeVe, NeVeDecision
from neve.integrations._state import state_on_cpu
from neve.resume import describe_changes
from neve.velocity import AuxSet, ModuleSelection

#: Where the callback's state lives in a checkpoint's ``callbacks`` dict: one key whatever the arguments, so a run
#: resumed with other arguments finds its state (neve 0.1 built the key from the arguments, see on_load_checkpoint).
STATE_KEY = "NeVeCallback"


class NeVeCallback(Callback):
    """Measure NeVe's velocity at the end of every training epoch; decay every optimizer's lr on a plateau of
    the velocity change, stop (``trainer.should_stop``) when the velocity is below ``epsilon``.

    ``stop=False`` only marks the stop (logged as ``neve/stop``, kept in :attr:`stop_epoch`). Configured lr
    schedulers are composed with: a decay scales their ``base_lrs`` too, so LambdaLR / cosine / step
    schedules keep it; OneCycleLR and CyclicLR, which would undo it, raise at fit start. Logged each epoch
    through ``pl_module.log`` (every configured logger): ``neve/velocity``, ``neve/velocity_change`` (from
    the second epoch), ``neve/lr``, ``neve/lr_reduced``, ``neve/stop``. Sanity checks,
    ``validate``/``test``/``predict`` and ``fast_dev_run`` are skipped. Other keyword arguments
    (``batch_size``, ``velocity_form``, ``plateau_rule``, ``verbose``, ``trainable``) go to :class:`neve.NeVe`.

    Resuming (``trainer.fit(ckpt_path=...)``): the state (reference snapshot, velocities, plateau counter) is
    saved in the checkpoint under ``"NeVeCallback"``.

    - Same arguments: the run resumes to the decisions of an uninterrupted one. A checkpoint written at
      validation end, before that epoch's measurement, gets that measurement at train start, on the weights
      it was written with (one measurement at most).
    - Other ``alpha``, ``patience``, ``epsilon``, ``mu`` or ``batch_size``: the state is restored and the new
      arguments are used, with a warning that lists the changes. Another model, ``modules=``,
      ``velocity_form`` or ``plateau_rule`` raises, saying what to change.
    - A checkpoint without NeVe state (the callback added at resume): NeVe starts afresh, its t = 0 reference
      being the resumed weights; its measurements (and :attr:`stop_epoch`) count from there.
    """

    def __init__(self, aux: AuxSet, alpha: float = 0.5, patience: int = 10, epsilon: float = 1e-3, mu: float = 0.5,
                 stop: bool = True, modules: ModuleSelection = None, **neve_options: Any) -> None:
        super().__init__()
        self.aux = aux
        self.options = {"alpha": alpha, "patience": patience, "epsilon": epsilon, "mu": mu, "modules": modules,
                        **neve_options}
        self.stop = stop
        self.neve: NeVe | None = None
        self.last: NeVeDecision | None = None
        self._pending: dict[str, Any] | None = None
        self._restored = False

    @property
    def state_key(self) -> str:
        return STATE_KEY

    @property
    def stop_epoch(self) -> int | None:
        """The first epoch (1-based measurement count) whose velocity was below epsilon."""
        return self.neve.stop_epoch if self.neve is not None else None

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
                           ) -> None:
        """Find a state written by neve 0.1, whose key held the constructor's arguments (Lightning then calls
        :meth:`load_state_dict` only for a state under :attr:`state_key`)."""
        states = checkpoint.get("callbacks") or {}
        if STATE_KEY in states:
            return
        legacy = [key for key in states if isinstance(key, str) and key.startswith(STATE_KEY + "{")]
        if len(legacy) == 1:
            self.load_state_dict(states[legacy[0]])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.state.fn != TrainerFn.FITTING:
            return
        schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
        # pl_module is the network itself (the DDP wrapper is trainer.strategy.model): measure it
        self.neve = NeVe(pl_module, list(trainer.optimizers), self.aux, scheduler=schedulers, **self.options)
        self._restored = False
        if self._pending is not None:  # Lightning loads callback state before on_fit_start
            self._restore(self._pending)
            self._pending = None

    def _restore(self, state: dict[str, Any]) -> None:
        changed = self.neve.load_state_dict(state, settings="new")
        self._restored = True
        if changed:
            rank_zero_warn(f"NeVeCallback resumed the checkpoint's NeVe state with changed arguments "
                           f"({describe_changes(changed)}): the new ones are used from now on")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.neve is None:
            return
        if not self._restored:
            if trainer.current_epoch > 0:
                rank_zero_info(f"NeVeCallback: the checkpoint holds no NeVe state; NeVe starts afresh at epoch "
                               f"{trainer.current_epoch}, measuring from the resumed weights")
            return
        missed = trainer.current_epoch - self.neve.monitor.epoch
        if missed < 1:
            return
        if missed > 1:
            rank_zero_warn(f"NeVeCallback: the checkpoint's NeVe state is {missed} epochs behind the trainer; one "
                           "measurement now covers them")
        # a checkpoint saved at validation end (before this epoch-end step) resumes at the next epoch without
        # calling on_train_epoch_end for the epoch it was saved in: take that measurement now, on the same weights
        self._step(trainer, pl_module, through_module=False)  # Lightning refuses self.log in on_train_start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.neve is None or trainer.sanity_checking:
            return
        self._step(trainer, pl_module, through_module=True)

    def _step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, through_module: bool) -> None:
        self.neve.optimizers = list(trainer.optimizers)  # the same objects, unless a hook replaced them
        decision = self.last = self.neve.step()
        if not decision.measured:  # no optimizer step since the last measurement (NeVe warned); same on every rank
            return
        metrics = {"neve/velocity": decision.model_velocity, "neve/lr": decision.lr,
                   "neve/lr_reduced": float(decision.lr_reduced), "neve/stop": float(decision.stop)}
        if decision.velocity_change is not None:
            metrics["neve/velocity_change"] = decision.velocity_change
        if through_module:
            pl_module.log_dict(metrics, on_step=False, on_epoch=True)
        else:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        # every rank reduces every epoch (the same collective each time); the flags already agree
        should_stop = trainer.strategy.reduce_boolean_decision(self.stop and decision.stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop

    def state_dict(self) -> dict[str, Any]:
        if self.neve is None:
            return {} if self._pending is None else self._pending
        return state_on_cpu(self.neve.state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.neve is None:
            self._pending = state_dict
        else:  # strategies that restore after setup (restore_checkpoint_after_setup)
            self._restore(state_dict)
