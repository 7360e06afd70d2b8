"""Replay a function through CUDA graphs: one capture per input signature, then one launch.

Autoregressive samplers call the same small network graph once per frame; at batch 1 the GPU
then waits on Python and kernel launches, not on arithmetic. Capturing the call once and
replaying it removes that overhead without ``torch.compile``'s minutes of compilation, and
runs exactly the same kernels (the outputs are bit-identical to eager).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten


class CudaGraphed:
    """``fn`` replayed from CUDA graphs. ``fn(*args)`` takes and returns (nested lists or tuples
    of) tensors; non-tensor arguments are baked into the capture and are part of its key, with
    the tensors' shapes, dtypes and strides and the autocast state.

    Each call copies the tensor arguments into the capture's static inputs, replays, and
    returns the capture's static outputs: **they are overwritten by the next call** with the
    same signature, so consume or clone them first. ``fn`` must not synchronise with the host
    (no ``.item()``, no data-dependent Python branches); the first call of each signature runs
    it ``warmup`` times eagerly on a side stream before capturing, as CUDA graphs require.
    Arguments not on a CUDA device make it call ``fn`` directly.
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = 2) -> None:
        self.fn = fn
        self.warmup = warmup
        self._captures: dict[tuple, tuple[list[Tensor], torch.cuda.CUDAGraph, Any]] = {}

    def __call__(self, *args: Any) -> Any:
        leaves, spec = tree_flatten(args)
        tensors = [x for x in leaves if isinstance(x, Tensor)]
        if not tensors or not all(t.is_cuda for t in tensors):
            return self.fn(*args)
        key = (
            str(spec),
            tuple(x if not isinstance(x, Tensor) else None for x in leaves),
            tuple((t.shape, t.dtype, t.stride(), t.device) for t in tensors),
            torch.is_autocast_enabled("cuda"),
            torch.get_autocast_dtype("cuda"),
        )
        capture = self._captures.get(key)
        if capture is None:
            capture = self._capture(leaves, spec)
            self._captures[key] = capture
        static_inputs, graph, outputs = capture
        torch._foreach_copy_(static_inputs, tensors)
        graph.replay()
        return outputs

    def _capture(self, leaves: list[Any], spec: Any) -> tuple[list[Tensor], Any, Any]:
        static_leaves = [x.clone() if isinstance(x, Tensor) else x for x in leaves]
        static_inputs = [x for x in static_leaves if isinstance(x, Tensor)]
        args = tree_unflatten(static_leaves, spec)
        # autocast's cast cache would hold tensors made outside the graph: capture without it
        autocast = {
            "device_type": "cuda",
            "enabled": torch.is_autocast_enabled("cuda"),
            "dtype": torch.get_autocast_dtype("cuda"),
            "cache_enabled": False,
        }
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.autocast(**autocast):
            for _ in range(self.warmup):
                self.fn(*args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with _no_garbage_collection(), torch.cuda.graph(graph), torch.autocast(**autocast):
            outputs = self.fn(*args)
        return static_inputs, graph, outputs

    def clear(self) -> None:
        """Drop every capture (and the GPU memory their pools hold)."""
        self._captures.clear()


@contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """Collect garbage now, then not until the block ends.

    A CUDA graph that dies during another graph's capture (say one held by a reference cycle,
    as a model holding its own ``CudaGraphed`` step is, freed by a collection that the
    capture's allocations trigger) is destroyed mid-capture, which CUDA forbids: the capture
    fails, and the CUDA random generator stays marked as capturing."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
