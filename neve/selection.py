"""Which neurons NeVe measures: the candidate modules, and the construction probe that settles the set.

Candidates are chosen by type (the default), by name, or by a predicate. One forward of a small aux batch at
construction (the *probe*, with the measurement's guarantees: eval mode, no autocast, modes and RNG restored,
no gradient written) then tells, for each candidate, whether the forward calls it, how many neurons its output
has, and whether that output depends on a trained parameter. Under the default selection a module counts if
the forward calls it and its output depends on a trained parameter: modules with trained parameters, and every
module downstream of one. A frozen backbone upstream of every trained layer computes the same function at every
epoch; its velocity is 0 by construction and would drag the mean towards the stop threshold while the trained
layers still move, so it is left out. Modules named or chosen by a predicate are measured as given.

The probe also turns aux mistakes (shape, dtype, token ids beyond the vocabulary, a forward that takes other
arguments) into an error at construction that says what to pass, instead of a raw torch error after an epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.utils.rnn import PackedSequence

from neve.forward import Measuring, module_tensors, rng_devices

#: Module types hooked by default: the authors' Conv/Linear/BatchNorm, LayerNorm for transformers, the recurrent
#: layers (RNN, GRU, LSTM) and nn.MultiheadAttention (its out_proj is applied with F.linear, never called).
#: transformers' ``Conv1D`` (GPT-2's projections) is recognised by name, see :func:`is_transformers_conv1d`.
DEFAULT_MODULE_TYPES: tuple[type[nn.Module], ...] = (_ConvNd, nn.Linear, _BatchNorm, nn.LayerNorm, nn.RNNBase,
                                                     nn.MultiheadAttention)
#: Modules whose neurons are channels on dim 1 (layout N, C, *spatial); all others use the last dim.
CHANNEL_FIRST_TYPES: tuple[type[nn.Module], ...] = (_ConvNd, _BatchNorm, _InstanceNorm, nn.GroupNorm)
#: How many aux samples the construction probe runs (its autograd graph is kept for one forward).
PROBE_SAMPLES = 2

ModuleSelection = Iterable[str] | Callable[[str, nn.Module], bool] | None

#: Why a candidate of the default selection is not measured (values of ``VelocityMonitor.left_out``).
NEVER_CALLED = "never called by the forward"
FROZEN = "frozen: its output depends on no trained parameter"


def is_transformers_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (a Linear with a transposed weight: GPT-2, GPT, ...), without importing it."""
    return any(cls.__name__ == "Conv1D" and cls.__module__.split(".")[0] == "transformers"
               for cls in type(module).__mro__)


def is_default_module(module: nn.Module) -> bool:
    """Whether the default selection considers ``module`` (see :data:`DEFAULT_MODULE_TYPES`)."""
    return isinstance(module, DEFAULT_MODULE_TYPES) or is_transformers_conv1d(module)


def neuron_dim(module: nn.Module) -> int:
    """The axis of a module's output that indexes its neurons."""
    return 1 if isinstance(module, CHANNEL_FIRST_TYPES) else -1


def neuron_output(output: Any) -> Tensor | None:
    """The tensor whose neurons are measured: the output itself, or element 0 of a tuple or list (RNN/GRU/LSTM,
    nn.MultiheadAttention, most transformer blocks), a PackedSequence's data; None if there is no such tensor."""
    if isinstance(output, tuple | list) and output and not isinstance(output, PackedSequence):
        output = output[0]
    if isinstance(output, PackedSequence):
        output = output.data
    return output if isinstance(output, Tensor) and output.ndim >= 1 else None


def select_modules(model: nn.Module, modules: ModuleSelection = None) -> dict[str, nn.Module]:
    """The candidate modules, by ``named_modules()`` name: default types, a list of names, or a predicate."""
    named = dict(model.named_modules())
    if modules is None:
        chosen = {name: m for name, m in named.items() if is_default_module(m)}
    elif callable(modules):
        chosen = {name: m for name, m in named.items() if modules(name, m)}
    elif isinstance(modules, str):
        raise TypeError(f"modules= takes a list of names, got the string {modules!r}; pass [{modules!r}]")
    else:
        names = list(modules)
        unknown = [name for name in names if name not in named]
        if unknown:
            known = ", ".join(list(named)[1:8])
            raise ValueError(f"modules {unknown} are not in the model; names come from model.named_modules(), "
                             f"e.g. {known}, ...")
        chosen = {name: named[name] for name in names}
    if not chosen:
        raise ValueError("no hookable layer: the model has no Conv*d, Linear, BatchNorm*d, LayerNorm, RNN/GRU/LSTM, "
                         "MultiheadAttention or transformers Conv1D module (or the modules= selection matched "
                         "none); pass modules= naming the layers to measure")
    return chosen


