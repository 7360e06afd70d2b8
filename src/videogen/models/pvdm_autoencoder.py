"""PVDM's projected video autoencoder: a clip to three 2D latent planes and back.

Yu et al. 2023 (PVDM), Sec. 3.1; sizes and layout from the official code
(``models/autoencoder/autoencoder_vit.py``, ``models/autoencoder/vit_modules.py``,
``configs/autoencoder/base.yaml``):

- **encoder**: the clip ``(B, S, C, H, W)`` is cut into ``patch x patch`` patches per frame
  (8 at 256², 4 at 128²), embedded by one linear layer to ``width`` (384) and run through
  ``depth`` (8) TimeSformer blocks of *divided space-time attention*: pre-norm attention over
  the frames at each patch position, then over the patches of each frame, then a pre-norm GEGLU
  feed-forward (4x), each residual. Attention has ``heads`` (8) x ``head_dim`` (64), a bias-free
  qkv projection and rotary position embeddings on q and k: 1D rotary over the frame index for
  time attention, 2D axial rotary over the patch grid (positions in [-1, 1], frequencies
  1 ... max_freq/2 = 5, times pi) for space attention. Its output is the 3D latent
  ``u`` ``(B, width, S, H', W')`` with ``H' = H / patch``.
- **projection**: three small transformers, one per axis (``proj_depth`` 4 layers,
  ``proj_heads`` 4 x ``proj_head_dim`` 48 = width / 8, MLP ``proj_mlp`` 512 with GELU, pre-norm,
  learned token and learned positions), attend along time / height / width at every position of
  the other two axes and return their learned token's output: ``zs`` (over time),
  ``zh`` (over height), ``zw`` (over width). A 1x1 conv maps each to ``latent_channels`` (4),
  and ``tanh`` bounds the latent to (-1, 1) so that the latent diffusion sees a fixed range.
- **decoder**: a 1x1 conv per plane back to ``width``, the three broadcast over the missing
  axis and summed into a 3D latent ``(B, width, S, H', W')``, ``depth`` TimeSformer blocks as in
  the encoder, a ``patch x patch`` stride-``patch`` transposed conv per frame to pixels, and
  ``2 * sigmoid - 1`` so the output lies in (-1, 1).

Two details differ from the official code on purpose. The official projection appends its
learned token at the *end* of the sequence and then reads position 0 (the first frame's / row's
feature, not the token); here the token is prepended and its own output read, as the paper's
"learnable token" describes. The official rotary code pairs dimensions ``(2i, 2i+1)`` while its
frequency table is laid out for pairs ``(i, i + d/2)``; here both use ``(i, i + d/2)``
(rotate-half), so every pair rotates by one frequency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videogen.models.pvdm_planes import Planes, PlaneShape


@dataclass(frozen=True)
class PVDMAutoencoderSpec:
    """Everything that fixes the autoencoder's shape; defaults are the official 256²x16 model
    (use ``size=128, patch=4`` for the 128² setting)."""

    channels: int = 3  # colour channels of the video
    frames: int = 16  # S, frames per clip
    size: int = 256  # frame height = width
    patch: int = 8
    width: int = 384
    depth: int = 8  # TimeSformer blocks in the encoder and again in the decoder
    heads: int = 8
    head_dim: int = 64
    ff_mult: int = 4
    latent_channels: int = 4
    proj_depth: int = 4
    proj_heads: int = 4
    proj_head_dim: int = 48
    proj_mlp: int = 512
    max_freq: float = 10.0  # the axial rotary embedding's top frequency is max_freq / 2

    @property
    def plane_shape(self) -> PlaneShape:
        side = self.size // self.patch
        return PlaneShape(self.frames, side, side)


# --------------------------------------------------------------------------- rotary embeddings


def rotary_angles_1d(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Angles ``(length, dim / 2)`` of 1D rotary embeddings: position ``n`` times
    ``10000^(-2i / dim)`` (RoFormer)."""
    inv_freq = 10_000.0 ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    return torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq


