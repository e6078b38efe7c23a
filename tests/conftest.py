"""Shared fixtures: `slurm_cluster`, a real SLURM cluster for the tests marked `slurm`; `results_build`, the small
results the aggregation, plot and notebook tests read, and `claims_build`, those the stop-quality and figure-claims
tests read (each built once a session)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from slurm_cluster import SlurmCluster, SlurmUnavailable, local_cluster

if TYPE_CHECKING:
    from claims_pipeline import ClaimsBuild
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


@pytest.fixture(autouse=True)
def no_wandb_service_left_behind() -> Iterator[None]:
    """A test that starts a W&B service here (``wandb.setup()``) must stop it and unset ``WANDB_SERVICE``: later
    tests (and every process they start) would inherit its address, and behave differently depending on
    whether that test ran before them."""
    before = os.environ.get("WANDB_SERVICE")
    yield
    assert os.environ.get("WANDB_SERVICE") == before, "this test left WANDB_SERVICE set: tear its W&B service down"


@pytest.fixture
def wandb_in_this_process() -> Iterator[None]:
    """For a test that uses W&B in the test process (an in-process offline run, ``wandb.setup()``): its service
    is stopped after the test and ``WANDB_SERVICE`` restored as it was."""
    before = os.environ.get("WANDB_SERVICE")
    try:
        yield
    finally:
        import wandb

        wandb.teardown()
        if before is None:
            os.environ.pop("WANDB_SERVICE", None)
        else:
            os.environ["WANDB_SERVICE"] = before


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


@pytest.fixture(scope="session")
def claims_build(tmp_path_factory: pytest.TempPathFactory) -> ClaimsBuild:
    """Miniatures of the experiments with claims and of mnist1d-stop-quality, trained and aggregated by the real
    pipeline (see claims_pipeline.py)."""
    from claims_pipeline import build  # the experiment stack: imported only by the tests that need it

    return build(tmp_path_factory.mktemp("claims-pipeline"))
