"""The notebooks: generated from the catalog (exactly what ``python -m experiments.notebooks`` writes), stored
without outputs, one per experiment that declares one, and each runs end to end on the results the real pipeline
made (tests/results_pipeline.py), drawing its figure with the plots module."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from results_pipeline import PIPELINE, Build

from experiments import notebooks

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: The experiments that declare a notebook (``Experiment.notebook``).
FIGURES = tuple(experiment.name for experiment in notebooks.notebook_experiments())


def test_one_notebook_per_figure() -> None:
    assert len(FIGURES) >= 17  # the paper's figures, both demos and the MNIST-1D experiments
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == sorted(FIGURES)
    assert set(FIGURES) <= {name for name, _, _ in PIPELINE}  # the tests below have results for each


def test_the_committed_notebooks_are_what_the_generator_writes_from_the_catalog() -> None:
    assert notebooks.differences(NOTEBOOKS) == [], "regenerate them: make notebooks"
    assert notebooks.main(["--check"]) == 0


def test_the_generator_rewrites_an_edited_notebook_and_removes_an_undeclared_one(tmp_path: Path, capsys) -> None:
    for path in NOTEBOOKS.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path)
    edited = tmp_path / "fig5.ipynb"
    edited.write_text(edited.read_text().replace("draw(", "plot("))
    (tmp_path / "fig9.ipynb").write_text("{}")
    (tmp_path / "README.md").unlink()
    assert notebooks.main(["--check", "--folder", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "fig5.ipynb differs" in err and "fig9.ipynb is not declared" in err and "README.md is missing" in err
    assert notebooks.main(["--folder", str(tmp_path)]) == 0
    assert notebooks.differences(tmp_path) == [] and not (tmp_path / "fig9.ipynb").exists()
    assert edited.read_text() == (NOTEBOOKS / "fig5.ipynb").read_text()


def test_a_notebook_carries_its_experiments_declarations() -> None:
    from experiments.catalog import get_experiment

    for name in FIGURES:
        experiment = get_experiment(name)
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        intro, parameters, table, figure = (cell.source for cell in notebook.cells[:4])
        assert intro.startswith(f"# {experiment.title}\n\n{experiment.notebook}")
        assert "parameters" in notebook.cells[1].metadata["tags"]
        assert f'NAME = "{name}"' in parameters
        assert f'make="{experiment.make}", offline={experiment.offline}' in parameters
        assert f'markdown(results, "{experiment.kind}")' in table
        assert f'draw("{experiment.layout}", results' in figure
        assert ("JOINS" in figure) == bool(experiment.joins)
        # The numbers behind the figure's claim, where the experiment declares one (NAME_claims.csv).
        claims = [cell for cell in notebook.cells if 'results.need_derived("claims")' in cell.source]
        assert len(claims) == (1 if experiment.claims else 0), name


@pytest.mark.parametrize("name", FIGURES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear its outputs"


@pytest.mark.parametrize("name", FIGURES)
def test_notebook_runs_on_the_pipelines_results(name: str, results_build: Build,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEVE_RESULTS_DIR", str(results_build.results_dir))
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOKS.parent))  # this checkout's experiments, not an installed one
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type in ("display_data", "execute_result") and "image/png" in o.data]
    assert len(images) == 1, f"{name}: the figure was not drawn"
    assert any("text/markdown" in o.get("data", {}) for o in outputs)  # the table
