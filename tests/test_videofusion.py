"""VideoFusion: decomposed noise, the two-stage network, training and sampling, on tiny models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

from videogen.checkpoint import load_pretrained
from videogen.config import Config, ConfigError, from_dict, load_config
from videogen.diffusion import VideoDiffusion
from videogen.diffusion.decomposed import (
    DecomposedNoise,
    combine,
    frame_lambdas,
    key_frame,
    noise_covariance,
    remove_base,
)
from videogen.evaluate import NULL_LABEL, TEST_LABELS, evaluate_path, evaluate_run
from videogen.methods import build_method
from videogen.methods.videofusion import VideoFusion, other_frames
from videogen.rollout import rollout
from videogen.tasks import infill, predict
from videogen.train import train

FRAMES, SIZE, CH = 6, 16, 3
KEY = key_frame(FRAMES)
TINY_BASE = {
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
    "attention_head_dim": 8,
}
TINY_RESIDUAL = {
    "channels": 8,
    "channel_mult": [1, 2],
    "num_res_blocks": 1,
    "attention_resolutions": [8],
    "heads": 2,
    "dropout": 0.0,
}
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "videofusion"


def tiny_config(**model) -> Config:
    return from_dict(
        Config,
        {
            "method": "videofusion",
            "model": {"base": TINY_BASE, **TINY_RESIDUAL, **model},
            "data": {"frames": FRAMES, "size": SIZE, "channels": CH},
            "sample": {"sampler": "ddim", "steps": 3},
        },
    )


def tiny_method(seed: int = 0, **model) -> VideoFusion:
    torch.manual_seed(seed)
    method = build_method(tiny_config(**model))
    assert isinstance(method, VideoFusion)
    return method


def moving_square(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Clips of a bright square sliding right by one pixel per frame, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    video = -torch.ones(batch, FRAMES, CH, SIZE, SIZE)
    for b in range(batch):
        y, x = torch.randint(0, SIZE - 5, (2,), generator=g).tolist()
        for t in range(FRAMES):
            video[b, t, :, y : y + 5, (x + t) % (SIZE - 4) : (x + t) % (SIZE - 4) + 5] = 1.0
    return video


def randomise(module: torch.nn.Module, seed: int = 1) -> None:
    """Give every parameter small random values (zero-initialised output layers would hide the
    gradient paths under test)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


