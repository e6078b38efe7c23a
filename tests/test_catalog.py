"""The catalog: every experiment expands to resolved runs, the same training is one folder, shared runs."""

from __future__ import annotations

import dataclasses
import functools

import pandas as pd
import pytest

from experiments import catalog
from experiments.catalog import get_experiment, grid
from experiments.methods import methods_of
from experiments.profiles import ProfileError, load_profile
from experiments.sweep import main as sweep_main
from experiments.sweep import plan, select
from experiments.training.config import RunConfig, run_id, run_name

PAPER_EXPERIMENTS = ("table1", "table2", "fig4a", "fig4b", "fig5", "fig6", "fig7", "fig8", "ablation-alpha-delta",
                     "paper-vs-code")


def names(experiment: str, seeds: int = 1) -> set[str]:
    return {run.name for run in get_experiment(experiment).runs(seeds)}


def test_every_experiment_expands_to_resolved_runs_with_unique_folders() -> None:
    for name in catalog.experiment_names():
        experiment = get_experiment(name)
        runs = experiment.runs(2)
        assert len(runs) == 2 * len(experiment.cells)
        assert all(run.config.out.endswith(run.name) and run.name == run_name(run.config) for run in runs)
        # No two cells of an experiment train the same thing: a cell option the config dropped (or one the run
        # folder's identity ignores) would merge two cells into one folder.
        assert len({run.name for run in runs}) == len(runs), name
        assert len({run_id(run.config) for run in runs}) == len(runs), name
    # The miniature merges only what it caps: Fig. 4b's aux sizes above 128 images.
    small = get_experiment("fig4b").miniature().runs(1)
    merged = len(small) - len({run.name for run in small})
    assert merged == sum(1 for cell in get_experiment("fig4b").cells
                         if cell.options["aux_size"] > catalog.MINIATURE_AUX_SIZE) - 2  # 2 aux kinds keep one each


def test_the_run_folder_is_a_function_of_the_resolved_config() -> None:
    a = RunConfig(dataset="cifar100", method="neve", seed=3).resolved()
    b = RunConfig(dataset="cifar100", method="neve", seed=3, lr=0.1, epochs=250, device="cuda", wandb="disabled",
                  out="elsewhere").resolved()  # recipe values spelled out; where and how it runs do not count
    assert run_name(a) == run_name(b) and run_name(a).startswith("cifar100-resnet32-neve-s3-")
    for change in ({"seed": 4}, {"patience": 5}, {"fidelity": "code"}, {"velocity_form": "signed"},
                   {"aux_size": 10}, {"lr": 0.05}):
        assert run_name(dataclasses.replace(a, **change)) != run_name(a), change


def test_experiments_share_the_runs_they_have_in_common() -> None:
    table2 = names("table2")
    cifar100_neve = {n for n in table2 if n.startswith("cifar100-resnet32-neve-code-")}
    assert len(cifar100_neve) == 1
    assert cifar100_neve <= names("fig5") and cifar100_neve <= names("fig8") and cifar100_neve <= names("table1")
    assert cifar100_neve <= names("fig4b") and cifar100_neve <= names("ablation-alpha-delta")
    assert cifar100_neve <= names("paper-vs-code")
    assert names("fig5") <= table2  # Fig. 5 trains nothing new
    assert names("fig6") <= names("fig4b")  # nor does Fig. 6: its epsilons are read off Fig. 4b's runs
    assert {n for n in table2 if "-vloss-" in n and "cifar100" in n} <= names("fig4a")


def test_the_adam_ablation_trains_with_lr_1e_3() -> None:
    adam, = [run for run in get_experiment("fig8").runs(1) if run.config.optimizer == "adam"]
    assert adam.config.lr == 1e-3 and adam.cell.values == {"optimizer": "Adam"}


