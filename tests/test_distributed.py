"""NeVe under DDP (2 gloo processes): one process's velocities, the same decisions and state on every rank."""

from __future__ import annotations

import ast
import inspect
import socket

import pytest
import torch
import torch.multiprocessing as mp
from distributed_cases import AUX_N, NEVE_OPTIONS, all_cases, bn_model
from torch import nn

import neve.distributed
from neve import NeVe, gaussian_aux


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(all_cases, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return out


@pytest.fixture(scope="module")
def ddp_run(ddp_out):
    return [torch.load(ddp_out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def assert_same_bits(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_bits(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_bits(x, y)
    else:
        assert a == b


def test_every_rank_holds_the_same_decisions_and_bit_identical_state(ddp_run):
    rank0, rank1 = ddp_run
    assert rank0["decisions"] == rank1["decisions"]
    assert_same_bits(rank0["neve"], rank1["neve"])
    # the ranks' own BatchNorm statistics differ, so agreement is not for free: rank 0's model was measured
    assert not torch.equal(rank0["states"][-1]["1.running_mean"], rank1["states"][-1]["1.running_mean"])


def test_sharded_velocities_equal_one_process_on_the_whole_aux_set(ddp_run):
    """One process replays rank 0's models with the whole aux set: velocities within 1e-6, same decisions."""
    rank0 = ddp_run[0]
    model = bn_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.load_state_dict(rank0["states"][0])
    neve = NeVe(model, optimizer, gaussian_aux(AUX_N, (1, 8, 8), seed=3), distributed=False, **NEVE_OPTIONS)
    for state, (velocity, change, lr, stop) in zip(rank0["states"][1:], rank0["decisions"], strict=True):
        model.load_state_dict(state)
        decision = neve.step()
        assert decision.model_velocity == pytest.approx(velocity, abs=1e-6)
        assert (decision.velocity_change is None) == (change is None)
        if change is not None:
            assert decision.velocity_change == pytest.approx(change, abs=1e-6)
        assert (decision.lr, decision.stop) == (lr, stop)
    lrs = [d[2] for d in rank0["decisions"]]
    assert len(set(lrs)) > 1 and any(d[3] for d in rank0["decisions"])  # decays and a stop were decided


def test_an_aux_set_smaller_than_the_world_fails_on_every_rank(ddp_out):
    for rank in range(2):
        at_construction, at_measurement = (ddp_out / f"few{rank}.txt").read_text().splitlines()
        assert "needs at least 2 batches" in at_construction and "needs at least 2 batches" in at_measurement


def test_fsdp_is_refused_with_a_clear_error(ddp_out):
    for rank in range(2):
        assert "does not support FSDP" in (ddp_out / f"fsdp{rank}.txt").read_text()


def test_a_reduction_returns_only_when_no_gloo_worker_holds_its_tensor(ddp_out):
    assert [(ddp_out / f"held{r}.txt").read_text() for r in range(2)] == ["0", "0"]


def test_every_collective_neve_issues_goes_through_settled():
    """The reduction above is the one whose result can be inspected; broadcast_state's and agree's tensors are
    internal, so this holds them to the same path: no ``dist.<op>(...)`` is called except by ``settled``."""
    tree = ast.parse(inspect.getsource(neve.distributed))
    collectives = {"broadcast", "all_reduce", "reduce", "all_gather", "reduce_scatter", "barrier"}
    bare = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr in collectives
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "dist"]
    settled = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
               and isinstance(node.func, ast.Name) and node.func.id == "settled"]
    assert bare == [] and len(settled) >= 3


def test_ddp_wrapper_is_measured_through_its_module():
    """Outside a process group a DataParallel wrapper is unwrapped: layer names are the network's own."""
    model = bn_model()
    neve = NeVe(nn.DataParallel(model), torch.optim.SGD(model.parameters(), lr=0.1), gaussian_aux(8, (1, 8, 8)))
    assert neve.monitor.model is model and "0" in neve.monitor.modules