class CallCounter:
    """Counts forward calls of a module and the batch size of each."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.batches: list[int] = []
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        self.batches.append(args[0].shape[0])


# --------------------------------------------------------------------------- decomposed noise


def test_frame_lambdas_key_frame_and_schedule():
    lam = frame_lambdas(FRAMES, 0.5, 1.0)
    assert KEY == 3 and lam[KEY] == 1.0
    assert torch.all(lam[torch.arange(FRAMES) != KEY] == 0.5)
    assert torch.all(frame_lambdas(FRAMES, 0.3, None) == 0.3)
    sched = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert frame_lambdas(FRAMES, schedule=sched).tolist() == pytest.approx(sched)
    with pytest.raises(ValueError, match="one λ per frame"):
        frame_lambdas(FRAMES, schedule=[0.5] * 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        frame_lambdas(FRAMES, 1.5)


@pytest.mark.parametrize(
    "noise",
    [DecomposedNoise(0.5, 1.0), DecomposedNoise(0.3, None), DecomposedNoise(schedule=(0.9,) * 6)],
)
def test_decomposed_noise_covariance(noise):
    """Frames' noises are unit-variance and correlated by sqrt(λ^i λ^j) (λ between two frames
    of equal λ; sqrt(λ) with the key frame when its λ is 1)."""
    g = torch.Generator().manual_seed(0)
    eps = noise((4000, FRAMES, 1, 2, 2), generator=g)
    flat = eps.permute(1, 0, 2, 3, 4).reshape(FRAMES, -1).double()
    empirical = torch.cov(flat)
    expected = noise_covariance(noise.lambdas(FRAMES))
    assert torch.allclose(empirical, expected, atol=0.03), (empirical, expected)
    assert eps.mean().abs() < 0.02


def test_correlation_between_ordinary_frames_is_lambda():
    g = torch.Generator().manual_seed(1)
    eps = DecomposedNoise(0.5, 1.0)((20000, FRAMES, 1, 1, 1), generator=g).flatten(1)
    corr = torch.corrcoef(eps.T)
    assert corr[0, 1].item() == pytest.approx(0.5, abs=0.03)
    assert corr[0, KEY].item() == pytest.approx(0.5**0.5, abs=0.03)


def test_remove_base_leaves_the_residual_part():
    g = torch.Generator().manual_seed(0)
    lam = frame_lambdas(FRAMES, 0.5, 1.0)
    x0 = torch.randn(2, FRAMES, CH, 4, 4, generator=g)
    base = torch.randn(2, 1, CH, 4, 4, generator=g)
    residual = torch.randn(2, FRAMES, CH, 4, 4, generator=g)
    abar = torch.tensor([0.3, 0.8])
    a, s = abar.sqrt().reshape(-1, 1, 1, 1, 1), (1 - abar).sqrt().reshape(-1, 1, 1, 1, 1)
    x_t = a * x0 + s * combine(base, residual, lam)
    x_res = remove_base(x_t, base, lam, (1 - abar).sqrt())
    expected = a * x0 + s * (1 - lam).sqrt().reshape(1, -1, 1, 1, 1) * residual
    assert torch.allclose(x_res, expected, atol=1e-6)
    # the key frame (λ = 1) is left with the clean signal alone
    assert torch.allclose(x_res[:, KEY], (a * x0)[:, KEY], atol=1e-6)


def test_fixed_base_seed_shares_base_noise_across_draws():
    """Two noise sources with the same base seed but different residual generators: the key
    frame (pure base noise) agrees, the other frames differ only by their residuals."""
    noise = DecomposedNoise(0.5, 1.0)
    shape = (2, FRAMES, CH, 4, 4)
    first = noise.with_base_seed(7)(shape, generator=torch.Generator().manual_seed(1))
    second = noise.with_base_seed(7)(shape, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first[:, KEY], second[:, KEY])
    assert not torch.allclose(first[:, 0], second[:, 0])
    other = noise.with_base_seed(8)(shape, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(first[:, KEY], other[:, KEY])


# --------------------------------------------------------------------------- the two stages


def test_lambdas_made_inside_a_compiled_step_are_not_cached():
    """Regression (H200, session 8): a λ tensor cached while a reduce-overhead step was compiled
    lived in the CUDA graph's memory, and the next replay refused to overwrite it."""
    noise = DecomposedNoise(lam=0.3, key_lambda=1.0)
    compiled = torch.compile(lambda: noise.lambdas(5) * 2, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(), 2 * frame_lambdas(5, 0.3, 1.0))
    assert noise._lambdas == {}
    assert noise.lambdas(5) is noise.lambdas(5)  # eager draws keep their one copy


def test_base_generator_called_once_per_clip_per_step():
    method = tiny_method()
    video = torch.zeros(2, FRAMES, CH, SIZE, SIZE)
    nothing = torch.zeros(2, FRAMES, dtype=torch.bool)
    for sampler, steps in [("ddim", 4), ("ddpm", 3), ("dpm++", 5), ("dpm++sde", 3)]:
        base = CallCounter(method.net.base)
        residual = CallCounter(method.net.residual)
        method.generate(video, nothing, sampler=sampler, steps=steps)
        base.handle.remove()
        residual.handle.remove()
        # one call per step on the B key frames, one batched residual call on all B*T frames
        assert base.batches == [2] * steps, (sampler, base.batches)
        assert residual.batches == [2] * steps


