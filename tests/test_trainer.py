"""The trainer end to end on tiny real data: every method, records, summary, resume after SIGKILL."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from cli_runs import cli, records_without_seconds, straight_and_resumed, wait_for

from experiments.methods import EpochResult, Stepper, method_class
from experiments.train import build_parser, config_from_args
from experiments.train import main as train_main
from experiments.training.config import RunConfig, flag_of
from experiments.training.records import read_records
from experiments.training.summary import summarize
from experiments.training.trainer import CheckpointError, train
from neve import controller

FAST = dict(dataset="digits", model="resnet8", epochs=3, batch_size=128, aux_size=16, wandb="disabled",
            progress=False, num_workers=0)


def run(tmp_path: Path, name: str = "run", **options) -> tuple[dict, list[dict]]:
    config = RunConfig(**{**FAST, "out": str(tmp_path / name), **options})
    summary = train(config)
    return summary, read_records(tmp_path / name)


@pytest.mark.parametrize("method", ["baseline", "none", "neve"])
def test_each_method_runs_and_records_every_column(tmp_path: Path, method: str) -> None:
    summary, records = run(tmp_path, method=method)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for column in ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "model_velocity", "lr_reduced",
                   "neve_stop", "method_stop", "seconds"):
        assert all(r[column] is not None for r in records), column
    assert records[0]["velocity_change"] is None and records[1]["velocity_change"] is not None
    assert all(r["model_velocity"] > 0 for r in records)
    assert summary["finished"] and summary["epochs_run"] == 3
    assert summary["final_test_acc"] == records[-1]["test_acc"]
    assert records[-1]["train_acc"] > 0.3  # it learns: 10 classes, chance is 0.1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["method"] == method and config["lr"] == 0.05


def test_baseline_follows_the_recipe_milestones(tmp_path: Path) -> None:
    _, records = run(tmp_path, method="baseline", epochs=4, milestones=(2, 3), precision="fp32")
    assert [r["lr"] for r in records] == pytest.approx([0.05, 0.05, 0.005, 0.0005])
    assert [r["lr_reduced"] for r in records] == [0, 1, 1, 0]


def test_vloss_needs_a_holdout_and_reports_the_best_validation_epoch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--holdout"):
        run(tmp_path, method="vloss")
    summary, records = run(tmp_path, name="held", method="vloss", holdout=0.1)
    assert all(r["val_loss"] is not None for r in records)
    best = min(records, key=lambda r: r["val_loss"])
    assert summary["best_val_epoch"] == best["epoch"] == summary["kept_epoch"]
    kept = torch.load(tmp_path / "held" / "kept_model.pt", weights_only=True)
    assert kept["epoch"] == best["epoch"]


def test_vloss_stops_after_more_than_stop_patience_epochs_without_a_new_best() -> None:
    # patience 1 -> stop_patience 2 (the default, 2 x patience). A tie is no new best.
    config = RunConfig(**FAST, method="vloss", holdout=0.1, patience=1).resolved()
    assert config.stop_patience == 2
    assert RunConfig(**FAST, method="vloss", holdout=0.1).resolved().stop_patience == 20  # patience 10
    losses = [1.0, 0.8, 0.8, 0.85, 0.81, 0.7, 0.75, 0.72, 0.71]
    # epoch:  1    2    3    4     5     6    7     8     9
    # bests at 1, 2, 6; epochs since the best: 3 at epoch 5 (> 2: stop), 0 at 6, 3 again at 9.
    policy = method_class("vloss")(config)
    stepper = Stepper(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    decisions = [policy.end_epoch(EpochResult(epoch, 1.0, 0.5, 1.0, 0.5, loss, 0.5, None), stepper)
                 for epoch, loss in enumerate(losses, start=1)]
    assert [e for e, d in enumerate(decisions, 1) if d.stop] == [5, 9]
    assert [e for e, d in enumerate(decisions, 1) if d.keep_weights] == [1, 2, 6]


def test_a_vloss_run_halts_at_its_early_stop(tmp_path: Path) -> None:
    # stop_patience 0: the run ends at the first epoch whose validation loss is no new minimum. A high constant
    # lr makes that happen within the budget (checked below, so the test cannot pass without a stop).
    summary, records = run(tmp_path, method="vloss", holdout=0.1, epochs=6, stop_patience=0, patience=10,
                           lr=0.8, precision="fp32")
    losses = [r["val_loss"] for r in records]
    first_bad = next(e for e in range(2, 7) if losses[e - 1] >= min(losses[:e - 1]))
    assert len(records) == first_bad < 6
    assert summary["stop_epoch"] == first_bad and [r["method_stop"] for r in records][-1] == 1
    assert summary["epochs_run"] == first_bad


def test_neve_halts_at_the_stop_or_marks_it(tmp_path: Path) -> None:
    # An epsilon above any velocity makes NeVe stop after the first epoch.
    summary, records = run(tmp_path, name="halt", method="neve", epsilon=10.0)
    assert len(records) == 1 and summary["stop_epoch"] == 1 and summary["test_acc_at_stop"] == records[0]["test_acc"]
    summary, records = run(tmp_path, name="mark", method="neve", epsilon=10.0, stop="mark")
    assert len(records) == 3 and summary["stop_epoch"] == 1 and summary["epochs_run"] == 3
    # Every epoch has V < epsilon: NeVe's number is the first one's, not the last's (they differ here).
    assert [r["neve_stop"] for r in records] == [1, 1, 1]
    assert summary["neve_stop_epoch"] == 1 and summary["test_acc_at_neve_stop"] == records[0]["test_acc"]
    assert records[0]["test_acc"] != records[-1]["test_acc"]


def test_the_summary_reads_each_stop_at_its_first_epoch() -> None:
    def record(epoch: int, neve_stop: int, method_stop: int, kept: int, val_loss: float) -> dict:
        return {"epoch": epoch, "test_acc": epoch / 10, "train_loss": 1.0, "seconds": 2.0, "neve_stop": neve_stop,
                "method_stop": method_stop, "kept_weights": kept, "val_loss": val_loss}

    records = [record(1, 0, 0, 1, 0.9), record(2, 1, 0, 1, 0.5), record(3, 0, 1, 0, 0.7), record(4, 1, 1, 1, 0.6),
               record(5, 1, 1, 0, 0.8)]
    summary = summarize(records, {"method": "neve"})
    assert (summary["neve_stop_epoch"], summary["test_acc_at_neve_stop"]) == (2, 0.2)  # V < epsilon: 2, 4, 5
    assert (summary["stop_epoch"], summary["test_acc_at_stop"]) == (3, 0.3)
    assert (summary["best_val_epoch"], summary["test_acc_at_best_val"]) == (2, 0.2)
    assert (summary["kept_epoch"], summary["test_acc_at_kept"]) == (4, 0.4)  # the last model kept
    assert summary["epochs_run"] == 5 and summary["final_test_acc"] == 0.5 and summary["wall_seconds"] == 10.0
    never = summarize([record(1, 0, 0, 0, 0.9), record(2, 0, 0, 0, 0.8)], {"method": "neve"})
    assert never["neve_stop_epoch"] is None and never["test_acc_at_neve_stop"] is None


def test_a_finished_run_is_not_run_again(tmp_path: Path) -> None:
    first, _ = run(tmp_path, epochs=1)
    csv_before = (tmp_path / "run" / "records.csv").read_text()
    again, _ = run(tmp_path, epochs=1)
    assert again == first
    assert (tmp_path / "run" / "records.csv").read_text() == csv_before
    with pytest.raises(CheckpointError, match="epochs: 1 -> 2"):  # a finished run with other options
        run(tmp_path, epochs=2)
    assert (tmp_path / "run" / "records.csv").read_text() == csv_before


def test_a_corrupt_checkpoint_is_an_error_and_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        run(tmp_path, epochs=1)
    assert (folder / "checkpoint.pt").read_bytes() == b"not a checkpoint"


def test_a_checkpoint_of_another_experiment_is_refused(tmp_path: Path) -> None:
    process = cli("--dataset", "digits", "--model", "resnet8", "--epochs", "3", "--out", str(tmp_path / "run"),
                  "--wandb", "disabled", "--no-progress", "--aux-size", "16")
    wait_for(tmp_path / "run" / "checkpoint.pt", process)
    process.kill()
    process.wait()
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="lr: 0.05 -> 0.01"):
        run(tmp_path, lr=0.01)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved


@pytest.mark.parametrize("method", ["neve", "vloss"])
def test_a_run_killed_with_sigkill_resumes_to_the_same_records(tmp_path: Path, method: str) -> None:
    args = ["--dataset", "digits", "--model", "resnet8", "--method", method, "--epochs", "4", "--aux-size", "16",
            "--wandb", "disabled", "--no-progress", "--patience", "0", "--holdout", "0.1"]
    _, killed = straight_and_resumed(args, tmp_path, epochs=4)

    assert records_without_seconds(killed) == records_without_seconds(tmp_path / "straight")
    summary_a = json.loads((tmp_path / "straight" / "summary.json").read_text())
    summary_b = json.loads((killed / "summary.json").read_text())
    assert summary_a["final_test_acc"] == summary_b["final_test_acc"]


def test_a_killed_mnist1d_run_resumes_to_the_same_records(tmp_path: Path) -> None:
    # The MNIST-1D tables' setting (the CNN, NeVe with its stop marked, fp32, one thread), cut to 16 epochs with
    # patience 1 so the lr decays within them (at epoch 13 on the machines we tried); killed after the checkpoint
    # of epoch 11 or 12, mid-plateau, so the decay still to come depends on the plateau detector's restored state
    # (a resume that reset it decays later: checked by planting that defect). The arrays are generated once into
    # the shared data root, so both runs read the same cached file.
    args = ["--dataset", "mnist1d", "--model", "mnist1d_cnn", "--method", "neve", "--stop", "mark", "--epochs",
            "16", "--patience", "1", "--precision", "fp32", "--threads", "1", "--num-workers", "0", "--data-root",
            str(tmp_path / "data"), "--wandb", "disabled", "--no-progress"]
    straight, killed = straight_and_resumed(args, tmp_path, epochs=16, resume_after=11)

    decays = [r["epoch"] for r in read_records(straight) if r["lr_reduced"]]
    assert any(epoch > 12 for epoch in decays), decays  # a decay after the resume, for the restored state to drive
    assert records_without_seconds(killed) == records_without_seconds(straight)
    summary_a = json.loads((straight / "summary.json").read_text())
    summary_b = json.loads((killed / "summary.json").read_text())
    assert {k: v for k, v in summary_a.items() if "seconds" not in k} == \
        {k: v for k, v in summary_b.items() if "seconds" not in k}


def test_bad_options_give_clear_errors_from_the_command_line(tmp_path: Path, capsys, monkeypatch) -> None:
    # In-process through main(): the same parser and validation as `python -m experiments.train`, without
    # starting a process (and importing torch) per case. main() drops an inherited WANDB_SERVICE.
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    for args, message in [(["--alpha", "1.5"], "alpha"), (["--epsilon", "-1"], "epsilon"),
                          (["--method", "vloss"], "--holdout"), (["--aux", "val"], "--holdout"),
                          (["--label-noise", "1.2"], "label-noise"), (["--holdout", "1.5"], "--holdout")]:
        code = train_main(["--dataset", "digits", "--model", "resnet8", "--out", str(tmp_path / "x"), "--wandb",
                           "disabled", *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (args, err)
        assert not (tmp_path / "x" / "checkpoint.pt").exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse's own errors: exit status 2 and the usage
        train_main(["--optimizer", "rmsprop"])
    assert exit_info.value.code == 2 and "--optimizer: invalid choice" in capsys.readouterr().err


def test_non_finite_numbers_are_refused_at_the_command_line_and_in_the_config(capsys) -> None:
    for args in (["--lr", "nan"], ["--epsilon", "inf"], ["--holdout=-inf"], ["--alpha", "NaN"]):
        with pytest.raises(SystemExit) as exit_info:
            train_main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "is not a finite number" in err, (args, err)
        assert f"argument {args[0].split('=')[0]}" in err
    for field, value in (("lr", math.nan), ("momentum", math.inf), ("betas", (0.9, math.nan))):
        with pytest.raises(ValueError, match="must be a finite number"):
            RunConfig(dataset="digits", model="resnet8", **{field: value}).resolved()


def test_the_command_line_is_the_config_fields_with_their_help_and_defaults() -> None:
    """Every option is a RunConfig field, declared once: its flag, help and default come from the field, and
    leaving every option out is RunConfig's defaults."""
    parser = build_parser()
    text = "".join(parser.format_help().split())  # wrapped lines (also at hyphens) joined back
    options = [f for f in dataclasses.fields(RunConfig) if "option" in f.metadata]
    assert len(options) == 42  # the options the command line had when it was written out by hand
    by_flag = {action.dest: action for action in parser._actions}
    for field in options:
        how = field.metadata["option"]
        assert flag_of(field) in by_flag[field.name].option_strings
        assert "".join(how.help.split()) in text, field.name
        if field.default not in (None, dataclasses.MISSING, ()) and not isinstance(field.default, bool):
            assert by_flag[field.name].help.endswith(f"(default: {field.default})"), field.name
        if how.choices:
            assert list(by_flag[field.name].choices) == list(how.allowed())
    assert config_from_args(parser.parse_args([])) == RunConfig()
    assert config_from_args(parser.parse_args(["--no-download", "--no-progress", "--data-option", "seed=43",
                                               "--milestones", "3,5", "--velocity-sets", "train"])) == \
        RunConfig(download=False, progress=False, data_options={"seed": "43"}, milestones=(3, 5),
                  velocity_sets=("train",))
    with pytest.raises(ValueError, match="--stop must be one of halt, mark"):  # the same choices in Python
        RunConfig(dataset="digits", model="resnet8", stop="never").resolved()