def rotary_angles_2d(
    height: int, width: int, dim: int, max_freq: float = 10.0, device: torch.device | None = None
) -> Tensor:
    """Angles ``(height * width, dim / 2)`` of axial 2D rotary embeddings: the first ``dim / 4``
    rotate with the row position, the last ``dim / 4`` with the column position; positions are
    ``linspace(-1, 1)``, frequencies ``pi * 2^linspace(0, log2(max_freq / 2), dim / 4)``."""
    scales = torch.logspace(
        0.0, math.log2(max_freq / 2), dim // 4, base=2.0, device=device, dtype=torch.float32
    )
    rows = torch.linspace(-1.0, 1.0, height, device=device)[:, None] * scales * math.pi
    cols = torch.linspace(-1.0, 1.0, width, device=device)[:, None] * scales * math.pi
    grid = torch.cat(
        [rows[:, None].expand(-1, width, -1), cols[None].expand(height, -1, -1)], dim=-1
    )
    return grid.reshape(height * width, dim // 2)


def apply_rotary(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate the pairs ``(x[..., i], x[..., i + d/2])`` of ``x`` ``(..., L, d)`` by
    ``angles`` ``(L, d / 2)``."""
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# --------------------------------------------------------------------------- transformer blocks


class Attention(nn.Module):
    """Pre-norm multi-head self-attention over ``(N, L, dim)`` through SDPA; bias-free qkv,
    optional rotary angles ``(L, head_dim / 2)`` on q and k. Returns the update (no residual)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: Tensor, angles: Tensor | None = None) -> Tensor:
        q, k, v = rearrange(
            self.qkv(self.norm(x)), "n l (three h d) -> three n h l d", three=3, h=self.heads
        )
        if angles is not None:
            q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(rearrange(out, "n h l d -> n l (h d)"))


class GEGLUFeedForward(nn.Module):
    """Pre-norm ``Linear(dim, 2 * mult * dim) -> x * gelu(gate) -> Linear(mult * dim, dim)``."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, 2 * mult * dim)
        self.proj_out = nn.Linear(mult * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        h, gate = self.proj_in(self.norm(x)).chunk(2, dim=-1)
        return self.proj_out(h * F.gelu(gate))


class DividedSpaceTimeBlock(nn.Module):
    """TimeSformer block on tokens ``(B, S, N, dim)`` (S frames of N patches): attention over
    time at each patch, then over space in each frame, then the feed-forward; each residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, ff_mult: int) -> None:
        super().__init__()
        self.time_attn = Attention(dim, heads, head_dim)
        self.space_attn = Attention(dim, heads, head_dim)
        self.ff = GEGLUFeedForward(dim, ff_mult)

    def forward(self, x: Tensor, time_angles: Tensor, space_angles: Tensor) -> Tensor:
        b, _, n, _ = x.shape
        h = rearrange(x, "b s n d -> (b n) s d")
        x = x + rearrange(self.time_attn(h, time_angles), "(b n) s d -> b s n d", b=b)
        h = rearrange(x, "b s n d -> (b s) n d")
        x = x + rearrange(self.space_attn(h, space_angles), "(b s) n d -> b s n d", b=b)
        return x + self.ff(x)


class TimeSformer(nn.Module):
    """``depth`` divided space-time blocks over tokens ``(B, S, H' * W', dim)`` of an
    ``H' x W'`` patch grid, with the rotary embeddings of the official encoder and decoder."""

    def __init__(self, spec: PVDMAutoencoderSpec) -> None:
        super().__init__()
        self.head_dim = spec.head_dim
        self.max_freq = spec.max_freq
        self.blocks = nn.ModuleList(
            DividedSpaceTimeBlock(spec.width, spec.heads, spec.head_dim, spec.ff_mult)
            for _ in range(spec.depth)
        )

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        time_angles = rotary_angles_1d(x.shape[1], self.head_dim, x.device)
        space_angles = rotary_angles_2d(*grid, self.head_dim, self.max_freq, x.device)
        for block in self.blocks:
            x = block(x, time_angles, space_angles)
        return x