def test_gradients_reach_base_only_through_key_frame():
    method = tiny_method()
    randomise(method.net)
    net, video = method.net, moving_square()
    t = torch.tensor([300.0, 700.0])
    scale = method._noise_scale(t)
    x_t = video + torch.randn_like(video)

    def grads(frames: list[int], stop: bool) -> tuple[float, float]:
        net.zero_grad()
        net.stop_base_grad = stop
        net(x_t, t, scale)[:, frames].square().mean().backward()
        base = sum(p.grad.abs().sum().item() for p in net.base.parameters() if p.grad is not None)
        res = sum(
            p.grad.abs().sum().item() for p in net.residual.parameters() if p.grad is not None
        )
        return base, res

    others = [i for i in range(FRAMES) if i != KEY]
    base, res = grads(others, stop=True)
    assert base == 0.0 and res > 0.0
    base, _ = grads([KEY], stop=True)
    assert base > 0.0
    # without the stop-gradient the other frames would train the base generator too
    base, _ = grads(others, stop=False)
    assert base > 0.0


def test_other_frames_are_distinct_and_never_the_key_frame():
    torch.manual_seed(0)
    idx = other_frames(500, FRAMES, 3, "cpu")
    assert idx.shape == (500, 3)
    assert not (idx == KEY).any()
    assert all(len(set(row)) == 3 for row in idx.tolist())
    counts = torch.bincount(idx.flatten(), minlength=FRAMES).float()
    others = [i for i in range(FRAMES) if i != KEY]
    # 1,500 draws over 5 frames: 300 each expected
    assert counts[KEY] == 0 and (counts[others] - 300).abs().max() < 60, counts


def test_base_image_loss_is_the_eps_loss_of_the_base_on_the_chosen_frames():
    """Against the formula: x_t = sqrt(ᾱ) x + sqrt(1 - ᾱ) n on each chosen frame, the base's
    eps error weighted by min(SNR, γ) / SNR, mean over the images' elements."""
    cfg = tiny_config(base_frames=3)
    cfg.diffusion.loss_weighting, cfg.diffusion.min_snr_gamma = "min_snr", 5.0
    torch.manual_seed(0)
    method = build_method(cfg)
    randomise(method.net.base)
    video = moving_square(batch=2)
    idx = torch.tensor([[0, 4], [5, 1]])
    t = torch.tensor([10, 200, 600, 990])
    noise = torch.randn(4, CH, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    got = method.base_image_loss(video, idx, t=t, noise=noise)

    images = torch.stack([video[0, 0], video[0, 4], video[1, 5], video[1, 1]])
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)[t].float()[:, None, None, None]
    x_t = abar.sqrt() * images + (1 - abar).sqrt() * noise
    with torch.no_grad():
        pred = method.net.base(x_t, t.float()).sample
    snr = (abar / (1 - abar)).flatten()
    per_image = (pred - noise).square().mean(dim=(1, 2, 3)) * snr.clamp(max=5.0) / snr
    assert torch.allclose(got, per_image.mean(), rtol=1e-4), (got, per_image.mean())


