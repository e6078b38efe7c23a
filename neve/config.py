"""One run's configuration: command-line choices, with the paper's recipe filling what is left unset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neve.controller import check_alpha, check_epsilon, check_patience
from neve.precision import PRECISIONS
from neve.recipes import OPTIMIZER_DEFAULT_LR, recipe_for

AUX_KINDS = ("gaussian", "val", "train")
STOP_MODES = ("halt", "mark")
WANDB_MODES = ("auto", "online", "offline", "disabled")
#: Fields that may change between a run and its resume (where it runs, how it logs).
RESUMABLE_FIELDS = {"out", "wandb", "device", "precision", "num_workers", "download", "data_root", "progress"}


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
    # Data.
    aux: str = "gaussian"
    aux_size: int = 100
    aux_batch_size: int = 16
    holdout: float | int = 0.0
    label_noise: float = 0.0
    data_root: str = "data"
    download: bool = True
    num_workers: int = 4
    # Where and how.
    out: str | None = None
    wandb: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    progress: bool = True
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
        if values["out"] is None:
            values["out"] = str(Path("runs") / default_run_name(self))
        if values["holdout"] >= 1 and float(values["holdout"]).is_integer():
            values["holdout"] = int(values["holdout"])  # a count of images, not a fraction
        values["milestones"] = tuple(values["milestones"])
        values["betas"] = tuple(values["betas"])
        config = RunConfig(**values)
        config.check()
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
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.wandb not in WANDB_MODES:
            raise ValueError(f"--wandb must be one of {WANDB_MODES}, got {self.wandb!r}")
        if self.aux not in AUX_KINDS and not self.aux.startswith("folder:"):
            raise ValueError(f"--aux must be gaussian, val, train or folder:PATH, got {self.aux!r}")
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_run_name(config: RunConfig) -> str:
    parts = [config.dataset, config.model, config.method]
    if config.holdout:
        parts.append(f"holdout{config.holdout:g}")
    if config.label_noise:
        parts.append(f"noise{config.label_noise:g}")
    if config.optimizer:
        parts.append(config.optimizer)
    return "-".join(parts) + f"-s{config.seed}"


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields that make a saved run a different experiment from the current command."""
    names = (set(saved) | set(current)) - RESUMABLE_FIELDS
    return sorted(name for name in names if _normal(saved.get(name)) != _normal(current.get(name)))


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value
