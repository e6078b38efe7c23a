"""Running a model on the aux set without side effects: aux batches, the measuring context, snapshots.

Everything NeVe does to a model goes through here: unwrap it (DDP, DataParallel, ``torch.compile``), iterate
the aux set in batches, run a forward in eval mode without autocast (and, except for the construction probe,
without autograd) and restore every module's mode afterwards, copy its parameters and buffers, and replay
such a copy with ``torch.func.functional_call``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from neve.distributed import check_not_fsdp

#: A tensor of inputs, a dict of input tensors (e.g. a tokenizer's output), or an iterable of batches (each a
#: tensor, a dict of tensors, or a list/tuple whose first item is the input).
AuxSet = Tensor | Mapping[str, Any] | Iterable[Any]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network to measure, inside any DDP / DataParallel wrapper and ``torch.compile``'s ``OptimizedModule``.

    A DDP forward would issue collectives; hooks on a compiled module's submodules cause recompiles and graph
    breaks. The original module holds the same parameters, so measuring it measures the trained model.
    FSDP is refused (no rank holds the whole network).
    """
    check_not_fsdp(model)
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def iterate_aux(aux: AuxSet, batch_size: int) -> Iterator[Any]:
    """Input batches of the aux set: chunks of a tensor or of a dict's tensors, or the first item of each
    loader batch (a tensor, or a dict of tensors passed to the model as keyword arguments)."""
    if isinstance(aux, Tensor):
        yield from aux.split(batch_size)
        return
    if isinstance(aux, Mapping):
        n = mapping_length(aux)
        for start in range(0, n, batch_size):
            yield {k: v[start:start + batch_size] if isinstance(v, Tensor) else v for k, v in aux.items()}
        return
    for batch in aux:
        yield batch[0] if isinstance(batch, list | tuple) else batch


def mapping_length(aux: Mapping[str, Any]) -> int:
    lengths = {k: v.shape[0] for k, v in aux.items() if isinstance(v, Tensor) and v.ndim >= 1}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"a dict aux set needs tensors with one batch dimension in common, got {lengths}; "
                         "pass e.g. tokenizer(texts, return_tensors='pt', padding=True)")
    return next(iter(lengths.values()))


def aux_batches(aux: AuxSet, batch_size: int) -> int | None:
    """How many batches :func:`iterate_aux` yields, if that is known without iterating."""
    if isinstance(aux, Tensor):
        return -(-aux.shape[0] // batch_size)
    if isinstance(aux, Mapping):
        return -(-mapping_length(aux) // batch_size)
    try:
        return len(aux)  # a list of batches, a DataLoader over a sized dataset
    except TypeError:
        return None


def check_aux(aux: AuxSet) -> None:
    """Refuse an aux set that is empty or not a batch of inputs, before any forward."""
    if isinstance(aux, Tensor):
        if aux.ndim < 2 or aux.shape[0] == 0:
            raise ValueError(f"the aux set is empty or has no batch dimension (shape {tuple(aux.shape)}); "
                             "pass e.g. neve.gaussian_aux(n=100, shape=(3, 32, 32))")
    elif isinstance(aux, Mapping):
        if mapping_length(aux) == 0:
            raise ValueError("the aux set is empty; pass a non-empty dict of input tensors")
    elif hasattr(aux, "__len__"):
        try:
            empty = len(aux) == 0
        except TypeError:  # e.g. a DataLoader over an IterableDataset without __len__
            return
        if empty:
            raise ValueError("the aux set is empty; pass a non-empty tensor or loader of input batches")
    elif isinstance(aux, Iterator):
        raise TypeError(f"the aux set is a one-shot iterator ({type(aux).__name__}), but it is read at every "
                        "measurement; pass a tensor, a list of batches or a DataLoader")
    elif not isinstance(aux, Iterable):
        raise TypeError(f"the aux set must be a tensor, a dict of tensors or an iterable of batches, got "
                        f"{type(aux).__name__}; pass e.g. neve.gaussian_aux(n=100, shape=(3, 32, 32))")


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Mapping):
        return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
    if not isinstance(batch, Tensor):
        raise TypeError(f"an aux batch must be a tensor or a dict of tensors, got {type(batch).__name__}; a loader "
                        "may yield (inputs, targets) pairs, whose first item is used")
    return batch.to(device, non_blocking=True)


def forward(model: nn.Module, batch: Any, state: dict[str, Tensor] | None) -> None:
    """The model on one aux batch (a dict as keyword arguments), with ``state`` swapped in if given."""
    args, kwargs = ((), dict(batch)) if isinstance(batch, Mapping) else ((batch,), {})
    if state is None:
        model(*args, **kwargs)
    else:
        functional_call(model, state, args, kwargs, tie_weights=False)


def model_device(model: nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def module_tensors(model: nn.Module, buffers: bool = True) -> Iterator[tuple[str, Tensor]]:
    """Each module's own parameters (and buffers), every module once (a module used twice, once).

    Tied tensors held by distinct modules appear under each module's name. These are the names
    ``functional_call(..., tie_weights=False)`` must swap: naming a reused module's tensor under
    two names makes it swap the same attribute twice and leave the snapshot in the live model.
    """
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        own = [*module._parameters.items(), *(module._buffers.items() if buffers else [])]
        for name, tensor in own:
            if tensor is not None:
                yield dot + name, tensor


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """Detached copies of every parameter and buffer: the model as it is now, replayable later."""
    copies: dict[int, Tensor] = {}  # a tensor tied between modules is copied once
    state = {}
    for name, tensor in module_tensors(model):
        if id(tensor) not in copies:
            copies[id(tensor)] = tensor.detach().clone()
        state[name] = copies[id(tensor)]
    return state


def snapshot_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Name and shape of every tensor :func:`snapshot` copies: what a saved reference must match."""
    return {name: tuple(tensor.shape) for name, tensor in module_tensors(model)}


def rng_devices(model: nn.Module) -> list[int]:
    """The CUDA devices whose RNG a measurement must leave as it found it (``torch.random.fork_rng``)."""
    device = model_device(model)
    if device.type != "cuda":
        return []
    return [torch.cuda.current_device() if device.index is None else device.index]


class Measuring:
    """Eval mode, fp32 (no autocast) and no autograd for the duration; every module's mode restored after.

    ``grad=True`` keeps autograd on (still outside inference mode): the construction probe reads which outputs
    depend on a trained parameter from their ``requires_grad``. A module compiled in place
    (``module.compile()``) runs its eager forward, so that hooks cause no recompiles.
    """

    def __init__(self, model: nn.Module, grad: bool = False) -> None:
        self.model = model
        self.device_type = model_device(model).type
        self.grad = grad

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.compiled = [(m, m._compiled_call_impl) for m in self.model.modules()
                         if getattr(m, "_compiled_call_impl", None) is not None]
        self.model.eval()
        for module, _ in self.compiled:
            module._compiled_call_impl = None
        self.contexts = [torch.inference_mode(False), torch.enable_grad() if self.grad else torch.no_grad(),
                         torch.autocast(self.device_type, enabled=False)]
        for context in self.contexts:
            context.__enter__()

    def __exit__(self, *exc: object) -> None:
        for context in reversed(self.contexts):
            context.__exit__(*exc)
        for module, compiled in self.compiled:
            module._compiled_call_impl = compiled
        for module, training in self.modes:
            module.training = training
