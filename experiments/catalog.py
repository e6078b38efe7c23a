"""Every table and figure of the paper as a named experiment: a grid of cells x seeds -> run configs.

An experiment is a plain-Python declaration (a function returning its cells, registered with
``@experiment``); the sweep runner, the aggregation and the plots never branch on an experiment's name.
A *cell* is one row of a table or one point/line of a figure: the run options that define it, what the
paper reports for it, and which summary value is its number. Expanding an experiment over seeds gives
:class:`PlannedRun` s, each with its resolved :class:`~experiments.training.config.RunConfig` and its run folder.

The run folder is a function of the resolved config alone (``training.config.run_name``), so experiments that
need the same training share one run: Table II's CIFAR-100 NeVe runs are also Fig. 5's curves, Fig. 8's SGD
line, Table I's NeVe (delta = 10) and the code setting of ``paper-vs-code``. Where a figure is read off runs
that already exist, the experiment says so in ``reads`` and trains nothing new:

- NeVe's lr schedule does not depend on epsilon (the plateau watches the velocity change, not the velocity),
  and ``--stop mark`` trains the whole budget while recording every epoch's velocity, so the epoch where
  V < epsilon, and the accuracy there, can be read for any epsilon from one run: Fig. 6 needs no new training.
- ``--stop mark`` records where NeVe's stop fires and keeps training, so one run gives the accuracy at the
  stop and after the whole budget (Fig. 5, Fig. 8, the SGD/Adam ablation).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.training.config import RunConfig, run_name

#: Seeds of a paper experiment: the paper reports mean +- std over 10.
PAPER_SEEDS = 10
#: Training-set sizes, to turn a held-out fraction into a count of images (Fig. 4a's x axis).
TRAIN_SET_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "imagenet100": 126_689, "digits": 1_497}

#: Epochs of a miniature run (``--miniature``): enough for velocities and curves to move.
MINIATURE_EPOCHS = 4
#: Largest aux set of a miniature experiment (digits' 10% validation split has 149 images).
MINIATURE_AUX_SIZE = 128
#: Summary fields a cell can report (see ``experiments.training.summary``).
METRICS = ("final_test_acc", "test_acc_at_stop", "test_acc_at_neve_stop", "test_acc_at_kept",
           "test_acc_at_best_val")


@dataclass(frozen=True)
class Cell:
    """One row of a table or one point of a figure: the options of its runs and what it reports.

    ``options`` are :class:`RunConfig` fields on top of the experiment's ``defaults``; ``values`` are the
    coordinates shown in tables, CSVs and plots (``{"method": "V.Loss 30%", "holdout": 0.3}``);
    ``metric`` is the summary field that is the cell's number; ``paper`` its (mean, std) in the paper.
    """

    label: str
    options: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    block: str = ""
    metric: str = "final_test_acc"
    paper: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"cell {self.label!r}: metric must be one of {METRICS}, got {self.metric!r}")


@dataclass(frozen=True)
class Experiment:
    """A named table or figure: its cells, its defaults, and which runs it reads and why."""

    name: str
    title: str
    kind: str  # "table" or "figure"
    cells: tuple[Cell, ...]
    reads: str
    defaults: dict[str, Any] = field(default_factory=dict)
    seeds: int = PAPER_SEEDS
    #: Values computed at aggregation, not trained (Fig. 6's epsilons).
    derived: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: Its figure plots per-epoch curves: the aggregation also writes every run's records (NAME_epochs.csv).
    curves: bool = False
    #: Time to target (AlgoPerf's measure): per run, the epochs and wall seconds until the test accuracy first
    #: reaches the block's reference row's (Baseline's) mean final accuracy minus this many points. None: not
    #: computed.
    target_margin: float | None = None
    #: A row each row of its block is also tested against (Welch), beside the Baseline: ``"NeVe"``.
    second_reference: str | None = None
    #: Summary fields reported for every cell beside its own number: ``("test_acc_at_neve_stop",)`` gives every
    #: method's accuracy where NeVe would have stopped it.
    also_report: tuple[str, ...] = ()
    #: The numbers behind its figure's claim, computed at aggregation (``NAME_claims.csv``): a claim of
    #: ``experiments.figure_claims`` -> its options, ``{"against_reference": {"reference": "NeVe"}}``.
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [name for name in self.also_report if name not in METRICS]
        if unknown:
            raise ValueError(f"experiment {self.name!r}: also_report must name fields of {METRICS}, got {unknown}")
        labels = {cell.label for cell in self.cells}
        for claim, options in self.claims.items():
            if "reference" in options and options["reference"] not in labels:
                raise ValueError(f"experiment {self.name!r}: claim {claim!r} compares with {options['reference']!r}, "
                                 f"which is not one of its cells ({', '.join(sorted(labels))})")

    def miniature(self, epochs: int = MINIATURE_EPOCHS) -> Experiment:
        """The same grid on digits with a ResNet-8 for ``epochs`` epochs: an offline rehearsal of the whole
        pipeline (sweep, aggregation, figures, notebooks) in minutes. Aux sets are capped at 128 images (a 10%
        digits validation split has 149), so its numbers mean nothing; its shape is the experiment's."""
        small = {"dataset": "digits", "model": "resnet8", "epochs": epochs, "batch_size": 128, "num_workers": 0,
                 "precision": "fp32"}

        def shrink(options: dict[str, Any]) -> dict[str, Any]:
            shrunk = {**options, **small}
            shrunk.pop("data_options", None)  # a dataset's generator arguments (MNIST-1D's seed): none on digits
            if "aux_size" in options:
                shrunk["aux_size"] = min(int(options["aux_size"]), MINIATURE_AUX_SIZE)
            return shrunk

        cells = tuple(dataclasses.replace(cell, options=shrink(cell.options)) for cell in self.cells)
        return dataclasses.replace(self, cells=cells, defaults={**self.defaults, **small,
                                                                "aux_size": MINIATURE_AUX_SIZE // 4})

    def runs(self, seeds: int | Sequence[int] | None = None, *, runs_dir: str | Path = "runs",
             overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
        """Every (cell, seed) as a resolved run. ``overrides`` apply on top of the defaults, but never to an
        option a cell sets itself (``paper-vs-code`` keeps its fidelities when the sweep asks for another)."""
        seed_list = _seed_list(self.seeds if seeds is None else seeds)
        planned = []
        for cell in self.cells:
            for seed in seed_list:
                options = {**self.defaults, **_without(overrides or {}, cell.options), **cell.options, "seed": seed}
                config = RunConfig(**options).resolved()
                config = dataclasses.replace(config, out=str(Path(runs_dir) / run_name(config)))
                planned.append(PlannedRun(self.name, cell, seed, config))
        return planned


@dataclass(frozen=True)
class PlannedRun:
    """One training of an experiment: a cell at a seed, with its resolved config and run folder."""

    experiment: str
    cell: Cell
    seed: int
    config: RunConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out)

    @property
    def name(self) -> str:
        return self.run_dir.name


ExperimentFactory = Callable[[], Experiment]
_EXPERIMENTS: dict[str, ExperimentFactory] = {}


def experiment(name: str) -> Callable[[ExperimentFactory], ExperimentFactory]:
    """Register a function returning an :class:`Experiment` under ``name``."""

    def register(factory: ExperimentFactory) -> ExperimentFactory:
        if name in _EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is declared twice")
        _EXPERIMENTS[name] = factory
        return factory

    return register


def experiment_names() -> list[str]:
    return list(_EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    if name not in _EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(_EXPERIMENTS)} "
                         "(`python -m experiments.sweep --list` describes each)")
    built = _EXPERIMENTS[name]()
    if built.name != name:
        raise ValueError(f"experiment registered as {name!r} calls itself {built.name!r}")
    return built


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """The cartesian product of named axes, in order: ``grid(alpha=[.25, .5], patience=[5, 10])``."""
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    return [int(s) for s in seeds]


def _without(options: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    keys = set(keys)
    return {k: v for k, v in options.items() if k not in keys}


# ------------------------------------------------------------------------------------------ the paper
#: The setting that produced the paper's numbers (spec section 6): the authors' code, NeVe's stop marked
#: (the paper reads NeVe's accuracy at the epoch where V < epsilon, and after the whole budget).
PAPER_RUN = {"fidelity": "code", "stop": "mark"}
CIFAR = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
MODEL_NAMES = {"resnet32": "ResNet-32", "resnet50": "ResNet-50", "swinv2_tiny": "SwinV2-T", "resnet8": "ResNet-8"}
IMAGENET = "ImageNet-100"

# Spec section 5 (test accuracy %, mean, std over 10 seeds).
TABLE2_PAPER = {
    ("cifar10", "resnet32"): ((92.74, 0.34), (91.38, 0.79), (92.24, 0.48), (93.10, 0.30)),
    ("cifar100", "resnet32"): ((68.84, 0.46), (65.96, 0.21), (68.68, 0.15), (69.18, 0.10)),
    ("imagenet100", "resnet50"): ((82.65, 0.65), (82.06, 0.19), (82.70, 0.81), (84.52, 0.51)),
    ("imagenet100", "swinv2_tiny"): ((70.05, 0.32), (66.67, 0.16), (69.98, 0.23), (69.80, 0.74)),
}
TABLE1_PAPER = {
    "cifar10": {"Ultimate Optimizer": (86.77, 0.78), "Label Wave (δ=5)": (61.65, 8.06),
                "Label Wave (δ=10)": (63.65, 8.30), "NeVe (δ=5)": (92.49, 0.40), "NeVe (δ=10)": (93.10, 0.30)},
    "cifar100": {"Ultimate Optimizer": (57.89, 1.52), "Label Wave (δ=5)": (33.30, 2.77),
                 "Label Wave (δ=10)": (33.81, 2.82), "NeVe (δ=5)": (68.90, 0.61), "NeVe (δ=10)": (69.18, 0.10)},
}


def table2_rows(dataset: str, model: str, block: str, paper: Sequence[tuple[float, float]] | None = None,
                **common: Any) -> list[Cell]:
    """Table II's four rows for one dataset/model: Baseline, V.Loss 30%, V.Loss 10%, NeVe."""
    base = {"dataset": dataset, "model": model, **common}
    rows = [
        Cell("Baseline", {**base, "method": "baseline"}, metric="final_test_acc"),
        Cell("V.Loss 30%", {**base, "method": "vloss", "holdout": 0.3, "stop": "halt"}, metric="test_acc_at_kept"),
        Cell("V.Loss 10%", {**base, "method": "vloss", "holdout": 0.1, "stop": "halt"}, metric="test_acc_at_kept"),
        Cell("NeVe", {**base, "method": "neve"}, metric="test_acc_at_neve_stop"),
    ]
    paper = paper or (None,) * 4
    return [dataclasses.replace(row, block=block, values={"method": row.label}, paper=p)
            for row, p in zip(rows, paper, strict=True)]


def neve_c100(**options: Any) -> dict[str, Any]:
    """A CIFAR-100 ResNet-32 NeVe run: the base of the ablations and figures."""
    return {"dataset": "cifar100", "model": "resnet32", "method": "neve", **options}


@experiment("table2")
def table2() -> Experiment:
    cells = []
    for (dataset, model), paper in TABLE2_PAPER.items():
        block = f"{CIFAR.get(dataset, IMAGENET)} {MODEL_NAMES[model]}"
        cells += table2_rows(dataset, model, block, paper)
    return Experiment(
        "table2", "Table II: Baseline, V.Loss 30% / 10% and NeVe on CIFAR-10/100 and ImageNet-100", "table",
        tuple(cells), defaults=PAPER_RUN,
        reads="its own runs. NeVe's number is the test accuracy at the first epoch with V < epsilon (--stop mark "
              "trains on to the budget, so the same runs also give Fig. 5's curves and the SGD line of Fig. 8); "
              "V.Loss reports its best-validation model; Baseline the model after the whole budget.")


@experiment("table1")
def table1() -> Experiment:
    cells = []
    for dataset, paper in TABLE1_PAPER.items():
        block = f"{CIFAR[dataset]} ResNet-32"
        base = {"dataset": dataset, "model": "resnet32"}
        rows = [
            Cell("Ultimate Optimizer", {**base, "method": "ultimate"}),
            Cell("Label Wave (δ=5)", {**base, "method": "labelwave", "patience": 5, "label_noise": 0.4,
                                      "stop": "halt"}, metric="test_acc_at_kept"),
            Cell("Label Wave (δ=10)", {**base, "method": "labelwave", "patience": 10, "label_noise": 0.4,
                                       "stop": "halt"}, metric="test_acc_at_kept"),
            Cell("NeVe (δ=5)", {**base, "method": "neve", "patience": 5}, metric="test_acc_at_neve_stop"),
            Cell("NeVe (δ=10)", {**base, "method": "neve"}, metric="test_acc_at_neve_stop"),
        ]
        cells += [dataclasses.replace(row, block=block, values={"method": row.label}, paper=paper[row.label])
                  for row in rows]
    return Experiment(
        "table1", "Table I: NeVe against the Ultimate Optimizer and Label Wave (ResNet-32)", "table",
        tuple(cells), defaults=PAPER_RUN,
        reads="NeVe (δ=10) is Table II's NeVe run (shared). Label Wave trains with the authors' 40% symmetric "
              "label noise, and under --fidelity code evaluates the test set with the training augmentation as "
              "the authors' loader did; it reports the model at the prediction-change minimum.")


#: Fig. 4a: fractions of CIFAR-100's 50,000 training images moved to validation: 1,000 / 2,500 / 5,000 /
#: 10,000 / 15,000 images. 10% and 30% are Table II's V.Loss rows (shared runs); 2% and 5% show the small end,
#: where the plateau detector has little validation data; 20% fills the gap.
FIG4A_HOLDOUTS = (0.02, 0.05, 0.1, 0.2, 0.3)


@experiment("fig4a")
def fig4a() -> Experiment:
    cells = [Cell(f"V.Loss {h:g}", neve_c100(method="vloss", holdout=h, stop="halt"),
                  values={"method": "V.Loss", "holdout": h}, metric="test_acc_at_kept") for h in FIG4A_HOLDOUTS]
    cells += [Cell("NeVe", neve_c100(), values={"method": "NeVe", "holdout": 0.0}, metric="test_acc_at_neve_stop"),
              Cell("Baseline", neve_c100(method="baseline"), values={"method": "Baseline", "holdout": 0.0})]
    return Experiment(
        "fig4a", "Fig. 4a: CIFAR-100 ResNet-32 test accuracy vs images moved from training to validation",
        "figure", tuple(cells), defaults=PAPER_RUN,
        reads="V.Loss at 10% and 30%, NeVe and Baseline are Table II's CIFAR-100 runs (shared); 2%, 5% and 20% "
              "are new. x = fraction x 50,000 training images.")


#: Fig. 4b: |D_aux| sizes. Real images come from a 10% validation split (5,000 images), so 5,000 is the most.
FIG4B_SIZES = (1, 10, 100, 1000, 5000)
AUX_TYPES = {"gaussian": {"aux": "gaussian"}, "val": {"aux": "val", "holdout": 0.1}}
#: The numbers behind each figure's claim (``experiments.figure_claims``). Fig. 4b: every size and type against the
#: paper's default (100 Gaussian samples), and Gaussian against real samples at each size; Fig. 5: NeVe's stop
#: against the test loss's minimum and the best test accuracy; Fig. 7: the aux velocity against the validation and
#: training velocities, and its plateau against the losses' minima; the ablation: each (alpha, delta) against the
#: defaults (0.5, 10).
FIG4B_CLAIMS = {"against_reference": {"reference": "gaussian 100"}, "paired": {"by": "aux_size", "across": "aux"}}
FIG5_CLAIMS: dict[str, dict[str, Any]] = {"stop_vs_overfitting": {}}
FIG7_CLAIMS: dict[str, dict[str, Any]] = {"velocity_sets": {}}
ABLATION_CLAIMS = {"against_reference": {"reference": "alpha 0.5, delta 10"}}


@experiment("fig4b")
def fig4b() -> Experiment:
    cells = [Cell(f"{kind} {size}", neve_c100(aux_size=size, **AUX_TYPES[kind]),
                  values={"aux": kind, "aux_size": size}, metric="test_acc_at_neve_stop")
             for kind in AUX_TYPES for size in FIG4B_SIZES]
    return Experiment(
        "fig4b", "Fig. 4b: CIFAR-100 ResNet-32 NeVe accuracy vs the aux set's size and type", "figure",
        tuple(cells), defaults=PAPER_RUN, claims=FIG4B_CLAIMS,
        reads="Gaussian noise at 100 images is Table II's CIFAR-100 NeVe run (shared). Real images are drawn "
              "from a 10% validation split, which those runs then do not train on.")


@experiment("fig5")
def fig5() -> Experiment:
    cells = [Cell("NeVe", neve_c100(), values={"method": "NeVe"}, metric="test_acc_at_neve_stop"),
             Cell("Baseline", neve_c100(method="baseline"), values={"method": "Baseline"})]
    return Experiment(
        "fig5", "Fig. 5: CIFAR-100 test accuracy over the whole budget, NeVe's stop marked", "figure",
        tuple(cells), defaults=PAPER_RUN, curves=True, claims=FIG5_CLAIMS,
        reads="Table II's CIFAR-100 NeVe and Baseline runs (no new training): --stop mark trains the whole "
              "budget and records where V < epsilon.")


#: Fig. 6: stop thresholds, two per decade around the paper's 1e-3.
FIG6_EPSILONS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@experiment("fig6")
def fig6() -> Experiment:
    cells = [Cell(kind, neve_c100(**AUX_TYPES[kind]), values={"aux": kind}, metric="test_acc_at_neve_stop")
             for kind in AUX_TYPES]
    return Experiment(
        "fig6", "Fig. 6: CIFAR-100 epochs to NeVe's stop and accuracy there vs epsilon, per aux type", "figure",
        tuple(cells), defaults=PAPER_RUN, derived={"epsilon": FIG6_EPSILONS}, curves=True,
        reads="Fig. 4b's 100-image runs (Gaussian: Table II's NeVe). NeVe's lr schedule does not depend on "
              "epsilon and --stop mark records every epoch's velocity, so the stop at each epsilon is the first "
              "epoch with V < epsilon in the same run: no training per epsilon.")


@experiment("fig7")
def fig7() -> Experiment:
    cells = [Cell("none", {"dataset": "cifar10", "model": "resnet32", "method": "none", "holdout": 0.1,
                           "velocity_sets": ("train", "val")}, values={"method": "constant lr"})]
    return Experiment(
        "fig7", "Fig. 7: CIFAR-10 velocity on training, validation and aux images, and the three losses, "
        "constant lr", "figure", tuple(cells), defaults=PAPER_RUN, curves=True, claims=FIG7_CLAIMS,
        reads="its own runs: one training per seed measures the velocity on the aux set and on 100 training and "
              "100 validation images (--velocity-sets train,val) and records train/val/test loss.")


@experiment("fig8")
def fig8() -> Experiment:
    cells = [Cell("SGD", neve_c100(), values={"optimizer": "SGD"}, metric="test_acc_at_neve_stop",
                  paper=(69.18, 0.10)),
             Cell("Adam", neve_c100(optimizer="adam"), values={"optimizer": "Adam"}, metric="test_acc_at_neve_stop",
                  paper=(64.54, 0.42))]
    return Experiment(
        "fig8", "Fig. 8: CIFAR-100 NeVe with SGD and Adam (lr 1e-3): velocity and accuracy, stop marked", "figure",
        tuple(cells), defaults=PAPER_RUN, curves=True,
        reads="SGD is Table II's CIFAR-100 NeVe run (shared); Adam is new. The paper's numbers beside each are the "
              "accuracy at NeVe's stop (after 250 epochs: SGD 69.16 +- 0.71, Adam 64.48 +- 0.48).")


#: The alpha x delta grid: the paper's defaults (0.5, 10) and its delta = 5, with one step either side.
ABLATION_ALPHAS = (0.25, 0.5, 0.75)
ABLATION_PATIENCES = (5, 10, 20)


@experiment("ablation-alpha-delta")
def ablation_alpha_delta() -> Experiment:
    cells = [Cell(f"alpha {p['alpha']:g}, delta {p['patience']}", neve_c100(**p), values=p,
                  metric="test_acc_at_neve_stop")
             for p in grid(alpha=ABLATION_ALPHAS, patience=ABLATION_PATIENCES)]
    return Experiment(
        "ablation-alpha-delta", "Ablation: CIFAR-100 NeVe over the lr decay alpha and the plateau patience delta",
        "figure", tuple(cells), defaults=PAPER_RUN, claims=ABLATION_CLAIMS,
        reads="(0.5, 10) is Table II's NeVe and (0.5, 5) Table I's NeVe (δ=5) (shared); the other 7 cells are new.")


#: ``paper-vs-code``: the two fidelities, and the paper with one difference of the authors' code at a time.
FIDELITY_SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {"fidelity": "paper"},
    "code": {"fidelity": "code"},
    "paper + signed velocity": {"fidelity": "paper", "velocity_form": "signed"},
    "paper + uint8 aux noise": {"fidelity": "paper", "aux_noise": "uint8"},
    "paper + code plateau rule": {"fidelity": "paper", "plateau_rule": "code"},
    "paper + code ResNet": {"fidelity": "paper", "resnet_variant": "code"},
}


def fidelity_cells(base: dict[str, Any]) -> tuple[Cell, ...]:
    return tuple(Cell(name, {**base, **setting}, values={"setting": name}, metric="test_acc_at_neve_stop")
                 for name, setting in FIDELITY_SETTINGS.items())


@experiment("paper-vs-code")
def paper_vs_code() -> Experiment:
    return Experiment(
        "paper-vs-code", "NeVe as the paper writes it vs as the authors' code runs it, one difference at a time "
        "(CIFAR-100 ResNet-32)", "figure", fidelity_cells(neve_c100()), defaults={"stop": "mark"},
        curves=True,
        reads="'code' is Table II's CIFAR-100 NeVe run (shared); the others are new.")


# ------------------------------------------------------------------------------------------ offline
#: The miniature Table II of ``make demo-digits``: digits, fp32 everywhere so every CPU gives the same curves.
#: Chosen (and checked on seeds 0-4 in fp32) so the mechanisms show at this size: the paper's epsilon 1e-3, alpha
#: 0.5, mu 0.5 and 100 aux images, with a plateau patience of 2 (the paper's 5 and 10 are for 250-epoch budgets)
#: and a 30-epoch budget whose baseline milestones sit at the same fractions as CIFAR's 100/150 of 250.
DEMO_RUN: dict[str, Any] = {"dataset": "digits", "model": "resnet8", "precision": "fp32", "stop": "halt",
                            "aux_size": 100, "batch_size": 128, "epochs": 30, "milestones": (15, 22), "patience": 2,
                            "num_workers": 0}


@experiment("demo")
def demo() -> Experiment:
    return Experiment(
        "demo", "Demo: Table II in miniature on scikit-learn's digits (offline, CPU, fp32)", "table",
        tuple(table2_rows("digits", "resnet8", "digits ResNet-8")), defaults=DEMO_RUN, seeds=3, curves=True,
        reads="its own runs (make demo-digits).")


@experiment("paper-vs-code-demo")
def paper_vs_code_demo() -> Experiment:
    return Experiment(
        "paper-vs-code-demo", "paper vs code fidelity on digits, one difference at a time (offline)", "figure",
        fidelity_cells({"method": "neve"}), defaults=DEMO_RUN, seeds=5, curves=True,
        reads="its own runs; 'paper' is the demo's NeVe run (shared).")


@experiment("tiny")
def tiny() -> Experiment:
    base = {"dataset": "digits", "model": "resnet8", "epochs": 3, "batch_size": 128, "aux_size": 16,
            "precision": "fp32", "num_workers": 0}
    return Experiment(
        "tiny", "Tests: two methods for three epochs on digits", "table",
        (Cell("Baseline", {**base, "method": "baseline"}, values={"method": "Baseline"}, block="digits"),
         Cell("NeVe", {**base, "method": "neve", "stop": "mark"}, values={"method": "NeVe"}, block="digits",
              metric="test_acc_at_neve_stop")),
        seeds=2, curves=True, reads="its own runs (the sweep and results tests).")


# ------------------------------------------------------------------------------------------ MNIST-1D
#: MNIST-1D runs (Greydanus & Kobak 2024), trained on the CPU here: fp32 so every CPU gives the same curves, one
#: thread per run (two runs share a 2-core machine), NeVe's stop marked so one run gives the accuracy at the stop
#: and after the budget (and Fig. 6's epsilons). The paper's NeVe settings: epsilon 1e-3, alpha 0.5, mu 0.5,
#: patience 10, 100 Gaussian aux sequences of shape (1, 40).
MNIST1D_RUN: dict[str, Any] = {"dataset": "mnist1d", "precision": "fp32", "threads": 1, "num_workers": 0,
                               "stop": "mark"}
MNIST1D_MODELS = {"mnist1d_cnn": "CNN", "mnist1d_resnet": "ResNet-1D", "mnist1d_mlp": "MLP"}
#: The published recipe (their notebooks/train.py): Adam 1e-2, no weight decay, batch 100, 200 epochs, constant.
#: Their loop walks the training set in its stored order (batch i of every epoch is the same 100 sequences), not
#: reshuffled: worth 1.5 points to the CNN (README, MNIST-1D), so the external check trains that way.
MNIST1D_PUBLISHED_RECIPE: dict[str, Any] = {"optimizer": "adam", "lr": 1e-2, "momentum": 0.0, "weight_decay": 0.0,
                                            "batch_size": 100, "epochs": 200, "milestones": (),
                                            "train_order": "fixed"}
#: The published test accuracies (Greydanus & Kobak, Table 1; no spread published): CNN 94%, MLP 68%.
MNIST1D_PUBLISHED = {"mnist1d_cnn": 94.0, "mnist1d_mlp": 68.0}
#: Beside each method's own number, where its velocity fell below epsilon and its accuracy there: every run
#: records NeVe's marker (``--stop mark``), so the tables give each method's epochs to NeVe's stop.
MNIST1D_ALSO_REPORT = ("test_acc_at_neve_stop",)
#: The tuning set: the same generator with another seed, so no setting is chosen on the published test set.
MNIST1D_TUNING_SET = {"data_options": {"seed": 43}}
TRAIN_SET_SIZE["mnist1d"] = 4_000


@experiment("mnist1d-published")
def mnist1d_published() -> Experiment:
    cells = [Cell(f"Baseline {name} (published recipe)",
                  {"model": model, "method": "baseline", **MNIST1D_PUBLISHED_RECIPE},
                  values={"network": name, "train_order": "fixed"}, block="MNIST-1D, Adam 1e-2 constant",
                  paper=(MNIST1D_PUBLISHED[model], math.nan))
             for model, name in MNIST1D_MODELS.items() if model in MNIST1D_PUBLISHED]
    # The same CNN with this repo's default order (reshuffled every epoch): what the order is worth.
    cells.append(Cell("Baseline CNN, reshuffled every epoch",
                      {"model": "mnist1d_cnn", "method": "baseline", **MNIST1D_PUBLISHED_RECIPE,
                       "train_order": "shuffle"},
                      values={"network": "CNN", "train_order": "shuffle"}, block="MNIST-1D, Adam 1e-2 constant",
                      paper=(MNIST1D_PUBLISHED["mnist1d_cnn"], math.nan)))
    return Experiment(
        "mnist1d-published", "MNIST-1D external check: the published CNN and MLP with the published recipe",
        "table", tuple(cells), defaults=MNIST1D_RUN,
        reads="its own runs, walking the training set in its stored order as the published train.py does (and "
              "the CNN once more reshuffled every epoch, this repo's default). The 'paper' column is the "
              "MNIST-1D paper's published accuracy (CNN 94%, MLP 68%), "
              "which the Baseline must reproduce within the seed spread before any NeVe result is read.")


#: Learning rates tried for Table II's SGD protocol, on the tuning set.
MNIST1D_TUNING_LRS = (0.1, 0.03, 0.01)


@experiment("mnist1d-tuning")
def mnist1d_tuning() -> Experiment:
    cells = tuple(Cell(f"{name} SGD lr {lr:g}", {"model": model, "method": "baseline", "lr": lr,
                                                  **MNIST1D_TUNING_SET},
                       values={"network": name, "lr": lr}, block=f"tuning set, {name}")
                  for model, name in MNIST1D_MODELS.items() if model != "mnist1d_mlp" for lr in MNIST1D_TUNING_LRS)
    return Experiment(
        "mnist1d-tuning", "MNIST-1D tuning set (generator seed 43): the SGD protocol's lr for Table II", "table",
        cells, defaults=MNIST1D_RUN, seeds=2,
        reads="its own runs, on a dataset drawn with generator seed 43 (not the published seed 42): the SGD "
              "protocol of Table II (x0.1 at 40% and 60% of 200 epochs) at three initial lrs, Baseline only.")


@experiment("mnist1d-table2")
def mnist1d_table2() -> Experiment:
    cells = []
    for model in ("mnist1d_cnn", "mnist1d_resnet"):
        cells += table2_rows("mnist1d", model, f"MNIST-1D {MNIST1D_MODELS[model]}")
    return Experiment(
        "mnist1d-table2", "Table II on MNIST-1D: Baseline, V.Loss 30% / 10% and NeVe (SGD protocol)", "table",
        tuple(cells), defaults=MNIST1D_RUN, curves=True, also_report=MNIST1D_ALSO_REPORT,
        reads="its own runs (the SGD protocol: lr 0.1, momentum 0.9, wd 5e-4, batch 100, x0.1 at epochs 80 and "
              "120 of 200). NeVe's number is the accuracy at the first epoch with V < epsilon (--stop mark trains "
              "on, so these runs also give Fig. 6); V.Loss its best-validation model; Baseline the final model.")


@experiment("mnist1d-demo")
def mnist1d_demo() -> Experiment:
    cells = table2_rows("mnist1d", "mnist1d_cnn", "MNIST-1D CNN")
    return Experiment(
        "mnist1d-demo", "make demo: Table II on MNIST-1D's CNN, 5 seeds, a few minutes on a laptop CPU", "table",
        tuple(cells), defaults=MNIST1D_RUN, seeds=5, curves=True, also_report=MNIST1D_ALSO_REPORT,
        reads="mnist1d-table2's CNN runs at seeds 0-4 (shared; nothing new when that table is trained).")


@experiment("mnist1d-table2-code")
def mnist1d_table2_code() -> Experiment:
    cells = []
    for model in ("mnist1d_cnn", "mnist1d_resnet"):
        cells += table2_rows("mnist1d", model, f"MNIST-1D {MNIST1D_MODELS[model]}, --fidelity code")
    return Experiment(
        "mnist1d-table2-code", "Table II on MNIST-1D under the authors' code (--fidelity code), CNN and ResNet-1D",
        "table", tuple(cells), defaults={**MNIST1D_RUN, "fidelity": "code"}, also_report=MNIST1D_ALSO_REPORT,
        reads="its own runs: mnist1d-table2's rows with the authors' signed velocity, uint8-wrapped aux noise "
              "and plateau rule (the ResNet variant applies to the CIFAR ResNets only).")


@experiment("mnist1d-table1")
def mnist1d_table1() -> Experiment:
    base = {"model": "mnist1d_cnn"}
    rows = [
        Cell("Ultimate Optimizer", {**base, "method": "ultimate"}),
        Cell("Label Wave (δ=5)", {**base, "method": "labelwave", "patience": 5, "label_noise": 0.4, "stop": "halt"},
             metric="test_acc_at_kept"),
        Cell("Label Wave (δ=10)", {**base, "method": "labelwave", "patience": 10, "label_noise": 0.4,
                                   "stop": "halt"}, metric="test_acc_at_kept"),
        Cell("NeVe (δ=5)", {**base, "method": "neve", "patience": 5}, metric="test_acc_at_neve_stop"),
        Cell("NeVe (δ=10)", {**base, "method": "neve"}, metric="test_acc_at_neve_stop"),
    ]
    cells = tuple(dataclasses.replace(row, block="MNIST-1D CNN", values={"method": row.label}) for row in rows)
    return Experiment(
        "mnist1d-table1", "Table I on MNIST-1D: NeVe against the Ultimate Optimizer and Label Wave (CNN)", "table",
        cells, defaults=MNIST1D_RUN, also_report=MNIST1D_ALSO_REPORT,
        reads="NeVe (δ=10) is mnist1d-table2's CNN NeVe run (shared). Label Wave trains on 40% symmetric label noise "
              "as the authors' runs did; with no Baseline in the block, Welch compares each row with the first.")


@experiment("mnist1d-fig4a")
def mnist1d_fig4a() -> Experiment:
    base = {"model": "mnist1d_cnn"}
    cells = [Cell(f"V.Loss {h:g}", {**base, "method": "vloss", "holdout": h, "stop": "halt"},
                  values={"method": "V.Loss", "holdout": h}, metric="test_acc_at_kept") for h in FIG4A_HOLDOUTS]
    cells += [Cell("NeVe", {**base, "method": "neve"}, values={"method": "NeVe", "holdout": 0.0},
                   metric="test_acc_at_neve_stop"),
              Cell("Baseline", {**base, "method": "baseline"}, values={"method": "Baseline", "holdout": 0.0})]
    return Experiment(
        "mnist1d-fig4a", "Fig. 4a on MNIST-1D: CNN test accuracy vs sequences moved from training to validation",
        "figure", tuple(cells), defaults=MNIST1D_RUN,
        reads="V.Loss at 10% and 30%, NeVe and Baseline are mnist1d-table2's CNN runs (shared); 2%, 5% and 20% are "
              "new. x = fraction x 4,000 training sequences.")


@experiment("mnist1d-fig6")
def mnist1d_fig6() -> Experiment:
    cells = tuple(Cell(name, {"model": model, "method": "neve"}, values={"network": name},
                       metric="test_acc_at_neve_stop")
                  for model, name in MNIST1D_MODELS.items() if model != "mnist1d_mlp")
    return Experiment(
        "mnist1d-fig6", "Fig. 6 on MNIST-1D: epochs to NeVe's stop and accuracy there vs epsilon", "figure",
        cells, defaults=MNIST1D_RUN, derived={"epsilon": FIG6_EPSILONS}, curves=True,
        reads="mnist1d-table2's NeVe runs (no new training): the stop at each epsilon is the first epoch with "
              "V < epsilon of the same --stop mark run.")


# ------------------------------------------------------------------------------------------ tuning-free
#: The tuning-free optimizers (``neve/methods``), as their rows are labelled. Each runs its authors' documented
#: settings; "+ cosine" and "MultiStep" are the variants that are told the training horizon.
TUNING_FREE_METHODS = {"schedulefree": "schedule-free", "prodigy": "Prodigy", "prodigy-cosine": "Prodigy + cosine",
                       "dadapt": "D-Adaptation (constant)", "dadapt-multistep": "D-Adaptation (MultiStep)",
                       "dog": "DoG"}
#: AlgoPerf's target is a fixed accuracy; here the Baseline's mean final accuracy minus half a point, so that
#: "reached" means "trained as well as the tuned schedule, within seed noise".
TUNING_FREE_TARGET_MARGIN = 0.5
TUNING_FREE_REPORTING = {"target_margin": TUNING_FREE_TARGET_MARGIN, "second_reference": "NeVe",
                         "also_report": ("test_acc_at_neve_stop",), "curves": True}


def tuning_free_rows(dataset: str, model: str, block: str, **common: Any) -> list[Cell]:
    """Baseline and NeVe exactly as Table II's rows (so their runs are shared), then each tuning-free method.

    The tuning-free methods never stop: their number is the final model's accuracy."""
    shared = [row for row in table2_rows(dataset, model, block, **common) if row.label in ("Baseline", "NeVe")]
    base = {"dataset": dataset, "model": model, **common}
    return shared + [Cell(label, {**base, "method": method}, values={"method": label}, block=block)
                     for method, label in TUNING_FREE_METHODS.items()]


@experiment("tuning-free")
def tuning_free() -> Experiment:
    cells = []
    for dataset in CIFAR:
        cells += tuning_free_rows(dataset, "resnet32", f"{CIFAR[dataset]} ResNet-32")
    return Experiment(
        "tuning-free", "Beyond the paper: NeVe against schedule-free, Prodigy, D-Adaptation and DoG (CIFAR "
        "ResNet-32, SGD recipe)", "table", tuple(cells), defaults=PAPER_RUN, **TUNING_FREE_REPORTING,
        reads="Baseline and NeVe are Table II's CIFAR runs (shared); the six tuning-free runs are new. Each cell "
              "gives its own number (NeVe: at V < epsilon; the others: final), the final accuracy, the accuracy at "
              "NeVe's stop marker, the epochs and wall time to the Baseline's mean final accuracy - 0.5, and Welch "
              "tests against the Baseline and NeVe.")


@experiment("mnist1d-tuning-free")
def mnist1d_tuning_free() -> Experiment:
    cells = []
    for model in ("mnist1d_cnn", "mnist1d_resnet"):
        cells += tuning_free_rows("mnist1d", model, f"MNIST-1D {MNIST1D_MODELS[model]}")
    return Experiment(
        "mnist1d-tuning-free", "Beyond the paper on MNIST-1D: NeVe against schedule-free, Prodigy, D-Adaptation and "
        "DoG (CNN, ResNet-1D)", "table", tuple(cells), defaults=MNIST1D_RUN, **TUNING_FREE_REPORTING,
        reads="Baseline and NeVe are mnist1d-table2's runs (shared); the six tuning-free runs are new, with their "
              "authors' settings (not the SGD recipe's lr); each cell reports what tuning-free's cells report.")


# ------------------------------------------------------------------------------------------ MNIST-1D figures
#: Fig. 4b on MNIST-1D: aux sizes. Real sequences come from a 10% validation split (400 of the 4,000 training
#: sequences), so 400 is the most, as 5,000 (all of a 10% split) is on CIFAR-100.
MNIST1D_FIG4B_SIZES = (1, 10, 100, 400)


def mnist1d_neve(model: str = "mnist1d_cnn", **options: Any) -> dict[str, Any]:
    """An MNIST-1D NeVe run under Table II's SGD protocol: the base of the MNIST-1D figures and ablations."""
    return {"model": model, "method": "neve", **options}


@experiment("mnist1d-fig4b")
def mnist1d_fig4b() -> Experiment:
    cells = [Cell(f"{kind} {size}", mnist1d_neve(aux_size=size, **AUX_TYPES[kind]),
                  values={"aux": kind, "aux_size": size}, metric="test_acc_at_neve_stop")
             for kind in AUX_TYPES for size in MNIST1D_FIG4B_SIZES]
    return Experiment(
        "mnist1d-fig4b", "Fig. 4b on MNIST-1D: CNN NeVe accuracy and stop epoch vs the aux set's size and type",
        "figure", tuple(cells), defaults=MNIST1D_RUN, claims=FIG4B_CLAIMS,
        reads="Gaussian noise at 100 sequences is mnist1d-table2's CNN NeVe run (shared); the rest are new. Real "
              "sequences are drawn from a 10% validation split, which those runs then do not train on.")


@experiment("mnist1d-fig5")
def mnist1d_fig5() -> Experiment:
    cells = [Cell("NeVe", mnist1d_neve(), values={"method": "NeVe"}, block="MNIST-1D CNN",
                  metric="test_acc_at_neve_stop"),
             Cell("Baseline", {"model": "mnist1d_cnn", "method": "baseline"}, values={"method": "Baseline"},
                  block="MNIST-1D CNN")]
    return Experiment(
        "mnist1d-fig5", "Fig. 5 on MNIST-1D: CNN test accuracy and loss over the whole budget, NeVe's stop marked",
        "figure", tuple(cells), defaults=MNIST1D_RUN, curves=True, claims=FIG5_CLAIMS,
        reads="mnist1d-table2's CNN NeVe and Baseline runs (no new training): --stop mark trains the whole budget and "
              "records where V < epsilon, so NeVe's stop epoch is compared with the epoch of the minimum test loss "
              "and of the best test accuracy, run by run.")


@experiment("mnist1d-fig7")
def mnist1d_fig7() -> Experiment:
    cells = [Cell("constant lr", {"model": "mnist1d_cnn", "method": "none", "holdout": 0.1,
                                  "velocity_sets": ("train", "val")}, values={"method": "constant lr"})]
    return Experiment(
        "mnist1d-fig7", "Fig. 7 on MNIST-1D: CNN velocity on training, validation and aux sequences, and the three "
        "losses, constant lr", "figure", tuple(cells), defaults=MNIST1D_RUN, curves=True, claims=FIG7_CLAIMS,
        reads="its own runs: one training per seed at the SGD protocol's lr 0.1 held constant measures the velocity "
              "on the aux set and on 100 training and 100 validation sequences (--velocity-sets train,val), and "
              "records the training, validation and test losses.")


#: Adam's lrs tried on the tuning set for Fig. 8 (the paper's Adam used 1e-3 on CIFAR-100; MNIST-1D's published
#: recipe uses 1e-2).
MNIST1D_ADAM_LRS = (1e-3, 3e-3, 1e-2)


@experiment("mnist1d-tuning-adam")
def mnist1d_tuning_adam() -> Experiment:
    cells = tuple(Cell(f"CNN Adam lr {lr:g}", {"model": "mnist1d_cnn", "method": "baseline", "optimizer": "adam",
                                                "lr": lr, **MNIST1D_TUNING_SET},
                       values={"network": "CNN", "optimizer": "Adam", "lr": lr}, block="tuning set, CNN, Adam")
                  for lr in MNIST1D_ADAM_LRS)
    return Experiment(
        "mnist1d-tuning-adam", "MNIST-1D tuning set (generator seed 43): Adam's lr for Fig. 8", "table", cells,
        defaults=MNIST1D_RUN, seeds=2,
        reads="its own runs, on a dataset drawn with generator seed 43: Table II's SGD protocol with Adam in place of "
              "SGD (x0.1 at epochs 80 and 120 of 200, wd 5e-4) at three lrs, Baseline only, as mnist1d-tuning chose "
              "SGD's lr.")


@experiment("mnist1d-ablation-alpha-delta")
def mnist1d_ablation_alpha_delta() -> Experiment:
    cells = [Cell(f"alpha {p['alpha']:g}, delta {p['patience']}", mnist1d_neve(**p), values=p,
                  metric="test_acc_at_neve_stop")
             for p in grid(alpha=ABLATION_ALPHAS, patience=ABLATION_PATIENCES)]
    return Experiment(
        "mnist1d-ablation-alpha-delta", "Ablation on MNIST-1D: CNN NeVe over the lr decay alpha and the plateau "
        "patience delta", "figure", tuple(cells), defaults=MNIST1D_RUN, claims=ABLATION_CLAIMS,
        reads="(0.5, 10) is mnist1d-table2's CNN NeVe and (0.5, 5) mnist1d-table1's NeVe (δ=5) (shared); the other 7 "
              "cells are new.")


#: The methods scored by ``mnist1d-stop-quality``: Table I's rows that stop, keep or run the whole budget besides
#: NeVe (whose runs are Table II's).
MNIST1D_STOP_QUALITY_TABLE1_ROWS = ("Label Wave (δ=5)", "Label Wave (δ=10)", "Ultimate Optimizer")


@experiment("mnist1d-stop-quality")
def mnist1d_stop_quality() -> Experiment:
    table2 = get_experiment("mnist1d-table2").cells
    table1 = [cell for cell in get_experiment("mnist1d-table1").cells if cell.label in MNIST1D_STOP_QUALITY_TABLE1_ROWS]
    cells = [cell for cell in table2 if cell.block == "MNIST-1D CNN"] + sorted(
        table1, key=lambda cell: MNIST1D_STOP_QUALITY_TABLE1_ROWS.index(cell.label))
    cells += [cell for cell in table2 if cell.block == "MNIST-1D ResNet-1D"]
    return Experiment(
        "mnist1d-stop-quality", "Stop quality on MNIST-1D: each method's accuracy regret against the best epoch in "
        "hindsight, and the epochs it saves", "figure", tuple(cells), defaults=MNIST1D_RUN,
        also_report=MNIST1D_ALSO_REPORT,
        reads="mnist1d-table2's Baseline, V.Loss 30% / 10% and NeVe rows (CNN and ResNet-1D) and mnist1d-table1's "
              "Label Wave (δ=5, δ=10) and Ultimate Optimizer (CNN), the same cells and runs (no new training). Each "
              "run's stop quality (experiments.stop_quality) is in every results CSV; the Baseline's would-be stop is "
              "its first V < epsilon (the *_at_neve_stop columns).")
