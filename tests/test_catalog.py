"""The catalog: every experiment expands to resolved runs, the same training is one folder, shared runs."""

from __future__ import annotations

import dataclasses

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


def test_every_mnist1d_run_trains_on_mnist1d_in_fp32_on_one_thread_with_the_papers_neve() -> None:
    for name in MNIST1D_EXPERIMENTS:
        for run in get_experiment(name).runs(1):
            config = run.config
            assert config.dataset == "mnist1d" and config.model in ("mnist1d_cnn", "mnist1d_mlp", "mnist1d_resnet")
            assert (config.precision, config.threads, config.num_workers) == ("fp32", 1, 0), name
            # The paper's NeVe settings, in every run (each records the velocity and NeVe's stop marker).
            assert (config.epsilon, config.alpha, config.mu, config.aux, config.aux_size) == (
                1e-3, 0.5, 0.5, "gaussian", 100), name
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


def test_settings_are_chosen_on_a_tuning_set_drawn_with_another_generator_seed() -> None:
    runs = get_experiment("mnist1d-tuning").runs(2)
    assert {r.config.data_options["seed"] for r in runs} == {43}  # never the published 42
    assert {r.config.lr for r in runs} == set(catalog.MNIST1D_TUNING_LRS)
    # An experiment tunes (every run on the tuning set) or reports (none on it): no table mixes the two sets.
    tuning = set()
    for name in MNIST1D_EXPERIMENTS:
        on_tuning_set = [(r.config.data_options or {}).get("seed") == 43 for r in get_experiment(name).runs(1)]
        assert all(on_tuning_set) or not any(on_tuning_set), name
        if all(on_tuning_set):
            tuning.add(name)
    assert "mnist1d-tuning" in tuning and "mnist1d-table2" not in tuning


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
