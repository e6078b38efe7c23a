"""Neural velocity the direct way: store every neuron's outputs over the whole aux set.

This is how the authors' code measures velocity (spec section 2): at each measurement, run the
aux set through the model, keep every hooked neuron's outputs y^t (flattened over samples and
spatial/token positions) on ``storage_device``, and compare them with the stored y^{t-1} by a
cosine on the full vectors in float64. Memory grows with |D_aux| x (all activations of the
model): ~10-20 GB for ResNet-50 at 224x224 with 100 aux images. It exists as the executable
definition that the streamed :class:`neve.velocity.VelocityMonitor` is tested against, and as
the "stored activations" baseline of ``benchmarks/velocity.py``; use the monitor for training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from neve.velocity import (
    AuxSet,
    ModuleSelection,
    VelocityReport,
    VelocityTracker,
    check_aux,
    cosine_from_sums,
    iterate_aux,
    neuron_dim,
    neuron_output,
    select_modules,
)


class StoredActivationsVelocity:
    """Same interface and semantics as :class:`~neve.velocity.VelocityMonitor`, by stored activations.

    Construction records y^0 (the model as it is now); each :meth:`measure` records y^t, computes
    rho^t = cos(y^t, y^{t-1}) per neuron and feeds it to :class:`~neve.velocity.VelocityTracker`
    (eq. 2). Activations are stored in float32 on ``storage_device``; the cosine is taken in float64.
    """

    def __init__(self, model: nn.Module, aux: AuxSet, *, mu: float = 0.5, modules: ModuleSelection = None,
                 batch_size: int = 16, storage_device: str | torch.device = "cpu",
                 velocity_form: str = "paper") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        check_aux(aux)
        self.model = model
        self.aux = aux
        self.batch_size = batch_size
        self.storage_device = torch.device(storage_device)
        self.modules = select_modules(model, modules)
        self.skip_uncalled = modules is None  # as VelocityMonitor: default-selected layers that never run
        self.tracker = VelocityTracker(mu, velocity_form)
        self.previous = self.record()

    @property
    def epoch(self) -> int:
        return self.tracker.epoch

    def record(self) -> dict[str, Tensor]:
        """Every hooked neuron's outputs over the whole aux set: {layer: (neurons, all positions)}."""
        outputs: dict[str, list[Tensor]] = {name: [] for name in self.modules}

        def hook_for(name: str, dim: int) -> Callable[..., None]:
            def hook(module: nn.Module, inputs: Any, output: Any) -> None:
                output = neuron_output(output)  # element 0 of an RNN's or attention's tuple
                per_neuron = output.detach().float().transpose(0, dim).reshape(output.shape[dim], -1)
                outputs[name].append(per_neuron.to(self.storage_device, copy=True))
            return hook

        parameters = [*self.model.parameters(), *self.model.buffers()]
        device = parameters[0].device if parameters else torch.device("cpu")
        modes = {module: module.training for module in self.model.modules()}
        handles = [m.register_forward_hook(hook_for(n, neuron_dim(m))) for n, m in self.modules.items()]
        try:
            self.model.eval()
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                for batch in iterate_aux(self.aux, self.batch_size):
                    self.model(batch.to(device))
        finally:
            for handle in handles:
                handle.remove()
            for module, training in modes.items():
                module.training = training
        missing = [name for name, parts in outputs.items() if not parts]
        if len(missing) == len(outputs):
            raise ValueError("the aux set yielded no batch, or none of the modules ran")
        if missing and not self.skip_uncalled:
            raise ValueError(f"modules {missing[:5]} were never called by the model's forward")
        stored = {}
        for name in [name for name in outputs if name not in missing]:
            stored[name] = torch.cat(outputs.pop(name), dim=1)  # free the pieces as we go
        return stored

    def measure(self) -> VelocityReport:
        current = self.record()
        rho = {name: full_cosine(now, self.previous[name]).cpu() for name, now in current.items()}
        self.previous = current
        return self.tracker.update(rho)


def full_cosine(now: Tensor, before: Tensor, max_elements: int = 1 << 20) -> Tensor:
    """Per-row cosine of two (neurons, positions) matrices, each row taken whole in float64.

    Rows go in groups of at most ``max_elements`` values, so the float64 copies stay small next to
    the stored activations (which is what the benchmark measures).
    """
    rows = max(1, max_elements // max(1, now.shape[1]))
    parts = []
    for a, b in zip(now.split(rows), before.split(rows), strict=True):
        a64, b64 = a.double(), b.double()
        parts.append(cosine_from_sums((a64 * b64).sum(1), (a64 * a64).sum(1), (b64 * b64).sum(1)))
    return torch.cat(parts)
