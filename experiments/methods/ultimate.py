"""Ultimate Optimizer (Chandra et al., NeurIPS 2022) as a method: hyper-SGD learns SGD's lr and momentum.

The stack is the authors' package ``gradient-descent-the-ultimate-optimizer`` (imported, not rewritten),
set up as in the NeVe authors' comparison (spec section 4):

    SGD(alpha=lr, mu=momentum)                              updates the model
      on top of SGD(alpha=lr**2 * 1e-3, mu=1e-6 / (1 - momentum))   updates that SGD's alpha and mu

with a constant schedule and no stop. Weight decay: none -- gdtuo's SGD has no such term and the authors'
run adds none to the loss, so the recipe's ``weight_decay`` is not used by this method.

Exact resume. gdtuo's step makes each new parameter ``p_k = p_{k-1} - buf_k * alpha_k`` (with
``buf_k = buf_{k-1} * mu_k + g_{k-1}``) and keeps that graph, so the next batch's backward gives the
hypergradients of alpha_k and mu_k. A checkpoint holds only values (``model.state_dict()`` detaches), so
the stepper also saves the inputs of the last step (``p_{k-1}``, ``g_{k-1}``, ``buf_{k-1}``) and, on load,
replays that one step through gdtuo's own SGD with the hyper-level held still: the parameters come back
bit for bit with their graph to alpha_k and mu_k, and the run continues as if never stopped.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from experiments.methods.base import Decision, EpochResult, Policy, Stepper
from experiments.methods.registry import register_method

log = logging.getLogger(__name__)

STATE_FORMAT = 1


def _gdtuo() -> Any:
    try:
        from gradient_descent_the_ultimate_optimizer import gdtuo
    except ImportError as error:  # an optional dependency of the experiments only
        raise ImportError("--method ultimate needs the authors' package: "
                          "pip install gradient-descent-the-ultimate-optimizer") from error
    return gdtuo


def _detached(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: tensor.detach().clone() for name, tensor in tensors.items()}


class UltimateStepper(Stepper):
    """gdtuo's ``ModuleWrapper`` around the model, driven by the trainer's zero_grad/backward/step calls."""

    def __init__(self, model: nn.Module, lr: float, momentum: float) -> None:
        if not lr > 0:
            raise ValueError(f"the Ultimate Optimizer needs an initial lr > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"the Ultimate Optimizer needs a momentum in [0, 1), got {momentum}")
        gdtuo = _gdtuo()
        self.optimizer = None  # no torch optimizer: the gdtuo stack below replaces it
        self.hyper = gdtuo.SGD(alpha=lr**2 * 1e-3, mu=1e-6 / (1.0 - momentum))
        self.sgd = gdtuo.SGD(alpha=lr, mu=momentum, optimizer=self.hyper)
        self.wrapper = gdtuo.ModuleWrapper(model, optimizer=self.sgd)
        self.wrapper.initialize()
        # Hyper-parameters start as CPU scalars; the arithmetic with CUDA parameters needs them on the device.
        device = next(model.parameters()).device
        for level in self.levels:
            for name, value in level.parameters.items():
                level.parameters[name] = value.to(device)
        self._last_step: dict[str, dict[str, Tensor | None]] | None = None

    @property
    def levels(self) -> list[Any]:
        """The SGD levels, the model's optimizer first."""
        return [self.sgd, self.hyper]

    # ------------------------------------------------------------------------------------ a training step
    def zero_grad(self) -> None:
        # begin() detaches the hyper-parameters' history and turns gradient tracking on; zero_grad() zeroes.
        self.wrapper.begin()
        self.wrapper.zero_grad()

    def backward(self, loss: Tensor) -> None:
        with warnings.catch_warnings():
            # gdtuo's begin() resets every .grad to None at the next step, which breaks the reference
            # cycle this warning is about.
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
            loss.backward(create_graph=True)  # the hypergradients need the graph of the gradients

    def step(self) -> None:
        # The inputs of this step, for an exact resume (see the module docstring). References, not copies,
        # dropped at the next step: about two extra copies of the parameters held in memory.
        params = self.wrapper.parameters
        self._last_step = {
            "params": {name: p.detach() for name, p in params.items()},
            "grads": {name: p.grad.detach() for name, p in params.items()},
            "buffers": {name: self.sgd.state[name].detach() if name in self.sgd.state else None
                        for name in params},
        }
        self.wrapper.step()

    # ------------------------------------------------------------------------------------ lr and records
    @property
    def lr(self) -> float:
        return float(self.sgd.parameters["alpha"].detach())

    @property
    def momentum(self) -> float:
        return float(self.sgd.parameters["mu"].detach())

    def set_lr(self, lr: float) -> None:
        raise NotImplementedError("the Ultimate Optimizer learns its lr; it takes no lr schedule")

    def scale_lr(self, factor: float, min_change: float | None = None) -> bool:
        raise NotImplementedError("the Ultimate Optimizer learns its lr; it takes no lr schedule")

    def record(self) -> dict[str, float]:
        return {"learned_lr": self.lr, "learned_momentum": self.momentum}

    # ------------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "levels": [{"parameters": _detached(level.parameters), "mu": level.mu,
                        "buffers": _detached(level.state)} for level in self.levels],
            "last_step": None if self._last_step is None else {
                "params": _detached(self._last_step["params"]),
                "grads": _detached(self._last_step["grads"]),
                "buffers": {name: None if b is None else b.detach().clone()
                            for name, b in self._last_step["buffers"].items()},
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT or len(state.get("levels", ())) != len(self.levels):
            raise ValueError("this optimizer state was not written by the Ultimate Optimizer stepper "
                             f"(format {STATE_FORMAT}); resume with --method ultimate or use another --out")
        device = next(iter(self.wrapper.parameters.values())).device
        for level, saved in zip(self.levels, state["levels"], strict=True):
            if float(saved["mu"]) != float(level.mu):
                raise ValueError(f"the saved hyper-optimizer has momentum {saved['mu']}, this run "
                                 f"{level.mu}; resume with the same --lr and --momentum")
            level.parameters = {k: v.detach().clone().to(device) for k, v in saved["parameters"].items()}
            level.state = {k: v.detach().clone().to(device) for k, v in saved["buffers"].items()}
        last = state["last_step"]
        if last is not None:
            self._replay_last_step(last, device)

    def _replay_last_step(self, last: dict[str, dict[str, Tensor | None]], device: torch.device) -> None:
        """Recompute the current parameters from the last step's inputs, with their graph to the learned
        alpha and mu, so the first backward after a resume gives the same hypergradients."""
        gdtuo = _gdtuo()
        loaded = {name: p.detach() for name, p in self.wrapper.parameters.items()}
        if set(last["params"]) != set(loaded):
            raise ValueError("the saved optimizer state belongs to a different model; "
                             "resume with the same --model")
        expected_buffers = dict(self.sgd.state)
        inputs = {}
        for name in loaded:
            param = last["params"][name].to(device).clone().requires_grad_()
            param.grad = last["grads"][name].to(device)
            inputs[name] = param
        self.sgd.state = {name: b.to(device) for name, b in last["buffers"].items() if b is not None}
        self.wrapper.parameters = inputs
        self.sgd.begin()  # alpha and mu require grad, as they did when the step was first taken
        hyper, self.sgd.optimizer = self.sgd.optimizer, gdtuo.NoOpOptimizer()  # alpha, mu are already learned
        try:
            self.wrapper.step()  # gdtuo's own update, and its own write-back into the module
        finally:
            self.sgd.optimizer = hyper
        for name, value in loaded.items():
            if not torch.equal(self.wrapper.parameters[name].detach(), value):
                raise ValueError(f"replaying the last optimizer step did not give the checkpoint's {name!r}; "
                                 "the checkpoint is inconsistent -- start this run over in a new --out")
        for name, buffer in expected_buffers.items():
            if not torch.equal(self.sgd.state[name], buffer):
                raise ValueError("replaying the last optimizer step did not give the saved momentum "
                                 f"of {name!r}")
        self._last_step = {key: dict(values) for key, values in last.items()}


@register_method("ultimate", label="Ultimate Optimizer", family="related",
                 package="gradient-descent-the-ultimate-optimizer")
class UltimateOptimizer(Policy):
    """Hyper-SGD learns the lr and momentum of SGD; constant schedule (nothing to set), no stop."""

    def build_stepper(self, model: nn.Module) -> Stepper:
        c = self.config
        if c.optimizer != "sgd":
            raise ValueError(f"--method ultimate stacks hyper-SGD on SGD; --optimizer {c.optimizer} is not "
                             "supported (leave --optimizer unset)")
        if c.weight_decay:
            log.info("ultimate: no weight decay (as in the authors' run); the recipe's %g is not used",
                     c.weight_decay)
        return UltimateStepper(model, lr=c.lr, momentum=c.momentum)

    def end_epoch(self, result: EpochResult, stepper: Stepper) -> Decision:
        return Decision()
