"""DoG, Distance over Gradients (Ivgi, Hinder & Carmon, ICML 2023, arXiv 2302.12022), package ``dog-optimizer``.

Settings, checked against the installed ``dog-optimizer`` 1.0.3 (README = the package's long description, in its
wheel's METADATA, the text of github.com/formll/dog; docstring = ``DoG``'s in ``dog/dog.py``):

- ``DoG(lr=1)`` ("changing it is not recommended"), no momentum, no schedule: it does not know the horizon.
- ``reps_rel`` 1e-4 for a model with BatchNorm, 1e-6 otherwise ("Suggested value is 1e-6, unless the model uses
  batch-normalization, in which case the suggested value is 1e-4").
- Weight decay: the recipe's, as the same L2 term SGD adds to the gradient (DoG's ``weight_decay``). The
  package's default is 0 (docstring: "weight_decay * x_t is added directly to the gradient (default: 0)").
- ``PolynomialDecayAverager(model, gamma=8)`` stepped after every optimizer step; the averaged model is the one
  evaluated, whose velocity is measured and which is saved (docstring: "IMPORTANT: for best performance, DoG must
  be combined with iterate averaging"). The averager also averages BatchNorm's running buffers, which are not
  statistics of the averaged weights: the trainer recomputes them before each evaluation (``training.batchnorm``).

Options (``RunConfig.extra``): ``reps_rel`` (default above; README "Choosing `reps_rel`": decrease it by factors of
100 if optimization diverges early, increase it if ``eta`` does not grow in the first few hundred steps),
``weight_decay`` (default: the recipe's; 0 is the package's), ``lr`` (default 1).

Exact resume: DoG keeps its state in the parameter groups (init_buffer, rbar, G, eta) and a first-step flag, all
in its ``state_dict``; its ``load_state_dict`` moves everything but init_buffer to the CPU, so the stepper puts
them back on the parameters' device. The averager's state (t and the averaged model) is saved beside it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from experiments.methods.base import Stepper
from experiments.methods.registry import register_method
from experiments.methods.tuning_free import TuningFreePolicy, group_value, import_package
from experiments.training.batchnorm import batchnorm_layers

#: The package's suggested reps_rel: with / without BatchNorm.
REPS_REL_BATCHNORM, REPS_REL = 1e-4, 1e-6
#: The averager's gamma (the package default, used in the paper).
AVERAGER_GAMMA = 8.0
STATE_FORMAT = 1


class DoGStepper(Stepper):
    """DoG's step followed by the averager's; the averaged model is the evaluated one."""

    recalibrates_batchnorm = True

    def __init__(self, optimizer: torch.optim.Optimizer, averager: Any) -> None:
        super().__init__(optimizer)
        self.averager = averager
        self._grads_checked = False

    def step(self) -> None:
        if not self._grads_checked:  # DoG squares every p.grad: a parameter without one crashes it
            missing = [i for group in self.optimizer.param_groups for i, p in enumerate(group["params"])
                       if p.grad is None]
            if missing:
                raise ValueError(f"DoG needs a gradient for every parameter it updates; {len(missing)} parameters "
                                 "got none (unused layers?): freeze them (requires_grad=False) before training")
            self._grads_checked = True
        self.optimizer.step()
        self.averager.step()

    def evaluated_model(self, model: nn.Module) -> nn.Module:
        return self.averager.averaged_model

    def record(self) -> dict[str, float]:
        eta = group_value(self.optimizer, "eta")
        return {"eta": eta, "rbar": group_value(self.optimizer, "rbar"), "step_size": eta}

    def state_dict(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "optimizer": self.optimizer.state_dict(),
                "averager": self.averager.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError("this optimizer state was not written by the DoG stepper; resume with --method dog "
                             "or use another --out")
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # DoG's own load leaves rbar, G, eta on the CPU
            device = group["params"][0].device
            for key, value in group.items():
                if isinstance(value, torch.Tensor):
                    group[key] = value.to(device)
                elif isinstance(value, list) and key != "params" and value and isinstance(value[0], torch.Tensor):
                    group[key] = [tensor.to(device) for tensor in value]
        self.averager.load_state_dict(state["averager"])


@register_method("dog", label="DoG", package="dog-optimizer")
class DoGMethod(TuningFreePolicy):
    """DoG at lr 1 with polynomial-decay iterate averaging; the averaged model is evaluated."""

    options = ("lr", "weight_decay", "reps_rel")

    def defaults(self) -> dict[str, Any]:
        # reps_rel's default depends on the model (BatchNorm or not): None here, chosen in build_stepper.
        return {"lr": 1.0, "weight_decay": self.config.weight_decay, "reps_rel": None}

    def build_stepper(self, model: nn.Module) -> Stepper:
        dog = import_package("dog", self.package, self.name)
        reps_rel = self.setting("reps_rel")
        if reps_rel is None:
            reps_rel = REPS_REL_BATCHNORM if batchnorm_layers(model) else REPS_REL
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = dog.DoG(params, lr=self.base_lr, reps_rel=float(reps_rel),
                            weight_decay=float(self.setting("weight_decay")))
        return DoGStepper(optimizer, dog.PolynomialDecayAverager(model, gamma=AVERAGER_GAMMA))
