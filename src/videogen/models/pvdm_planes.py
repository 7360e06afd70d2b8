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
    if torch.compiler.is_compiling():
        return torch.ops.videogen.pack_planes(*planes)
    return torch.cat([p.flatten(2) for p in planes], dim=-1)


def unpack_planes(x: Tensor, shape: PlaneShape) -> Planes:
    """``(B, C, L)`` -> ``Planes``; views into ``x`` (no copy) when run eagerly."""
    if x.ndim != 3 or x.shape[-1] != shape.tokens:
        raise ValueError(
            f"packed PVDM planes must be (B, C, {shape.tokens}) for {shape}, got {tuple(x.shape)}"
        )
    if torch.compiler.is_compiling():
        return Planes(*torch.ops.videogen.unpack_planes(x, shape.frames, shape.height, shape.width))
    return _split(x, shape.frames, shape.height, shape.width)


def _split(x: Tensor, frames: int, height: int, width: int) -> Planes:
    s, h, w = frames, height, width
    zs, zh, zw = x.split([h * w, s * w, s * h], dim=-1)
    b, c = x.shape[:2]
    return Planes(zs.view(b, c, h, w), zh.view(b, c, s, w), zw.view(b, c, s, h))


# Under torch.compile the packing and unpacking are custom operators, which inductor calls but
# does not look into. Left to it, torch 2.11's inductor fused the backward of the unpacking (a
# concatenation of the planes' gradients at offsets such as 96) with its neighbours and failed
# on the H200 while normalising that kernel's index strides ("ModularIndexing((-96), 8, 4)//2
# ... is not comparable", BENCHMARKS.md, PVDM session 10). Each operator is the other's
# backward, so no concatenation of planes reaches inductor in either pass; the cost is one copy
# of the (small) latent per call.
@torch.library.custom_op("videogen::pack_planes", mutates_args=())
def _pack_op(zs: Tensor, zh: Tensor, zw: Tensor) -> Tensor:
    return torch.cat([zs.flatten(2), zh.flatten(2), zw.flatten(2)], dim=-1)


@_pack_op.register_fake
def _(zs: Tensor, zh: Tensor, zw: Tensor) -> Tensor:
    b, c = zs.shape[:2]
    length = zs[0, 0].numel() + zh[0, 0].numel() + zw[0, 0].numel()
    dtype = torch.promote_types(torch.promote_types(zs.dtype, zh.dtype), zw.dtype)
    return zs.new_empty(b, c, length, dtype=dtype)


@torch.library.custom_op("videogen::unpack_planes", mutates_args=())
def _unpack_op(x: Tensor, frames: int, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    # an operator's outputs may not alias its input: copies of the views
    zs, zh, zw = _split(x, frames, height, width)
    return zs.contiguous(), zh.contiguous(), zw.contiguous()


@_unpack_op.register_fake
def _(x: Tensor, frames: int, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    b, c = x.shape[:2]
    return (
        x.new_empty(b, c, height, width),
        x.new_empty(b, c, frames, width),
        x.new_empty(b, c, frames, height),
    )


def _pack_backward(ctx: object, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s, h, w = ctx.plane_dims  # type: ignore[attr-defined]
    return _unpack_op(grad, s, h, w)


def _pack_setup(ctx: object, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
    zs, zh, _ = inputs
    ctx.plane_dims = (zh.shape[2], zs.shape[2], zs.shape[3])  # type: ignore[attr-defined]


def _unpack_backward(
    ctx: object, gzs: Tensor | None, gzh: Tensor | None, gzw: Tensor | None
) -> tuple[Tensor, None, None, None]:
    b, c, s, h, w, dtype, device = ctx.meta  # type: ignore[attr-defined]
    # a plane that no loss depends on comes back without a gradient
    like = {"dtype": dtype, "device": device}
    gzs = torch.zeros(b, c, h, w, **like) if gzs is None else gzs
    gzh = torch.zeros(b, c, s, w, **like) if gzh is None else gzh
    gzw = torch.zeros(b, c, s, h, **like) if gzw is None else gzw
    return _pack_op(gzs, gzh, gzw), None, None, None


def _unpack_setup(ctx: object, inputs: tuple, output: tuple) -> None:
    x, s, h, w = inputs
    ctx.meta = (x.shape[0], x.shape[1], s, h, w, x.dtype, x.device)  # type: ignore[attr-defined]


_pack_op.register_autograd(_pack_backward, setup_context=_pack_setup)
_unpack_op.register_autograd(_unpack_backward, setup_context=_unpack_setup)