@dataclass
class Probed:
    """What the construction probe saw of one candidate module."""

    #: Neurons of its output (None: its output is not a tensor nor a tuple starting with one).
    neurons: int | None
    output_type: str
    #: Its output depends on a trained parameter.
    trained: bool


@dataclass
class Selection:
    """The modules measured, their neurons, and why the other candidates are not."""

    modules: dict[str, nn.Module]
    neurons: dict[str, int]
    left_out: dict[str, str]

    def summary(self) -> str:
        """One paragraph: the modules measured (counted by type) and those left out, with why."""
        kinds: dict[str, int] = {}
        for module in self.modules.values():
            kinds[type(module).__name__] = kinds.get(type(module).__name__, 0) + 1
        counted = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
        plural = "" if len(self.modules) == 1 else "s"
        text = (f"NeVe measures {len(self.modules)} module{plural}, {sum(self.neurons.values()):,} neurons "
                f"({counted}): {_names(list(self.modules))}")
        reasons: dict[str, list[str]] = {}
        for name, reason in self.left_out.items():
            reasons.setdefault(reason, []).append(name)
        for reason, names in reasons.items():
            text += f"; left out {len(names)} {reason}: {_names(names)}"
        return text


def _names(names: list[str], shown: int = 6) -> str:
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(repr(name) for name in names[:shown]) + more


def settle(candidates: dict[str, nn.Module], probed: dict[str, Probed], explicit: bool) -> Selection:
    """The measured set from the probe: the default selection drops modules the forward never calls, whose
    output is no tensor, or which are frozen; named or predicate-chosen modules must run and give a tensor."""
    modules, neurons, left_out = {}, {}, {}
    for name, module in candidates.items():
        seen = probed.get(name)
        if seen is None:
            reason = NEVER_CALLED
        elif seen.neurons is None:
            reason = f"returning {seen.output_type}, not a tensor or a tuple whose first element is one"
        elif not seen.trained and not explicit:
            reason = FROZEN
        else:
            modules[name], neurons[name] = module, seen.neurons
            continue
        if explicit:
            raise ValueError(f"module {name!r} was chosen with modules= but is {reason}; choose modules that the "
                             "forward calls and that return a tensor (or a tuple whose first element is the output)")
        left_out[name] = reason
    if not modules:
        frozen = sum(reason == FROZEN for reason in left_out.values())
        raise ValueError(f"no module to measure: of {len(candidates)} candidates, {frozen} are frozen (no trained "
                         "parameter reaches their output: every parameter has requires_grad=False or is not in the "
                         f"optimizer) and {len(left_out) - frozen} are never called or return no tensor. Build NeVe "
                         "after unfreezing the layers you train, or pass modules= naming the layers to measure")
    return Selection(modules, neurons, left_out)


class AuxMismatch(ValueError):
    """The aux set does not fit the model; the message says what to pass."""


def probe(model: nn.Module, batch: Any, candidates: dict[str, nn.Module], trained: set[int]) -> dict[str, Probed]:
    """Run ``model`` once on the first samples of ``batch`` and report each candidate that ran.

    Every parameter is swapped for a detached alias that requires grad exactly when it is in ``trained`` (ids of
    the trained tensors), so an output's ``requires_grad`` says whether a trained parameter reaches it. Nothing
    of the model changes: no gradient is written (no backward), buffers are read in eval mode, modes and the
    RNG are restored. A failing forward raises :class:`AuxMismatch` saying what the aux set should be.
    """
    aliases: dict[int, Tensor] = {}
    params = {}
    for name, tensor in module_tensors(model, buffers=False):
        if id(tensor) not in aliases:
            aliases[id(tensor)] = tensor.detach().requires_grad_(id(tensor) in trained and tensor.is_floating_point())
        params[name] = aliases[id(tensor)]
    batch = first_samples(batch, PROBE_SAMPLES)
    args, kwargs = ((), dict(batch)) if isinstance(batch, Mapping) else ((batch,), {})
    probed: dict[str, Probed] = {}

    def hook_for(name: str, dim: int) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            tensor = neuron_output(output)
            before = probed.get(name)
            if tensor is None:
                probed[name] = Probed(None, type(output).__name__, False)
            else:
                depends = tensor.requires_grad or (before is not None and before.trained)
                probed[name] = Probed(tensor.shape[dim], type(output).__name__, depends)
        return hook

    handles = [m.register_forward_hook(hook_for(n, neuron_dim(m))) for n, m in candidates.items()]
    handles += [m.register_forward_pre_hook(_token_check(n)) for n, m in model.named_modules()
                if isinstance(m, nn.Embedding)]
    try:
        with torch.random.fork_rng(devices=rng_devices(model)), Measuring(model, grad=True):
            functional_call(model, params, args, kwargs, tie_weights=False)
    except Exception as error:
        raise AuxMismatch(_explain(model, batch, error)) from error
    finally:
        for handle in handles:
            handle.remove()
    return probed


