"""Token attention against a softmax attention written here, also when the batch is cut into
several attention calls (the GPU limit on sequences per call)."""

import math

import pytest
import torch
from einops import rearrange

from videogen.nn import attention
from videogen.nn.attention import TemporalAttention, TokenAttention


def _reference(attn: TokenAttention, x: torch.Tensor) -> torch.Tensor:
    q, k, v = rearrange(attn.qkv(x), "n l (three h d) -> three n h l d", three=3, h=attn.heads)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return attn.proj(rearrange(weights @ v, "n h l d -> n l (h d)"))


@pytest.mark.parametrize("max_sequences", [65535, 7, 2, 1])
def test_token_attention_matches_softmax_attention_in_any_number_of_calls(
    monkeypatch: pytest.MonkeyPatch, max_sequences: int
) -> None:
    torch.manual_seed(0)
    attn = TokenAttention(16, heads=2)
    torch.nn.init.normal_(attn.proj.weight)  # zero-initialised: make the output non-trivial
    x = torch.randn(11, 5, 16)
    monkeypatch.setattr(attention, "MAX_SEQUENCES", max_sequences)
    assert torch.allclose(attn(x), _reference(attn, x), atol=1e-5)


def test_temporal_attention_keeps_pixels_apart_when_cut_into_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    layer = TemporalAttention(8, heads=2)
    torch.nn.init.normal_(layer.attn.proj.weight)
    x = torch.randn(2, 8, 4, 3, 3)
    whole = layer(x)
    monkeypatch.setattr(attention, "MAX_SEQUENCES", 4)  # 18 pixels x 2 heads -> 10 calls
    assert torch.allclose(layer(x), whole, atol=1e-6)
    # a change in one clip changes its outputs and not the other clip's (the group norm
    # spans a clip's pixels, the attention each pixel's frames)
    y = x.clone()
    y[0, :, 1, 2, 0] += 1.0
    diff = (layer(y) - layer(x)).abs().sum(dim=(1, 2, 3, 4))
    assert diff[0] > 0 and diff[1] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_temporal_attention_over_more_pixels_than_one_call_takes_trains_on_the_gpu() -> None:
    # 32 clips of 64x64: 131,072 sequences; one cuDNN attention backward over them failed on an
    # H200 (2026-12-02), cut into calls of MAX_SEQUENCES it runs (VideoFusion's residual net)
    layer = TemporalAttention(64, head_dim=64).cuda()
    x = torch.randn(32, 64, 16, 64, 64, device="cuda", requires_grad=True)
    with torch.autocast("cuda", torch.bfloat16):
        y = layer(x)
    y.float().square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
