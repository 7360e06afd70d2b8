"""MCVD's backbone: a 2D DDPM++ U-Net over frames stacked in channels.

Voleti et al. 2022 (MCVD) use NCSN++ with DDPM++ settings ("NCSNpp" in the official
``models/better/ncsnpp_more.py``): the noisy frames of the current block are stacked in channels
``(B, current * C, H, W)``; the past and future frames condition it either by concatenation
in channels (``cond="concat"``) or through SPATIN in every normalization (``cond="spatin"``).

The network, top to bottom:

- noise level: sinusoidal embedding of ``t`` (``ngf`` dims) -> Linear -> SiLU -> Linear
  (``4 ngf``);
- a 3x3 conv in, then per resolution ``num_res_blocks`` BigGAN-style residual blocks (with
  self-attention after each at ``attn_resolutions``), then a residual block that downsamples;
- middle: residual block, attention, residual block;
- per resolution going up ``num_res_blocks + 1`` residual blocks on the concatenated skip,
  attention once at ``attn_resolutions``, then a residual block that upsamples;
- GroupNorm (or SPATIN) -> SiLU -> 3x3 conv out to ``current * C`` channels, zero-initialised.

Every residual block normalizes adaptively (GroupNorm without affine, or SPATIN, then
``* (1 + scale) + shift`` from the noise level) before each of its two convs, and rescales its
sum by 1/sqrt(2), as do the attention blocks (DDPM++ ``skip_rescale``).

Resampling: the official code resamples inside the blocks with a [1, 3, 3, 1] FIR filter
through a custom ``upfirdn2d`` CUDA op. ``resample="fir"`` applies the same filter with the same
padding through stock ops, so it gives the same result up to float rounding: eagerly a fixed
depthwise 4x4 stride-2 conv down and its transpose x4 up (one kernel each); under
``torch.compile`` the same sums written as shifted slices, which the compiler fuses with the
surrounding elementwise work instead of calling a separate (slow) depthwise convolution.
``resample="naive"`` uses 2x2 average pooling down and nearest-neighbour up (NCSN++ without FIR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videogen.nn import SpatialAttention, TimestepEmbedding
from videogen.nn.spatin import Spatin, ncsnpp_groups

SKIP_SCALE = 1.0 / math.sqrt(2.0)


@dataclass(frozen=True)
class StackUNetSpec:
    """Everything that fixes the network's shape (the method builds it from its config)."""

    channels: int  # channels per frame (1 grey, 3 RGB)
    frames: int  # frames generated per call (MCVD's current block)
    cond_frames: int  # past + future frames that condition it
    size: int  # frame height = width
    cond: str = "concat"  # "concat" or "spatin"
    ngf: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (8, 16, 32)
    head_channels: int = 64
    dropout: float = 0.1
    spatin_dim: int = 128
    resample: str = "fir"


# --------------------------------------------------------------------------- resampling


