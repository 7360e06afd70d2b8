"""Self-attention over feature maps, all through ``F.scaled_dot_product_attention``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videogen.nn.resblocks import group_norm

# Sequences (batch x heads) per attention call. Temporal attention at every pixel makes
# B*H*W sequences (131,072 for 32 clips of 64x64), and cuDNN's attention backward on an H200
# fails above the CUDA grid's 65,535 ("mha_graph.execute ... is_good()"), so longer batches
# are cut into calls of at most this many.
MAX_SEQUENCES = 65535


class TokenAttention(nn.Module):
    """Multi-head self-attention over a token axis ``(N, L, C) -> (N, L, C)``, pre-normalised
    by the caller, output projection zero-initialised (a new block adds nothing)."""

    def __init__(self, channels: int, heads: int = 4, head_dim: int | None = None) -> None:
        super().__init__()
        if head_dim is not None:
            heads = max(1, channels // head_dim)
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        per_call = max(1, MAX_SEQUENCES // self.heads)
        if len(q) <= per_call:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(*qkv)
                    for qkv in zip(q.split(per_call), k.split(per_call), v.split(per_call))
                ]
            )
        return self.proj(rearrange(out, "n h l d -> n l (h d)"))


class SpatialAttention(nn.Module):
    """Attention over all positions of ``(B, C, H, W)``, or of ``(B, C, T, H, W)`` when the
    input is 5D (all T·H·W tokens, as RaMViD's 3D U-Net does). Residual."""

    def __init__(self, channels: int, heads: int = 4, head_dim: int | None = None) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = TokenAttention(channels, heads, head_dim)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        tokens = rearrange(self.norm(x), "b c ... -> b (...) c")
        out = self.attn(tokens)
        return x + rearrange(out, "b l c -> b c l").reshape(shape)


class TemporalAttention(nn.Module):
    """Attention along time at every pixel of ``(B, C, T, H, W)``. Residual. Frame positions
    enter through the caller's frame embedding."""

    def __init__(self, channels: int, heads: int = 4, head_dim: int | None = None) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = TokenAttention(channels, heads, head_dim)

    def forward(self, x: Tensor) -> Tensor:
        b, _, _, h, w = x.shape
        tokens = rearrange(self.norm(x), "b c t h w -> (b h w) t c")
        out = rearrange(self.attn(tokens), "(b h w) t c -> b c t h w", b=b, h=h, w=w)
        return x + out
