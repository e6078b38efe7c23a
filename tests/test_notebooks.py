"""The notebooks: stored without outputs, one per figure, and each runs end to end on the results the real
pipeline made (tests/results_pipeline.py), drawing its figure with the plots module."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from results_pipeline import PIPELINE, Build

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
FIGURES = ("fig4a", "fig4b", "fig5", "fig6", "fig7", "fig8", "ablation-alpha-delta", "paper-vs-code", "demo",
           "mnist1d-tuning-free", "mnist1d-published", "mnist1d-table2", "mnist1d-table1", "mnist1d-fig4a",
           "mnist1d-fig6", "mnist1d-table2-code", "mnist1d-demo")


def test_one_notebook_per_figure() -> None:
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == sorted(FIGURES)
    assert set(FIGURES) <= {name for name, _, _ in PIPELINE}  # the tests below have results for each


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