class MLPFeedForward(nn.Module):
    """Pre-norm ``Linear -> GELU -> Linear`` (the projection transformers' feed-forward)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AxisProjector(nn.Module):
    """A small transformer that summarises a sequence ``(N, L, dim)`` into ``(N, dim)``: a
    learned token is prepended, learned positions added, and the token's output returned."""

    def __init__(self, spec: PVDMAutoencoderSpec, length: int) -> None:
        super().__init__()
        dim = spec.width
        self.token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, length + 1, dim))
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    Attention(dim, spec.proj_heads, spec.proj_head_dim),
                    MLPFeedForward(dim, spec.proj_mlp),
                ]
            )
            for _ in range(spec.proj_depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] + 1 != self.pos.shape[1]:
            raise ValueError(
                f"PVDM projection built for {self.pos.shape[1] - 1} positions, got {x.shape[1]}"
            )
        x = torch.cat([self.token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1) + self.pos
        for attn, ff in self.layers:
            x = x + attn(x)
            x = x + ff(x)
        return x[:, 0]


# --------------------------------------------------------------------------- the autoencoder

# plane: how u (B, S, H', W', d) becomes sequences along the projected axis, how the projected
# tokens become the plane, and the axis sizes einops needs for the latter
_PROJECTIONS = {
    "zs": ("b s h w d -> (b h w) s d", "(b h w) d -> b d h w", ("b", "h")),
    "zh": ("b s h w d -> (b s w) h d", "(b s w) d -> b d s w", ("b", "s")),
    "zw": ("b s h w d -> (b s h) w d", "(b s h) d -> b d s h", ("b", "s")),
}


class PVDMAutoencoder(nn.Module):
    """``encode(video) -> Planes``, ``decode(planes) -> video``; ``forward`` does both.

    ``video`` is ``(B, S, C, H, W)`` in [-1, 1] with ``S = spec.frames`` and
    ``H = W = spec.size``; the planes are ``zs (B, c, H', W')``, ``zh (B, c, S, W')``,
    ``zw (B, c, S, H')`` in (-1, 1) with ``c = spec.latent_channels`` and ``H' = size / patch``;
    the reconstruction has the video's shape, values in (-1, 1).
    """

    def __init__(self, spec: PVDMAutoencoderSpec) -> None:
        super().__init__()
        if spec.size % spec.patch:
            raise ValueError(
                f"model.size={spec.size} must be divisible by model.patch={spec.patch}"
            )
        if spec.head_dim % 4:
            raise ValueError(f"model.head_dim={spec.head_dim} must be divisible by 4 (rotary)")
        self.spec = spec
        shape = spec.plane_shape
        d, c, p = spec.width, spec.latent_channels, spec.patch

        self.patch_embed = nn.Linear(spec.channels * p * p, d)
        self.encoder = TimeSformer(spec)
        self.project = nn.ModuleDict(
            {
                "zs": AxisProjector(spec, shape.frames),
                "zh": AxisProjector(spec, shape.height),
                "zw": AxisProjector(spec, shape.width),
            }
        )
        self.to_latent = nn.ModuleDict({k: nn.Conv2d(d, c, 1) for k in Planes._fields})
        self.from_latent = nn.ModuleDict({k: nn.Conv2d(c, d, 1) for k in Planes._fields})
        self.decoder = TimeSformer(spec)
        self.to_pixels = nn.ConvTranspose2d(d, spec.channels, p, stride=p)

    @property
    def plane_shape(self) -> PlaneShape:
        return self.spec.plane_shape

    def _check_video(self, video: Tensor) -> None:
        s = self.spec
        want = (s.frames, s.channels, s.size, s.size)
        if video.ndim != 5 or tuple(video.shape[1:]) != want:
            raise ValueError(
                f"the PVDM autoencoder takes (B, {', '.join(map(str, want))}) clips, "
                f"got {tuple(video.shape)}"
            )

    def encode_3d(self, video: Tensor) -> Tensor:
        """The encoder's 3D latent ``u`` as tokens ``(B, S, H', W', width)``."""
        self._check_video(video)
        p, side = self.spec.patch, self.plane_shape.height
        tokens = rearrange(video, "b s c (h p1) (w p2) -> b s (h w) (p1 p2 c)", p1=p, p2=p)
        u = self.encoder(self.patch_embed(tokens), (side, side))
        return rearrange(u, "b s (h w) d -> b s h w d", h=side)

    def encode(self, video: Tensor) -> Planes:
        u = self.encode_3d(video)
        b, s, h, w, _ = u.shape
        sizes = {"b": b, "s": s, "h": h, "w": w}
        planes = []
        for name, (to_sequence, to_plane, known) in _PROJECTIONS.items():
            z = self.project[name](rearrange(u, to_sequence))
            z = rearrange(z, to_plane, **{k: sizes[k] for k in known})
            planes.append(torch.tanh(self.to_latent[name](z)))
        return Planes(*planes)

    def decode(self, planes: Planes) -> Tensor:
        zs, zh, zw = (self.from_latent[k](z) for k, z in zip(Planes._fields, planes))
        # (B, d, H', W') over time, (B, d, S, W') over height, (B, d, S, H') over width
        u = zs[:, :, None, :, :] + zh[:, :, :, None, :] + zw[:, :, :, :, None]
        b, _, s, h, w = u.shape
        x = self.decoder(rearrange(u, "b d s h w -> b s (h w) d"), (h, w))
        frames = self.to_pixels(rearrange(x, "b s (h w) d -> (b s) d h w", h=h))
        return rearrange(2 * torch.sigmoid(frames) - 1, "(b s) c h w -> b s c h w", b=b)

    def forward(self, video: Tensor) -> tuple[Tensor, Planes]:
        planes = self.encode(video)
        return self.decode(planes), planes

    def reconstruct(self, video: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` through the autoencoder clip by clip (T a multiple of the
        clip length)."""
        clip = self.spec.frames
        if video.shape[1] % clip:
            raise ValueError(
                f"PVDM reconstructs whole clips of {clip} frames; got {video.shape[1]} frames"
            )
        return torch.cat([self(c)[0] for c in video.split(clip, dim=1)], dim=1)
