"""MCVD: the stacked-frame U-Net, SPATIN, the masked training loss and block generation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videogen.config import ConfigError, load_config
from videogen.methods import build_method
from videogen.methods.mcvd import MCVD
from videogen.models.unet_stack2d import Resample, StackUNet, StackUNetSpec, fir_down, fir_up
from videogen.nn.spatin import Spatin
from videogen.tasks import from_indices, predict

TINY = [
    "model.ngf=8",
    "model.ch_mult=[1,2]",
    "model.attn_resolutions=[8]",
    "model.head_channels=8",
    "model.dropout=0.0",
    "model.spatin_dim=8",
    "data.size=16",
]


def tiny(past=2, current=2, future=0, cond="concat", p_past=0.0, p_future=0.0, extra=()) -> MCVD:
    torch.manual_seed(0)
    cfg = load_config(
        "configs/mcvd/smmnist.yaml",
        [
            *TINY,
            f"model.past={past}",
            f"model.current={current}",
            f"model.future={future}",
            f"model.cond={cond}",
            f"model.p_mask_past={p_past}",
            f"model.p_mask_future={p_future}",
            f"data.frames={past + current + future}",
            *extra,
        ],
    )
    method = build_method(cfg)
    assert isinstance(method, MCVD)
    return method


def clip(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, 1, 16, 16, generator=g) * 2 - 1


def perturb_network(method: MCVD) -> None:
    """Zero-initialised output layers make a fresh net ignore its input; give them weights."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in method.net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


# --------------------------------------------------------------------------- the network


def test_smmnist_config_has_the_papers_parameter_count():
    # the official SMMNIST model (smmnist_DDPM_big5.yml, concat) has 27.9M parameters
    cfg = load_config("configs/mcvd/smmnist.yaml")
    with torch.device("meta"):
        method = build_method(cfg)
    params = sum(p.numel() for p in method.net.parameters())
    assert abs(params - 27.9e6) / 27.9e6 < 0.10, params


def test_bair_ngf192_config_has_about_251m_parameters():
    cfg = load_config("configs/mcvd/bair_ngf192.yaml")
    with torch.device("meta"):
        method = build_method(cfg)
    params = sum(p.numel() for p in method.net.parameters())
    assert abs(params - 251e6) / 251e6 < 0.05, params


@pytest.mark.parametrize("cond", ["concat", "spatin"])
def test_unet_runs_and_depends_on_the_conditioning(cond):
    torch.manual_seed(0)
    spec = StackUNetSpec(
        channels=3,
        frames=2,
        cond_frames=3,
        size=16,
        cond=cond,
        ngf=8,
        ch_mult=(1, 2),
        attn_resolutions=(8,),
        head_channels=8,
        spatin_dim=8,
    )
    net = StackUNet(spec).eval()
    x, t = torch.randn(2, 2, 3, 16, 16), torch.tensor([10.0, 900.0])
    ctx = torch.randn(2, 3, 3, 16, 16)
    out = net(x, t, ctx)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # output conv starts at zero
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    a, b = net(x, t, ctx), net(x, t, torch.zeros_like(ctx))
    assert torch.isfinite(a).all()
    assert (a - b).abs().max() > 1e-4


