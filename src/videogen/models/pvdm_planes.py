"""PVDM's latent: three 2D planes of one clip, and their packing into one tensor.

Yu et al. 2023 (PVDM) factor a clip of S frames into three planes of ``C`` channels:

- ``zs`` ``(B, C, H', W')``: the content shared over time (the projection along time);
- ``zh`` ``(B, C, S, W')``: the projection along the height;
- ``zw`` ``(B, C, S, H')``: the projection along the width.

The official code (``models/autoencoder/autoencoder_vit.py``: ``extract``, ``decode_from_sample``;
``models/ddpm/unet.py``) keeps them as one ``(B, C, H'W' + S W' + S H')`` tensor, flattened
plane by plane in the order xy, yt, xt, i.e. ``zs, zh, zw``: 4 x 2048 for 16 frames at 256²
(32x32 + 16x32 + 16x32). ``pack_planes`` / ``unpack_planes`` convert between the two; the
diffusion process and a latent cache see only the packed tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor


class Planes(NamedTuple):
    """The three latent planes of a batch of clips (see the module docstring for shapes)."""

    zs: Tensor
    zh: Tensor
    zw: Tensor


@dataclass(frozen=True)
class PlaneShape:
    """Latent frames ``S`` and latent height ``H'`` / width ``W'`` that fix the planes."""

    frames: int
    height: int
    width: int

    @property
    def tokens(self) -> int:
        """Length of the packed axis: ``H'W' + S W' + S H'``."""
        return self.height * self.width + self.frames * (self.width + self.height)


def pack_planes(planes: Planes) -> Tensor:
    """``Planes`` -> ``(B, C, H'W' + S W' + S H')``, flattened plane by plane."""
    return torch.cat([p.flatten(2) for p in planes], dim=-1)


def unpack_planes(x: Tensor, shape: PlaneShape) -> Planes:
    """``(B, C, L)`` -> ``Planes``; views into ``x`` (no copy)."""
    if x.ndim != 3 or x.shape[-1] != shape.tokens:
        raise ValueError(
            f"packed PVDM planes must be (B, C, {shape.tokens}) for {shape}, got {tuple(x.shape)}"
        )
    s, h, w = shape.frames, shape.height, shape.width
    zs, zh, zw = x.split([h * w, s * w, s * h], dim=-1)
    b, c = x.shape[:2]
    return Planes(zs.view(b, c, h, w), zh.view(b, c, s, w), zw.view(b, c, s, h))
