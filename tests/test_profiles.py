"""Cluster profiles whose values would break the batch script are refused, naming the field; the profile check
comes after the data check, and a SLURM sweep without a profile says how to train here instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.profiles import ProfileError, load_profile
from experiments.sweep import main as sweep_main

BASE = 'partition = "gpu"\ntime_min = 60\n'


@pytest.mark.parametrize(("text", "message"), [
    ('partition = "gpu\\n#SBATCH --time=1"\ntime_min = 60\n', "field 'partition' holds a control character"),
    (BASE + 'account = "proj\\rx"\n', "field 'account' holds a control character"),
    (BASE + '[sbatch]\nqos = "normal\\necho owned"\n', "field 'sbatch.qos' holds a control character"),
    (BASE + '[sbatch]\n"qos\\nx" = "normal"\n', "is not an sbatch option name"),
    (BASE + '[sbatch]\n"qos normal" = true\n', "is not an sbatch option name"),
    (BASE + '[sbatch]\nsignal = "USR1@60"\n', "[sbatch] signal is written by the sweep (submitit)"),
    (BASE + '[sbatch]\ntime = "1:00:00"\n', "[sbatch] time is written by the field time_min"),
    (BASE + '[sbatch]\nconstraint = ["a100", "h100"]\n', "must be a string, a number or true"),
    (BASE + '[sbatch]\nexclusive = false\n', "must be a string, a number or true"),
])
def test_a_value_that_would_break_the_batch_script_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as error:
        load_profile(str(path))
    assert message in str(error.value) and str(path) in str(error.value)


def test_one_line_values_and_flags_still_load(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(BASE + 'account = "my-project"\nsetup = ["module load cuda", "source .venv/bin/activate"]\n'
                           '[sbatch]\nqos = "normal"\nexclusive = true\nmail_type = "END,FAIL"\ncomment = "a b#c"\n'
                           'nice = 10\n')
    profile = load_profile(str(path))
    assert profile.executor_parameters(1)["additional_parameters"] == {
        "qos": "normal", "exclusive": True, "mail_type": "END,FAIL", "comment": "a b#c", "nice": 10}


def test_missing_data_is_said_before_a_missing_cluster_profile(tmp_path: Path, capsys) -> None:
    argv = ["table2", "--seeds", "1", "--only", "dataset=cifar10", "--runs-dir", str(tmp_path / "runs"),
            "--data-root", str(tmp_path / "data"), "--executor", "slurm"]
    assert sweep_main(argv) == 2
    err = capsys.readouterr().err
    assert "refusing to submit: data not ready" in err and "prepare with: python -m experiments.data prepare" in err
    assert "--cluster" not in err
    assert sweep_main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    refusals = [line for line in out.splitlines() if line.startswith("would refuse")]
    assert "data not ready" in refusals[0] and "needs --cluster" in refusals[1]


def test_a_slurm_sweep_without_a_profile_names_the_local_executor(tmp_path: Path, capsys) -> None:
    assert sweep_main(["tiny", "--runs-dir", str(tmp_path), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "--executor slurm needs --cluster PROFILE" in err
    assert "--executor local (make: EXECUTOR=local)" in err and "CLUSTER=" in err
    assert not (tmp_path / "sweeps").exists()