class Resample(nn.Module):
    """Halve (``"down"``) or double (``"up"``) H and W of ``(B, channels, H, W)``; no weights.

    ``"fir"``: the [1, 3, 3, 1] FIR filter of the official code with ``upfirdn2d``'s padding,
    as a depthwise 4x4 stride-2 conv (down) and 4x its transpose (up). ``"naive"``: average
    pooling / nearest neighbour.
    """

    def __init__(self, channels: int, direction: str, mode: str = "fir") -> None:
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"resample direction must be 'up' or 'down', got {direction!r}")
        if mode not in ("fir", "naive"):
            raise ValueError(f"model.resample must be 'fir' or 'naive', got {mode!r}")
        self.direction = direction
        self.mode = mode
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(k, k) / 64.0  # sums to 1
        # one fixed filter per channel (depthwise); not saved with the weights
        self.register_buffer("kernel", kernel.expand(channels, 1, 4, 4).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "naive":
            if self.direction == "down":
                return F.avg_pool2d(x, 2)
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if torch.compiler.is_compiling():
            return fir_down(x) if self.direction == "down" else fir_up(x)
        weight = self.kernel.to(x.dtype)
        if self.direction == "down":
            return F.conv2d(x, weight, stride=2, padding=1, groups=x.shape[1])
        # zero-stuffed upsampling filtered by 4 * kernel == the transposed strided conv
        return F.conv_transpose2d(x, weight * 4.0, stride=2, padding=1, groups=x.shape[1])


def fir_down(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, C, H/2, W/2)``: the [1, 3, 3, 1] / 8 filter along each axis
    with one zero of padding either side, every other output kept (upfirdn2d's ``down=2``)."""
    return _fir_down_w(_fir_down_w(x).transpose(-1, -2)).transpose(-1, -2)


def fir_up(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, C, 2H, 2W)``: zeros inserted, then the [1, 3, 3, 1] / 4 filter
    along each axis (upfirdn2d's ``up=2``)."""
    return _fir_up_w(_fir_up_w(x).transpose(-1, -2)).transpose(-1, -2)


def _fir_down_w(x: Tensor) -> Tensor:
    p = F.pad(x, (1, 1))
    return (p[..., 0:-3:2] + p[..., 3::2] + 3 * (p[..., 1:-2:2] + p[..., 2:-1:2])) / 8


def _fir_up_w(x: Tensor) -> Tensor:
    # even outputs (x[i-1] + 3 x[i]) / 4, odd (3 x[i] + x[i+1]) / 4, zeros beyond the edges
    p = F.pad(x, (1, 1))
    centre = 3 * p[..., 1:-1]
    return torch.stack([p[..., :-2] + centre, centre + p[..., 2:]], -1).flatten(-2) / 4


# --------------------------------------------------------------------------- blocks


class AdaNorm(nn.Module):
    """GroupNorm without affine (or SPATIN on the conditioning frames), then
    ``* (1 + scale) + shift`` from the noise-level embedding, then SiLU.

    ``x`` ``(B, C, H, W)``, ``emb`` ``(B, E)`` (already passed through SiLU), ``cond`` the
    stacked conditioning frames for SPATIN (ignored otherwise).
    """

    def __init__(self, channels: int, emb_dim: int, cond_channels: int, spatin_dim: int) -> None:
        super().__init__()
        self.spatin = cond_channels > 0
        self.norm = (
            Spatin(channels, cond_channels, spatin_dim)
            if self.spatin
            else nn.GroupNorm(ncsnpp_groups(channels), channels, eps=1e-5, affine=False)
        )
        self.emb = nn.Linear(emb_dim, 2 * channels)

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor | None) -> Tensor:
        if self.spatin:
            h = self.norm(x, cond).to(x.dtype)
        else:
            # GroupNorm on the activations' own dtype: autocast would upcast every bf16
            # activation to float32 and back (two copies each way, forward and backward), and
            # the kernel accumulates its statistics in float32 anyway.
            with torch.autocast(x.device.type, enabled=False):
                h = F.group_norm(x, self.norm.num_groups, eps=self.norm.eps)
        scale, shift = rearrange(self.emb(emb), "b (two c) -> two b c 1 1", two=2)
        return F.silu(h * (1 + scale) + shift)


class ResBlock(nn.Module):
    """DDPM++ BigGAN residual block (``ResnetBlockBigGANppGN`` / ``...SPADE``).

    AdaNorm -> [resample] -> conv3x3 -> AdaNorm -> dropout -> conv3x3 (zero-init);
    skip: [resample] -> 1x1 conv when the shape changes; ``(skip + h) / sqrt(2)``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        *,
        resample: str | None = None,
        resample_mode: str = "fir",
        dropout: float = 0.0,
        cond_channels: int = 0,
        spatin_dim: int = 128,
    ) -> None:
        super().__init__()
        self.norm1 = AdaNorm(in_ch, emb_dim, cond_channels, spatin_dim)
        self.resample = Resample(in_ch, resample, resample_mode) if resample else None
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = AdaNorm(out_ch, emb_dim, cond_channels, spatin_dim)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch or resample else None

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor | None) -> Tensor:
        h = self.norm1(x, emb, cond)
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.conv2(self.drop(self.norm2(self.conv1(h), emb, cond)))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) * SKIP_SCALE


class Attention(nn.Module):
    """Self-attention over all positions (SDPA), residual, rescaled by 1/sqrt(2)."""

    def __init__(self, channels: int, head_channels: int) -> None:
        super().__init__()
        self.attn = SpatialAttention(channels, head_dim=min(head_channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(x) * SKIP_SCALE


class _DownLevel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attns = nn.ModuleList()
        self.down: ResBlock | None = None


class _UpLevel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attn: nn.Module = nn.Identity()
        self.up: ResBlock | None = None


# --------------------------------------------------------------------------- the U-Net


class StackUNet(nn.Module):
    """``forward(x, t, cond) -> eps`` for the current block.

    ``x`` ``(B, frames, C, H, W)`` noisy current frames; ``t`` ``(B,)`` float timesteps;
    ``cond`` ``(B, cond_frames, C, H, W)`` clean past+future frames with the ones not given set
    to zero (or ``None`` when ``cond_frames == 0``). Returns ``(B, frames, C, H, W)``.
    """

    def __init__(self, spec: StackUNetSpec) -> None:
        super().__init__()
        if spec.cond not in ("concat", "spatin"):
            raise ValueError(f"model.cond must be 'concat' or 'spatin', got {spec.cond!r}")
        if spec.cond == "spatin" and spec.cond_frames == 0:
            raise ValueError("model.cond=spatin needs past or future frames to condition on")
        levels = len(spec.ch_mult)
        if spec.size % 2 ** (levels - 1):
            raise ValueError(
                f"data.size={spec.size} must be divisible by 2**(len(model.ch_mult) - 1)"
                f" = {2 ** (levels - 1)}"
            )
        self.spec = spec
        nf, c = spec.ngf, spec.channels
        emb_dim = 4 * nf
        cond_ch = spec.cond_frames * c if spec.cond == "spatin" else 0
        in_ch = spec.frames * c + (spec.cond_frames * c if spec.cond == "concat" else 0)

        def block(i: int, o: int, resample: str | None = None) -> ResBlock:
            return ResBlock(
                i,
                o,
                emb_dim,
                resample=resample,
                resample_mode=spec.resample,
                dropout=spec.dropout,
                cond_channels=cond_ch,
                spatin_dim=spec.spatin_dim,
            )

        def attention(ch: int) -> Attention:
            return Attention(ch, spec.head_channels)

        self.time = TimestepEmbedding(nf, emb_dim)
        self.conv_in = nn.Conv2d(in_ch, nf, 3, padding=1)

        skips = [nf]
        ch, res = nf, spec.size
        self.down = nn.ModuleList()
        for i, mult in enumerate(spec.ch_mult):
            level = _DownLevel()
            for _ in range(spec.num_res_blocks):
                level.blocks.append(block(ch, nf * mult))
                ch = nf * mult
                attn = res in spec.attn_resolutions
                level.attns.append(attention(ch) if attn else nn.Identity())
                skips.append(ch)
            if i != levels - 1:
                level.down = block(ch, ch, "down")
                skips.append(ch)
                res //= 2
            self.down.append(level)

        self.mid1 = block(ch, ch)
        self.mid_attn = attention(ch)
        self.mid2 = block(ch, ch)

        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(spec.ch_mult))):
            level = _UpLevel()
            for _ in range(spec.num_res_blocks + 1):
                level.blocks.append(block(ch + skips.pop(), nf * mult))
                ch = nf * mult
            if res in spec.attn_resolutions:
                level.attn = attention(ch)
            if i != 0:
                level.up = block(ch, ch, "up")
                res *= 2
            self.up.append(level)

        self.norm_out = (
            Spatin(ch, cond_ch, spec.spatin_dim, eps=1e-5)
            if cond_ch
            else nn.GroupNorm(ncsnpp_groups(ch), ch, eps=1e-5)
        )
        self.conv_out = nn.Conv2d(ch, spec.frames * c, 3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        """DDPM initialisation as in the official code: Xavier-uniform weights ("fan_avg"
        variance scaling), zero biases, and zero for every layer that ends a residual branch
        and for the output conv, so the network starts as the identity plus zero output."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, SpatialAttention):
                # q, k and v are three separate C x C layers in the official code
                for w in m.attn.qkv.weight.chunk(3):
                    nn.init.xavier_uniform_(w)
                nn.init.zeros_(m.attn.proj.weight)
            if isinstance(m, ResBlock):
                nn.init.zeros_(m.conv2.weight)
        nn.init.zeros_(self.conv_out.weight)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        frames = x.shape[1]
        h = rearrange(x, "b t c h w -> b (t c) h w")
        ctx = rearrange(cond, "b t c h w -> b (t c) h w") if cond is not None else None
        if self.spec.cond == "concat" and ctx is not None:
            h = torch.cat([h, ctx], dim=1)
        if self.conv_in.weight.is_contiguous(memory_format=torch.channels_last):
            # follow the layout the model was put in (channels-last training)
            h = h.contiguous(memory_format=torch.channels_last)
            if ctx is not None:
                ctx = ctx.contiguous(memory_format=torch.channels_last)
        spatin = ctx if self.spec.cond == "spatin" else None
        emb = F.silu(self.time(t))

        h = self.conv_in(h)
        skips = [h]
        for level in self.down:
            for blk, attn in zip(level.blocks, level.attns):
                h = attn(blk(h, emb, spatin))
                skips.append(h)
            if level.down is not None:
                h = level.down(h, emb, spatin)
                skips.append(h)

        h = self.mid2(self.mid_attn(self.mid1(h, emb, spatin)), emb, spatin)

        for level in self.up:
            for blk in level.blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb, spatin)
            h = level.attn(h)
            if level.up is not None:
                h = level.up(h, emb, spatin)

        h = (self.norm_out(h, spatin) if spatin is not None else self.norm_out(h)).to(h.dtype)
        h = self.conv_out(F.silu(h))
        return rearrange(h, "b (t c) h w -> b t c h w", t=frames)
