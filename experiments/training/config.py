"""One run's configuration: command-line choices, with the paper's recipe filling what is left unset.

Each field that ``python -m experiments.train`` takes carries its option's help (:func:`option`); the command
line is built from these fields (:mod:`experiments.train`), so a field, its default and its help are written once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.data import TRAIN_ORDERS, check_options
from experiments.models.resnet_cifar import RESNET_VARIANTS
from experiments.training.precision import PRECISIONS
from experiments.training.recipes import OPTIMIZER_DEFAULT_LR, RECIPES, recipe_for
from experiments.training.records import WANDB_MODES
from neve.aux_sets import AUX_NOISES
from neve.controller import PLATEAU_RULES, check_alpha, check_epsilon, check_patience
from neve.velocity import VELOCITY_FORMS

AUX_KINDS = ("gaussian", "val", "train")
#: Extra sets whose velocity is recorded each epoch beside the aux set's (Fig. 7): ``velocity_<set>`` columns.
VELOCITY_SETS = ("train", "val")
STOP_MODES = ("halt", "mark")
OPTIMIZERS = ("sgd", "adam", "adamw")
#: Fields that may change between a run and its resume (where it runs, how it logs, how fast it goes);
#: they are not part of a run's identity (its folder name).
RESUMABLE_FIELDS = {"out", "wandb", "device", "precision", "num_workers", "download", "data_root", "progress",
                    "wandb_group", "threads"}

#: Fields added after runs were published, with the value that means "as before": at that value a field is left
#: out of a run's identity, so the folders of runs trained before it existed keep their names.
ADDED_FIELDS: dict[str, Any] = {"data_options": {}, "train_order": "shuffle"}

#: ``--fidelity``: follow the paper's text, or reproduce what the authors' code did (spec section 6).
FIDELITIES = ("paper", "code")
#: What each fidelity sets, for every field the user left unset (None). Each is also its own option.
FIDELITY_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"velocity_form": "paper", "aux_noise": "normal", "plateau_rule": "paper", "resnet_variant": "paper",
              "test_augmentation": False},
    "code": {"velocity_form": "signed", "aux_noise": "uint8", "plateau_rule": "code", "resnet_variant": "code",
             "test_augmentation": None},  # None: the authors' Label Wave loader only (resolved per method)
}


@dataclass(frozen=True)
class Option:
    """How a :class:`RunConfig` field appears on the command line (``--<field-name>`` unless ``flag``)."""

    help: str
    #: The allowed values (or a function returning them, for registries imported late); checked by
    #: :meth:`RunConfig.check` too, so the Python API refuses what the command line would.
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    #: Turns the option's text into the field's value (default: from the field's type).
    parse: Callable[[str], Any] | None = None
    flag: str | None = None
    metavar: str | None = None
    #: The title of the help section this field opens.
    section: str | None = None

    def allowed(self) -> Sequence[str] | None:
        return self.choices() if callable(self.choices) else self.choices


def option(default: Any = None, help: str = "", *, factory: Callable[[], Any] | None = None,
           **how: Any) -> Any:
    """A :class:`RunConfig` field that is also a command-line option (``how``: see :class:`Option`)."""
    metadata = {"option": Option(help, **how)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def finite_float(text: str) -> float:
    """A command-line float that is a number: NaN and infinities would train nonsense or write invalid JSON."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part)
    except ValueError as error:
        raise ValueError(f"takes comma-separated epochs, e.g. 100,150; got {text!r}") from error


def _data_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"takes KEY=VALUE (e.g. seed=43), got {text!r}")
    return key.strip(), value.strip()