def test_base_frames_add_the_image_loss_to_the_base_generator_only():
    """The combined loss is the paper's plus the image loss, each image weighted as the key
    frame (1 / T of the frames carrying loss); the image loss trains only the base."""
    method = tiny_method(base_frames=3)
    randomise(method.net)
    video = moving_square()
    torch.manual_seed(5)
    logs = method.loss(video)
    torch.manual_seed(5)
    paper = tiny_method(base_frames=1)
    paper.load_state_dict(method.state_dict())
    assert "base_loss" not in paper.loss(video)
    torch.manual_seed(5)
    main = paper.loss(video)["loss"]  # the same draws: the image loss draws after them
    assert torch.allclose(logs["loss"], main + logs["base_loss"] * 2 / FRAMES, rtol=1e-5)
    method.zero_grad()
    logs["base_loss"].backward()
    assert all(p.grad is None for p in method.net.residual.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.net.base.parameters())


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"base_frames": 0}, "between 1 and data.frames"),
        ({"base_frames": FRAMES + 1}, "between 1 and data.frames"),
        ({"base_frames": 2, "key_lambda": 0.5}, "key_lambda: 1"),
    ],
)
def test_bad_base_frames_are_refused(model: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        build_method(tiny_config(**model))


def test_residual_sees_frames_with_estimated_base_removed():
    method = tiny_method()
    net = method.net
    seen = []
    handle = net.residual.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x_t = torch.randn(1, FRAMES, CH, SIZE, SIZE)
    t = torch.tensor([500.0])
    scale = method._noise_scale(t)
    with torch.no_grad():
        net(x_t, t, scale)
        b_hat = net.base_noise(x_t[:, KEY], t)
    handle.remove()
    expected = remove_base(x_t, b_hat[:, None], net.lambdas, scale)
    assert torch.allclose(seen[0], expected, atol=1e-6)


class OracleBase(torch.nn.Module):
    """The exact base noise of a one-clip data set ``x_star``: ``(x_t^k - a x*^k) / s``."""

    def __init__(self, x_star: torch.Tensor, abar: torch.Tensor) -> None:
        super().__init__()
        self.x_star, self.abar = x_star, abar

    def coefs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        abar = self.abar[t.round().long()].reshape(-1, 1, 1, 1)
        return abar.sqrt(), (1 - abar).sqrt()

    def forward(self, sample, timestep, class_labels=None):
        a, s = self.coefs(timestep)
        return SimpleNamespace(sample=(sample - a * self.x_star[:, KEY]) / s)


class OracleResidual(OracleBase):
    """The exact residual noise once the exact base is removed."""

    def __init__(self, x_star: torch.Tensor, abar: torch.Tensor, lambdas: torch.Tensor) -> None:
        super().__init__(x_star, abar)
        self.lam = lambdas.reshape(1, -1, 1, 1, 1)

    def forward(self, x, t, frame_index, labels=None, extra=None):
        a, s = (c[:, None] for c in self.coefs(t))
        scale = (s * (1 - self.lam).sqrt()).clamp_min(1e-12)
        # the key frame's residual has weight sqrt(1 - 1) = 0
        return torch.where(self.lam < 1, (x - a * self.x_star) / scale, torch.zeros_like(x))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++", "dpm++sde", "unipc"])
def test_exact_generators_recover_the_clip(sampler):
    """With generators that know the answer, every sampler lands on it: the base removal,
    the recombination and the noise scales agree with the engine's schedule."""
    method = tiny_method()
    x_star = moving_square(1)
    abar = method.diffusion.alphas_cumprod
    method.net.base = OracleBase(x_star, abar)
    method.net.residual = OracleResidual(x_star, abar, method.net.lambdas)
    video = torch.zeros_like(x_star)
    nothing = torch.zeros(1, FRAMES, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    out = method.generate(video, nothing, sampler=sampler, steps=10, generator=g)
    assert torch.allclose(out, x_star, atol=1e-4)


# --------------------------------------------------------------------------- pretrained base


def _save_unet(path: Path, **extra) -> UNet2DModel:
    torch.manual_seed(3)
    unet = UNet2DModel(sample_size=SIZE, in_channels=CH, out_channels=CH, **TINY_BASE, **extra)
    unet.save_pretrained(path)
    return unet


def test_diffusers_folder_loads_as_base_generator(tmp_path):
    saved = _save_unet(tmp_path / "unet")
    method = tiny_method(base_pretrained=str(tmp_path / "unet"))
    for name, value in saved.state_dict().items():
        assert torch.equal(method.net.base.state_dict()[name], value), name
    # the config now describes the base by itself: a reload needs our weights only
    model = method.cfg.model
    assert model["base_pretrained"] is None
    assert model["base_loaded_from"] == str(tmp_path / "unet")
    assert model["base"]["block_out_channels"] == [8, 16]
    save_file(method.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "unet" / "config.json").unlink()
    reloaded = build_method(method.cfg)
    reloaded.load_state_dict(load_file(tmp_path / "model.safetensors"))
    x, t = torch.randn(1, FRAMES, CH, SIZE, SIZE), torch.tensor([10.0])
    with torch.no_grad():
        assert torch.allclose(reloaded.net(x, t, t), method.net(x, t, t), atol=1e-5)


def test_pretrained_base_gains_zero_class_embedding(tmp_path):
    saved = _save_unet(tmp_path / "unet")
    method = tiny_method(base_pretrained=str(tmp_path / "unet"), num_classes=4)
    base = method.net.base
    assert base.class_embedding.weight.shape[0] == 5 and not base.class_embedding.weight.any()
    key, t = torch.randn(2, CH, SIZE, SIZE), torch.tensor([5.0, 900.0])
    with torch.no_grad():  # starts out exactly as the unconditional pretrained model
        assert torch.allclose(
            base(key, t, class_labels=torch.tensor([1, 4])).sample, saved(key, t).sample
        )
    reloaded = build_method(method.cfg)  # rebuilt from the recorded architecture
    assert reloaded.net.base.class_embedding.weight.shape == base.class_embedding.weight.shape


def test_bad_pretrained_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        tiny_method(base_pretrained=str(tmp_path / "missing"))
    torch.manual_seed(0)
    UNet2DModel(sample_size=SIZE, in_channels=1, out_channels=1, **TINY_BASE).save_pretrained(
        tmp_path / "gray"
    )
    with pytest.raises(ConfigError, match="3-channel"):
        tiny_method(base_pretrained=str(tmp_path / "gray"))


def test_non_eps_prediction_is_refused():
    cfg = tiny_config()
    cfg.diffusion.prediction = "v"
    with pytest.raises(ConfigError, match="prediction=eps"):
        build_method(cfg)


# --------------------------------------------------------------------------- train and sample


def test_tiny_model_trains_on_one_batch():
    method = tiny_method(num_classes=3)
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    video, labels = moving_square(), torch.tensor([0, 2])
    losses = []
    for _ in range(25):
        torch.manual_seed(0)  # the same timesteps, noise and label dropout every step
        loss = method.loss(video, labels=labels)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_unconditional_samples():
    method = tiny_method()
    video = torch.zeros(2, FRAMES, CH, SIZE, SIZE)
    nothing = torch.zeros(2, FRAMES, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    out = method.generate(video, nothing, generator=g)
    assert out.shape == video.shape and torch.isfinite(out).all()
    again = method.generate(video, nothing, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="cond_frames"):
        method.generate(video, predict(FRAMES, 2, 2))
    with pytest.raises(ValueError, match="generate_long"):
        method.generate(torch.zeros(2, 8, CH, SIZE, SIZE), torch.zeros(2, 8, dtype=torch.bool))


def test_class_conditional_guidance():
    method = tiny_method(num_classes=3)
    randomise(method.net)
    video = torch.zeros(2, FRAMES, CH, SIZE, SIZE)
    nothing = torch.zeros(2, FRAMES, dtype=torch.bool)
    labels = torch.tensor([0, 2])
    base = CallCounter(method.net.base)
    guided = method.generate(
        video, nothing, labels=labels, guidance=3.0, generator=torch.Generator().manual_seed(0)
    )
    base.handle.remove()
    assert base.batches == [4] * 3  # label and null label in one call per step
    plain = method.generate(
        video, nothing, labels=labels, guidance=1.0, generator=torch.Generator().manual_seed(0)
    )
    other = method.generate(
        video,
        nothing,
        labels=torch.tensor([1, 1]),
        guidance=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert guided.shape == video.shape and torch.isfinite(guided).all()
    assert not torch.allclose(guided, plain)
    assert not torch.allclose(plain, other)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        method.generate(video, nothing, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        tiny_method().generate(video, nothing, labels=labels)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_known_frames_are_exact(sampler):
    method = tiny_method(cond_frames=True)
    randomise(method.net)
    video = moving_square()
    for known in (predict(FRAMES, 2, 2), infill(FRAMES, 1, batch=2)):
        g = torch.Generator().manual_seed(0)
        out = method.generate(video, known, sampler=sampler, steps=3, guidance=2.0, generator=g)
        assert torch.equal(out[known], video[known])
        assert not torch.equal(out[~known], video[~known])
    assert method.loss(video)["known_frames"] >= 0


def test_long_video_windows():
    method = tiny_method(num_classes=2)
    g = torch.Generator().manual_seed(0)
    out = method.generate_long(3 * FRAMES, batch=2, labels=torch.tensor([0, 1]), generator=g)
    assert out.shape == (2, 3 * FRAMES, CH, SIZE, SIZE) and torch.isfinite(out).all()
    short = method.generate_long(FRAMES + 2, batch=1)
    assert short.shape == (1, FRAMES + 2, CH, SIZE, SIZE)
    with pytest.raises(ValueError, match="cond_frames"):
        method.generate_long(12, overlap=2)


def test_long_video_overlap_continues_previous_window():
    method = tiny_method(cond_frames=True)
    randomise(method.net)
    windows = []
    original = method._sample

    def spy(diffusion, video, known, *args):
        out = original(diffusion, video, known, *args)
        windows.append((video.clone(), known.clone(), out))
        return out

    method._sample = spy
    out = method.generate_long(14, overlap=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 14, CH, SIZE, SIZE) and len(windows) == 3
    for (_, _, prev), (given, known, now) in zip(windows, windows[1:]):
        assert known[:, :2].all() and not known[:, 2:].any()
        assert torch.equal(given[:, :2], prev[:, -2:])
        assert torch.equal(now[:, :2], prev[:, -2:])


def test_shared_rollout_extends_a_video():
    method = tiny_method(cond_frames=True)
    video = torch.zeros(1, 2 * FRAMES + 1, CH, SIZE, SIZE)
    video[:, :2] = moving_square(1)[:, :2]
    known = predict(2 * FRAMES + 1, 2, 1)
    out = rollout(method, video, known, generator=torch.Generator().manual_seed(0))
    assert out.shape == video.shape and torch.equal(out[:, :2], video[:, :2])
    assert torch.isfinite(out).all()


def test_engine_noise_fn_is_decomposed():
    method = tiny_method(lam=0.5)
    assert isinstance(method.diffusion.noise_fn, DecomposedNoise)
    assert isinstance(method.diffusion, VideoDiffusion) and not method.diffusion.known_in_input


def test_trainer_runs_class_conditional_with_pretrained_base_and_exports(tmp_path):
    """Through the shared trainer: (clip, label) batches reach ``loss(labels=)``, the preview
    samples whole clips, and the export reloads without the pretrained folder."""
    torch.manual_seed(0)
    UNet2DModel(sample_size=SIZE, in_channels=1, out_channels=1, **TINY_BASE).save_pretrained(
        tmp_path / "unet"
    )
    cfg = from_dict(
        Config,
        {
            "method": "videofusion",
            "model": {
                **TINY_RESIDUAL,
                "base_pretrained": str(tmp_path / "unet"),
                "num_classes": 2,
            },
            "data": {
                "name": "moving-digits",
                "frames": FRAMES,
                "size": SIZE,
                "channels": 1,
                "options": {"digit_size": 8},
            },
            "train": {
                "steps": 2,
                "batch_size": 2,
                "log_every": 1,
                "ckpt_every": 2,
                "sample_every": 2,
                "out": str(tmp_path / "run"),
            },
            "sample": {"sampler": "ddim", "steps": 2},
        },
    )
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (4, FRAMES, SIZE, SIZE, 1), generator=g, dtype=torch.uint8)
    run = train(cfg, dataset=[(clip, i % 2) for i, clip in enumerate(clips)], progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    shutil.rmtree(tmp_path / "unet")
    method = load_pretrained(run / "export")
    assert isinstance(method, VideoFusion) and method.net.base.class_embedding is not None
    out = method.generate(
        torch.zeros(2, FRAMES, 1, SIZE, SIZE),
        torch.zeros(2, FRAMES, dtype=torch.bool),
        labels=torch.tensor([0, 1]),
        guidance=2.0,
    )
    assert out.shape == (2, FRAMES, 1, SIZE, SIZE)


# --------------------------------------------------------------------------- evaluation


def record_labels(method: VideoFusion, calls: list) -> None:
    """Wrap the real ``generate`` of ``method`` to record the labels of every call."""
    generate = method.generate

    def recording(video, known, **kwargs):
        labels = kwargs.get("labels")
        calls.append(None if labels is None else labels.tolist())
        return generate(video, known, **kwargs)

    method.generate = recording


def labelled_evaluation(method: VideoFusion, clips: list, **kw) -> dict:
    settings = dict(task="predict", task_kwargs={"known": 2}, metrics=("ssim", "psnr"))
    settings.update(best_of=1, num_clips=len(clips), batch_size=2, steps=2, device="cpu")
    return evaluate_run(method, clips, **{**settings, **kw})


def random_clips(n: int, frames: int = FRAMES) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, frames, SIZE, SIZE, CH), generator=g, dtype=torch.uint8)


def test_evaluation_samples_each_test_clip_with_its_class_in_every_window_and_sample():
    method = tiny_method(num_classes=3, cond_frames=True)
    calls: list = []
    record_labels(method, calls)
    classes = [2, 0, 1, 1, 0]
    clips = random_clips(5, frames=FRAMES + 3)  # two rollout windows per sample
    pairs = [(clip, torch.tensor(y)) for clip, y in zip(clips, classes)]
    result = labelled_evaluation(method, pairs, best_of=2)
    # batches of 2 clips x 2 samples x 2 windows
    assert calls == [[2, 0]] * 4 + [[1, 1]] * 4 + [[0]] * 4
    assert result["protocol"]["labels"] == TEST_LABELS == "test clips' classes"
    assert all(m["protocol"]["labels"] == TEST_LABELS for m in result["metrics"].values())


def test_evaluation_of_a_class_conditional_model_without_labels_uses_the_null_label():
    method = tiny_method(num_classes=3, cond_frames=True)
    calls: list = []
    record_labels(method, calls)
    with pytest.warns(UserWarning, match="data.options.labels"):
        result = labelled_evaluation(method, list(random_clips(2)))
    assert calls == [None] and result["protocol"]["labels"] == NULL_LABEL
    # an unconditional model (it refuses labels) on labelled clips ignores them
    pairs = [(clip, torch.tensor(1)) for clip in random_clips(2)]
    result = labelled_evaluation(tiny_method(cond_frames=True), pairs)
    assert result["protocol"]["labels"] is None


def test_videogen_eval_labels_the_clips_of_a_labelled_video_folder(tmp_path, monkeypatch):
    """Through ``evaluate_path`` (``videogen eval``): a folder with ``data.options.labels``
    gives each clip its video's class; dark videos are class 0, bright ones class 1."""
    import numpy as np

    from videogen.io import write_video

    folder = tmp_path / "ucf"
    for cls, level in (("ApplyLipstick", 40), ("Biking", 200)):
        for g in (1, 2):
            frames = np.full((FRAMES + 2, SIZE, SIZE, CH), level, dtype=np.uint8)
            write_video(folder / f"v_{cls}_g{g:02d}_c01.avi", frames)
    method = tiny_method(num_classes=2, cond_frames=True)
    method.cfg.data.name, method.cfg.data.options = str(folder), {"labels": True}
    method.save_pretrained(tmp_path / "export")
    seen: list[tuple[list[float], list[int]]] = []
    generate = VideoFusion.generate

    def recording(self, video, known, **kwargs):
        seen.append((video[:, 0].mean(dim=(1, 2, 3)).tolist(), kwargs["labels"].tolist()))
        return generate(self, video, known, **kwargs)

    monkeypatch.setattr(VideoFusion, "generate", recording)
    evaluate_path(
        tmp_path / "export",
        task="predict",
        task_kwargs={"known": 2},
        metrics=["ssim"],
        num_clips=4,
        batch_size=2,
        steps=2,
        device="cpu",
        out_dir=tmp_path / "eval",
    )
    brightness = [b for bs, _ in seen for b in bs]
    labels = [y for _, ys in seen for y in ys]
    assert len(seen) == 2 and sorted(labels) == [0, 0, 1, 1]
    assert labels == [int(b > 0) for b in brightness]  # the known frame is in [-1, 1]
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["protocol"]["labels"] == TEST_LABELS
    assert saved["protocol"]["data"]["options"] == {"labels": True}


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_config_files_load(path):
    cfg = load_config(path)
    assert cfg.method == "videofusion" and cfg.paper
    assert cfg.diffusion.prediction == "eps"


def test_config_files_exist():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {
        "ucf101_64.yaml",
        "ucf101_64_class.yaml",
        "ucf101_128.yaml",
        "ucf101_128_class.yaml",
        "sky_timelapse_128.yaml",
        "taichi_128.yaml",
    } <= names


def test_class_conditional_training_and_sampling_from_a_labelled_video_folder(tmp_path):
    """UCF-101-named files give (clip, class) pairs; the trainer passes the labels on and
    `videogen sample --label` generates a class."""
    import numpy as np

    from videogen.cli import main
    from videogen.data import build_dataset
    from videogen.io import write_video
    from videogen.train import train

    folder = tmp_path / "ucf"
    for cls, level in (("ApplyLipstick", 40), ("Biking", 200)):
        for g in (1, 2):
            frames = np.full((FRAMES + 2, 16, 16, 3), level, dtype=np.uint8)
            write_video(folder / f"v_{cls}_g{g:02d}_c01.avi", frames)
    cfg = tiny_config(num_classes=2)
    cfg.data.name, cfg.data.size, cfg.data.options = str(folder), SIZE, {"labels": True}
    test = build_dataset(cfg.data, "test")
    pairs = [test[i] for i in range(len(test))]
    for clip, label in pairs:  # the dark class is ApplyLipstick (0), the bright one Biking (1)
        assert int(label) == int(clip.float().mean() > 120)
    cfg.train.steps, cfg.train.batch_size, cfg.train.sample_every = 2, 2, 0
    cfg.train.out = str(tmp_path / "run")
    run = train(cfg, progress=False)
    gif = tmp_path / "biking.gif"
    assert (
        main(
            [
                "sample",
                str(run),
                "--task",
                "unconditional",
                "--label",
                "1",
                "--device",
                "cpu",
                "--quiet",
                "-o",
                str(gif),
            ]
        )
        == 0
    )
    assert gif.is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_training_with_cuda_graphs_on_gpu(tmp_path):
    """Regression: under ``train.compile_mode=reduce-overhead`` the first replay failed (the
    decomposed noise's cached λ lived in the CUDA graph's memory; BENCHMARKS.md, session 8)."""
    cfg = tiny_config()
    cfg.data.name, cfg.data.channels = "moving-digits", 1
    cfg.train.steps, cfg.train.batch_size, cfg.train.log_every = 4, 2, 1
    cfg.train.sample_every, cfg.train.ckpt_every = 0, 100
    cfg.train.compile, cfg.train.compile_mode = True, "reduce-overhead"
    cfg.train.out = str(tmp_path / "run")
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (8, FRAMES, SIZE, SIZE, 1), generator=g, dtype=torch.uint8)
    run = train(cfg, dataset=list(clips), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
