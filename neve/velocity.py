"""Measuring neural velocity (spec sections 1-2), streamed so memory does not grow with |D_aux|.

The cosine between a neuron's outputs now (y^t) and at the last measurement (y^{t-1}) only needs
three per-neuron sums: <y^t, y^{t-1}>, |y^t|^2 and |y^{t-1}|^2. Instead of storing y^{t-1} for
the whole auxiliary set, we keep a snapshot of the model's parameters and buffers as they were
at the last measurement and replay it with ``torch.func.functional_call``: each aux batch goes
through the current model (outputs kept for that batch only) and then through the snapshot,
whose outputs are folded into the sums as they appear. Memory: one copy of the parameters plus
one batch of activations, whatever the size of the aux set. Which modules are measured is settled
once, at construction (see :mod:`neve.selection`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from neve.distributed import Shard, agree, broadcast_state, resolve_shard, sum_over_ranks
from neve.forward import (
    AuxSet,
    Measuring,
    aux_batches,
    check_aux,
    forward,
    iterate_aux,
    model_device,
    module_tensors,
    rng_devices,
    snapshot,
    snapshot_shapes,
    to_device,
    unwrap_model,
)
from neve.resume import reconcile
from neve.selection import (
    NEVER_CALLED,
    ModuleSelection,
    Probed,
    Selection,
    neuron_dim,
    neuron_output,
    probe,
    select_modules,
    settle,
)

__all__ = ["AuxSet", "ModuleSelection", "VelocityMonitor", "VelocityReport", "VelocityTracker", "check_aux",
           "cosine_from_sums", "iterate_aux", "neuron_dim", "neuron_output", "select_modules", "snapshot",
           "snapshot_shapes"]

log = logging.getLogger("neve")


@dataclass
class VelocityReport:
    """One measurement: per-neuron change rate and velocity, and their model-level summaries."""

    epoch: int
    #: V^t: mean |v_i^t| over every neuron of every measured layer.
    model_velocity: float
    #: Module name -> v_i^t per neuron (signed under ``velocity_form="signed"``).
    layers: dict[str, Tensor]
    rho: dict[str, Tensor]
    #: D^t of spec section 3: mean over layers of mean (v^t - v^{t-1})^2; None at t = 1.
    velocity_change: float | None


def cosine_from_sums(dot: Tensor, sq_now: Tensor, sq_before: Tensor) -> Tensor:
    """rho_i from per-neuron sums, with the spec's degenerate cases (both zero -> 1, one zero -> 0)."""
    now_zero, before_zero = sq_now == 0, sq_before == 0
    rho = dot / torch.sqrt(sq_now * sq_before).clamp_min(torch.finfo(dot.dtype).tiny)
    rho = rho.clamp(-1.0, 1.0)
    rho = torch.where(now_zero | before_zero, torch.zeros_like(rho), rho)
    return torch.where(now_zero & before_zero, torch.ones_like(rho), rho)


#: The velocity recursion: ``paper`` (eq. 2, absolute value inside) or ``signed`` (the authors' code).
VELOCITY_FORMS = ("paper", "signed")


def check_velocity_form(form: str) -> None:
    if form not in VELOCITY_FORMS:
        raise ValueError(f"velocity_form must be one of {VELOCITY_FORMS}, got {form!r}: 'paper' is eq. 2, "
                         "'signed' the authors' code")