def _names(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def _datasets() -> list[str]:
    return sorted({dataset for dataset, _ in RECIPES})


def _methods() -> list[str]:
    from experiments.methods import METHODS  # the registry imports every method's module

    return sorted(METHODS)


@dataclass
class RunConfig:
    """Everything that defines a run. ``None`` means "the recipe's value" until :meth:`resolved`."""

    dataset: str = option("cifar10", "the dataset; with the model, it picks the recipe (the next section's "
                                     "defaults)", choices=_datasets, section="what to train")
    model: str = option("resnet32", "resnet8/14/20/32/44/56, resnet50, swinv2_tiny; for mnist1d: mnist1d_cnn, "
                                    "mnist1d_mlp, mnist1d_resnet")
    method: str = option("baseline", "baseline: recipe schedule; vloss: plateau + early stop on validation loss "
                                      "(needs --holdout); neve: velocity-driven decay and stop; none: constant lr; "
                                      "ultimate: hyper-SGD learns lr and momentum; labelwave: stop on prediction "
                                      "changes (paper: with --label-noise 0.4); tuning-free optimizers (authors' "
                                      "settings, README): schedulefree, prodigy, prodigy-cosine, dadapt, "
                                      "dadapt-multistep, dog", choices=_methods)
    seed: int = option(0, "the run's seed: data order, initialization, aux set, holdout and label noise")
    # Recipe (None -> the paper's preset for this dataset/model).
    epochs: int | None = option(None, "epoch budget (CIFAR: 250)",
                                section="recipe (defaults: the paper's preset for the dataset and model)")
    optimizer: str | None = option(None, "swap the optimizer (Adam ablation)", choices=OPTIMIZERS)
    lr: float | None = option(None, "initial lr (SGD recipe 0.1; Adam 1e-3)")
    momentum: float | None = option(None, "SGD momentum")
    weight_decay: float | None = option(None, "weight decay")
    batch_size: int | None = option(None, "training batch size")
    image_size: int | None = option(None, "model input size (ImageNet-100: 224; SwinV2: 256)")
    schedule: str | None = None
    milestones: tuple[int, ...] | None = option(None, "baseline lr x0.1 after these epochs, e.g. 100,150",
                                                parse=_milestones)
    gamma: float = 0.1
    warmup_epochs: int | None = None
    warmup_lr: float | None = None
    min_lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    # Methods.
    alpha: float = option(0.5, "lr decay factor on a plateau, in (0, 1)", section="NeVe and the other methods")
    patience: int = option(10, "plateau patience delta of neve/vloss, and Label Wave's patience (paper: 5 or 10)")
    epsilon: float = option(1e-3, "NeVe stops when velocity < epsilon")
    mu: float = option(0.5, "velocity momentum mu of eq. 2, in [0, 1)")
    stop: str = option("halt", "halt at the method's stop, or mark it and train the whole budget",
                       choices=STOP_MODES)
    stop_patience: int | None = option(None, "vloss: epochs without a new best (default 2*patience)")
    # Fidelity (spec section 6): None -> what ``fidelity`` sets.
    fidelity: str = option("paper", "paper: follow the paper's text; code: reproduce what the authors' code ran, "
                                    "the setting that produced the paper's tables", choices=FIDELITIES,
                           section="fidelity: the paper's text or the authors' code (each option below defaults "
                                   "to what --fidelity sets)")
    velocity_form: str | None = option(None, "paper: v = |(1 - rho) - mu v_prev| (eq. 2); signed: the authors' "
                                             "recursion without the absolute value, |v| only when averaging",
                                       choices=VELOCITY_FORMS)
    aux_noise: str | None = option(None, "Gaussian aux images: normal = N(0, 1); uint8 = the authors' randn "
                                         "through ToPILImage/ToTensor (x255, wrapped to uint8, /255: ~uniform in "
                                         "[0, 1])", choices=AUX_NOISES)
    plateau_rule: str | None = option(None, "code: skip the plateau step when D == 0 exactly and any lr cut of "
                                            "1e-8 or less (torch's eps: the lr stops just above 1e-8); V.Loss gets "
                                            "the 1e-8 rule only", choices=PLATEAU_RULES)
    resnet_variant: str | None = option(None, "CIFAR ResNets: paper = option-A zero channels on both sides, "
                                              "Kaiming fan-in; code = zero channels appended after the input's, "
                                              "Kaiming fan-out", choices=RESNET_VARIANTS)
    test_augmentation: bool | None = option(None, "evaluate the test set with the training augmentation (the "
                                                  "authors' Label Wave loader; default: only for labelwave under "
                                                  "--fidelity code)")
    # Data.
    aux: str = option("gaussian", f"aux set for velocity: {', '.join(AUX_KINDS)} or folder:PATH", section="data")
    aux_size: int = option(100, "images in the aux set")
    aux_batch_size: int = option(16, "aux images per pass when measuring velocity: memory grows with it, time per "
                                     "measurement shrinks (on a GPU with a small model, 100 is ~4x faster)")
    velocity_sets: tuple[str, ...] = option((), "also record velocity on these real sets each epoch, "
                                                f"comma-separated ({','.join(VELOCITY_SETS)}; Fig. 7)",
                                            parse=_names)
    holdout: float | int = option(0.0, "training images held out for validation: a fraction (0.1) or a count",
                                  parse=finite_float)
    label_noise: float = option(0.0, "symmetric label-noise rate on the training labels (Label Wave setting: 0.4)")
    #: A generated dataset's generator arguments (MNIST-1D: num_samples, seed, shuffle_seq); ``--data-option``.
    data_options: dict[str, Any] = option(
        help="a generated dataset's generator argument, repeatable; mnist1d: num_samples, seed (42 is the "
             "published set; another seed draws a tuning set), shuffle_seq",
        factory=dict, parse=_data_option, flag="--data-option", metavar="KEY=VALUE")
    #: "shuffle" (a permutation per seed and epoch) or "fixed": every epoch walks the training set in its stored
    #: order, as MNIST-1D's published train.py does (worth 1.5 points to its CNN; README, MNIST-1D).
    train_order: str = option("shuffle", "shuffle: a new permutation every epoch; fixed: walk the training set in "
                                         "its stored order every epoch (MNIST-1D's published train.py, "
                                         "mnist1d-published)", choices=TRAIN_ORDERS)
    data_root: str = option("data", "where datasets are (downloaded if missing)")
    download: bool = option(True, "fail instead of downloading a missing dataset", flag="--no-download")
    num_workers: int = option(4, "DataLoader workers (ImageNet-100)")
    # Where and how.
    out: str | None = option(None, "run folder (default runs/<dataset>-<model>-<method>[-...]-s<seed>-<config "
                                   "hash>: the same config is always the same folder)", section="where and how")
    wandb: str = option("auto", "auto: online when logged in to W&B, offline otherwise", choices=WANDB_MODES)
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...")
    precision: str = option("auto", "training precision: auto = bf16 autocast on GPUs and on CPUs with native "
                                    "bf16 (AVX512-BF16/AMX), fp32 elsewhere; velocity is always measured in fp32",
                            choices=PRECISIONS)
    #: CPU threads of the training process (None: torch's default, one per core). Tiny models (MNIST-1D) train
    #: fastest on one: with two runs per 2-core machine, torch's threads oversubscribe it (measured 20x slower).
    threads: int | None = option(None, "CPU threads (default: torch's, one per core); 1 is fastest for MNIST-1D's "
                                       "tiny models when several runs share the machine")
    progress: bool = option(True, "no progress bar", flag="--no-progress")
    #: W&B group (a sweep sets it to the experiment's name).
    wandb_group: str | None = option(None, "W&B group of the run (sweeps use the experiment's name)")
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> RunConfig:
        """A copy with every recipe field filled and every value checked."""
        recipe = recipe_for(self.dataset, self.model)
        values = dataclasses.asdict(self)
        for name in ("epochs", "optimizer", "momentum", "weight_decay", "batch_size", "image_size", "schedule",
                     "milestones", "warmup_epochs", "warmup_lr", "min_lr"):
            if values[name] is None:
                values[name] = getattr(recipe, name)
        if values["lr"] is None:
            changed_optimizer = values["optimizer"] != recipe.optimizer
            values["lr"] = OPTIMIZER_DEFAULT_LR.get(values["optimizer"], recipe.lr) if changed_optimizer else recipe.lr
        if values["stop_patience"] is None:
            values["stop_patience"] = 2 * self.patience
        if values["fidelity"] not in FIDELITIES:
            raise ValueError(f"--fidelity must be one of {FIDELITIES}, got {values['fidelity']!r}")
        for name, value in FIDELITY_DEFAULTS[values["fidelity"]].items():
            if values[name] is None:
                values[name] = value
        if values["test_augmentation"] is None:  # the authors' Label Wave loader augmented the test set
            values["test_augmentation"] = values["method"] == "labelwave"
        if values["holdout"] >= 1 and float(values["holdout"]).is_integer():
            values["holdout"] = int(values["holdout"])  # a count of images, not a fraction
        values["milestones"] = tuple(values["milestones"])
        values["betas"] = tuple(values["betas"])
        values["velocity_sets"] = tuple(values["velocity_sets"])
        values["data_options"] = check_options(values["dataset"], dict(values["data_options"]))
        config = RunConfig(**values)
        config.check()
        if config.out is None:
            config.out = str(Path("runs") / run_name(config))
        return config

    def check(self) -> None:
        for name, value in self.to_dict().items():
            _check_finite(name, value)
        check_alpha(self.alpha)
        check_epsilon(self.epsilon)
        check_patience(self.patience)
        if not 0.0 <= self.mu < 1.0:
            raise ValueError(f"mu must be in [0, 1), got {self.mu}; the paper uses 0.5")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        for spec in dataclasses.fields(self):
            how = spec.metadata.get("option")
            allowed = how.allowed() if how and how.choices else None
            value = getattr(self, spec.name)
            if allowed is not None and value is not None and value not in allowed:
                raise ValueError(f"{flag_of(spec)} must be one of {', '.join(allowed)}; got {value!r}")
        if self.aux not in AUX_KINDS and not self.aux.startswith("folder:"):
            raise ValueError(f"--aux must be gaussian, val, train or folder:PATH, got {self.aux!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.aux_size < 1:
            raise ValueError(f"--aux-size must be >= 1, got {self.aux_size}")
        if self.aux_batch_size < 1:
            raise ValueError(f"--aux-batch-size must be >= 1, got {self.aux_batch_size}")
        if self.aux == "val" and not self.holdout:
            raise ValueError("--aux val measures velocity on held-out images: pass --holdout too (e.g. 0.1)")
        if self.holdout < 0 or (self.holdout >= 1 and float(self.holdout) != int(self.holdout)):
            raise ValueError(f"--holdout is a fraction in [0, 1) or a whole count of images, got {self.holdout}")
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"--label-noise must be in [0, 1), got {self.label_noise}")
        unknown = [s for s in self.velocity_sets if s not in VELOCITY_SETS]
        if unknown:
            raise ValueError(f"--velocity-sets takes {', '.join(VELOCITY_SETS)}; got {', '.join(unknown)}")
        if "val" in self.velocity_sets and not self.holdout:
            raise ValueError("--velocity-sets val measures velocity on held-out images: pass --holdout too")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def flag_of(spec: dataclasses.Field) -> str:
    """A field's command-line flag (``--weight-decay``), or its name if it has none."""
    how = spec.metadata.get("option")
    if how is None:
        return spec.name
    return how.flag or "--" + spec.name.replace("_", "-")


def _check_finite(name: str, value: Any) -> None:
    values = value if isinstance(value, tuple | list) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        flag = flag_of(next(f for f in dataclasses.fields(RunConfig) if f.name == name))
        raise ValueError(f"{flag} must be a finite number, got {value!r}")


def run_identity(config: RunConfig) -> dict[str, Any]:
    """What makes a run the training it is: the resolved config without where and how it runs."""
    values = _normal(config.to_dict())
    return {name: value for name, value in values.items()
            if name not in RESUMABLE_FIELDS and not (name in ADDED_FIELDS and value == ADDED_FIELDS[name])}


def run_id(config: RunConfig) -> str:
    """8 hex digits of a hash of :func:`run_identity`: equal configs, equal ids; any difference, another id."""
    text = json.dumps(run_identity(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def run_name(config: RunConfig) -> str:
    """A resolved run's folder name: readable parts, the seed, and the hash that makes it unique.

    e.g. ``cifar100-resnet32-neve-code-s3-1f0c9a2e``. Every sweep and the command line derive the folder from
    the config alone, so the same training is always the same folder, shared by every experiment reading it.
    """
    parts = [config.dataset, config.model, config.method]
    if config.holdout:
        parts.append(f"holdout{config.holdout:g}")
    if config.label_noise:
        parts.append(f"noise{config.label_noise:g}")
    recipe = recipe_for(config.dataset, config.model)
    if config.optimizer and config.optimizer != recipe.optimizer:
        parts.append(config.optimizer)
    if config.fidelity != "paper":
        parts.append(config.fidelity)
    parts.extend(f"{key}{value}" for key, value in sorted(config.data_options.items()))
    if config.train_order != "shuffle":
        parts.append(f"{config.train_order}order")
    return "-".join(parts) + f"-s{config.seed}-{run_id(config)}"


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields that make a saved run a different experiment from the current command."""
    names = (set(saved) | set(current)) - RESUMABLE_FIELDS
    return sorted(name for name in names if _normal(saved.get(name)) != _normal(current.get(name)))


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    return [_normal(item) for item in value] if isinstance(value, tuple | list) else value
