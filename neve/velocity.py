"""Measuring neural velocity (spec sections 1-2), streamed so memory does not grow with |D_aux|.

The cosine between a neuron's outputs now (y^t) and at the last measurement (y^{t-1}) only needs
three per-neuron sums: <y^t, y^{t-1}>, |y^t|^2 and |y^{t-1}|^2. Instead of storing y^{t-1} for
the whole auxiliary set, we keep a snapshot of the model's parameters and buffers as they were
at the last measurement and replay it with ``torch.func.functional_call``: each aux batch goes
through the current model (outputs kept for that batch only) and then through the snapshot,
whose outputs are folded into the sums as they appear. Memory: one copy of the parameters plus
one batch of activations, whatever the size of the aux set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from neve.distributed import Shard, agree, broadcast_state, resolve_shard, sum_over_ranks, unwrap_model

#: Module types hooked by default: the authors' Conv/Linear/BatchNorm, plus LayerNorm for transformers.
DEFAULT_MODULE_TYPES: tuple[type[nn.Module], ...] = (_ConvNd, nn.Linear, _BatchNorm, nn.LayerNorm)
#: Modules whose neurons are channels on dim 1 (layout N, C, *spatial); all others use the last dim.
CHANNEL_FIRST_TYPES: tuple[type[nn.Module], ...] = (_ConvNd, _BatchNorm, _InstanceNorm, nn.GroupNorm)

ModuleSelection = Iterable[str] | Callable[[str, nn.Module], bool] | None
#: A tensor of inputs, a dict of input tensors (e.g. a tokenizer's output), or an iterable of batches (each a
#: tensor, a dict of tensors, or a list/tuple whose first item is the input).
AuxSet = Tensor | Mapping[str, Any] | Iterable[Any]


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


def neuron_dim(module: nn.Module) -> int:
    """The axis of a module's output that indexes its neurons."""
    return 1 if isinstance(module, CHANNEL_FIRST_TYPES) else -1


def select_modules(model: nn.Module, modules: ModuleSelection = None) -> dict[str, nn.Module]:
    """The modules to hook, by ``named_modules()`` name: default types, a list of names, or a predicate."""
    named = dict(model.named_modules())
    if modules is None:
        chosen = {name: m for name, m in named.items() if isinstance(m, DEFAULT_MODULE_TYPES)}
    elif callable(modules):
        chosen = {name: m for name, m in named.items() if modules(name, m)}
    else:
        names = list(modules)
        unknown = [name for name in names if name not in named]
        if unknown:
            known = ", ".join(list(named)[1:8])
            raise ValueError(f"modules {unknown} are not in the model; names come from model.named_modules(), "
                             f"e.g. {known}, ...")
        chosen = {name: named[name] for name in names}
    if not chosen:
        raise ValueError("no hookable layer: the model has no Conv*d, Linear, BatchNorm*d or LayerNorm module "
                         "(or the modules= selection matched none); pass modules= naming the layers to measure")
    return chosen


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
        return {"mu": self.mu, "form": self.form, "epoch": self.epoch,
                "velocity": {k: v.clone() for k, v in self.velocity.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        form = state.get("form", "paper")  # states written before the signed form existed are eq. 2's
        if form != self.form:
            raise ValueError(f"this velocity state was computed with velocity_form={form!r}, this tracker uses "
                             f"{self.form!r}; resume with the same velocity form (--velocity-form / --fidelity)")
        self.mu, self.epoch = float(state["mu"]), int(state["epoch"])
        self.velocity = {k: v.clone() for k, v in state["velocity"].items()}


def iterate_aux(aux: AuxSet, batch_size: int) -> Iterator[Any]:
    """Input batches of the aux set: chunks of a tensor or of a dict's tensors, or the first item of each
    loader batch (a tensor, or a dict of tensors passed to the model as keyword arguments)."""
    if isinstance(aux, Tensor):
        yield from aux.split(batch_size)
        return
    if isinstance(aux, Mapping):
        n = _mapping_length(aux)
        for start in range(0, n, batch_size):
            yield {k: v[start:start + batch_size] if isinstance(v, Tensor) else v for k, v in aux.items()}
        return
    for batch in aux:
        yield batch[0] if isinstance(batch, list | tuple) else batch


def _mapping_length(aux: Mapping[str, Any]) -> int:
    lengths = {k: v.shape[0] for k, v in aux.items() if isinstance(v, Tensor) and v.ndim >= 1}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"a dict aux set needs tensors with one batch dimension in common, got {lengths}; "
                         "pass e.g. tokenizer(texts, return_tensors='pt', padding=True)")
    return next(iter(lengths.values()))


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Mapping):
        return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
    return batch.to(device, non_blocking=True)