class VelocityTracker:
    """The velocity recursion of eq. 2 over successive change rates; shared by every measuring method.

    ``form="paper"`` (default): v^t = |(1 - rho^t) - mu * v^{t-1}|, v^0 = 0, as the paper writes it.
    ``form="signed"``: the authors' code, v^t = (1 - rho^t) - mu * v^{t-1} without the absolute value, so a
    neuron whose change rate falls below mu * v^{t-1} gets a negative velocity that feeds the next step;
    V^t is the mean of |v^t| and D^t is computed from the signed v. Either way the reports carry the v the
    recursion uses (signed in the signed form) and V^t >= 0.
    """

    def __init__(self, mu: float, form: str = "paper") -> None:
        if not 0.0 <= mu < 1.0:
            raise ValueError(f"mu must be in [0, 1), got {mu}; the paper uses 0.5")
        check_velocity_form(form)
        self.mu = mu
        self.form = form
        self.epoch = 0
        self.velocity: dict[str, Tensor] = {}

    def update(self, rho: dict[str, Tensor]) -> VelocityReport:
        """Fold one measurement's change rates (layer -> rho per neuron) into the velocities; the report of t."""
        previous = self.velocity
        if previous and previous.keys() != rho.keys():
            raise ValueError("the measured layers changed between measurements; hook the same modules each time")
        velocity = {}
        for name, layer_rho in rho.items():
            before = previous.get(name, torch.zeros_like(layer_rho))
            if before.shape != layer_rho.shape:
                raise ValueError(f"layer {name!r} had {before.numel()} neurons and now has {layer_rho.numel()}")
            signed = (1.0 - layer_rho) - self.mu * before
            velocity[name] = signed if self.form == "signed" else signed.abs()
        change = None
        if self.epoch >= 1:
            change = float(torch.stack([((velocity[n] - previous[n]) ** 2).mean() for n in velocity]).mean())
        self.epoch += 1
        self.velocity = velocity
        model_velocity = float(torch.cat(list(velocity.values())).abs().mean())
        return VelocityReport(self.epoch, model_velocity, velocity, rho, change)

    def state_dict(self) -> dict[str, Any]:
        """mu, the form, the measurement count and every neuron's last velocity."""
        return {"mu": self.mu, "form": self.form, "epoch": self.epoch,
                "velocity": {k: v.clone() for k, v in self.velocity.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of the same velocity form (its mu included: the monitor checks it)."""
        form = state.get("form", "paper")  # states written before the signed form existed are eq. 2's
        if form != self.form:
            raise ValueError(f"this velocity state was computed with velocity_form={form!r}, this tracker uses "
                             f"{self.form!r}; resume with the same velocity form (--velocity-form / --fidelity)")
        self.mu, self.epoch = float(state["mu"]), int(state["epoch"])
        self.velocity = {k: v.clone() for k, v in state["velocity"].items()}



class VelocityMonitor:
    """Neural velocity of a model on a fixed auxiliary set, measured once per epoch.

    Construction runs the model once on a small aux batch (the probe, see :mod:`neve.selection`): a mistaken
    aux set fails here with an error that says what to pass, and the modules to measure are settled and
    reported (:attr:`modules`, :attr:`neurons`, :attr:`left_out`, :meth:`summary`, and one INFO line on the
    ``neve`` logger). By default every Conv, Linear, BatchNorm, LayerNorm, RNN/GRU/LSTM, MultiheadAttention and
    transformers Conv1D module that the forward calls and whose output depends on a trained parameter is
    measured; ``trainable`` (default: every parameter with ``requires_grad``) says which parameters train.
    ``modules=`` (names or a predicate) measures exactly the modules chosen. A module returning a tuple is
    measured on its first element.

    Construction also takes the t = 0 reference (the model as it is now); each ``measure()`` compares the
    model with the previous measurement and returns a :class:`VelocityReport`. Measuring (and the probe)
    leaves the model as it found it: modes restored, no gradients, BatchNorm statistics untouched, hooks
    removed, the global RNG states unchanged, fp32 even inside an autocast region.
    ``velocity_form="signed"`` uses the authors' recursion instead of eq. 2 (see :class:`VelocityTracker`).

    DDP / DataParallel wrappers and ``torch.compile``'s wrapper are unwrapped (the network inside is
    measured); FSDP raises. Under an initialized process group (``distributed=None``, the default, or
    ``True``) each rank measures every W-th aux batch of rank 0's model and the sums are reduced (see
    :mod:`neve.distributed`): every rank gets one process's result, bit-identical, and every rank must call
    ``measure()`` at the same points.
    """

    def __init__(self, model: nn.Module, aux: AuxSet, *, mu: float = 0.5, modules: ModuleSelection = None,
                 batch_size: int = 16, velocity_form: str = "paper", distributed: bool | None = None,
                 trainable: Iterable[Tensor] | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        check_aux(aux)
        model = unwrap_model(model)
        self.shard: Shard | None = resolve_shard(distributed)
        batches = aux_batches(aux, batch_size)
        if self.shard is not None and batches is not None and batches < self.shard.world_size:
            raise ValueError(f"the aux set gives {batches} batch(es) of {batch_size}, and each of the "
                             f"{self.shard.world_size} ranks measures its own: the aux set needs at least "
                             f"{self.shard.world_size} batches (one per rank); lower batch_size= or enlarge it")
        self.model = model
        self.aux = aux
        self.batch_size = batch_size
        self.tracker = VelocityTracker(mu, velocity_form)
        self.trained = _trained_tensors(model, trainable)
        selection = self._settle(select_modules(model, modules), explicit=modules is not None)
        #: Module name -> module, for every module measured (in ``named_modules()`` order, or as named).
        self.modules: dict[str, nn.Module] = selection.modules
        #: Module name -> how many neurons it contributes (output channels or features).
        self.neurons: dict[str, int] = selection.neurons
        #: Candidate module name -> why it is not measured (never called, frozen, no tensor output).
        self.left_out: dict[str, str] = selection.left_out
        self.selection = selection
        log.info(selection.summary())
        self.reference = self._synced_snapshot()

    @property
    def epoch(self) -> int:
        """How many measurements were taken (t of the last report)."""
        return self.tracker.epoch

    def summary(self) -> str:
        """The modules measured and those left out, with why (logged once at construction)."""
        return self.selection.summary()

    def _settle(self, candidates: dict[str, nn.Module], explicit: bool) -> Selection:
        """Probe the model on the first aux batch and keep the modules to measure. Under a process group the
        ranks agree on success first, so a rank whose probe fails cannot leave the others in a collective."""
        failure: Exception | None = None
        try:
            batch = next(iter(iterate_aux(self.aux, self.batch_size)), None)
            if batch is None:
                raise ValueError("the aux set yielded no batch; pass a non-empty tensor or loader")
            probed: dict[str, Probed] = probe(self.model, to_device(batch, model_device(self.model)), candidates,
                                              {id(t) for t in self.trained.values()})
        except Exception as error:  # raised below, once every rank knows
            failure = error
        if self.shard is not None:
            (_, any_failed), = agree([float(failure is not None)], model_device(self.model))
            if any_failed and failure is None:
                raise RuntimeError("building NeVe failed on another rank (see its error)")
        if failure is not None:
            raise failure
        return settle(candidates, probed, explicit)

    def _synced_snapshot(self) -> dict[str, Tensor]:
        """The model as it is now; under a process group, rank 0's copy on every rank."""
        state = snapshot(self.model)
        if self.shard is not None:
            broadcast_state(state)
        return state

    def trained_since_reference(self) -> bool:
        """Whether any trained parameter differs from the last measurement's (or construction's) reference: if
        none does, no optimizer step took effect and a measurement would only see BatchNorm statistics move."""
        if not self.trained:
            return True
        live = dict(module_tensors(self.model, buffers=False))  # by name: an optimizer may swap the tensors
        return any(not torch.equal(live[name], self.reference[name]) for name in self.trained if name in live)

    def measure(self) -> VelocityReport:
        """Compare the model with the last measurement (or construction), then make it the new reference."""
        with torch.random.fork_rng(devices=rng_devices(self.model)):  # a model that draws noise in eval
            if self.shard is None:
                sums = self._cosine_sums(None)
                current = snapshot(self.model)
            else:
                current = self._synced_snapshot()
                sums = self._reduce(self._cosine_sums(current))
        rho = {name: cosine_from_sums(*layer_sums).cpu() for name, layer_sums in sums.items()}
        self.reference = current
        return self.tracker.update(rho)

    def _reduce(self, local: dict[str, tuple[Tensor, Tensor, Tensor]] | Exception
                ) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """One process's sums from every rank's shard. A rank's failure is announced to all before any
        raises, so the others never wait in a collective alone."""
        device = model_device(self.model)
        failed = isinstance(local, Exception)
        sums = {} if failed else local
        sizes = [part.numel() for layer in sums.values() for part in layer]
        seen, layers, numel, error = agree([float(not failed and bool(sums)), len(sums), sum(sizes),
                                            float(failed)], device)
        if failed:
            raise local
        if error[1]:
            raise RuntimeError("the velocity measurement failed on another rank (see its error)")
        if seen[0] == 0:
            raise ValueError(f"a rank got no aux batch: the aux set needs at least {self.shard.world_size} "
                             "batches (one per rank); lower batch_size= or enlarge the aux set")
        if layers[0] != layers[1] or numel[0] != numel[1]:
            raise RuntimeError("ranks measured different layers; the model's forward must call the same "
                               "modules on every aux batch")
        flat = sum_over_ranks(torch.cat([part for layer in sums.values() for part in layer]))
        out, offset = {}, 0
        for name, layer in sums.items():
            parts = []
            for part in layer:
                parts.append(flat[offset:offset + part.numel()])
                offset += part.numel()
            out[name] = tuple(parts)
        return out

    def _cosine_sums(self, current: dict[str, Tensor] | None) -> dict[str, tuple[Tensor, Tensor, Tensor]] | Exception:
        """Per-layer (<y^t, y^{t-1}>, |y^t|^2, |y^{t-1}|^2) over this process's aux batches; ``current``
        replaces the live tensors if given. Under a shard, an error is returned, not raised (see _reduce)."""
        try:
            return self._cosine_sums_or_raise(current)
        except Exception as error:
            if self.shard is None:
                raise
            return error

    def _cosine_sums_or_raise(self, state: dict[str, Tensor] | None) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        device = model_device(self.model)
        sums: dict[str, list[Tensor]] = {}
        current: dict[str, list[Tensor]] = {name: [] for name in self.modules}
        replaying = False

        def hook_for(name: str, dim: int) -> Callable[..., None]:
            def hook(module: nn.Module, inputs: Any, output: Any) -> None:
                tensor = neuron_output(output)
                if tensor is None:
                    raise TypeError(f"module {name!r} returns {type(output).__name__}, not a tensor or a tuple "
                                    "whose first element is one; choose other modules with modules=")
                per_neuron = tensor.detach().float().movedim(dim, 0).reshape(tensor.shape[dim], -1)
                if not replaying:
                    if per_neuron.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr():
                        # reshape gave a view (2-D Linear output, batch of 1, channels_last): copy it, or
                        # an in-place op later in the forward (ReLU(inplace=True)) would change it
                        per_neuron = per_neuron.clone()
                    current[name].append(per_neuron)
                    return
                now = current[name].pop(0)
                batch = [(now * per_neuron).sum(1), (now * now).sum(1), (per_neuron * per_neuron).sum(1)]
                if name in sums:
                    for total, part in zip(sums[name], batch, strict=True):
                        total += part.double()
                else:
                    sums[name] = [part.double() for part in batch]
            return hook

        handles = [m.register_forward_hook(hook_for(n, neuron_dim(m))) for n, m in self.modules.items()]
        try:
            with Measuring(self.model):
                seen = 0
                for index, batch in enumerate(iterate_aux(self.aux, self.batch_size)):
                    if self.shard is not None and not self.shard.owns(index):
                        continue
                    batch = to_device(batch, device)
                    replaying = False
                    forward(self.model, batch, state)
                    replaying = True
                    forward(self.model, batch, self.reference)
                    seen += 1
        finally:
            for handle in handles:
                handle.remove()
        if seen == 0 and self.shard is not None:
            return {}  # _reduce reports it on every rank
        if seen == 0:
            raise ValueError("the aux set yielded no batch; pass a non-empty tensor or loader")
        missing = [name for name in self.modules if name not in sums]
        if missing:
            raise ValueError(f"modules {missing[:5]} were never called by the model's forward on the aux set "
                             "(they were when NeVe was built); the forward must call the same modules on every "
                             "aux batch, or choose modules that always run with modules=")
        return {name: tuple(sums[name]) for name in self.modules}  # selection order

    def settings(self) -> dict[str, Any]:
        """The constructor's settings a saved state is checked against."""
        return {"mu": self.tracker.mu, "batch_size": self.batch_size}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs for identical later measurements (reference included)."""
        return {"tracker": self.tracker.state_dict(), "reference": {k: v.clone() for k, v in self.reference.items()},
                "batch_size": self.batch_size, "layers": list(self.modules)}

    def load_state_dict(self, state: dict[str, Any], *, settings: str = "same") -> dict[str, tuple[Any, Any]]:
        """Restore a :meth:`state_dict`: the reference, the velocities and the measurement count.

        The state must come from the same architecture and measure the same modules. ``settings`` decides what
        happens when its ``mu`` or ``batch_size`` differ from this monitor's: ``"same"`` raises, ``"new"`` keeps
        this monitor's, ``"saved"`` takes the state's. Returns the settings that differed, name -> (saved, now).
        """
        expected = snapshot_shapes(self.model)
        found = {name: tuple(tensor.shape) for name, tensor in state["reference"].items()}
        if found != expected:
            raise ValueError("this velocity state belongs to another model (its parameters and buffers differ "
                             "in names or shapes); resume with the same model")
        self._check_layers(list(state["layers"]))
        saved = {"mu": float(state["tracker"]["mu"]), "batch_size": int(state["batch_size"])}
        changed = reconcile(saved, self.settings(), settings, "velocity monitor")
        ours = self.settings()
        device = model_device(self.model)
        self.tracker.load_state_dict(state["tracker"])  # refuses another velocity form before anything changes
        self.reference = {k: v.to(device) for k, v in state["reference"].items()}
        chosen = saved if settings == "saved" else ours
        self.tracker.mu, self.batch_size = chosen["mu"], chosen["batch_size"]
        return changed

    def _check_layers(self, saved: list[str]) -> None:
        """A state's measured layers must be this monitor's. States written before modules the forward never
        calls were left out at construction list those too; they are ignored."""
        never_called = {name for name, reason in self.left_out.items() if reason == NEVER_CALLED}
        saved = [name for name in saved if name not in never_called]
        if saved == list(self.modules):
            return
        left_out = [name for name in saved if name in self.left_out]
        if left_out:
            raise ValueError(f"this velocity state measured modules this monitor leaves out ({left_out[:5]}: "
                             f"{self.left_out[left_out[0]]}); to resume it as it was, pass modules= with the "
                             "state's layer list (state['layers'])")
        raise ValueError("this velocity state belongs to another layer selection; resume with the same model and "
                         "modules= (the saved list is state['layers'])")


def _trained_tensors(model: nn.Module, trainable: Iterable[Tensor] | None) -> dict[str, Tensor]:
    """Name (as in the snapshot) -> live tensor, for the parameters that train: ``trainable`` if given (by
    identity), else every parameter with ``requires_grad``."""
    if isinstance(trainable, Tensor):
        trainable = [trainable]
    chosen = None if trainable is None else {id(t) for t in trainable}
    return {name: t for name, t in module_tensors(model, buffers=False)
            if (t.requires_grad if chosen is None else id(t) in chosen)}
