"""One run's configuration: command-line choices, with the paper's recipe filling what is left unset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.data import TRAIN_ORDERS, check_options
from experiments.models.resnet_cifar import RESNET_VARIANTS
from experiments.training.precision import PRECISIONS
from experiments.training.recipes import OPTIMIZER_DEFAULT_LR, recipe_for
from experiments.training.records import WANDB_MODES as WANDB_RUN_MODES
from neve.aux_sets import AUX_NOISES
from neve.controller import PLATEAU_RULES, check_alpha, check_epsilon, check_patience
from neve.velocity import VELOCITY_FORMS

AUX_KINDS = ("gaussian", "val", "train")
#: Extra sets whose velocity is recorded each epoch beside the aux set's (Fig. 7): ``velocity_<set>`` columns.
VELOCITY_SETS = ("train", "val")
STOP_MODES = ("halt", "mark")
#: ``--wandb``: W&B's own modes, or "auto" (resolved when the run starts: ``records.resolve_wandb_mode``).
WANDB_MODES = ("auto", *WANDB_RUN_MODES)
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


@dataclass
class RunConfig:
    """Everything that defines a run. ``None`` means "the recipe's value" until :meth:`resolved`."""

    dataset: str = "cifar10"
    model: str = "resnet32"
    method: str = "baseline"
    seed: int = 0
    # Recipe (None -> the paper's preset for this dataset/model).
    epochs: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    image_size: int | None = None
    schedule: str | None = None
    milestones: tuple[int, ...] | None = None
    gamma: float = 0.1
    warmup_epochs: int | None = None
    warmup_lr: float | None = None
    min_lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    # Methods.
    alpha: float = 0.5
    patience: int = 10
    epsilon: float = 1e-3
    mu: float = 0.5
    stop: str = "halt"
    stop_patience: int | None = None
    # Fidelity (spec section 6): None -> what ``fidelity`` sets.
    fidelity: str = "paper"
    velocity_form: str | None = None
    aux_noise: str | None = None
    plateau_rule: str | None = None
    resnet_variant: str | None = None
    test_augmentation: bool | None = None
    # Data.
    aux: str = "gaussian"
    aux_size: int = 100
    aux_batch_size: int = 16
    velocity_sets: tuple[str, ...] = ()
    holdout: float | int = 0.0
    label_noise: float = 0.0
    #: A generated dataset's generator arguments (MNIST-1D: num_samples, seed, shuffle_seq); ``--data-option``.
    data_options: dict[str, Any] = field(default_factory=dict)
    #: "shuffle" (a permutation per seed and epoch) or "fixed": every epoch walks the training set in its stored
    #: order, as MNIST-1D's published train.py does (worth 1.5 points to its CNN; README, MNIST-1D).
    train_order: str = "shuffle"
    data_root: str = "data"
    download: bool = True
    num_workers: int = 4
    # Where and how.
    out: str | None = None
    wandb: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    #: CPU threads of the training process (None: torch's default, one per core). Tiny models (MNIST-1D) train
    #: fastest on one: with two runs per 2-core machine, torch's threads oversubscribe it (measured 20x slower).
    threads: int | None = None
    progress: bool = True
    #: W&B group (a sweep sets it to the experiment's name).
    wandb_group: str | None = None
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
        check_alpha(self.alpha)
        check_epsilon(self.epsilon)
        check_patience(self.patience)
        if not 0.0 <= self.mu < 1.0:
            raise ValueError(f"mu must be in [0, 1), got {self.mu}; the paper uses 0.5")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.stop not in STOP_MODES:
            raise ValueError(f"--stop must be one of {STOP_MODES}, got {self.stop!r}")
        if self.train_order not in TRAIN_ORDERS:
            raise ValueError(f"--train-order must be one of {TRAIN_ORDERS}, got {self.train_order!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.wandb not in WANDB_MODES:
            raise ValueError(f"--wandb must be one of {WANDB_MODES}, got {self.wandb!r}")
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
        for name, allowed in (("velocity_form", VELOCITY_FORMS), ("aux_noise", AUX_NOISES),
                              ("plateau_rule", PLATEAU_RULES), ("resnet_variant", RESNET_VARIANTS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {allowed}, got {value!r}")
        unknown = [s for s in self.velocity_sets if s not in VELOCITY_SETS]
        if unknown:
            raise ValueError(f"--velocity-sets takes {', '.join(VELOCITY_SETS)}; got {', '.join(unknown)}")
        if "val" in self.velocity_sets and not self.holdout:
            raise ValueError("--velocity-sets val measures velocity on held-out images: pass --holdout too")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
