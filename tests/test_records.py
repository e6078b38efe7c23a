import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import cli
from wandb_files import offline_run

from experiments.training.records import RunLog, read_records, resolve_wandb_mode

CONFIG = {"method": "neve", "model": "resnet8", "lr": 0.1, "milestones": [100, 150], "out": Path("/tmp/x")}
RECORDS = [
    {"epoch": 1, "train_loss": 2.25, "test_acc": 0.125, "model_velocity": None, "lr": 0.1},
    {"epoch": 2, "train_loss": 1.5, "test_acc": 0.375, "model_velocity": 0.75, "lr": 0.1},
    {"epoch": 3, "train_loss": 1.0, "test_acc": 0.5, "model_velocity": 0.5, "lr": 0.01, "stopped": True},
]


@pytest.fixture
def isolated_env(tmp_path, monkeypatch, wandb_in_this_process):
    """No real W&B login, no real HOME: what an unconfigured machine sees; W&B's service stopped after."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DISABLED", "WANDB_BASE_URL", "NETRC", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    return home


def test_offline_run_writes_csv_config_summary_and_wandb(tmp_path, isolated_env):
    run_dir = tmp_path / "run"
    log = RunLog(run_dir, CONFIG, wandb_mode="offline", run_name="neve-resnet8-seed0")
    assert log.wandb_mode == "offline" and log.wandb_id
    assert json.loads((run_dir / "config.json").read_text()) == {**CONFIG, "out": "/tmp/x"}
    for record in RECORDS:
        log.log(record)
    log.finish({"best_test_acc": 0.5, "stop_epoch": 3})

    assert log.records == RECORDS
    header = (run_dir / "records.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,test_acc,model_velocity,lr,stopped"  # union, first-seen order
    expected = [{**record, "stopped": record.get("stopped")} for record in RECORDS]
    assert read_records(run_dir) == expected
    assert json.loads((run_dir / "summary.json").read_text()) == {"best_test_acc": 0.5, "stop_epoch": 3}

    wandb_run = offline_run(run_dir, log.wandb_id)
    assert {key: wandb_run["config"][key] for key in CONFIG} == {**CONFIG, "out": "/tmp/x"}
    steps = [row for row in wandb_run["history"] if "epoch" in row]
    assert [row["_step"] for row in steps] == [1, 2, 3]
    for row, record in zip(steps, RECORDS, strict=True):
        assert {key: row.get(key) for key in record} == record  # None values are not sent to W&B
    assert wandb_run["summary"]["best_test_acc"] == 0.5 and wandb_run["summary"]["stop_epoch"] == 3
    assert wandb_run["summary"]["test_acc"] == 0.5


def test_resume_keeps_the_checkpoint_records_and_the_wandb_run(tmp_path, isolated_env):
    run_dir = tmp_path / "run"
    first = RunLog(run_dir, CONFIG, wandb_mode="offline")
    for record in RECORDS:
        first.log(record)
    first.finish({})
    # Killed after epoch 3 was logged but with the checkpoint at epoch 2: the checkpoint wins.
    second = RunLog(run_dir, CONFIG, wandb_mode="offline", records=RECORDS[:2], wandb_id=first.wandb_id)
    assert second.wandb_id == first.wandb_id
    assert [row["epoch"] for row in read_records(run_dir)] == [1, 2]
    second.log(RECORDS[2])
    second.finish({"stop_epoch": 3})
    assert [row["epoch"] for row in read_records(run_dir)] == [1, 2, 3]
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{first.wandb_id}*"))) == 2


def test_a_training_process_starts_its_own_wandb_service_not_its_launchers(tmp_path, isolated_env, monkeypatch):
    # What a SLURM job inherits from a submitter that used W&B: the address of a service on another machine.
    monkeypatch.setenv("WANDB_SERVICE", f"3-{os.getpid()}-unix-{tmp_path / 'login-node' / 'socket'}")
    run_dir = tmp_path / "run"
    process = cli("--dataset", "digits", "--model", "resnet8", "--epochs", "1", "--aux-size", "16", "--out",
                  str(run_dir), "--wandb", "offline", "--no-progress")
    _, err = process.communicate()
    assert process.returncode == 0, err
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    wandb_run = offline_run(run_dir, folder.name.rsplit("-", 1)[1])
    assert wandb_run["summary"]["epochs_run"] == 1


def test_disabled_writes_files_without_importing_wandb(tmp_path):
    script = (
        "import sys; from experiments.training.records import RunLog, read_records\n"
        f"log = RunLog({str(tmp_path)!r}, {{'a': 1}}, wandb_mode='disabled')\n"
        "log.log({'epoch': 1, 'loss': 0.5}); log.finish({'done': True})\n"
        "assert log.wandb_id is None and read_records(log.run_dir) == [{'epoch': 1, 'loss': 0.5}]\n"
        "assert not any(name.split('.')[0] == 'wandb' for name in sys.modules), 'wandb was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    assert not (tmp_path / "wandb").exists()
    assert json.loads((tmp_path / "summary.json").read_text()) == {"done": True}


def test_failed_write_leaves_the_previous_csv(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("cannot print")

    log = RunLog(tmp_path, {}, wandb_mode="disabled")
    log.log(RECORDS[0])
    log.log(RECORDS[1])
    before = (tmp_path / "records.csv").read_bytes()
    with pytest.raises(RuntimeError, match="cannot print"):
        log.log({"epoch": 3, "train_loss": Unprintable()})
    assert (tmp_path / "records.csv").read_bytes() == before
    assert log.records == RECORDS[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "records.csv"]  # no temp files


def test_record_without_epoch_is_refused(tmp_path):
    log = RunLog(tmp_path, {}, wandb_mode="disabled")
    with pytest.raises(ValueError, match="epoch"):
        log.log({"loss": 1.0})


def test_read_records_parses_types(tmp_path):
    import numpy as np
    import torch

    log = RunLog(tmp_path, {}, wandb_mode="disabled")
    assert read_records(tmp_path) == []
    log.log({"epoch": 1, "loss": float("nan"), "acc": np.float32(0.25), "v": torch.tensor(0.5), "name": "x"})
    log.log({"epoch": 2, "loss": 1e-8, "acc": None, "v": -3, "name": "inf-run", "stopped": False})
    assert type(log.records[0]["acc"]) is float and type(log.records[0]["v"]) is float  # plain
    first, second = read_records(tmp_path)
    assert math.isnan(first.pop("loss"))
    assert first == {"epoch": 1, "acc": 0.25, "v": 0.5, "name": "x", "stopped": None}
    assert second == {"epoch": 2, "loss": 1e-8, "acc": None, "v": -3, "name": "inf-run", "stopped": False}
    assert isinstance(second["epoch"], int)


def test_resolve_wandb_mode(tmp_path, isolated_env, monkeypatch):
    for mode in ("online", "offline", "disabled"):
        assert resolve_wandb_mode(mode) == mode
    with pytest.raises(ValueError, match="auto"):
        resolve_wandb_mode("sometimes")

    assert resolve_wandb_mode("auto") == "offline"  # fake HOME: no netrc, no key
    netrc = isolated_env / ".netrc"
    netrc.write_text("machine example.org\n  login user\n  password nothere\n")
    netrc.chmod(0o600)
    assert resolve_wandb_mode("auto") == "offline"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert resolve_wandb_mode("auto") == "online"
    netrc.unlink()

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # an explicit wish in the environment wins in "auto"
    assert resolve_wandb_mode("auto") == "disabled"
    assert resolve_wandb_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "loud")
    with pytest.raises(ValueError, match="WANDB_MODE"):
        resolve_wandb_mode("auto")
