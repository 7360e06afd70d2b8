"""RaMViD's backbone: the improved-diffusion U-Net made 3D (Höppe et al. 2022, Sec. 4).

Every convolution is a 3x3x3 ``Conv3d`` over ``(B, C, T, H, W)``; time is never downsampled
(the official ``--scale_time_dim 0``), only H and W halve from level to level. Residual blocks
take the noise level as a scale/shift of their second GroupNorm. Self-attention runs over all
``T * H * W`` positions at the resolutions named in ``attention_resolutions`` (16 and 8 px in the
paper), in the middle block and in every block of those levels, through
``F.scaled_dot_product_attention``.

Layout, as in improved-diffusion's ``UNetModel``: an input conv; per level ``num_res_blocks``
residual blocks (+ attention) and a downsample (not after the last level); a middle block
(res, attention, res); per level, deepest first, ``num_res_blocks + 1`` residual blocks that each
take one skip connection (+ attention), then an upsample (not after the top level); GroupNorm,
SiLU and a zero-initialised output conv.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from videogen.nn import Downsample, ResBlock, SpatialAttention, TimestepEmbedding, Upsample
from videogen.nn.resblocks import group_norm


class UNetBlock(nn.Module):
    """One step of the U-Net: an optional residual block, optional attention after it, and an
    optional resampling layer. ``forward(x, emb)``; ``x`` is ``(B, C, T, H, W)``.

    With ``checkpointing`` the residual block and attention are recomputed in the backward pass
    instead of keeping their activations (``torch.utils.checkpoint``, non-reentrant).
    """

    def __init__(
        self,
        res: ResBlock | None = None,
        attn: SpatialAttention | None = None,
        resample: nn.Module | None = None,
        *,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.res = res
        self.attn = attn
        self.resample = resample
        self.checkpointing = checkpointing

    def _body(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.res is not None:
            x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        return x

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.res is not None or self.attn is not None:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(self._body, x, emb, use_reentrant=False)
            else:
                x = self._body(x, emb)
        if self.resample is not None:
            x = self.resample(x)
        return x


class UNet3D(nn.Module):
    """3D-convolution U-Net: ``(B, T, C, H, W)`` noisy clip and ``(B,)`` timesteps to a
    prediction ``(B, T, out_channels, H, W)``.

    ``image_size`` is the training frame size; together with ``attention_resolutions`` (in
    pixels) it fixes which levels attend. Any clip length T works (nothing depends on it), and
    any H, W divisible by ``2 ** (len(channel_mult) - 1)``.

    ``resample_time_kernel`` is the temporal extent of the down/upsampling convs (3 in the
    official code, whose resampling convs are 3x3x3 with stride (1, 2, 2)). ``channels_last``
    stores activations and conv weights as ``channels_last_3d``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int | None = None,
        image_size: int = 64,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16, 8),
        heads: int = 4,
        head_dim: int | None = None,
        dropout: float = 0.0,
        resample_time_kernel: int = 3,
        activation_checkpointing: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        if image_size % 2 ** (levels - 1):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**{levels - 1} for "
                f"{levels} U-Net levels (channel_mult={tuple(channel_mult)})"
            )
        out_channels = out_channels or in_channels
        self.in_channels = in_channels
        self.levels = levels
        self.channels_last = channels_last
        emb_dim = 4 * channels
        self.time_embed = TimestepEmbedding(channels, emb_dim)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dims=3, dropout=dropout, scale_shift=True)

        def attn(ch: int) -> SpatialAttention:
            return SpatialAttention(ch, heads=heads, head_dim=head_dim)

        def block(**parts: nn.Module | None) -> UNetBlock:
            return UNetBlock(**parts, checkpointing=activation_checkpointing)

        self.conv_in = nn.Conv3d(in_channels, channels, 3, padding=1)
        skip_channels = [channels]
        ch = channels
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            attends = image_size // 2**level in attention_resolutions
            for _ in range(num_res_blocks):
                cin, ch = ch, mult * channels
                self.down.append(block(res=res(cin, ch), attn=attn(ch) if attends else None))
                skip_channels.append(ch)
            if level != levels - 1:
                down = Downsample(ch, dims=3, time_kernel=resample_time_kernel)
                self.down.append(block(resample=down))
                skip_channels.append(ch)

        self.middle = nn.ModuleList([block(res=res(ch, ch), attn=attn(ch)), block(res=res(ch, ch))])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            attends = image_size // 2**level in attention_resolutions
            for i in range(num_res_blocks + 1):
                cin = ch + skip_channels.pop()
                ch = mult * channels
                up = (
                    Upsample(ch, dims=3, time_kernel=resample_time_kernel)
                    if level and i == num_res_blocks
                    else None
                )
                self.up.append(
                    block(res=res(cin, ch), attn=attn(ch) if attends else None, resample=up)
                )

        self.norm_out = group_norm(ch)
        self.act = nn.SiLU()
        self.conv_out = nn.Conv3d(ch, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        if channels_last:
            self.to(memory_format=torch.channels_last_3d)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """``x`` ``(B, T, C, H, W)``, ``t`` ``(B,)`` float timesteps -> ``(B, T, C_out, H, W)``."""
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(
                f"UNet3D expects (B, T, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        factor = 2 ** (self.levels - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(
                f"frame size {tuple(x.shape[-2:])} must be divisible by {factor} "
                f"({self.levels} U-Net levels)"
            )
        emb = self.time_embed(t)
        h = rearrange(x, "b t c h w -> b c t h w")
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last_3d)
        h = self.conv_in(h)
        skips = [h]
        for blk in self.down:
            h = blk(h, emb)
            skips.append(h)
        for blk in self.middle:
            h = blk(h, emb)
        for blk in self.up:
            h = blk(torch.cat([h, skips.pop()], dim=1), emb)
        h = self.conv_out(self.act(self.norm_out(h)))
        return rearrange(h, "b c t h w -> b t c h w")
