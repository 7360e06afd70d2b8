"""SPATIN: spatio-temporal adaptive normalization (MCVD, Voleti et al. 2022, Sec. 3).

SPADE (Park et al. 2019) with the conditioning frames in place of a segmentation map: the past
and future frames, stacked in channels ``(B, n_cond * C, H, W)``, are resized (nearest) to the
feature map's resolution and go through a small conv net (3x3 conv -> SiLU -> 3x3 conv) that
gives a per-pixel scale and shift for a parameter-free GroupNorm. Every normalization in the
U-Net owns one such net, as in the official code (``MySPADE`` in ``layerspp.py``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def ncsnpp_groups(channels: int) -> int:
    """The group count of NCSN++/MCVD norms: ``min(channels // 4, 32)``, lowered until it
    divides ``channels``."""
    g = max(1, min(channels // 4, 32))
    while channels % g:
        g -= 1
    return g


class Spatin(nn.Module):
    """``norm(x) * (1 + scale(cond)) + shift(cond)`` with scale and shift maps from the
    conditioning frames.

    ``x`` ``(B, channels, H, W)``; ``cond`` ``(B, cond_channels, H', W')`` (any resolution; it is
    resized to ``H, W``). Frames that are not given are zeros in ``cond``.
    """

    def __init__(
        self, channels: int, cond_channels: int, hidden: int = 128, eps: float = 1e-6
    ) -> None:
        super().__init__()
        if cond_channels < 1:
            raise ValueError("SPATIN needs conditioning frames (cond_channels >= 1)")
        self.norm = nn.GroupNorm(ncsnpp_groups(channels), channels, eps=eps, affine=False)
        self.shared = nn.Conv2d(cond_channels, hidden, 3, padding=1)
        # The official code has separate gamma and beta convs; one conv with both halves has the
        # same parameters and launches one kernel instead of two.
        self.scale_shift = nn.Conv2d(hidden, 2 * channels, 3, padding=1)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if cond.shape[-2:] != x.shape[-2:]:
            cond = F.interpolate(cond, size=x.shape[-2:], mode="nearest")
        scale, shift = self.scale_shift(F.silu(self.shared(cond))).chunk(2, dim=1)
        # autocast runs GroupNorm in float32; return to the activations' dtype right away
        return self.norm(x).to(x.dtype) * (1 + scale) + shift
