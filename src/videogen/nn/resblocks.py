"""Residual blocks with timestep conditioning, for 2D (images, stacked frames) and 3D (video)."""

from __future__ import annotations

import math

from torch import Tensor, nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels``."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels, eps=1e-6)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    return {2: nn.Conv2d, 3: nn.Conv3d}[dims](*args, **kwargs)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv -> (+ embedding) -> GroupNorm -> SiLU -> dropout -> conv, + skip.

    ``x`` is ``(B, C, H, W)`` (dims=2) or ``(B, C, T, H, W)`` (dims=3); ``emb`` is ``(B, E)``.
    With ``scale_shift`` the embedding modulates the second norm as ``norm(h) * (1 + s) + b``
    (improved-diffusion / BigGAN style); otherwise it is added (DDPM style). ``kernel`` is the
    convolution size (3 or, for 3D, e.g. ``(3, 3, 3)``). ``skip_scale`` multiplies the sum
    (DDPM++ uses ``1/sqrt(2)``). The last conv starts at zero, so a new block is the identity.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int | None,
        *,
        dims: int = 2,
        dropout: float = 0.0,
        scale_shift: bool = True,
        kernel: int | tuple[int, ...] = 3,
        groups: int = 32,
        skip_scale: float = 1.0,
    ) -> None:
        super().__init__()
        pad = tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else kernel // 2
        self.scale_shift = scale_shift
        self.skip_scale = skip_scale
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = conv_nd(dims, in_ch, out_ch, kernel, padding=pad)
        self.emb = (
            nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_ch * (2 if scale_shift else 1)))
            if emb_dim
            else None
        )
        self.norm2 = group_norm(out_ch, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = conv_nd(dims, out_ch, out_ch, kernel, padding=pad)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if in_ch == out_ch else conv_nd(dims, in_ch, out_ch, 1)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = self.norm2(h)
        if self.emb is not None and emb is not None:
            e = self.emb(emb).to(h.dtype)
            e = e.reshape(*e.shape, *([1] * (h.dim() - 2)))
            if self.scale_shift:
                scale, shift = e.chunk(2, dim=1)
                h = h * (1 + scale) + shift
            else:
                h = h + e
        h = self.conv2(self.drop(self.act(h)))
        out = self.skip(x) + h
        return out * self.skip_scale if self.skip_scale != 1.0 else out


def skip_scale_for(rescale: bool) -> float:
    return 1.0 / math.sqrt(2.0) if rescale else 1.0
