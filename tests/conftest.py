"""Shared fixtures: `slurm_cluster`, a real SLURM cluster for the tests marked `slurm`; `results_build`, the small
results the aggregation, plot and notebook tests read (built once a session)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from slurm_cluster import SlurmCluster, SlurmUnavailable, local_cluster

if TYPE_CHECKING:
    from results_pipeline import Build


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The configured cluster if `sinfo` answers, else a private one started here (root; installs Slurm if
    missing) and stopped after the session. Skips, saying why, where neither is possible."""
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(local_cluster())
        except SlurmUnavailable as reason:
            pytest.skip(str(reason))
        yield cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the cluster is marked `slurm`, so `-m 'not slurm'` deselects them all."""
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)


@pytest.fixture(scope="session")
def results_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Miniature sweeps trained, aggregated and plotted by the real pipeline (see results_pipeline.py)."""
    from results_pipeline import build  # the experiment stack: imported only by the tests that need it

    return build(tmp_path_factory.mktemp("results-pipeline"))