def test_fir_resampling_matches_upfirdn():
    """The stock-op FIR equals upfirdn2d with the [1, 3, 3, 1] kernel and its padding."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6)
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k2 = torch.outer(k, k) / k.sum() ** 2
    w = k2[None, None].expand(3, 1, 4, 4)
    # downsample: pad (1, 1), filter, keep every second sample
    ref_down = F.conv2d(F.pad(x, (1, 1, 1, 1)), w, groups=3)[..., ::2, ::2]
    assert torch.allclose(Resample(3, "down")(x), ref_down, atol=1e-6)
    # upsample: insert zeros after each sample, pad (2, 1), filter with 4 * kernel
    stuffed = torch.zeros(2, 3, 16, 12)
    stuffed[..., ::2, ::2] = x
    ref_up = F.conv2d(F.pad(stuffed, (2, 1, 2, 1)), 4 * w, groups=3)
    assert torch.allclose(Resample(3, "up")(x), ref_up, atol=1e-6)
    # the slice form that compiled models use
    assert torch.allclose(fir_down(x), ref_down, atol=1e-6)
    assert torch.allclose(fir_up(x), ref_up, atol=1e-6)
    # channels-last input keeps the values
    x_cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(fir_up(x_cl), ref_up, atol=1e-6)
    # under torch.compile (traced here, run eagerly) Resample takes the slice form
    for direction, ref in (("down", ref_down), ("up", ref_up)):
        compiled = torch.compile(Resample(3, direction), backend="eager", fullgraph=True)
        assert torch.allclose(compiled(x), ref, atol=1e-6)
    assert Resample(3, "up", "naive")(x).shape == ref_up.shape
    assert Resample(3, "down", "naive")(x).shape == ref_down.shape


def test_spatin_scale_and_shift_come_from_the_conditioning_frames():
    torch.manual_seed(0)
    norm = Spatin(8, cond_channels=2, hidden=4)
    x = torch.randn(2, 8, 8, 8)
    cond = torch.randn(2, 2, 16, 16)  # full resolution: resized to the feature map
    out = norm(x, cond)
    assert out.shape == x.shape
    assert not torch.allclose(out, norm(x, torch.zeros_like(cond)))
    with torch.no_grad():
        norm.scale_shift.weight.zero_()
        norm.scale_shift.bias.zero_()
    assert torch.allclose(norm(x, cond), F.group_norm(x, 2, eps=1e-6), atol=1e-5)


# --------------------------------------------------------------------------- training


def test_config_mismatch_names_the_keys():
    cfg = load_config("configs/mcvd/smmnist.yaml", ["data.frames=9"])
    with pytest.raises(ConfigError, match="data.frames=9"):
        build_method(cfg)


@pytest.mark.parametrize("cond", ["concat", "spatin"])
def test_loss_covers_only_the_current_block(cond):
    method = tiny(past=2, current=2, future=2, cond=cond, p_past=1.0, p_future=1.0)
    perturb_network(method)
    video = clip(3, 6)
    changed = video.clone()
    changed[:, :2] = -changed[:, :2]
    changed[:, 4:] = 0.3
    torch.manual_seed(5)
    a = method.loss(video)
    torch.manual_seed(5)
    b = method.loss(changed)
    # both outer blocks dropped: they are neither conditioning nor targets
    assert torch.equal(a["loss"], b["loss"])
    # the half-sum loss is the official 0.5 * sum over the current block, mean over clips
    assert torch.allclose(a["loss"], 0.5 * 2 * 16 * 16 * a["mse"])


def test_known_blocks_condition_the_loss():
    method = tiny(past=2, current=2, future=2, p_past=0.0, p_future=0.0)
    perturb_network(method)
    video = clip(3, 6)
    changed = video.clone()
    changed[:, :2] = -changed[:, :2]
    torch.manual_seed(5)
    a = method.loss(video)["loss"]
    torch.manual_seed(5)
    b = method.loss(changed)["loss"]
    assert not torch.equal(a, b)


def test_dropped_blocks_are_zero_in_the_conditioning():
    method = tiny(past=2, current=2, future=2, cond="concat")
    seen = {}
    method.net.register_forward_pre_hook(lambda mod, args: seen.update(ctx=args[2]))
    video = clip(2, 6)
    known = from_indices(6, [0, 1], batch=2)  # past known, future dropped
    known[1] = False  # second clip: both dropped (the unconditional branch)
    out = method.denoise(video, torch.tensor([3.0, 7.0]), video, known)
    ctx = seen["ctx"]
    assert torch.equal(ctx[0, :2], video[0, :2])
    assert torch.count_nonzero(ctx[0, 2:]) == 0
    assert torch.count_nonzero(ctx[1]) == 0
    # the prediction covers the current block only
    assert out.shape == video.shape
    assert torch.count_nonzero(out[:, :2]) == 0 and torch.count_nonzero(out[:, 4:]) == 0


def test_tiny_model_overfits_one_clip():
    method = tiny(past=2, current=2, extra=["model.loss_reduction=mean"])
    video = clip(1, 4).expand(4, -1, -1, -1, -1).contiguous()
    known = predict(4, 2, batch=4)
    current = method.masks.current_mask(4)
    gen = torch.Generator().manual_seed(7)
    t = torch.linspace(20, 980, 4).long()
    noise = torch.randn(video.shape, generator=gen)

    def probe() -> float:
        with torch.no_grad():
            out = method.diffusion.loss(
                method.denoise, video, known, loss_mask=current, t=t, noise=noise
            )
        return float(out["loss"])

    before = probe()
    opt = torch.optim.Adam(method.parameters(), lr=5e-3)
    torch.manual_seed(0)
    for _ in range(60):
        loss = method.loss(video)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = probe()
    assert after < 0.5 * before, (before, after)  # ~0.33 here


# --------------------------------------------------------------------------- generation


def test_generate_fills_the_current_block_and_keeps_the_rest():
    method = tiny(past=2, current=2, future=1, p_past=0.5, p_future=0.5).eval()
    perturb_network(method)
    video = clip(2, 5)
    known = from_indices(5, [0, 1], batch=2)  # prediction: past known, future unknown
    g = torch.Generator().manual_seed(0)
    out = method.generate(video, known, steps=3, sampler="ddim", generator=g)
    assert out.shape == video.shape
    assert torch.equal(out[:, :2], video[:, :2])  # known frames exactly
    assert torch.equal(out[:, 4:], video[:, 4:])  # unknown future: returned as given
    assert not torch.allclose(out[:, 2:4], video[:, 2:4])
    assert torch.isfinite(out).all()
    # unconditional and interpolation patterns are supported too
    for k in ([], [0, 1, 4]):
        assert method.supported_known(from_indices(5, k, batch=2)) is None


@pytest.mark.parametrize(
    ("indices", "frames", "message"),
    [
        ([0, 1, 2], 5, "current block"),
        ([0], 5, "part of the past block"),
        ([0, 1], 6, "windows of"),
    ],
)
def test_generate_rejects_unsupported_patterns(indices, frames, message):
    method = tiny(past=2, current=2, future=1)
    known = from_indices(frames, indices, batch=1)
    assert message in method.supported_known(known)
    with pytest.raises(ValueError, match=message):
        method.generate(clip(1, frames), known, steps=2)


def test_guided_generation_runs_with_spatin():
    method = tiny(past=2, current=2, cond="spatin", p_past=0.5).eval()
    perturb_network(method)
    video = clip(2, 4)
    known = predict(4, 2, batch=2)
    g = torch.Generator().manual_seed(0)
    out = method.generate(video, known, steps=3, sampler="ddpm", guidance=2.0, generator=g)
    assert torch.equal(out[:, :2], video[:, :2])
    assert torch.isfinite(out).all()
    g = torch.Generator().manual_seed(0)
    plain = method.generate(video, known, steps=3, sampler="ddpm", guidance=1.0, generator=g)
    assert not torch.allclose(out[:, 2:], plain[:, 2:])
