"""Between the data edge and the models: ``uint8 (B, T, H, W, C)`` <-> float ``(B, T, C, H, W)``
in [-1, 1]."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def to_model(clips: Tensor) -> Tensor:
    """``uint8 (B, T, H, W, C)`` -> ``float32 (B, T, C, H, W)`` in [-1, 1].

    Move the uint8 batch to the GPU first and convert there: a quarter of the bytes to copy.
    """
    if clips.dtype != torch.uint8 or clips.ndim != 5:
        raise ValueError(
            f"to_model expects uint8 clips (B, T, H, W, C), got {clips.dtype} {tuple(clips.shape)}"
        )
    return rearrange(clips, "b t h w c -> b t c h w").float().div_(127.5).sub_(1.0)


def to_uint8(video: Tensor) -> Tensor:
    """float ``(B, T, C, H, W)`` in [-1, 1] -> ``uint8 (B, T, H, W, C)`` (clamped, rounded)."""
    if not video.is_floating_point() or video.ndim != 5:
        raise ValueError(
            f"to_uint8 expects a float video (B, T, C, H, W), got {video.dtype} "
            f"{tuple(video.shape)}"
        )
    pixels = (video.detach().float().clamp(-1.0, 1.0) + 1.0).mul_(127.5).round_()
    return rearrange(pixels.to(torch.uint8), "b t c h w -> b t h w c")