def test_the_neve_stop_column_is_the_controllers_stop_test(tmp_path: Path, monkeypatch) -> None:
    """The trainer records where NeVe stops (every method's ``neve_stop``) with neve.controller's rule, the one
    NeVe's own stop uses: another rule there changes both."""
    monkeypatch.setattr(controller, "neve_stops", lambda velocity, epsilon: velocity < 100 * epsilon + 1.0)
    _, records = run(tmp_path, method="neve", epochs=1, stop="mark")
    assert 1e-3 < records[0]["model_velocity"] < 1.0
    assert records[0]["neve_stop"] == records[0]["method_stop"] == 1


def test_adam_without_lr_gets_the_papers_1e_3() -> None:
    # Spec section 4: the Adam ablation (Fig. 8) trains with lr 1e-3, whatever the recipe's SGD lr (0.1).
    for dataset, model in (("cifar100", "resnet32"), ("digits", "resnet8")):
        args = build_parser().parse_args(["--dataset", dataset, "--model", model, "--optimizer", "adam"])
        config = config_from_args(args).resolved()
        assert (config.optimizer, config.lr) == ("adam", 1e-3)
        assert config_from_args(build_parser().parse_args(["--dataset", dataset, "--model", model])).resolved().lr \
            != 1e-3
    explicit = build_parser().parse_args(["--dataset", "cifar100", "--optimizer", "adam", "--lr", "0.01"])
    assert config_from_args(explicit).resolved().lr == 0.01


