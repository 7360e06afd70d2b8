"""``torch.compile`` options for training steps (the trainer's and the benchmarks')."""

from __future__ import annotations

from typing import Any

import torch


def inductor_options(mode: str, *, channels_last: bool) -> dict[str, Any]:
    """The inductor options of ``torch.compile`` mode ``mode`` ("default", "reduce-overhead",
    "max-autotune", "max-autotune-no-cudagraphs"), for a model whose weights are channels-last
    when ``channels_last``.

    Channels-last models get ``force_layout_optimization``. Inductor decides layout optimisation
    per graph by counting forward convolutions; a backward graph has none, so it kept its
    gradients in the contiguous layout and every ``convolution_backward`` converted them to the
    weights' channels-last layout first (pytorch/pytorch#189239).
    """
    options = dict(torch._inductor.list_mode_options(mode))
    if channels_last:
        options["force_layout_optimization"] = True
    return options


def uses_cuda_graphs(options: dict[str, Any] | None) -> bool:
    """Whether code compiled with inductor ``options`` replays from CUDA graphs; its caller
    then marks each step's start (``torch.compiler.cudagraph_mark_step_begin``)."""
    return bool((options or {}).get("triton.cudagraphs"))
