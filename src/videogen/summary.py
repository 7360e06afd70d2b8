"""What a config builds, without training: parameter count and FLOPs per training clip."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from videogen.config import Config, to_dict
from videogen.methods import build_method


def count_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def forward_flops(cfg: Config) -> int:
    """FLOPs of the training forward pass (``method.loss``) for one clip.

    Counted on the ``meta`` device (shapes only, no memory, no arithmetic: instant even for
    models of hundreds of millions of parameters); a method whose loss needs real values
    (data-dependent initialisation, say) is counted on the CPU instead.
    """
    try:
        return _flops(cfg, "meta")
    except (NotImplementedError, RuntimeError):
        return _flops(cfg, "cpu")


def _flops(cfg: Config, device: str) -> int:
    with torch.device(device):
        method = build_method(cfg)
        d = cfg.data
        video = torch.zeros(1, d.frames, d.channels, d.size, d.size)
    counter = FlopCounterMode(display=False)
    with counter:
        method.loss(video)
    return int(counter.get_total_flops())


def describe(cfg: Config) -> dict[str, Any]:
    """``{"config": ..., "params": int, "trainable_params": int, "flops_per_clip": int}`` of a
    config (trainable: what the optimizers update; frozen sub-models such as PVDM's stage-2
    autoencoder are in ``params`` only)."""
    with torch.device("meta"):
        method = build_method(cfg)
    return {
        "config": to_dict(cfg),
        "params": count_params(method),
        "trainable_params": count_params(method, trainable_only=True),
        "flops_per_clip": forward_flops(cfg),
    }