@pytest.mark.parametrize("aux", ["train", "val", "folder"])
def test_velocity_on_real_image_aux_sets(tmp_path: Path, aux: str) -> None:
    option = aux
    if aux == "folder":
        from PIL import Image

        folder = tmp_path / "images"
        folder.mkdir()
        for i in range(20):
            Image.fromarray(((torch.rand(24, 24, 3) * 255).to(torch.uint8)).numpy()).save(folder / f"{i}.png")
        option = f"folder:{folder}"
    summary, records = run(tmp_path, epochs=2, aux=option, holdout=0.1 if aux == "val" else 0.0)
    assert all(r["model_velocity"] > 0 for r in records)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["aux"] == option


def test_every_method_runs_on_a_synthetic_cifar_folder_from_the_command_line(tmp_path: Path) -> None:
    # The CIFAR folder path, the command line and each method are the point: a ResNet-8 (ResNet-32's family,
    # tested in test_models.py) keeps six processes' training short.
    from synthetic_data import write_synthetic_cifar

    write_synthetic_cifar(tmp_path / "cifar", "cifar10", n_train=200, n_test=50, seed=0)
    processes = {}
    for method in ["baseline", "vloss", "neve", "none", "ultimate", "labelwave"]:
        processes[method] = cli("--dataset", "cifar10", "--model", "resnet8", "--method", method, "--epochs", "2",
                                "--holdout", "0.1", "--data-root", str(tmp_path / "cifar"), "--no-download",
                                "--out", str(tmp_path / method), "--wandb", "disabled", "--no-progress",
                                "--aux-size", "20")
        assert processes[method].wait() == 0, processes[method].stderr.read()
        summary = json.loads((tmp_path / method / "summary.json").read_text())
        assert summary["finished"] and summary["method"] == method
        assert len(read_records(tmp_path / method)) == summary["epochs_run"]


