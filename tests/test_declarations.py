"""Registration is the single source of truth: what experiments, datasets and methods declare where they are
registered, and the places that read it (sweep costs and data checks, the tuning-free rows, the command line's
help) with no list of their own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import catalog, sweep
from experiments.catalog import Cell, Experiment, get_experiment
from experiments.costs import run_hours
from experiments.data import DATASETS, TRAIN_ORDERS, load_data, register_dataset
from experiments.data.prepare import DataCheck, check_data, prepare
from experiments.methods import FAMILIES, METHODS, method_help, method_names, methods_of, register_method
from experiments.methods.base import Policy
from experiments.methods.tuning_free import TuningFreePolicy
from experiments.training import config, records

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- experiments
def test_an_entry_written_in_the_old_style_still_works() -> None:
    old = Experiment("old", "an old entry", "table", (Cell("Baseline", {"dataset": "digits", "method": "baseline"}),),
                     reads="its own runs")
    assert (old.layout, old.notebook, old.make, old.rehearsal, old.joins) == ("table", "", "", None, ())
    assert old.datasets == ["digits"] and old.offline and len(old.runs(2)) == 2
    with pytest.raises(ValueError, match="kind must be one of"):
        Experiment("bad", "a bad kind", "chart", old.cells, reads="")


def test_where_an_experiment_runs_follows_its_datasets_declarations() -> None:
    assert not get_experiment("table2").offline and get_experiment("table2").datasets == [
        "cifar10", "cifar100", "imagenet100"]
    assert get_experiment("mnist1d-table2").offline and get_experiment("demo").offline
    assert get_experiment("table2").miniature().offline  # a rehearsal trains on digits
    cifar_on_digits = Experiment("x", "x", "figure", (Cell("a", {"method": "neve"}),), reads="",
                                 defaults={"dataset": "digits"})
    assert cifar_on_digits.offline  # the defaults' dataset counts when a cell sets none


def test_every_declared_make_target_is_a_makefile_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = {name for line in re.findall(r"^([a-z0-9][a-z0-9 -]*):", makefile, re.MULTILINE)
               for name in line.split()}
    declared = {get_experiment(name).make for name in catalog.experiment_names()} - {""}
    assert declared and declared <= targets, declared - targets


def test_joined_experiments_exist_and_share_the_layout() -> None:
    for name in catalog.experiment_names():
        experiment = get_experiment(name)
        for other in experiment.joins:
            assert get_experiment(other).layout == experiment.layout, (name, other)


# ---------------------------------------------------------------------------------------------- datasets
def test_every_dataset_declares_its_facts() -> None:
    for name, spec in DATASETS.items():
        assert spec.train_size and spec.train_size > 0, name
        assert spec.unit in ("images", "sequences"), name
        assert spec.offline == (spec.check is None), name  # made here: nothing to prepare
    assert {n for n, s in DATASETS.items() if s.offline} == {"digits", "mnist1d"}
    assert {n for n, s in DATASETS.items() if s.prepare} == {"cifar10", "cifar100"}
    assert DATASETS["mnist1d"].unit == "sequences"
    splits = load_data("digits", ".", batch_size=64)
    assert splits.train.num_samples == DATASETS["digits"].train_size  # the declared size is the real one


def test_every_run_of_the_catalog_is_priced_by_its_datasets_declaration() -> None:
    for name in catalog.experiment_names():
        for run in get_experiment(name).runs(1):
            hours, cost = run_hours(run)
            assert cost is not None and hours > 0, (name, run.config.dataset, run.config.model)
            assert cost is DATASETS[run.config.dataset].epoch_costs[run.config.model]


def test_a_datasets_registered_check_is_what_the_sweep_and_prepare_use(tmp_path: Path) -> None:
    calls = []

    def check(name: str, root: Path) -> DataCheck:
        calls.append(root)
        return DataCheck(name, root, False, "not here", "fetch it")

    with pytest.raises(ValueError, match="needs a check"):
        register_dataset("half-declared", prepare=lambda name, root, archive: None)(lambda root, **kw: None)
    register_dataset("checked", title="Checked-10", train_size=10, check=check)(lambda root, **kw: None)
    try:
        assert not check_data("checked", tmp_path).ready and calls == [tmp_path.resolve()]
        with pytest.raises(ValueError, match="Checked-10 cannot be prepared by a command: not here"):
            prepare("checked", tmp_path)
        run = get_experiment("tiny").runs(1)[0]
        run.config.dataset, run.config.data_root = "checked", str(tmp_path)
        (found,) = sweep.data_checks([run])
        assert found.dataset == "checked" and not found.ready
        assert "python -m experiments.data prepare" not in sweep._data_missing([found])  # no prepare declared
        assert check_data("digits", tmp_path).ready  # offline: nothing to check
    finally:
        del DATASETS["checked"]
        DATASETS.pop("half-declared", None)


# ----------------------------------------------------------------------------------------------- methods
def test_every_method_declares_its_label_family_package_and_summary() -> None:
    assert len({cls.label for cls in METHODS.values()}) == len(METHODS)
    for name, cls in METHODS.items():
        assert cls.name == name and cls.label and cls.family in FAMILIES, name
        assert f"{name}: " in method_help(), name
    assert method_names() == sorted(METHODS)
    assert {cls.name for cls in methods_of("paper")} == {"baseline", "none", "vloss", "neve"}
    assert {cls.name for cls in methods_of("related")} == {"ultimate", "labelwave"}
    assert all(cls.package for cls in methods_of("tuning-free"))


def test_every_method_module_is_registered_without_being_listed() -> None:
    declared = set()
    for path in (REPO / "experiments" / "methods").glob("*.py"):
        declared |= set(re.findall(r'@register_method\(\s*"([^"]+)"', path.read_text()))
    assert declared == set(METHODS)


def test_every_declared_package_is_in_the_dependency_files() -> None:
    requirements = (REPO / "requirements.txt").read_text()
    constraints = (REPO / "constraints.txt").read_text()
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["experiments"]
    for cls in METHODS.values():
        if cls.package:
            pattern = re.compile(rf"^{re.escape(cls.package)}\b", re.MULTILINE | re.IGNORECASE)
            assert pattern.search(requirements) and pattern.search(constraints), cls.package
            assert any(pattern.match(line) for line in extra), cls.package


def test_a_new_tuning_free_method_joins_the_comparison_with_its_module_alone() -> None:
    @register_method("newopt", label="NewOpt", package="newopt-package")
    class NewOpt(TuningFreePolicy):
        """A tuning-free optimizer nobody listed anywhere."""

    try:
        assert NewOpt.family == "tuning-free"
        labels = [cell.label for cell in get_experiment("mnist1d-tuning-free").cells]
        assert labels.count("NewOpt") == 2  # a row in each block
        runs = [r for r in get_experiment("tuning-free").runs(1) if r.cell.label == "NewOpt"]
        assert {r.config.method for r in runs} == {"newopt"}
        assert "newopt: A tuning-free optimizer nobody listed anywhere (pip package newopt-package)" in method_help()
    finally:
        del METHODS["newopt"]
    assert "NewOpt" not in [cell.label for cell in get_experiment("mnist1d-tuning-free").cells]


def test_an_undeclared_method_is_refused() -> None:
    class Undeclared(Policy):
        """No family."""

    with pytest.raises(ValueError, match="family must be one of"):
        register_method("undeclared")(Undeclared)

    class Undocumented(Policy):
        pass

    with pytest.raises(ValueError, match="docstring"):
        register_method("undocumented", family="paper")(Undocumented)
    assert "undeclared" not in METHODS and "undocumented" not in METHODS


# --------------------------------------------------------------------------------------------- constants
def test_train_orders_and_wandb_modes_have_one_definition() -> None:
    assert config.TRAIN_ORDERS is TRAIN_ORDERS
    assert config.WANDB_MODES is records.WANDB_MODES
    wandb = next(a for a in sweep.build_parser()._actions if a.dest == "wandb")
    assert tuple(wandb.choices) == config.WANDB_MODES


def test_the_experiment_layer_imports_without_submitit_and_notebooks_without_torch() -> None:
    code = ("import sys\n"
            "sys.modules['submitit'] = None  # importing it raises\n"
            "import experiments.results, experiments.plots\n"
            "assert 'torch' not in sys.modules, 'a notebook would import torch'\n"
            "import experiments.catalog, experiments.sweep, experiments.aggregate, experiments.notebooks\n"
            "import experiments.report, experiments.executors\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