def test_paper_tables_run_the_authors_code_with_the_stop_marked_and_the_demo_runs_the_paper() -> None:
    for run in get_experiment("table2").runs(1) + get_experiment("table1").runs(1):
        assert run.config.fidelity == "code"
        if run.config.method == "neve":
            assert run.config.stop == "mark" and run.cell.metric == "test_acc_at_neve_stop"
    labelwave = [r for r in get_experiment("table1").runs(1) if r.config.method == "labelwave"]
    assert labelwave and all(r.config.label_noise == 0.4 and r.config.test_augmentation for r in labelwave)
    assert {r.config.fidelity for r in get_experiment("demo").runs(1)} == {"paper"}
    # A sweep may ask for the paper's fidelity, but paper-vs-code keeps the settings it compares.
    overridden = plan("table2", seeds=1, fidelity="paper")
    assert {r.config.fidelity for r in overridden} == {"paper"}
    settings = {r.cell.label: r.config for r in plan("paper-vs-code", seeds=1, fidelity="paper")}
    assert settings["code"].fidelity == "code" and settings["paper + signed velocity"].velocity_form == "signed"


def test_paper_numbers_and_grids() -> None:
    table2 = {(r.cell.block, r.cell.label): r.cell.paper for r in get_experiment("table2").runs(1)}
    assert table2[("CIFAR-10 ResNet-32", "NeVe")] == (93.10, 0.30)
    assert table2[("ImageNet-100 SwinV2-T", "V.Loss 30%")] == (66.67, 0.16)
    assert grid(a=[1, 2], b="xy") == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert len(get_experiment("ablation-alpha-delta").cells) == 9
    assert get_experiment("fig6").derived["epsilon"] == catalog.FIG6_EPSILONS


def test_miniature_keeps_the_grid_on_digits() -> None:
    full, small = get_experiment("fig4b"), get_experiment("fig4b").miniature(epochs=2)
    assert [c.values for c in small.cells] == [c.values for c in full.cells]
    runs = small.runs(1)
    assert {(r.config.dataset, r.config.model, r.config.epochs) for r in runs} == {("digits", "resnet8", 2)}
    assert max(r.config.aux_size for r in runs) == catalog.MINIATURE_AUX_SIZE


def test_every_experiment_has_a_miniature_rehearsal(tmp_path, capsys) -> None:
    # Planned as the sweep plans it (options validated against digits): MNIST-1D's generator seed, say, is dropped.
    for name in catalog.experiment_names():
        code = sweep_main([name, "--miniature", "--dry-run", "--seeds", "1", "--executor", "local",
                           "--runs-dir", str(tmp_path)])
        assert code == 0, (name, capsys.readouterr().err)


