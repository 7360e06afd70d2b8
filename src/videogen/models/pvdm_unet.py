"""PVDM's latent denoiser: one 2D U-Net shared by the three planes, mixed by cross-plane attention.

Yu et al. 2023 (PVDM), Sec. 3.2; sizes from the official code (``models/ddpm/unet.py``
``UNetModel`` with ``cond_model=True``, ``configs/latent-diffusion/base.yaml``):

- input: the noisy packed planes ``(B, c, L)`` (``videogen.models.pvdm_planes``) and, with
  ``cond=True``, the previous clip's packed planes concatenated in channels (zeros when there is
  none), so the first conv sees ``2c`` channels;
- noise level: sinusoidal embedding (``model_channels``) -> Linear -> SiLU -> Linear
  (``4 model_channels``);
- the improved-diffusion U-Net (``model_channels`` 256 x ``channel_mult`` (1, 2, 4, 4),
  ``num_res_blocks`` 2, scale-shift norm, downsampling / upsampling inside residual blocks by
  2x2 average pooling / nearest neighbour, self-attention within a plane at the downsampling
  factors ``attention_resolutions`` (4, 2, 1) with ``heads`` 8, middle res-attn-res, zero-
  initialised output conv) runs on each plane ``zs (H' x W')``, ``zh (S x W')``,
  ``zw (S x H')`` with the *same* parameters;
- after every input block but the first (the input conv), after the middle block and after
  every output block, a *cross-plane* attention block
  (GroupNorm, 8 heads, residual, zero-initialised output) attends over the tokens of all three
  planes at once (``H'W' + S W' + S H'`` tokens at that level), which is where the planes'
  joint distribution is modelled;
- output: GroupNorm -> SiLU -> 3x3 conv per plane, packed back to ``(B, c, L)``.

The official UCF-101 model (256² x 16 frames, c = 4, planes 32x32, 16x32, 16x32) has 528M
parameters; ``PVDMUNetSpec()`` rebuilds that size (see ``tests/test_pvdm_models.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videogen.models.pvdm_planes import Planes, PlaneShape, pack_planes, unpack_planes
from videogen.nn import Downsample, ResBlock, SpatialAttention, TimestepEmbedding, Upsample
from videogen.nn.resblocks import group_norm


@dataclass(frozen=True)
class PVDMUNetSpec:
    """Everything that fixes the U-Net's shape; defaults are the official UCF-101 model."""

    latent_channels: int = 4
    frames: int = 16  # S of the planes zh, zw
    height: int = 32  # H' of zs and zw
    width: int = 32  # W' of zs and zh
    model_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)  # downsampling factors
    heads: int = 8
    dropout: float = 0.0
    cond: bool = True  # condition on the previous clip's planes (zeros when unconditional)

    @property
    def plane_shape(self) -> PlaneShape:
        return PlaneShape(self.frames, self.height, self.width)


def resample_resblock(channels: int, emb_dim: int, direction: str, dropout: float) -> ResBlock:
    """A residual block that halves (``"down"``) or doubles (``"up"``) H and W: the resampling
    (2x2 average pooling / nearest neighbour) sits between the first norm+SiLU and the first
    conv, and on the skip path (improved-diffusion's ``resblock_updown``)."""
    block = ResBlock(channels, channels, emb_dim, dropout=dropout)
    resample = (Downsample if direction == "down" else Upsample)(channels, conv=False)
    block.conv1 = nn.Sequential(resample, block.conv1)
    block.skip = resample
    return block


