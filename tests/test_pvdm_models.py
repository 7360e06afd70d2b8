"""PVDM's networks and stage-1 losses: plane shapes, reconstruction, cross-plane attention,
the official U-Net size, the hinge losses and the attention layers against references."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from videogen.metrics.lpips import LPIPS
from videogen.models.pvdm_autoencoder import (
    Attention,
    DividedSpaceTimeBlock,
    PVDMAutoencoder,
    PVDMAutoencoderSpec,
    apply_rotary,
    rotary_angles_1d,
    rotary_angles_2d,
)
from videogen.models.pvdm_losses import (
    PatchDiscriminator,
    PVDMLossWeights,
    VideoDiscriminators,
    autoencoder_loss,
    discriminator_loss,
    draw_frames,
    feature_matching_loss,
    frames_at,
    gan_factor,
    generator_adversarial_loss,
    hinge_d_loss,
)
from videogen.models.pvdm_planes import Planes, PlaneShape, pack_planes, unpack_planes
from videogen.models.pvdm_unet import CrossPlaneAttention, PVDMUNet, PVDMUNetSpec, per_plane
from videogen.nn import SpatialAttention

TINY_AE = PVDMAutoencoderSpec(
    frames=6,
    size=16,
    patch=4,
    width=32,
    depth=1,
    heads=2,
    head_dim=16,
    proj_depth=1,
    proj_heads=2,
    proj_head_dim=8,
    proj_mlp=32,
)
TINY_UNET = PVDMUNetSpec(
    frames=4,
    height=4,
    width=8,
    model_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(2,),
    heads=2,
)


def _video(spec: PVDMAutoencoderSpec, batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, spec.frames, spec.channels, spec.size, spec.size)
    return torch.rand(shape, generator=gen) * 2 - 1


def _waves(spec: PVDMAutoencoderSpec) -> torch.Tensor:
    """Two smooth moving colour waves ``(2, S, 3, H, W)`` in [-0.8, 0.8]: a clip an autoencoder
    can learn (noise would not pass the bottleneck)."""
    t = torch.arange(float(spec.frames))[:, None, None, None]
    c = torch.arange(3.0)[None, :, None, None]
    y = torch.arange(float(spec.size))[None, None, :, None]
    x = torch.arange(float(spec.size))[None, None, None, :]
    return 0.8 * torch.stack(
        [torch.sin(0.4 * x + 0.3 * y + 0.5 * t + c), torch.cos(0.3 * x - 0.4 * y + 0.6 * t + 2 * c)]
    )


# --------------------------------------------------------------------------- autoencoder


def test_planes_have_the_stated_shapes_and_range() -> None:
    torch.manual_seed(0)
    ae = PVDMAutoencoder(TINY_AE)
    planes = ae.encode(_video(TINY_AE))
    c, s, side = 4, 6, 4  # latent channels, frames, 16 / patch 4
    assert planes.zs.shape == (2, c, side, side)  # over time: H' x W'
    assert planes.zh.shape == (2, c, s, side)  # over height: S x W'
    assert planes.zw.shape == (2, c, s, side)  # over width: S x H'
    assert all(p.abs().max() < 1 for p in planes)  # tanh-bounded
    packed = pack_planes(planes)
    assert packed.shape == (2, c, side * side + 2 * s * side) == (2, c, ae.plane_shape.tokens)
    assert all(torch.equal(a, b) for a, b in zip(unpack_planes(packed, ae.plane_shape), planes))


def test_official_sizes_give_the_official_latent() -> None:
    """256² x 16 frames, patch 8 -> 4 x 32 x 32, 4 x 16 x 32, 4 x 16 x 32 = 4 x 2048 packed."""
    # one block each is enough for the shapes (depth does not change them) and builds quicker
    with torch.device("meta"):
        ae = PVDMAutoencoder(replace(PVDMAutoencoderSpec(), depth=1, proj_depth=1))
        planes = ae.encode(torch.empty(1, 16, 3, 256, 256))
        recon = ae.decode(planes)
    assert [tuple(p.shape) for p in planes] == [(1, 4, 32, 32), (1, 4, 16, 32), (1, 4, 16, 32)]
    assert ae.plane_shape.tokens == 2048
    assert recon.shape == (1, 16, 3, 256, 256)


def test_autoencoder_rejects_clips_of_another_shape() -> None:
    ae = PVDMAutoencoder(TINY_AE)
    with pytest.raises(ValueError, match=r"takes \(B, 6, 3, 16, 16\) clips"):
        ae.encode(torch.zeros(1, 5, 3, 16, 16))


def test_round_trip_keeps_the_shape_and_training_lowers_the_error() -> None:
    torch.manual_seed(0)
    ae = PVDMAutoencoder(TINY_AE)
    video = _waves(TINY_AE)
    recon, _ = ae(video)
    assert recon.shape == video.shape and recon.abs().max() < 1
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    errors = []
    for _ in range(40):
        loss = F.l1_loss(ae(video)[0], video)
        opt.zero_grad()
        loss.backward()
        opt.step()
        errors.append(loss.item())
    assert errors[-1] < 0.6 * errors[0], errors


def test_rotary_angles_follow_their_formulas() -> None:
    a = rotary_angles_1d(5, 8)
    assert a.shape == (5, 4)
    assert a[3, 1].item() == pytest.approx(3 * 10_000 ** (-2 / 8))
    g = rotary_angles_2d(3, 4, 16)  # dim/4 = 4 frequencies 2^linspace(0, log2 5, 4)
    assert g.shape == (12, 8)
    freq = 2 ** (2 / 3 * math.log2(5))  # the third frequency
    row, col = 2, 1  # token 2 * 4 + 1; positions linspace(-1, 1): row 1.0, column -1/3
    assert g[row * 4 + col, 2].item() == pytest.approx(1.0 * freq * math.pi, rel=1e-5)
    assert g[row * 4 + col, 4 + 2].item() == pytest.approx(-1 / 3 * freq * math.pi, rel=1e-5)


def _rotate(t: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as complex multiplication: (t_i + i t_{i+d/2}) e^{i theta_i}."""
    d = t.shape[-1]
    z = torch.complex(t[..., : d // 2], t[..., d // 2 :]) * torch.polar(
        torch.ones_like(angles), angles
    )
    return torch.cat([z.real, z.imag], dim=-1)


def _reference_attention(attn: Attention, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Per-head softmax(q k^T / sqrt(d)) v with rotated q and k, then the output layer."""
    qkv = attn.qkv(F.layer_norm(x, x.shape[-1:], attn.norm.weight, attn.norm.bias))
    heads = []
    for q, k, v in zip(*(t.chunk(attn.heads, dim=-1) for t in qkv.chunk(3, dim=-1))):
        logits = _rotate(q, angles) @ _rotate(k, angles).transpose(-1, -2) / math.sqrt(q.shape[-1])
        heads.append(torch.softmax(logits, dim=-1) @ v)
    return attn.out(torch.cat(heads, dim=-1))


def test_attention_with_rotary_matches_a_reference() -> None:
    torch.manual_seed(0)
    attn = Attention(dim=12, heads=3, head_dim=8)
    x = torch.randn(2, 7, 12)
    angles = rotary_angles_1d(7, 8)
    assert torch.allclose(attn(x, angles), _reference_attention(attn, x, angles), atol=1e-5)
    # rotary embeddings make attention see relative positions: a shift of all positions by
    # one changes nothing
    shifted = torch.arange(1, 8, dtype=torch.float32)[:, None] * angles[1]
    assert torch.allclose(attn(x, angles), attn(x, shifted), atol=1e-5)
    assert torch.equal(apply_rotary(x[..., :8], torch.zeros(7, 4)), x[..., :8])


def test_divided_block_attends_over_time_then_space() -> None:
    """The block equals time attention run per patch, then space attention run per frame."""
    torch.manual_seed(0)
    block = DividedSpaceTimeBlock(dim=16, heads=2, head_dim=8, ff_mult=2)
    x = torch.randn(2, 3, 4, 16)  # 3 frames of a 2 x 2 patch grid
    ta, sa = rotary_angles_1d(3, 8), rotary_angles_2d(2, 2, 8)
    ref = x.clone()
    for n in range(4):
        ref[:, :, n] = ref[:, :, n] + _reference_attention(block.time_attn, x[:, :, n], ta)
    mid = ref.clone()
    for t in range(3):
        ref[:, t] = ref[:, t] + _reference_attention(block.space_attn, mid[:, t], sa)
    ref = ref + block.ff(ref)
    assert torch.allclose(block(x, ta, sa), ref, atol=1e-5)


# --------------------------------------------------------------------------- latent U-Net


def _randomised_unet(seed: int = 0) -> PVDMUNet:
    """A tiny U-Net with every parameter perturbed, so that no zero-initialised layer (output
    projections, last convs) hides a path."""
    torch.manual_seed(seed)
    net = PVDMUNet(TINY_UNET).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net


def _split(x: torch.Tensor) -> Planes:
    return unpack_planes(x, TINY_UNET.plane_shape)


@pytest.mark.parametrize("changed", [0, 1, 2])
def test_cross_plane_attention_lets_each_plane_see_the_others(changed: int) -> None:
    net = _randomised_unet()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, TINY_UNET.plane_shape.tokens, generator=gen)
    t = torch.tensor([10.0, 700.0])
    x2 = pack_planes(
        Planes(*(p + 0.5 if i == changed else p for i, p in enumerate(_split(x.clone()))))
    )
    with torch.no_grad():
        before, after = _split(net(x, t)), _split(net(x2, t))
        for i in range(3):
            assert (before[i] - after[i]).abs().max() > 1e-3, (
                f"plane {i} did not see plane {changed}"
            )
        # with every cross-plane attention's output projection zeroed the planes are separate
        for m in net.modules():
            if isinstance(m, CrossPlaneAttention):
                m.attn.attn.proj.weight.zero_()
                m.attn.attn.proj.bias.zero_()
        before, after = _split(net(x, t)), _split(net(x2, t))
    for i in range(3):
        if i == changed:
            assert (before[i] - after[i]).abs().max() > 1e-3
        else:
            assert torch.allclose(before[i], after[i], atol=1e-6)


def test_unet_shapes_and_conditioning() -> None:
    net = _randomised_unet()
    x = torch.randn(3, 4, TINY_UNET.plane_shape.tokens)
    t = torch.tensor([1.0, 2.0, 999.0])
    with torch.no_grad():
        out = net(x, t)
        assert out.shape == x.shape
        assert torch.equal(out, net(x, t, torch.zeros_like(x)))  # no condition = zero condition
        assert not torch.allclose(out, net(x, t, torch.ones_like(x)))
    assert net.conv_in.in_channels == 8  # noisy planes + previous clip's planes
    with pytest.raises(ValueError, match="model.cond=false"):
        PVDMUNet(replace(TINY_UNET, cond=False))(x, t, x)


def test_planes_of_one_shape_share_a_batch_with_the_same_result() -> None:
    net = _randomised_unet()
    stage = net.down[2]  # level 1 (downsampled 2x): residual block + in-plane attention
    assert isinstance(stage.attn, SpatialAttention)
    gen = torch.Generator().manual_seed(2)
    # zs and zh are both 4 x 8 here (S = H' = 4), so they go through the stage together
    planes = Planes(*(torch.randn(2, 32, *hw, generator=gen) for hw in ((4, 8), (4, 8), (4, 4))))
    emb = torch.randn(2, 128, generator=gen)
    with torch.no_grad():
        joint = per_plane(stage, planes, emb)
        for p, q in zip(joint, planes):
            assert torch.allclose(p, stage(q, emb), atol=1e-5)


def test_cross_plane_attention_matches_attention_over_concatenated_tokens() -> None:
    torch.manual_seed(0)
    mix = CrossPlaneAttention(channels=8, heads=2)
    with torch.no_grad():
        mix.attn.attn.proj.weight.normal_()
    shape = PlaneShape(frames=2, height=3, width=4)
    planes = Planes(torch.randn(1, 8, 3, 4), torch.randn(1, 8, 2, 4), torch.randn(1, 8, 2, 3))
    tokens = torch.cat([p.flatten(2) for p in planes], dim=-1)  # (1, 8, 12 + 8 + 6)
    gn = mix.attn.norm
    normed = F.group_norm(tokens, gn.num_groups, gn.weight, gn.bias, gn.eps).transpose(1, 2)
    q, k, v = mix.attn.attn.qkv(normed).chunk(3, dim=-1)
    heads = [
        torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(4), -1) @ vh
        for qh, kh, vh in zip(q.chunk(2, -1), k.chunk(2, -1), v.chunk(2, -1))
    ]
    ref = tokens + mix.attn.attn.proj(torch.cat(heads, -1)).transpose(1, 2)
    out = mix(planes)
    assert torch.allclose(pack_planes(out), ref, atol=1e-5)
    assert [p.shape for p in out] == [p.shape for p in planes]
    assert pack_planes(out).shape[-1] == shape.tokens


def test_plane_operators_match_concatenation_and_split() -> None:
    """The packing operators used under torch.compile give the planes, and the gradients,
    of a concatenation and a split; a plane without a gradient counts as zeros."""
    gen = torch.Generator().manual_seed(3)
    shape = PlaneShape(frames=2, height=3, width=4)
    planes = [
        torch.randn(2, 5, *hw, generator=gen, dtype=torch.float64)
        for hw in ((3, 4), (2, 4), (2, 3))
    ]
    ref = torch.cat([p.flatten(2) for p in planes], dim=-1)
    leaves = [p.clone().requires_grad_() for p in planes]
    packed = torch.ops.videogen.pack_planes(*leaves)
    assert torch.equal(packed, ref)
    weight = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    (packed * weight).sum().backward()
    sizes = [p[0, 0].numel() for p in planes]
    for leaf, w in zip(leaves, weight.split(sizes, dim=-1)):
        assert torch.equal(leaf.grad, w.view_as(leaf))

    x = ref.clone().requires_grad_()
    out = torch.ops.videogen.unpack_planes(x, shape.frames, shape.height, shape.width)
    assert all(torch.equal(o, p) for o, p in zip(out, planes))
    (out[0] * 2).sum().backward()  # zh and zw take no part in the loss
    assert torch.equal(
        x.grad,
        torch.cat(
            [torch.full_like(planes[0].flatten(2), 2.0), torch.zeros_like(ref[..., sizes[0] :])],
            dim=-1,
        ),
    )
    torch.library.opcheck(torch.ops.videogen.pack_planes.default, [p.float() for p in planes])
    torch.library.opcheck(
        torch.ops.videogen.unpack_planes.default,
        (ref.float(), shape.frames, shape.height, shape.width),
    )


def test_compiled_cross_plane_attention_keeps_its_concatenations_from_inductor() -> None:
    """Under torch.compile no concatenation of planes reaches the compiler, in the forward or
    the backward graph (torch 2.11's inductor failed on one on an H200), and the compiled
    block gives the eager block's outputs and gradients."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs: list[torch.fx.GraphModule] = []

    def keep(gm: torch.fx.GraphModule, _inputs: list) -> object:
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    torch.manual_seed(0)
    mix = CrossPlaneAttention(channels=8, heads=2)
    with torch.no_grad():
        mix.attn.attn.proj.weight.normal_()
    planes = [torch.randn(1, 8, *hw) for hw in ((3, 4), (2, 4), (2, 3))]

    def loss(fn: object, ps: list[torch.Tensor]) -> tuple[list, list]:
        leaves = [p.clone().requires_grad_() for p in ps]
        out = fn(*leaves)
        sum((o * o.detach().sign()).sum() for o in out).backward()
        return out, [leaf.grad for leaf in leaves]

    backend = aot_autograd(fw_compiler=keep, bw_compiler=keep)
    compiled = torch.compile(lambda *p: mix(Planes(*p)), backend=backend, fullgraph=True)
    out, grads = loss(compiled, planes)
    ref_out, ref_grads = loss(lambda *p: mix(Planes(*p)), planes)
    assert len(graphs) == 2  # forward and backward
    for gm in graphs:
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        assert torch.ops.aten.cat.default not in targets
        assert torch.ops.videogen.pack_planes.default in targets
        assert torch.ops.videogen.unpack_planes.default in targets
    for a, b in zip([*out, *grads], [*ref_out, *ref_grads]):
        assert torch.allclose(a, b, atol=1e-5)


def test_official_unet_has_the_official_parameter_count() -> None:
    """The official UCF-101 latent U-Net has 528M parameters."""
    with torch.device("meta"):
        net = PVDMUNet(PVDMUNetSpec())
    count = sum(p.numel() for p in net.parameters())
    print(f"PVDM U-Net, official UCF-101 sizes: {count:,} parameters")
    assert abs(count - 528e6) < 0.1 * 528e6, count


# --------------------------------------------------------------------------- stage-1 losses


def test_hinge_losses_match_their_formulas() -> None:
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = 0, 0.5, 2 ; relu(1 + fake) = 0, 1, 2
    expected = 0.5 * ((0 + 0.5 + 2) / 3 + (0 + 1 + 2) / 3)
    assert hinge_d_loss(real, fake).item() == pytest.approx(expected)
    assert generator_adversarial_loss(fake).item() == pytest.approx(1 / 3)
    fm = feature_matching_loss(
        [torch.ones(2, 3), torch.zeros(4)], [torch.zeros(2, 3), torch.ones(4)]
    )
    assert fm.item() == pytest.approx(2.0)
    assert gan_factor(9, 10) == 0.0 and gan_factor(10, 10) == 1.0 and gan_factor(0, -1) == 1.0


def test_patch_discriminators_shapes() -> None:
    torch.manual_seed(0)
    d2 = PatchDiscriminator(2, ndf=8)
    logits, feats = d2(torch.randn(2, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64]  # three stride-2, one stride-1 layer
    # 4x4 kernels, padding 2: stride 2 gives n // 2 + 1, stride 1 gives n + 1
    assert logits.shape == (2, 1, 7, 7)  # 32 -> 17 -> 9 -> 5 -> 6 -> 7
    d3 = PatchDiscriminator(3, ndf=8)
    logits3, feats3 = d3(torch.randn(2, 3, 4, 32, 32))
    assert logits3.shape == (2, 1, 4, 7, 7) and len(feats3) == 4  # time 4 -> 3 -> 2 -> 2 -> 3 -> 4


def _stage1_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    video = torch.rand(2, 4, 3, 32, 32, generator=gen) * 2 - 1
    recon = (video + 0.3 * torch.randn(video.shape, generator=gen)).clamp(-1, 1)
    return video, recon, draw_frames(video, gen)


def test_autoencoder_loss_terms_match_their_definitions() -> None:
    torch.manual_seed(0)
    video, recon, idx = _stage1_batch()
    discs, lpips = VideoDiscriminators(ndf=8).eval(), LPIPS().eval()
    w = PVDMLossWeights()
    before = autoencoder_loss(
        video, recon, idx, step=4, disc_start=5, discriminators=discs, lpips=lpips
    )
    assert set(before) == {"loss", "pixel", "perceptual"}
    pixel = 4.0 * (recon - video).abs().mean()
    frame_r, frame_f = frames_at(video, idx), frames_at(recon, idx)
    assert torch.equal(frame_r[1], video[1, idx[1]])
    perceptual = 4.0 * lpips(frame_r, frame_f).mean()
    assert before["pixel"].item() == pytest.approx(pixel.item(), rel=1e-6)
    assert before["perceptual"].item() == pytest.approx(perceptual.item(), rel=1e-5)
    assert before["loss"].item() == pytest.approx((pixel + perceptual).item(), rel=1e-5)

    after = autoencoder_loss(
        video, recon, idx, step=5, disc_start=5, discriminators=discs, lpips=None
    )
    (l2, f2), (l3, f3) = discs(recon, frame_f)
    (_, r2), (_, r3) = discs(video, frame_r)
    gan = -(l2.mean() + l3.mean()) * w.gan
    feat = w.feature * sum(F.l1_loss(a, b) for a, b in zip(f2 + f3, r2 + r3))
    assert after["gan"].item() == pytest.approx(gan.item(), rel=1e-5)
    assert after["feature"].item() == pytest.approx(feat.item(), rel=1e-5)
    assert after["loss"].item() == pytest.approx((pixel + gan + feat).item(), rel=1e-5)

    # the squared-error term of short runs on sparse data (off in the official weights)
    short = autoencoder_loss(
        video, recon, idx, step=0, disc_start=5, weights=PVDMLossWeights(mse=3.0)
    )
    mse = 3.0 * ((recon - video) ** 2).mean()
    assert set(short) == {"loss", "pixel", "mse"}
    assert short["mse"].item() == pytest.approx(mse.item(), rel=1e-6)
    assert short["loss"].item() == pytest.approx((pixel + mse).item(), rel=1e-6)


def test_discriminator_loss_is_the_hinge_of_both_discriminators() -> None:
    torch.manual_seed(0)
    video, recon, idx = _stage1_batch()
    discs = VideoDiscriminators(ndf=8).eval()
    recon.requires_grad_(True)
    out = discriminator_loss(video, recon, idx, discs, step=0, disc_start=0)
    (r2, _), (r3, _) = discs(video, frames_at(video, idx))
    (f2, _), (f3, _) = discs(recon, frames_at(recon, idx))
    expected = hinge_d_loss(r2, f2) + hinge_d_loss(r3, f3)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    out["loss"].backward()
    assert recon.grad is None  # the reconstruction is detached: only D learns from this loss
    assert discs.image.to_logits.weight.grad is not None
    off = discriminator_loss(video, recon, idx, discs, step=0, disc_start=1)
    assert off["loss"].item() == 0.0