def test_only_selects_by_config_field_or_cell_value() -> None:
    runs = plan("table2", seeds=2)
    assert {r.config.dataset for r in select(runs, ["dataset=cifar10"])} == {"cifar10"}
    neve = select(runs, ["method=neve", "dataset=cifar100"])
    assert len(neve) == 2 and all(r.config.method == "neve" for r in neve)
    assert len(select(runs, ["method=V.Loss 30%", "method=V.Loss 10%", "seed=0"])) == 8
    assert len(select(runs, ["holdout=0.3"])) == 8
    with pytest.raises(ValueError, match="unknown key"):
        select(runs, ["datset=cifar10"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        select(runs, ["cifar10"])


def test_unknown_experiments_and_bad_options_are_clear_errors(capsys) -> None:
    assert sweep_main(["tabel2", "--dry-run"]) == 2
    assert "unknown experiment 'tabel2'" in capsys.readouterr().err
    assert sweep_main(["tiny", "--only", "nope=1", "--dry-run"]) == 2
    assert "--executor slurm needs --cluster" in _run_err(capsys, ["tiny", "--executor", "slurm"])
    assert "no cluster profile" in _run_err(capsys, ["tiny", "--executor", "slurm", "--cluster", "nonexistent"])


def _run_err(capsys, argv: list[str]) -> str:
    assert sweep_main(argv) == 2
    return capsys.readouterr().err


def test_list_prints_every_experiment_with_runs_shared_and_hours(capsys) -> None:
    assert sweep_main(["--list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line and line.split()[0] in
             catalog.experiment_names()}
    assert set(lines) == set(catalog.experiment_names())
    assert lines["fig5"][2:5] == ["20", "20", "0"]  # 20 runs, all shared with Table II, none new
    assert lines["table2"][2] == "160"
    assert "H100 hours" in out
    # MNIST-1D is CPU work with measured epoch times: priced in CPU hours, unstarred, and out of the paper's
    # GPU total (which would otherwise count its runs at 0 hours).
    row = lines["mnist1d-table2"]
    assert row[6] == "CPU" and float(row[5]) > 1 and row[7] != "*"
    paper = {run.name for name in catalog.experiment_names() for run in catalog.get_experiment(name).runs()
             if run.config.dataset not in ("digits", "mnist1d")}
    assert f": {len(paper)} distinct runs" in out


@pytest.mark.parametrize(("text", "message"), [
    ("time_min = 60\n", "'partition' is required"),
    ('partition = "gpu"\ntime_min = 60\ngpus = 2\n', "unknown field(s) gpus"),
    ('partition = "gpu"\ntime_min = "1h"\n', "'time_min' must be int"),
    ('partition = "gpu"\ntime_min = 60\nruns_per_gpu = 0\n', "'runs_per_gpu' must be >= 1"),
    ('partition = "gpu"\ntime_min = 60\nsetup = [1]\n', "'setup' must be a list of shell lines"),
    ('partition = "gpu"\ntime_min = \n', "not valid TOML"),
])
def test_a_malformed_profile_names_the_field(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_profile(str(path))


def test_the_example_profile_loads_and_maps_to_sbatch_options() -> None:
    profile = load_profile("example")
    parameters = profile.executor_parameters(runs_per_job=1)
    assert parameters["partition"] == "gpu" and parameters["time"] == 240 and parameters["gpus_per_node"] == 1
    assert parameters["mem"] == "32GB" and "account" not in parameters


def test_the_tuning_free_experiments_share_baseline_and_neve_with_table2() -> None:
    tuning_free = methods_of("tuning-free")  # every method registered in the family is a row, nothing listed here
    # The six the write-up compares, under the labels their rows (and results CSVs) carry.
    six = {"schedulefree": "schedule-free", "prodigy": "Prodigy", "prodigy-cosine": "Prodigy + cosine",
           "dadapt": "D-Adaptation (constant)", "dadapt-multistep": "D-Adaptation (MultiStep)", "dog": "DoG"}
    declared = {m.name: m.label for m in tuning_free}
    assert {name: declared.get(name) for name in six} == six
    rows = 2 + len(tuning_free)
    for name, table2, blocks in (("mnist1d-tuning-free", "mnist1d-table2", ("MNIST-1D CNN", "MNIST-1D ResNet-1D")),
                                 ("tuning-free", "table2", ("CIFAR-10 ResNet-32", "CIFAR-100 ResNet-32"))):
        experiment = get_experiment(name)
        assert experiment.kind == "table" and experiment.seeds == 10 and experiment.curves
        assert experiment.target_margin == 0.5 and experiment.second_reference == "NeVe"
        assert experiment.also_report == ("test_acc_at_neve_stop",)
        runs = experiment.runs(10)
        assert len(runs) == 2 * rows * 10
        assert list(dict.fromkeys(r.cell.block for r in runs)) == list(blocks)
        assert [c.label for c in experiment.cells[:rows]] == ["Baseline", "NeVe", *(m.label for m in tuning_free)]
        methods = {r.cell.label: r.config.method for r in runs}
        assert methods == {"Baseline": "baseline", "NeVe": "neve", **{m.label: m.name for m in tuning_free}}
        assert all(r.config.stop == "mark" for r in runs)  # NeVe's stop is marked; every method trains the budget
        metrics = {r.cell.label: r.cell.metric for r in runs}
        assert metrics.pop("NeVe") == "test_acc_at_neve_stop" and set(metrics.values()) == {"final_test_acc"}
        # Baseline and NeVe are the very same runs (folders) as Table II's, seed by seed; the others are new.
        shared = {r.name for r in runs if r.cell.label in ("Baseline", "NeVe")}
        table2_runs = {(r.cell.block, r.cell.label, r.seed): r.name for r in get_experiment(table2).runs(10)}
        assert shared == {n for (b, label, _), n in table2_runs.items()
                          if b in blocks and label in ("Baseline", "NeVe")}
        assert not ({r.name for r in runs} - shared) & set(table2_runs.values())
    assert {r.config.fidelity for r in get_experiment("tuning-free").runs(1)} == {"code"}  # Table II's setting
    assert {r.config.model for r in get_experiment("tuning-free").runs(1)} == {"resnet32"}


def test_an_unknown_reported_field_is_refused() -> None:
    with pytest.raises(ValueError, match="also_report"):
        dataclasses.replace(get_experiment("mnist1d-tuning-free"), also_report=("test_acc_at_nowhere",))


# ------------------------------------------------------------------------------------------ MNIST-1D
#: Every experiment that trains on MNIST-1D alone, as its cells declare it.
MNIST1D_EXPERIMENTS = tuple(name for name in catalog.experiment_names() if get_experiment(name).datasets == ["mnist1d"])


def test_the_mnist1d_experiments_are_found_from_their_declarations() -> None:
    assert {"mnist1d-published", "mnist1d-tuning", "mnist1d-table2", "mnist1d-demo", "mnist1d-table2-code",
            "mnist1d-table1", "mnist1d-fig4a", "mnist1d-fig6", "mnist1d-tuning-free"} <= set(MNIST1D_EXPERIMENTS)
    assert all(get_experiment(name).offline for name in MNIST1D_EXPERIMENTS)


def mnist1d_runs(name: str, seeds: int = 10) -> dict[tuple[str, str, int], catalog.PlannedRun]:
    return {(r.cell.block, r.cell.label, r.seed): r for r in get_experiment(name).runs(seeds)}


#: The paper's NeVe settings, which every MNIST-1D run records its velocity and stop marker with.
PAPER_NEVE = {"epsilon": 1e-3, "alpha": 0.5, "mu": 0.5, "aux": "gaussian", "aux_size": 100}


def test_every_mnist1d_run_trains_on_mnist1d_in_fp32_on_one_thread_with_the_papers_neve() -> None:
    for name in MNIST1D_EXPERIMENTS:
        for run in get_experiment(name).runs(1):
            config = run.config
            assert config.dataset == "mnist1d" and config.model in ("mnist1d_cnn", "mnist1d_mlp", "mnist1d_resnet")
            assert (config.precision, config.threads, config.num_workers) == ("fp32", 1, 0), name
            # The paper's NeVe settings, in every run (each records the velocity and NeVe's stop marker), but for
            # those its grid varies (Fig. 4b's aux set, the ablation's alpha): the cell's values say which.
            settings = {key: value for key, value in PAPER_NEVE.items() if key not in run.cell.values}
            assert {key: getattr(config, key) for key in settings} == settings, name
            assert config.batch_size == 100 and config.epochs == 200, name


def test_the_external_check_trains_the_published_recipe_in_the_published_order() -> None:
    runs = mnist1d_runs("mnist1d-published", 1)
    assert {(label, r.config.model, r.config.train_order) for (_, label, _), r in runs.items()} == {
        ("Baseline CNN (published recipe)", "mnist1d_cnn", "fixed"),
        ("Baseline MLP (published recipe)", "mnist1d_mlp", "fixed"),
        ("Baseline CNN, reshuffled every epoch", "mnist1d_cnn", "shuffle")}
    for run in runs.values():
        c = run.config
        assert (c.method, c.optimizer, c.lr, c.weight_decay, c.milestones) == ("baseline", "adam", 1e-2, 0.0, ())
        assert c.data_options in ({}, None) or "seed" not in c.data_options  # the published test set (seed 42)
    papers = {r.cell.label: r.cell.paper[0] for r in runs.values()}
    assert papers["Baseline CNN (published recipe)"] == 94.0 and papers["Baseline MLP (published recipe)"] == 68.0


TUNING_EXPERIMENTS = {"mnist1d-tuning", "mnist1d-tuning-peers", "mnist1d-tuning-adam"}


def test_settings_are_chosen_on_a_tuning_set_drawn_with_another_generator_seed() -> None:
    runs = get_experiment("mnist1d-tuning").runs(2)
    assert {r.config.data_options["seed"] for r in runs} == {43}  # never the published 42
    assert {r.config.lr for r in runs} == set(catalog.MNIST1D_TUNING_LRS)
    # The tuning experiments (SGD's lr, the peers' knobs, Adam's lr) train on the tuning set alone; nothing else
    # trains on it, and nothing else chooses a setting.
    for name in MNIST1D_EXPERIMENTS:
        on_tuning_set = {(r.config.data_options or {}).get("seed") == 43 for r in get_experiment(name).runs(1)}
        assert on_tuning_set == {name in TUNING_EXPERIMENTS}, name


def test_mnist1d_table2_is_the_papers_protocol_for_both_networks() -> None:
    runs = mnist1d_runs("mnist1d-table2")
    assert len(runs) == 2 * 4 * 10
    assert {(b, label) for b, label, _ in runs} == {
        (block, label) for block in ("MNIST-1D CNN", "MNIST-1D ResNet-1D")
        for label in ("Baseline", "V.Loss 30%", "V.Loss 10%", "NeVe")}
    for (block, label, _), run in runs.items():
        c = run.config
        assert c.model == ("mnist1d_cnn" if "CNN" in block else "mnist1d_resnet")
        assert (c.optimizer, c.lr, c.momentum, c.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
        assert c.fidelity == "paper" and c.train_order == "shuffle"
        if label == "Baseline":
            assert c.milestones == (80, 120) and c.stop == "mark"  # x0.1 at 40% and 60% of 200 epochs
        if label.startswith("V.Loss"):
            assert c.holdout == {"V.Loss 30%": 0.3, "V.Loss 10%": 0.1}[label] and c.stop == "halt"
        if label == "NeVe":
            assert c.method == "neve" and c.patience == 10 and c.stop == "mark"
            assert run.cell.metric == "test_acc_at_neve_stop"


def test_the_mnist1d_experiments_share_table2s_runs_instead_of_training_them_again() -> None:
    table2 = mnist1d_runs("mnist1d-table2")
    cnn = {key: r.name for key, r in table2.items() if key[0] == "MNIST-1D CNN"}
    # make demo: exactly Table II's CNN runs at seeds 0-4.
    assert {r.name for r in get_experiment("mnist1d-demo").runs()} == {n for (_, _, s), n in cnn.items() if s < 5}
    # Fig. 6 trains nothing: all its runs are Table II's NeVe runs, one line per network.
    fig6 = get_experiment("mnist1d-fig6").runs(10)
    assert {r.name for r in fig6} == {r.name for (_, label, _), r in table2.items() if label == "NeVe"}
    # Table I's NeVe (δ=10) is Table II's CNN NeVe; the others are new.
    table1 = mnist1d_runs("mnist1d-table1")
    neve10 = {r.name for (_, label, _), r in table1.items() if label == "NeVe (δ=10)"}
    assert neve10 == {n for (_, label, _), n in cnn.items() if label == "NeVe"}
    assert not ({r.name for r in table1.values()} - neve10) & set(cnn.values())
    lw = [r for (_, label, _), r in table1.items() if label.startswith("Label Wave")]
    assert {r.config.label_noise for r in lw} == {0.4} and {r.config.patience for r in lw} == {5, 10}
    # Fig. 4a: 10% and 30% hold-outs, NeVe and the Baseline are Table II's; 2%, 5% and 20% are new.
    fig4a = mnist1d_runs("mnist1d-fig4a")
    holdouts = sorted({r.config.holdout for r in fig4a.values() if r.config.method == "vloss"})
    assert holdouts == [0.02, 0.05, 0.1, 0.2, 0.3]
    shared = {r.name for r in fig4a.values()} & set(cnn.values())
    assert shared == {n for (_, label, _), n in cnn.items()}  # all four Table II CNN rows
    # The code fidelity: the same grid, each run its own (the authors' velocity and plateau rule).
    code = get_experiment("mnist1d-table2-code").runs(10)
    assert {r.config.fidelity for r in code} == {"code"} and len(code) == 80
    assert not {r.name for r in code} & {r.name for r in table2.values()}
    assert sorted((r.config.model, r.cell.label, r.seed) for r in code) == sorted(
        (r.config.model, label, s) for (_, label, s), r in table2.items())
    # Each code run is its Table II twin (same network, row and seed) with exactly the code fidelity's settings
    # changed: the authors' signed velocity, uint8 aux noise and plateau rule (and the ResNet variant, which
    # applies to the CIFAR ResNets only).
    twins = {(r.config.model, label, s): r for (_, label, s), r in table2.items()}
    for run in code:
        paper, ours = twins[(run.config.model, run.cell.label, run.seed)].config.to_dict(), run.config.to_dict()
        changed = {key for key in paper if paper[key] != ours[key]} - {"out"}
        expected = {"fidelity", "velocity_form", "aux_noise", "plateau_rule", "resnet_variant"}
        assert changed == expected, (run.name, changed)
        assert (ours["velocity_form"], ours["aux_noise"], ours["plateau_rule"]) == ("signed", "uint8", "code")


# ------------------------------------------------------------------------------------------ MNIST-1D figures
# Each new entry has a check that reads its grid and which runs it shares, and a test that planting a defect (a
# wrong grid value, an option that stops a cell sharing the run it should) turns the check red.
def planted(name: str, label: str, **options: object) -> catalog.Experiment:
    """Experiment ``name`` with one more (or another) option in cell ``label``."""
    experiment = get_experiment(name)
    if label not in {cell.label for cell in experiment.cells}:  # not an AssertionError: the test expects those
        raise KeyError(f"{name} has no cell {label!r}")
    cells = tuple(dataclasses.replace(c, options={**c.options, **options}) if c.label == label else c
                  for c in experiment.cells)
    return dataclasses.replace(experiment, cells=cells)


def by_cell(experiment: catalog.Experiment, seeds: int = 2) -> dict[tuple[str, str], dict[int, catalog.PlannedRun]]:
    out: dict[tuple[str, str], dict[int, catalog.PlannedRun]] = {}
    for run in experiment.runs(seeds):
        out.setdefault((run.cell.block, run.cell.label), {})[run.seed] = run
    return out


def names_of(runs: dict[int, catalog.PlannedRun]) -> dict[int, str]:
    return {seed: run.name for seed, run in runs.items()}


def table_cell(name: str, label: str, block: str = "MNIST-1D CNN", seeds: int = 2) -> dict[int, str]:
    """The run folders of cell ``label`` of experiment ``name``, by seed."""
    return names_of(by_cell(get_experiment(name), seeds)[(block, label)])


@functools.cache
def everything_else(name: str) -> frozenset[str]:
    """Every run folder of every other experiment, at the two seeds the checks read."""
    return frozenset(run.name for other in catalog.experiment_names() if other != name
                     for run in get_experiment(other).runs(2))


def check_mnist1d_fig4b(experiment: catalog.Experiment) -> None:
    cells = by_cell(experiment)
    assert {(r[0].cell.values["aux"], r[0].cell.values["aux_size"]) for r in cells.values()} == {
        (kind, size) for kind in ("gaussian", "val") for size in (1, 10, 100, 400)}
    for runs in cells.values():
        for run in runs.values():
            c, values = run.config, run.cell.values
            assert (c.dataset, c.model, c.method) == ("mnist1d", "mnist1d_cnn", "neve")
            # The new cells halt at the stop (their number is read there); the shared one keeps Table II's mark.
            assert c.stop == ("mark" if run.cell.label == "gaussian 100" else "halt")
            assert (c.aux, c.aux_size) == (values["aux"], values["aux_size"])
            assert c.holdout == (0.1 if c.aux == "val" else 0.0)
            assert (c.epsilon, c.alpha, c.patience, c.lr) == (1e-3, 0.5, 10, 0.1)
            assert run.cell.metric == "test_acc_at_neve_stop"
    # Gaussian noise at 100 sequences is mnist1d-table2's CNN NeVe run; the other cells are new.
    shared = names_of(next(r for key, r in cells.items() if key[1] == "gaussian 100"))
    assert shared == table_cell("mnist1d-table2", "NeVe")
    others = {run.name for key, runs in cells.items() if key[1] != "gaussian 100" for run in runs.values()}
    assert not others & everything_else(experiment.name)
    assert experiment.claims["against_reference"] == {"reference": "gaussian 100"}


def check_mnist1d_fig5(experiment: catalog.Experiment) -> None:
    cells = by_cell(experiment)
    assert set(cells) == {("MNIST-1D CNN", "NeVe"), ("MNIST-1D CNN", "Baseline")}
    for (_, label), runs in cells.items():  # no new training: mnist1d-table2's CNN runs, row for row
        assert names_of(runs) == table_cell("mnist1d-table2", label), label
    assert experiment.curves and "stop_vs_overfitting" in experiment.claims


def check_mnist1d_fig7(experiment: catalog.Experiment) -> None:
    (runs,) = by_cell(experiment).values()
    for run in runs.values():
        c = run.config
        assert (c.dataset, c.model, c.method, c.optimizer, c.lr) == ("mnist1d", "mnist1d_cnn", "none", "sgd", 0.1)
        assert c.velocity_sets == ("train", "val") and c.holdout == 0.1 and c.epochs == 200
        assert (c.aux, c.aux_size, c.epsilon) == ("gaussian", 100, 1e-3)
    assert experiment.curves and "velocity_sets" in experiment.claims


def check_mnist1d_tuning_adam(experiment: catalog.Experiment) -> None:
    runs = [run for cell in by_cell(experiment).values() for run in cell.values()]
    assert sorted({run.config.lr for run in runs}) == [1e-3, 3e-3, 1e-2]
    for run in runs:
        c = run.config
        assert (c.model, c.method, c.optimizer, c.data_options) == ("mnist1d_cnn", "baseline", "adam", {"seed": 43})
        assert (c.milestones, c.weight_decay, c.epochs) == ((80, 120), 5e-4, 200)
        assert run.cell.values["lr"] == c.lr


def check_mnist1d_ablation(experiment: catalog.Experiment) -> None:
    cells = by_cell(experiment)
    grid_values = {(r[0].config.alpha, r[0].config.patience) for r in cells.values()}
    assert grid_values == {(a, d) for a in (0.25, 0.5, 0.75) for d in (5, 10, 20)}
    for runs in cells.values():
        for run in runs.values():
            c = run.config
            assert (c.alpha, c.patience) == (run.cell.values["alpha"], run.cell.values["patience"])
            assert (c.model, c.method, c.epsilon, c.aux_size, c.lr) == ("mnist1d_cnn", "neve", 1e-3, 100, 0.1)
            assert c.stop == ("mark" if (c.alpha, c.patience) in ((0.5, 10), (0.5, 5)) else "halt")
    at = {(r[0].config.alpha, r[0].config.patience): names_of(r) for r in cells.values()}
    assert at[(0.5, 10)] == table_cell("mnist1d-table2", "NeVe")
    assert at[(0.5, 5)] == table_cell("mnist1d-table1", "NeVe (δ=5)")
    new = {n for key, runs in at.items() if key not in ((0.5, 10), (0.5, 5)) for n in runs.values()}
    assert len(new) == 7 * 2 and not new & everything_else(experiment.name)
    assert experiment.claims["against_reference"] == {"reference": "alpha 0.5, delta 10"}


#: The cells of mnist1d-stop-quality and the experiment and block each reads its runs from.
STOP_QUALITY_SOURCES = {
    **{("MNIST-1D CNN", label): ("mnist1d-table2", "MNIST-1D CNN")
       for label in ("Baseline", "V.Loss 30%", "V.Loss 10%", "NeVe")},
    **{("MNIST-1D CNN", label): ("mnist1d-table1", "MNIST-1D CNN")
       for label in ("Label Wave (δ=5)", "Label Wave (δ=10)", "Ultimate Optimizer")},
}


def check_mnist1d_stop_quality(experiment: catalog.Experiment) -> None:
    cells = by_cell(experiment)
    assert set(cells) == set(STOP_QUALITY_SOURCES)
    for (block, label), runs in cells.items():
        source, source_block = STOP_QUALITY_SOURCES[(block, label)]
        assert names_of(runs) == table_cell(source, label, source_block), (block, label)
        source_cell = next(c for c in get_experiment(source).cells if (c.block, c.label) == (source_block, label))
        assert runs[0].cell.metric == source_cell.metric, (block, label)


def check_mnist1d_fig8(experiment: catalog.Experiment) -> None:
    cells = {label: runs for (_, label), runs in by_cell(experiment).items()}
    assert set(cells) == {"NeVe SGD", "NeVe Adam", "Baseline SGD", "Baseline Adam"}
    # The SGD rows are mnist1d-table2's CNN runs; each Adam row is its SGD twin with Adam at the tuned lr, and
    # nothing else changed (the same schedule, weight decay, budget, NeVe settings and --stop mark).
    for method in ("NeVe", "Baseline"):
        assert names_of(cells[f"{method} SGD"]) == table_cell("mnist1d-table2", method)
        for seed, adam in cells[f"{method} Adam"].items():
            sgd = cells[f"{method} SGD"][seed].config.to_dict()
            ours = adam.config.to_dict()
            assert {key for key in sgd if sgd[key] != ours[key]} == {"optimizer", "lr", "out"}, (method, seed)
            assert (ours["optimizer"], ours["lr"], ours["stop"]) == ("adam", 1e-2, "mark")
            assert adam.name not in everything_else(experiment.name)
        assert {run.cell.values["optimizer"] for run in cells[f"{method} Adam"].values()} == {"Adam"}
    assert {runs[0].cell.metric for label, runs in cells.items() if label.startswith("NeVe")} == {
        "test_acc_at_neve_stop"}
    assert experiment.curves and experiment.claims["paired"] == {"by": "method", "across": "optimizer"}


def test_fig8s_adam_lr_is_the_best_of_the_committed_tuning_set() -> None:
    rows = pd.read_csv(catalog.RESULTS_DIR / "mnist1d-tuning-adam.csv")
    assert (rows["n"] == rows["n_asked"]).all()  # every seed of every lr finished
    assert rows.loc[rows["mean"].idxmax(), "lr"] == catalog.MNIST1D_ADAM_LR
    assert set(rows["lr"]) == set(catalog.MNIST1D_ADAM_LRS)


NEW_MNIST1D_ENTRIES = {"mnist1d-fig4b": check_mnist1d_fig4b, "mnist1d-fig5": check_mnist1d_fig5,
                       "mnist1d-fig7": check_mnist1d_fig7, "mnist1d-tuning-adam": check_mnist1d_tuning_adam,
                       "mnist1d-ablation-alpha-delta": check_mnist1d_ablation, "mnist1d-fig8": check_mnist1d_fig8,
                       "mnist1d-stop-quality": check_mnist1d_stop_quality}


@pytest.mark.parametrize("name", list(NEW_MNIST1D_ENTRIES))
def test_the_new_mnist1d_entries_have_their_grids_and_share_the_runs_they_should(name: str) -> None:
    experiment = get_experiment(name)
    NEW_MNIST1D_ENTRIES[name](experiment)
    assert experiment.seeds == (2 if name == "mnist1d-tuning-adam" else 10)
    for run in experiment.runs(1):
        c = run.config
        assert (c.dataset, c.precision, c.threads, c.num_workers, c.batch_size) == ("mnist1d", "fp32", 1, 0, 100)


PLANTED_DEFECTS = [
    ("mnist1d-fig4b", "val 400", {"aux_size": 300}),           # a wrong grid value
    ("mnist1d-fig4b", "gaussian 100", {"aux_batch_size": 32}),  # no longer Table II's NeVe run
    ("mnist1d-fig4b", "val 10", {"stop": "mark"}),               # a new cell that trains the whole budget
    ("mnist1d-fig5", "NeVe", {"patience": 11}),
    ("mnist1d-fig5", "Baseline", {"milestones": (80, 140)}),
    ("mnist1d-fig7", "constant lr", {"velocity_sets": ("val",)}),
    ("mnist1d-fig7", "constant lr", {"lr": 0.05}),
    ("mnist1d-tuning-adam", "CNN Adam lr 0.003", {"lr": 2e-3}),
    ("mnist1d-tuning-adam", "CNN Adam lr 0.01", {"data_options": {}}),  # on the test set's generator
    ("mnist1d-ablation-alpha-delta", "alpha 0.75, delta 20", {"alpha": 0.8}),
    ("mnist1d-ablation-alpha-delta", "alpha 0.5, delta 10", {"epsilon": 1e-4}),
    ("mnist1d-ablation-alpha-delta", "alpha 0.5, delta 5", {"mu": 0.6}),
    ("mnist1d-ablation-alpha-delta", "alpha 0.25, delta 20", {"stop": "mark"}),
    ("mnist1d-fig8", "NeVe Adam", {"lr": 1e-3}),             # not the lr the tuning set chose
    ("mnist1d-fig8", "Baseline Adam", {"weight_decay": 0.0}),  # more than the optimizer changed
    ("mnist1d-fig8", "NeVe SGD", {"aux_size": 50}),           # no longer Table II's NeVe run
    ("mnist1d-stop-quality", "V.Loss 10%", {"holdout": 0.11}),
    ("mnist1d-stop-quality", "Label Wave (δ=5)", {"label_noise": 0.2}),
    ("mnist1d-stop-quality", "Ultimate Optimizer", {"momentum": 0.8}),
]


@pytest.mark.parametrize(("name", "label", "options"), PLANTED_DEFECTS)
def test_a_planted_defect_in_a_new_mnist1d_entry_turns_its_check_red(name: str, label: str, options: dict) -> None:
    with pytest.raises(AssertionError):
        NEW_MNIST1D_ENTRIES[name](planted(name, label, **options))
