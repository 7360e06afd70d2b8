"""RaMViD: config sizes, the conditioning and loss of the paper, and every task from one tiny
trained model (prediction, infilling, temporal upsampling, unconditional), known frames exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from videogen import tasks
from videogen.config import Config, ConfigError, from_dict, load_config
from videogen.methods import build_method
from videogen.methods.ramvid import Ramvid

FRAMES, SIZE = 6, 8
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ramvid"


def tiny_config(**model) -> Config:
    return from_dict(
        Config,
        {
            "method": "ramvid",
            "model": {
                "channels": 16,
                "channel_mult": [1, 2],
                "num_res_blocks": 1,
                "attention_resolutions": [4],
                "heads": 2,
                "max_known": 3,
                **model,
            },
            "data": {"frames": FRAMES, "size": SIZE, "channels": 1},
            "sample": {"sampler": "ddim", "steps": 8},
        },
    )


def square_clip() -> torch.Tensor:
    """A bright square moving right on a dark background, ``(1, FRAMES, 1, SIZE, SIZE)``."""
    clip = -torch.ones(1, FRAMES, 1, SIZE, SIZE)
    for f in range(FRAMES):
        clip[0, f, 0, 3:6, f : f + 3] = 1.0
    return clip


def fixed_loss(method: Ramvid, batch: torch.Tensor) -> float:
    """Prediction loss (2 known frames) at fixed timesteps and noise."""
    g = torch.Generator().manual_seed(1)
    b = batch.shape[0]
    known = tasks.predict(FRAMES, 2, b)
    t = torch.linspace(50, 950, b).long()
    noise = torch.randn(batch.shape, generator=g)
    with torch.no_grad():
        return method.diffusion.loss(method.denoise, batch, known, t=t, noise=noise)["loss"].item()


@pytest.fixture(scope="module")
def trained() -> Iterator[tuple[Ramvid, float, float]]:
    """A tiny RaMViD overfit to one clip; yields it with its fixed loss before and after.

    Tests run on one thread (conftest.py), so the sums are reproducible.
    """
    torch.manual_seed(0)
    method = build_method(tiny_config())
    batch = square_clip().expand(4, -1, -1, -1, -1).contiguous()
    before = fixed_loss(method, batch)
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    for _ in range(150):
        loss = method.loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    after = fixed_loss(method, batch)
    yield method.eval(), before, after


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(("name", "paper_params"), [("bair", 235e6), ("kinetics600", 308e6)])
def test_paper_configs_have_the_official_parameter_count(name: str, paper_params: float) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    with torch.device("meta"):
        method = build_method(cfg)
    count = sum(p.numel() for p in method.parameters())
    assert abs(count - paper_params) / paper_params < 0.10
    assert cfg.paper


def test_all_configs_load_and_unknown_keys_are_named() -> None:
    for name in ("bair", "kinetics600", "ucf101", "tiny"):
        assert load_config(CONFIGS / f"{name}.yaml").method == "ramvid"
    with pytest.raises(ConfigError, match="model.p_uncnd"):
        build_method(load_config(CONFIGS / "tiny.yaml", ["model.p_uncnd=0.5"]))


# --------------------------------------------------------------------------- conditioning


def test_known_frames_enter_clean_and_carry_no_loss() -> None:
    torch.manual_seed(0)
    method = build_method(tiny_config(p_uncond=0.0))
    video = torch.rand(3, FRAMES, 1, SIZE, SIZE) * 2 - 1
    known = tasks.from_indices(FRAMES, [0, 3], 3)
    method.masks = lambda b, t, **kw: known
    seen = {}

    def grab_input(module, args):
        seen["x_t"] = args[0].detach().clone()

    def spoil_known(module, args, out):
        # whatever the network says about known frames must not change the loss
        return torch.where(known[:, :, None, None, None], out + 1e3, out)

    handle = method.unet.register_forward_pre_hook(grab_input)
    torch.manual_seed(1)
    clean = method.loss(video)
    hook = method.unet.register_forward_hook(spoil_known)
    torch.manual_seed(1)
    spoiled = method.loss(video)
    handle.remove()
    hook.remove()

    x_t = seen["x_t"]
    assert torch.equal(x_t[known], video[known])  # clean known frames, written in
    assert not torch.allclose(x_t[~known], video[~known], atol=1e-2)  # noisy elsewhere
    assert torch.equal(clean["loss"], spoiled["loss"])
    assert clean["known_frames"].item() == 2.0


def test_training_masks_follow_the_recipe() -> None:
    method = build_method(tiny_config(p_uncond=0.5, max_known=2))
    torch.manual_seed(0)
    known = method.masks(4000, FRAMES)
    counts = known.sum(1)
    assert counts.max() == 2
    assert abs((counts == 0).float().mean().item() - 0.5) < 0.05


def test_channels_last_and_checkpointing_compute_the_same() -> None:
    torch.manual_seed(0)
    plain = build_method(tiny_config())
    for p in plain.parameters():  # zero-initialised output layers would hide differences
        p.data.normal_(0, 0.1)
    cfg = tiny_config(activation_checkpointing=True)
    cfg.train.channels_last = True
    fast = build_method(cfg)
    fast.load_state_dict(plain.state_dict())
    x, t = torch.randn(2, FRAMES, 1, SIZE, SIZE), torch.tensor([3.0, 700.0])
    out_plain, out_fast = plain.unet(x, t), fast.unet(x, t)
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-4, atol=1e-5)
    out_plain.square().mean().backward()
    out_fast.square().mean().backward()
    for a, b in zip(plain.parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = plain.unet(x, t)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), out_plain, rtol=0.1, atol=0.05)


# --------------------------------------------------------------------------- one trained model


def test_tiny_model_learns_a_clip(trained) -> None:
    _, before, after = trained
    assert after < 0.3 * before


@pytest.mark.parametrize(
    "known",
    [tasks.predict(FRAMES, 2), tasks.past(FRAMES, 2), tasks.infill(FRAMES, 1)],
    ids=["predict", "past", "infill"],
)
def test_conditional_tasks_fill_the_clip_and_return_known_exactly(trained, known) -> None:
    method, *_ = trained
    clip = square_clip()
    video = torch.where(known[:, :, None, None, None], clip, torch.zeros_like(clip))
    out = method.generate(video, known, generator=torch.Generator().manual_seed(0))
    assert out.shape == clip.shape
    assert torch.equal(out[known], clip[known])
    # the model was overfit to this clip, so the generated frames are near it: an all-grey
    # guess scores 1.0 here, the untrained model about 2
    assert (out[~known] - clip[~known]).square().mean() < 0.7


def test_unconditional_generation(trained) -> None:
    method, *_ = trained
    known = tasks.unconditional(FRAMES, batch=2)
    out = method.generate(torch.zeros(2, FRAMES, 1, SIZE, SIZE), known, sampler="ddpm", steps=8)
    assert out.shape == (2, FRAMES, 1, SIZE, SIZE)
    assert torch.isfinite(out).all()
    assert out.abs().max() <= 1.0 + 1e-5  # clean-clip clipping keeps samples in range
    assert not torch.equal(out[0], out[1])


def test_sampling_without_clipping_is_one_flag_away(trained) -> None:
    method, *_ = trained
    known = tasks.predict(FRAMES, 2)
    clip = square_clip()
    x_t, t = torch.randn_like(clip), torch.tensor([400.0])
    clipped = method.diffusion.clipped(method.denoise)(x_t, t, clip, known)
    raw = method.denoise(x_t, t, clip, known)
    x0 = method.diffusion.predict_x0(x_t, t, raw)
    inside = (x0.abs() < 1).expand_as(raw)
    torch.testing.assert_close(clipped[inside], raw[inside], rtol=1e-4, atol=1e-4)
    method.model_cfg.clip_denoised = False
    try:
        out = method.generate(clip, known, steps=4, generator=torch.Generator().manual_seed(0))
    finally:
        method.model_cfg.clip_denoised = True
    assert torch.equal(out[known], clip[known])


def test_temporal_upsampling_from_a_low_frame_rate_clip(trained) -> None:
    method, *_ = trained
    low = square_clip()[:, ::2]  # frames 0, 2, 4
    video, known = tasks.spread_frames(low, 2)  # 5 frames, every other one known
    out = method.generate(video, known, sampler="dpm++", steps=6)
    assert out.shape == (1, 5, 1, SIZE, SIZE)
    assert torch.equal(out[:, ::2], low)
    assert torch.isfinite(out).all()


def test_generate_takes_other_clip_lengths_and_batches(trained) -> None:
    method, *_ = trained
    video = torch.zeros(2, 4, 1, SIZE, SIZE)
    known = tasks.from_indices(4, [0, 3], 2)
    video[known] = 0.25
    out = method.generate(video, known, steps=3)
    assert out.shape == video.shape
    assert torch.equal(out[known], video[known])


def test_generate_rejects_bad_shapes(trained) -> None:
    method, *_ = trained
    with pytest.raises(ValueError, match="known mask"):
        method.generate(torch.zeros(1, FRAMES, 1, SIZE, SIZE), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, T, 1, H, W\)"):
        method.generate(torch.zeros(1, FRAMES, 3, SIZE, SIZE), tasks.predict(FRAMES, 1))
    with pytest.raises(ValueError, match="divisible"):
        method.unet(torch.zeros(1, FRAMES, 1, 15, 15), torch.zeros(1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_channels_last_training_and_sampling_on_gpu() -> None:
    cfg = tiny_config()
    cfg.train.channels_last = True
    torch.manual_seed(0)
    method = build_method(cfg).cuda()
    video = square_clip().expand(4, -1, -1, -1, -1).contiguous().cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = method.loss(video)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    known = tasks.predict(FRAMES, 2).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = method.eval().generate(video[:1], known, steps=4)
    assert out.dtype == torch.float32
    assert torch.equal(out[known], video[:1][known])
