"""``torch.compile`` options for training steps (the trainer's and the benchmarks')."""

from __future__ import annotations

from typing import Any

import torch

# Inductor lowers a concatenation on a GPU as one pointwise kernel with masked loads (on a CPU
# always as copies into one buffer). For the backward of PVDM's plane unpacking (a split of the
# packed tokens at offsets such as 96) torch 2.11 fails while it normalises that kernel's index
# strides ("ModularIndexing((-96), 8, 4) ... is not comparable", BENCHMARKS.md, PVDM session
# 10); with no pointwise concatenation it takes the CPU's route. Since session 11 the planes are
# packed by custom operators that inductor does not look into (``models.pvdm_planes``), and that
# is what the H200 run that passed had; it had this setting too, and the two were not tried
# apart, so PVDM keeps both.
NO_POINTWISE_CAT = {"max_pointwise_cat_inputs": 0, "max_complex_pointwise_cat_inputs": 0}


def known_to_inductor(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` less the keys this torch's inductor does not have (settings added in later
    versions than the oldest we run on)."""
    import torch._inductor.config as config

    return {k: v for k, v in options.items() if hasattr(config, k)}


def inductor_options(
    mode: str, *, channels_last: bool, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The inductor options of ``torch.compile`` mode ``mode`` ("default", "reduce-overhead",
    "max-autotune", "max-autotune-no-cudagraphs"), for a model whose weights are channels-last
    when ``channels_last``, with ``extra`` (a method's own ``inductor_config``) on top.

    Channels-last models get ``force_layout_optimization``. Inductor decides layout optimisation
    per graph by counting forward convolutions; a backward graph has none, so it kept its
    gradients in the contiguous layout and every ``convolution_backward`` converted them to the
    weights' channels-last layout first (pytorch/pytorch#189239).
    """
    options = dict(torch._inductor.list_mode_options(mode))
    if channels_last:
        options["force_layout_optimization"] = True
    options.update(known_to_inductor(extra or {}))
    return options


def uses_cuda_graphs(options: dict[str, Any] | None) -> bool:
    """Whether code compiled with inductor ``options`` replays from CUDA graphs; its caller
    then marks each step's start (``torch.compiler.cudagraph_mark_step_begin``)."""
    return bool((options or {}).get("triton.cudagraphs"))