def test_imagenet100_trains_through_the_dataloader_path(tmp_path: Path) -> None:
    from synthetic_data import write_synthetic_imagenet

    from experiments.data.imagenet100 import imagenet100_classes

    write_synthetic_imagenet(tmp_path / "imagenet", imagenet100_classes(), per_class=2, image_size=36)
    summary, records = run(tmp_path, dataset="imagenet100", model="resnet8", image_size=32, epochs=2,
                           batch_size=64, data_root=str(tmp_path / "imagenet"), method="labelwave")
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["prediction_changes"] is not None  # sample indices flow through the DataLoader path
    assert summary["finished"]


def test_the_aux_batch_size_changes_the_cost_not_the_velocity(tmp_path: Path) -> None:
    _, small = run(tmp_path, name="small", epochs=2, aux_batch_size=3)
    _, whole = run(tmp_path, name="whole", epochs=2, aux_batch_size=16)
    assert [r["test_acc"] for r in small] == [r["test_acc"] for r in whole]
    assert [r["model_velocity"] for r in small] == pytest.approx([r["model_velocity"] for r in whole], rel=1e-6)
    with pytest.raises(ValueError, match="--aux-batch-size"):
        run(tmp_path, name="bad", aux_batch_size=0)


def test_a_run_logs_every_epoch_and_its_summary_to_an_offline_wandb_run(tmp_path: Path, monkeypatch,
                                                                        wandb_in_this_process) -> None:
    from test_records import offline_run

    monkeypatch.setenv("HOME", str(tmp_path))  # no W&B login of the machine's user is read or written
    monkeypatch.setenv("WANDB_SILENT", "true")
    summary, records = run(tmp_path, method="neve", epochs=2, wandb="offline")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    wandb_id = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["wandb_id"]
    logged = offline_run(tmp_path / "run", wandb_id)
    history = [row for row in logged["history"] if "epoch" in row]
    assert [row["epoch"] for row in history] == [1, 2]
    assert [row["model_velocity"] for row in history] == pytest.approx([r["model_velocity"] for r in records])
    assert logged["config"]["method"] == config["method"] == "neve"
    assert logged["summary"]["final_test_acc"] == summary["final_test_acc"]
