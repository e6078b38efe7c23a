"""A notebook opened before its results exist: its first output says what to run (the cluster command and the
three rehearsal commands), then the ResultsError; a rehearsal's results are offered, labelled as one."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from experiments.catalog import get_experiment
from experiments.results import notebook_results

REPO = Path(__file__).resolve().parents[1]


def test_a_notebook_without_results_says_what_to_run_first(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "results").mkdir()  # a fresh clone's: nothing aggregated
    shutil.copy(REPO / "notebooks" / "fig5.ipynb", tmp_path / "notebooks")
    monkeypatch.delenv("NEVE_RESULTS_DIR", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    notebook = nbformat.read(tmp_path / "notebooks" / "fig5.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path / "notebooks")}})
    with pytest.raises(CellExecutionError, match="ResultsError"):
        client.execute()
    first = next(output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    assert first.output_type == "stream"
    for command in ("make fig5 EXECUTOR=slurm", "python -m experiments.sweep fig5 --miniature",
                    "python -m experiments.aggregate fig5 --miniature", "python -m experiments.plots fig5 --miniature"):
        assert command in first.text


def test_the_rehearsal_is_offered_labelled_and_real_results_win(tmp_path: Path, capsys) -> None:
    root = tmp_path / "results"
    (root / "miniature").mkdir(parents=True)
    (root / "miniature" / "fig5.csv").write_text("")
    assert notebook_results("fig5", root=root) == root / "miniature"
    assert capsys.readouterr().out.startswith("REHEARSAL")
    (root / "fig5.csv").write_text("")
    assert notebook_results("fig5", root=root) == root and capsys.readouterr().out == ""
    assert notebook_results("fig5", tmp_path / "elsewhere", root=root) == tmp_path / "elsewhere"


def test_cpu_experiments_say_how_to_train_them_for_real(tmp_path: Path, capsys) -> None:
    for name, commands in (("mnist1d-demo", ["make demo "]), ("demo", ["make demo-digits"]),
                           ("mnist1d-table2", ["python -m experiments.sweep mnist1d-table2 --executor local",
                                               "python -m experiments.aggregate mnist1d-table2",
                                               "python -m experiments.plots mnist1d-table2"])):
        experiment = get_experiment(name)  # what the generated notebook passes: its declarations
        assert notebook_results(name, root=tmp_path, make=experiment.make, offline=experiment.offline) == tmp_path
        out = capsys.readouterr().out
        assert all(command in out for command in commands) and "--miniature" not in out, (name, out)


def test_what_to_run_follows_the_declarations_not_the_name(tmp_path: Path, capsys) -> None:
    # A GPU experiment without a make target: the sweep on a cluster, and the rehearsal.
    notebook_results("mnist1d-anything", root=tmp_path, make="", offline=False)
    out = capsys.readouterr().out
    assert "python -m experiments.sweep mnist1d-anything --executor slurm" in out and "--miniature" in out
    # An offline experiment whatever its name: trained for real on a CPU.
    notebook_results("fig5", root=tmp_path, offline=True)
    out = capsys.readouterr().out
    assert "python -m experiments.sweep fig5 --executor local" in out and "--miniature" not in out