class PlaneStage(nn.Module):
    """One U-Net step applied to a single plane ``(B, C, h, w)``: a residual block, attention
    within the plane where the spec asks for it, and an up-sampling residual block at the end
    of an output level."""

    def __init__(self, res: ResBlock, attn: nn.Module | None, up: ResBlock | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn if attn is not None else nn.Identity()
        self.up = up

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.attn(self.res(x, emb))
        return self.up(x, emb) if self.up is not None else x


def per_plane(fn: Callable[[Tensor, Tensor], Tensor], planes: Planes, emb: Tensor) -> Planes:
    """``fn(plane, emb)`` on each plane with shared parameters. Planes of one shape (``zh`` and
    ``zw`` when ``H' = W'``) go through ``fn`` as one batch: the same result, since every layer
    inside a plane works per sample, with fewer kernel launches."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(planes):
        groups.setdefault(tuple(p.shape), []).append(i)
    out: list[Tensor] = [planes[0]] * 3
    for members in groups.values():
        x = torch.cat([planes[i] for i in members]) if len(members) > 1 else planes[members[0]]
        y = fn(x, emb.repeat(len(members), 1))
        for i, part in zip(members, y.chunk(len(members))):
            out[i] = part
    return Planes(*out)


class CrossPlaneAttention(nn.Module):
    """Self-attention over the tokens of all three planes together: ``Planes`` of
    ``(B, C, ...)`` features -> ``Planes`` of the same shapes. Residual; starts as the identity."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.attn = SpatialAttention(channels, heads=heads)

    def forward(self, planes: Planes) -> Planes:
        shape = PlaneShape(planes.zh.shape[-2], *planes.zs.shape[-2:])
        return unpack_planes(self.attn(pack_planes(planes)), shape)


class PVDMUNet(nn.Module):
    """``forward(x, t, cond) -> eps``: packed planes in, packed planes out.

    ``x`` ``(B, c, L)`` noisy packed planes (``L = H'W' + S W' + S H'``); ``t`` ``(B,)``
    timesteps; ``cond`` ``(B, c, L)`` the previous clip's packed planes, or ``None`` for
    zeros (unconditional), used only when ``spec.cond``. Returns ``(B, c, L)``.
    """

    def __init__(self, spec: PVDMUNetSpec) -> None:
        super().__init__()
        levels = len(spec.channel_mult)
        for name, side in (("frames", spec.frames), ("height", spec.height), ("width", spec.width)):
            if side % 2 ** (levels - 1):
                raise ValueError(
                    f"model.{name}={side} must be divisible by 2**(len(channel_mult) - 1)"
                    f" = {2 ** (levels - 1)}"
                )
        self.spec = spec
        mc, drop = spec.model_channels, spec.dropout
        emb_dim = 4 * mc
        in_ch = spec.latent_channels * (2 if spec.cond else 1)

        def res(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim, dropout=drop)

        def attn(ch: int, ds: int) -> SpatialAttention | None:
            return (
                SpatialAttention(ch, heads=spec.heads) if ds in spec.attention_resolutions else None
            )

        def mix(ch: int) -> CrossPlaneAttention:
            return CrossPlaneAttention(ch, spec.heads)

        self.time = TimestepEmbedding(mc, emb_dim)
        self.conv_in = nn.Conv2d(in_ch, mc, 3, padding=1)

        # the down path: a stage per plane, then a cross-plane mix (none after the input conv)
        self.down = nn.ModuleList()
        self.down_mix = nn.ModuleList()
        skips, ch, ds = [mc], mc, 1
        for level, mult in enumerate(spec.channel_mult):
            for _ in range(spec.num_res_blocks):
                self.down.append(PlaneStage(res(ch, mult * mc), attn(mult * mc, ds), None))
                ch = mult * mc
                self.down_mix.append(mix(ch))
                skips.append(ch)
            if level != levels - 1:
                self.down.append(
                    PlaneStage(resample_resblock(ch, emb_dim, "down", drop), None, None)
                )
                self.down_mix.append(mix(ch))
                skips.append(ch)
                ds *= 2

        self.mid = nn.ModuleList([res(ch, ch), SpatialAttention(ch, heads=spec.heads), res(ch, ch)])
        self.mid_mix = mix(ch)

        self.up = nn.ModuleList()
        self.up_mix = nn.ModuleList()
        for level, mult in reversed(list(enumerate(spec.channel_mult))):
            for i in range(spec.num_res_blocks + 1):
                block = res(ch + skips.pop(), mult * mc)
                ch = mult * mc
                last = level != 0 and i == spec.num_res_blocks
                up = resample_resblock(ch, emb_dim, "up", drop) if last else None
                self.up.append(PlaneStage(block, attn(ch, ds), up))
                self.up_mix.append(mix(ch))
                if last:
                    ds //= 2

        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, spec.latent_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        shape = self.spec.plane_shape
        if cond is not None and not self.spec.cond:
            raise ValueError("this PVDM U-Net was built with model.cond=false: pass cond=None")
        if self.spec.cond:
            h = torch.cat([x, cond if cond is not None else torch.zeros_like(x)], dim=1)
        else:
            h = x
        emb = self.time(t)

        planes = Planes(*(self.conv_in(p) for p in unpack_planes(h, shape)))
        skips = [planes]
        for stage, mix in zip(self.down, self.down_mix):
            planes = mix(per_plane(stage, planes, emb))
            skips.append(planes)

        res1, attn, res2 = self.mid
        planes = self.mid_mix(per_plane(lambda p, e: res2(attn(res1(p, e)), e), planes, emb))

        for stage, mix in zip(self.up, self.up_mix):
            joined = Planes(*(torch.cat([p, s], 1) for p, s in zip(planes, skips.pop())))
            planes = mix(per_plane(stage, joined, emb))

        out = Planes(*(self.conv_out(F.silu(self.norm_out(p))) for p in planes))
        return pack_planes(out)
