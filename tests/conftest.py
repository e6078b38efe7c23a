"""Shared fixtures: the small results the aggregation, plot and notebook tests read (built once a session)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from results_pipeline import Build


@pytest.fixture(scope="session")
def results_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Miniature sweeps trained, aggregated and plotted by the real pipeline (see results_pipeline.py)."""
    from results_pipeline import build  # the experiment stack: imported only by the tests that need it

    return build(tmp_path_factory.mktemp("results-pipeline"))