def _forward(model: nn.Module, batch: Any, state: dict[str, Tensor] | None) -> None:
    """The model on one aux batch (a dict as keyword arguments), with ``state`` swapped in if given."""
    args, kwargs = ((), dict(batch)) if isinstance(batch, Mapping) else ((batch,), {})
    if state is None:
        model(*args, **kwargs)
    else:
        functional_call(model, state, args, kwargs, tie_weights=False)


def check_aux(aux: AuxSet) -> None:
    if isinstance(aux, Tensor):
        if aux.ndim < 2 or aux.shape[0] == 0:
            raise ValueError(f"the aux set is empty or has no batch dimension (shape {tuple(aux.shape)}); "
                             "pass e.g. neve.gaussian_aux(n=100, shape=(3, 32, 32))")
    elif isinstance(aux, Mapping):
        if _mapping_length(aux) == 0:
            raise ValueError("the aux set is empty; pass a non-empty dict of input tensors")
    elif hasattr(aux, "__len__"):
        try:
            empty = len(aux) == 0
        except TypeError:  # e.g. a DataLoader over an IterableDataset without __len__
            return
        if empty:
            raise ValueError("the aux set is empty; pass a non-empty tensor or loader of input batches")


def _model_device(model: nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _module_tensors(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """Each module's own parameters and buffers, every module once (a module used twice, once).

    Tied tensors held by distinct modules appear under each module's name. These are the names
    ``functional_call(..., tie_weights=False)`` must swap: naming a reused module's tensor under
    two names makes it swap the same attribute twice and leave the snapshot in the live model.
    """
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        for name, tensor in [*module._parameters.items(), *module._buffers.items()]:
            if tensor is not None:
                yield dot + name, tensor


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """Detached copies of every parameter and buffer: the model as it is now, replayable later."""
    copies: dict[int, Tensor] = {}  # a tensor tied between modules is copied once
    state = {}
    for name, tensor in _module_tensors(model):
        if id(tensor) not in copies:
            copies[id(tensor)] = tensor.detach().clone()
        state[name] = copies[id(tensor)]
    return state


class _EvalNoGrad:
    """Eval mode, no grad, no autocast for the duration; every module's own mode restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.device_type = _model_device(model).type

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        self.grad = torch.no_grad()
        self.autocast = torch.autocast(self.device_type, enabled=False)
        self.grad.__enter__()
        self.autocast.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.autocast.__exit__(*exc)
        self.grad.__exit__(*exc)
        for module, training in self.modes:
            module.training = training


class VelocityMonitor:
    """Neural velocity of a model on a fixed auxiliary set, measured once per epoch.

    Construction takes the t = 0 reference (the model as it is now); each ``measure()`` compares
    the model with the previous measurement and returns a :class:`VelocityReport`. Measuring
    leaves the model as it found it: modes restored, no gradients, BatchNorm statistics untouched,
    hooks removed, the global RNG states unchanged, fp32 even inside an autocast region.
    ``velocity_form="signed"`` uses the authors' recursion instead of eq. 2 (see :class:`VelocityTracker`).

    A DDP / DataParallel wrapper is unwrapped (its ``.module`` is measured); FSDP raises. Under an
    initialized process group (``distributed=None``, the default, or ``True``) each rank measures every
    W-th aux batch of rank 0's model and the sums are reduced (see :mod:`neve.distributed`): every rank
    gets one process's result, bit-identical, and every rank must call ``measure()`` at the same points.
    """

    def __init__(self, model: nn.Module, aux: AuxSet, *, mu: float = 0.5, modules: ModuleSelection = None,
                 batch_size: int = 16, velocity_form: str = "paper", distributed: bool | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        check_aux(aux)
        model = unwrap_model(model)
        self.shard: Shard | None = resolve_shard(distributed)
        self.model = model
        self.aux = aux
        self.batch_size = batch_size
        self.modules = select_modules(model, modules)
        #: With the default selection, layers the forward never calls are left out of the reports
        #: (e.g. nn.MultiheadAttention's out_proj, timm SwinV2's attn.qkv: their weights are applied
        #: with F.linear); a layer named or chosen by the caller must run.
        self.skip_uncalled = modules is None
        self.tracker = VelocityTracker(mu, velocity_form)
        self.reference = self._synced_snapshot()

    @property
    def epoch(self) -> int:
        """How many measurements were taken (t of the last report)."""
        return self.tracker.epoch

    def _synced_snapshot(self) -> dict[str, Tensor]:
        """The model as it is now; under a process group, rank 0's copy on every rank."""
        state = snapshot(self.model)
        if self.shard is not None:
            broadcast_state(state)
        return state

    def measure(self) -> VelocityReport:
        """Compare the model with the last measurement (or construction), then make it the new reference."""
        device = _model_device(self.model)
        cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # a model that draws noise in eval must not move the run's RNG
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
        device = _model_device(self.model)
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
        device = _model_device(self.model)
        sums: dict[str, list[Tensor]] = {}
        current: dict[str, list[Tensor]] = {name: [] for name in self.modules}
        replaying = False

        def hook_for(name: str, dim: int) -> Callable[..., None]:
            def hook(module: nn.Module, inputs: Any, output: Any) -> None:
                if not isinstance(output, Tensor):
                    raise TypeError(f"module {name!r} returns {type(output).__name__}, not a tensor; "
                                    "choose other modules with modules=")
                per_neuron = output.detach().float().movedim(dim, 0).reshape(output.shape[dim], -1)
                if not replaying:
                    if per_neuron.untyped_storage().data_ptr() == output.untyped_storage().data_ptr():
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
            with _EvalNoGrad(self.model):
                seen = 0
                for index, batch in enumerate(iterate_aux(self.aux, self.batch_size)):
                    if self.shard is not None and not self.shard.owns(index):
                        continue
                    batch = _to_device(batch, device)
                    replaying = False
                    _forward(self.model, batch, state)
                    replaying = True
                    _forward(self.model, batch, self.reference)
                    seen += 1
        finally:
            for handle in handles:
                handle.remove()
        if seen == 0 and self.shard is not None:
            return {}  # _reduce reports it on every rank
        if seen == 0:
            raise ValueError("the aux set yielded no batch; pass a non-empty tensor or loader")
        missing = [name for name in self.modules if name not in sums]
        if missing and (not self.skip_uncalled or not sums):
            raise ValueError(f"modules {missing[:5]} were never called by the model's forward; "
                             "choose modules that run with modules=")
        return {name: tuple(sums[name]) for name in self.modules if name in sums}  # selection order

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs for identical later measurements (reference included)."""
        return {"tracker": self.tracker.state_dict(), "reference": {k: v.clone() for k, v in self.reference.items()},
                "batch_size": self.batch_size, "layers": list(self.modules)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = snapshot_shapes(self.model)
        found = {name: tuple(tensor.shape) for name, tensor in state["reference"].items()}
        if found != expected or list(state["layers"]) != list(self.modules):
            raise ValueError("this velocity state belongs to another model or layer selection; "
                             "resume with the same model and modules=")
        device = _model_device(self.model)
        self.reference = {k: v.to(device) for k, v in state["reference"].items()}
        self.tracker.load_state_dict(state["tracker"])
        self.batch_size = int(state["batch_size"])


def snapshot_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Name and shape of every tensor :func:`snapshot` copies: what a saved reference must match."""
    return {name: tuple(tensor.shape) for name, tensor in _module_tensors(model)}
