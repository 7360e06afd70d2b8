"""Replaying functions from CUDA graphs (``videogen.cuda_graphs``)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from videogen.cuda_graphs import CudaGraphed, _no_garbage_collection


class _Cycle:
    """An object that only a reference cycle keeps alive once dropped."""

    def __init__(self) -> None:
        self.me = self


def test_captures_collect_garbage_first_and_none_during() -> None:
    """Regression: a dead reference cycle holding a CUDA graph, collected while another graph
    was being captured, made that capture fail (GPU tests, session 5)."""
    was_enabled = gc.isenabled()
    gc.enable()
    try:
        cycle = _Cycle()
        dead = weakref.ref(cycle)
        del cycle
        with _no_garbage_collection():
            assert dead() is None  # collected before the block
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(ValueError), _no_garbage_collection():
            raise ValueError
        assert gc.isenabled()  # restored on errors too
        gc.disable()
        with _no_garbage_collection():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        (gc.enable if was_enabled else gc.disable)()


def test_cpu_arguments_call_the_function_directly() -> None:
    graphed = CudaGraphed(lambda x, k: x * k)
    x = torch.arange(3.0)
    assert torch.equal(graphed(x, 2.0), x * 2)
    assert not graphed._captures


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_capture_survives_a_dying_graph_in_a_reference_cycle() -> None:
    thresholds = gc.get_threshold()
    gc.set_threshold(1, 1, 1)  # collect as often as possible, during captures too
    try:
        x = torch.randn(64, 64, device="cuda")
        for _ in range(3):
            holder = _Cycle()
            holder.graphed = CudaGraphed(lambda a: (a @ a).relu())
            holder.graphed(x)  # captured, then left to the cycle collector
            del holder
            graphed = CudaGraphed(lambda a: torch.tanh(a @ a.T) + 1)
            for _ in range(2):  # capture, then replay
                torch.testing.assert_close(graphed(x), torch.tanh(x @ x.T) + 1)
    finally:
        gc.set_threshold(*thresholds)