def first_samples(batch: Any, n: int) -> Any:
    """The first ``n`` samples of an aux batch (a tensor, or a dict whose tensors share the batch dimension)."""
    if isinstance(batch, Tensor):
        return batch[:n]
    if isinstance(batch, Mapping):
        sizes = {v.shape[0] for v in batch.values() if isinstance(v, Tensor) and v.ndim >= 1}
        if len(sizes) == 1:
            size = sizes.pop()
            return {k: v[:n] if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == size else v
                    for k, v in batch.items()}
    return batch


def _token_check(name: str) -> Callable[..., None]:
    """A pre-hook that refuses ids an embedding cannot look up, naming the embedding (on CUDA the lookup itself
    would end in a device-side assert that poisons the process)."""
    def check(module: nn.Embedding, inputs: tuple[Any, ...]) -> None:
        ids = inputs[0] if inputs else None
        if not isinstance(ids, Tensor):
            return
        if ids.is_floating_point() or ids.is_complex():
            raise AuxMismatch(f"module {name!r} (nn.Embedding) takes integer token ids, the aux set gives "
                              f"{ids.dtype} values: pass token ids, e.g. neve.token_aux(n=64, seq_len=32, "
                              "vocab_size=model.config.vocab_size)")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= module.num_embeddings):
            raise AuxMismatch(f"module {name!r} (nn.Embedding with {module.num_embeddings} rows) got index "
                              f"{int(ids.max()) if int(ids.max()) >= module.num_embeddings else int(ids.min())}: "
                              "token ids must lie in [0, vocab_size), e.g. neve.token_aux(vocab_size="
                              "model.config.vocab_size), and sequences must not be longer than the model's "
                              "maximum length")
    return check


def describe(batch: Any) -> str:
    if isinstance(batch, Tensor):
        return f"a {str(batch.dtype).removeprefix('torch.')} tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, Mapping):
        return "a dict of " + ", ".join(f"{k}: {describe(v)}" if isinstance(v, Tensor) else f"{k}: {type(v).__name__}"
                                        for k, v in batch.items())
    return type(batch).__name__


def _explain(model: nn.Module, batch: Any, error: Exception) -> str:
    """The probe's error message: the torch error, the aux batch, and what to pass instead."""
    if isinstance(error, AuxMismatch):
        hint = str(error)
    elif isinstance(error, TypeError) and ("positional argument" in str(error) or "keyword argument" in str(error)):
        hint = ("the model's forward takes other arguments than one input tensor: pass the aux set as a dict of "
                "keyword arguments ({'input_ids': ..., 'attention_mask': ...}) or a loader of such dicts, or wrap "
                "the model in a module whose forward takes one batch")
    elif isinstance(error, TypeError):
        hint = ("the forward must run on inputs alone, as at inference (no labels): pass what model(x), or "
                "model(**batch) for a dict, takes; a forward that needs more can be wrapped in a module that "
                "supplies it")
    else:
        tensor = batch if isinstance(batch, Tensor) else None
        dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
        embeds = any(isinstance(m, nn.Embedding) for m in model.modules())
        if tensor is not None and not tensor.is_floating_point() and not embeds:
            hint = ("the aux set holds integers but the model has no nn.Embedding: pass float inputs shaped like "
                    "one training input, e.g. neve.gaussian_aux(n=100, shape=<one input's shape>)")
        elif tensor is not None and tensor.is_floating_point() and dtypes and tensor.dtype not in dtypes:
            hint = (f"the aux set is {tensor.dtype}, the model's parameters are {', '.join(map(str, dtypes))}: "
                    f"pass the aux set in the model's dtype (aux.to({next(iter(dtypes))}))")
        else:
            hint = ("each aux item must look like one training input without the batch dimension (its shape, "
                    "dtype and device): e.g. neve.gaussian_aux(n=100, shape=(3, 32, 32)) for 32x32 RGB images, "
                    "neve.token_aux(n=64, seq_len=128, vocab_size=...) for token ids")
    return (f"NeVe runs the model on one aux batch when it is built, and that forward failed: "
            f"{type(error).__name__}: {error}\n  aux batch: {describe(batch)}\n  what to do: {hint}")
