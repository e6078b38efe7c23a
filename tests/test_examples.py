"""The examples run as their users run them (Lightning ddp_spawn on 2 CPU devices, torchrun with gloo, the HF
Trainer on 1 and 2 processes); each one's decisions equal those of a plain single-process neve.NeVe loop."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable
TORCHRUN = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# The examples use the library alone: only examples/ (their digits loader) is on the path, not the harness.
ENV = {**os.environ, "PYTHONPATH": str(EXAMPLES), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def example(name: str):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(command: list[str]) -> None:
    done = subprocess.run(command, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def assert_same_decisions(got: dict, expected: dict) -> None:
    assert got["stop_epoch"] == expected["stop_epoch"] is not None
    assert got["lr"] == pytest.approx(expected["lr"], rel=1e-6)  # Lightning logs float32
    assert got["velocity"] == pytest.approx(expected["velocity"], rel=1e-3)
    assert len(set(expected["lr"])) > 1  # at least one decay: the comparison is not of constants


def test_import_neve_imports_no_framework():
    """Beyond what torch itself imports (torch 2.14 imports tqdm), ``import neve`` loads no framework."""
    frameworks = ("lightning", "pytorch_lightning", "transformers", "accelerate", "tqdm", "timm", "experiments")
    code = (f"import sys, torch; before = set(sys.modules); import neve, neve.integrations; "
            f"print([m for m in {frameworks} if m in sys.modules and m not in before])")
    done = subprocess.run([PYTHON, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_lightning_ddp_spawn_on_two_cpu_devices_decides_like_a_plain_loop(tmp_path):
    run([PYTHON, str(EXAMPLES / "lightning_digits.py"), "--devices", "2", "--out", str(tmp_path)])
    got = json.loads((tmp_path / "decisions.json").read_text())
    assert_same_decisions(got, example("lightning_digits").plain_loop())


def test_torchrun_two_gloo_processes_decide_like_one(tmp_path):
    run([*TORCHRUN, str(EXAMPLES / "torchrun_ddp.py"), "--out", str(tmp_path)])
    got = json.loads((tmp_path / "decisions.json").read_text())
    assert_same_decisions(got, example("torchrun_ddp").train(tmp_path / "single"))


def test_hf_trainer_on_one_and_two_processes_decides_like_a_plain_loop(tmp_path):
    hf = example("hf_trainer_tokens")
    expected = hf.plain_loop()
    # independently of NeVe's code: each decay lasts under the linear schedule (its base lr is cut too), so
    # lr / linear schedule is a power of alpha that never grows back
    steps, total = hf.SAMPLES // hf.GLOBAL_BATCH, 8 * (hf.SAMPLES // hf.GLOBAL_BATCH)
    ratios = [lr / (hf.LR * (1 - epoch * steps / total)) for epoch, lr in enumerate(expected["lr"], start=1)]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] == pytest.approx(0.5 ** round(-math.log2(ratios[-1])))
    assert ratios[-1] < 1
    assert_same_decisions(hf.train(tmp_path / "one"), expected)
    run([*TORCHRUN, str(EXAMPLES / "hf_trainer_tokens.py"), "--out", str(tmp_path / "two")])
    assert_same_decisions(json.loads((tmp_path / "two" / "decisions.json").read_text()), expected)


def test_a_frozen_backbone_does_not_stop_the_fine_tune_while_the_head_moves(tmp_path):
    results = example("finetune_frozen_backbone").main(tmp_path, epochs=10)
    default, diluted = results["default"], results["every module"]
    assert default["modules"] == ["1"] and len(diluted["modules"]) == 7  # the head alone; 0.1's rule: all
    # averaged with the backbone's zeros, V fell below 1e-3 within a few epochs while the head still moved
    assert diluted["stop_epoch"] is not None and diluted["stop_epoch"] <= 6
    assert diluted["head_velocity_at_stop"] > 10 * 1e-3
    assert default["stop_epoch"] is None and min(default["velocity"][:diluted["stop_epoch"]]) > 1e-3
    assert default["head_velocity"] == default["velocity"]  # the same numbers: V is the head's velocity
    assert diluted["head_velocity"] == pytest.approx(default["head_velocity"], rel=1e-9)
