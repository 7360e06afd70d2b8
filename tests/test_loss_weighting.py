"""The fast-recipe options of the diffusion process, against their published formulas:
min-SNR-γ loss weighting (Hang et al. 2023), zero terminal SNR (Lin et al. 2024) and
logit-normal timesteps (Esser et al. 2024)."""

import math

import numpy as np
import pytest
import torch

from videogen import tasks
from videogen.config import ConfigError, DiffusionConfig
from videogen.diffusion import VideoDiffusion, alphas_cumprod, make_scheduler


def linear_abar(timesteps=1000, start=1e-4, end=0.02):
    """DDPM's linear schedule, computed here in float64 from its definition."""
    betas = np.linspace(start, end, timesteps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


@pytest.mark.parametrize(
    "prediction, formula",
    [
        ("eps", lambda snr, g: min(snr, g) / snr),
        ("v", lambda snr, g: min(snr, g) / (snr + 1)),
        ("x0", lambda snr, g: min(snr, g)),
    ],
)
def test_min_snr_weight_is_the_published_formula(prediction, formula):
    gamma = 5.0
    cfg = DiffusionConfig(prediction=prediction, loss_weighting="min_snr", min_snr_gamma=gamma)
    proc = VideoDiffusion(cfg)
    # diffusers builds the schedule in float32: 1 - ᾱ near t = 0 differs from the float64
    # definition by ~2e-4 relative, so the formula is checked on the schedule itself
    abar = alphas_cumprod(cfg).numpy()
    np.testing.assert_allclose(1 - abar, 1 - linear_abar(), rtol=5e-4)
    t = torch.tensor([0, 3, 40, 150, 500, 999])
    got = proc.loss_weight(t)
    for ti, w in zip(t.tolist(), got.tolist()):
        snr = abar[ti] / (1 - abar[ti])
        assert w == pytest.approx(formula(snr, gamma), rel=1e-4), ti
    if prediction == "eps":  # below SNR = γ the eps loss keeps its plain weight
        assert got[-2:].tolist() == [1.0, 1.0]


def test_min_snr_loss_is_the_weighted_mean_of_the_masked_squared_error():
    cfg = DiffusionConfig(prediction="v", loss_weighting="min_snr", min_snr_gamma=5.0)
    proc = VideoDiffusion(cfg, known_in_input=False)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((2, 4, 1, 3, 3), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    known = tasks.predict(4, 1, 2)
    t = torch.tensor([2, 700])

    def zero(x_t, tt, cond, kn):
        return torch.zeros_like(x_t)

    got = proc.loss(zero, x0, known, t=t, noise=noise)["loss"].item()
    abar = alphas_cumprod(cfg).numpy()
    total, count = 0.0, 0
    for b, ti in enumerate(t.tolist()):
        a, s = math.sqrt(abar[ti]), math.sqrt(1 - abar[ti])
        v = a * noise[b].double() - s * x0[b].double()
        snr = abar[ti] / (1 - abar[ti])
        w = min(snr, 5.0) / (snr + 1)
        total += w * v[1:].square().sum().item()  # the three unknown frames
        count += v[1:].numel()
    assert got == pytest.approx(total / count, rel=1e-5)


def test_no_weighting_leaves_the_plain_loss():
    proc = VideoDiffusion(DiffusionConfig(prediction="eps"))
    assert torch.equal(proc.loss_weight(torch.tensor([0, 999])), torch.ones(2))


def test_zero_terminal_snr_rescales_sqrt_abar_linearly_to_zero():
    cfg = DiffusionConfig(prediction="v", zero_terminal_snr=True)
    got = alphas_cumprod(cfg).numpy()
    root = np.sqrt(alphas_cumprod(DiffusionConfig()).numpy())
    first, last = root[0], root[-1]
    # Lin et al. 2024, Algorithm 1: shift so the last is 0, scale so the first is unchanged
    expected = ((root - last) * first / (first - last)) ** 2
    assert got[-1] == 0.0
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    proc = VideoDiffusion(cfg)
    assert proc.snr(torch.tensor([999])).item() == 0.0


def test_zero_terminal_snr_needs_v_and_a_sampler_that_takes_it():
    with pytest.raises(ConfigError, match="prediction=v"):
        VideoDiffusion(DiffusionConfig(prediction="eps", zero_terminal_snr=True))
    cfg = DiffusionConfig(prediction="v", zero_terminal_snr=True)
    with pytest.raises(ValueError, match="'heun' cannot run with diffusion.zero_terminal_snr"):
        make_scheduler("heun", cfg)
    assert make_scheduler("dpm++", cfg).alphas_cumprod[-1] < 1e-6


def test_zero_terminal_snr_samples_stay_finite_from_pure_noise():
    cfg = DiffusionConfig(prediction="v", zero_terminal_snr=True)
    proc = VideoDiffusion(cfg)
    video = torch.zeros(1, 3, 1, 4, 4)
    known = tasks.predict(3, 1, 1)
    video[:, 0] = 0.5

    def denoiser(x_t, t, cond, kn):  # v of the clean clip 0.5 everywhere
        idx = t.round().long()
        a, s = proc._coefs(idx, x_t)
        x0 = torch.full_like(x_t, 0.5)
        return a * (x_t - a * x0) / s.clamp_min(1e-12) - s * x0

    for sampler in ("ddpm", "ddim", "dpm++"):
        out = proc.sample(denoiser, video, known, sampler=sampler, steps=10)
        assert torch.isfinite(out).all(), sampler
        assert torch.allclose(out[:, 1:], torch.full_like(out[:, 1:], 0.5), atol=1e-3), sampler


def test_min_snr_gamma_must_be_positive():
    with pytest.raises(ConfigError, match="min_snr_gamma"):
        VideoDiffusion(DiffusionConfig(loss_weighting="min_snr", min_snr_gamma=0.0))


def test_logit_normal_timesteps_are_the_published_formula():
    cfg = DiffusionConfig(timestep_sampling="logit_normal", timestep_mean=-0.5, timestep_std=1.2)
    proc = VideoDiffusion(cfg)
    got = proc.sample_timesteps(6, "cpu", torch.Generator().manual_seed(3))
    n = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    expected = [math.floor(1000 / (1 + math.exp(-(-0.5 + 1.2 * v)))) for v in n]
    assert got.dtype == torch.long
    assert got.tolist() == expected


def test_logit_normal_timesteps_centre_on_the_sigmoid_of_the_mean():
    g = torch.Generator().manual_seed(0)
    for mean in (0.0, -1.0):
        cfg = DiffusionConfig(timestep_sampling="logit_normal", timestep_mean=mean)
        t = VideoDiffusion(cfg).sample_timesteps(20_000, "cpu", g).double()
        assert t.min() >= 0 and t.max() <= 999
        # the median of sigmoid(N(m, 1)) is sigmoid(m): 500 and 268.9 steps of 1000
        assert t.median().item() == pytest.approx(1000 / (1 + math.exp(-mean)), abs=8)
        # 4.55% of N(0, 1) lies beyond 2 std either side: sigmoid(±2) puts those draws at
        # t < 119 or t >= 881, where a uniform draw lands 23.8% of the time
        if mean == 0.0:
            ends = ((t < 119) | (t >= 881)).double().mean().item()
            assert ends == pytest.approx(0.0455, abs=0.006)
    uniform = VideoDiffusion(DiffusionConfig()).sample_timesteps(20_000, "cpu", g).double()
    ends = ((uniform < 119) | (uniform >= 881)).double().mean().item()
    assert ends == pytest.approx(0.238, abs=0.01)


def test_logit_normal_std_must_be_positive():
    with pytest.raises(ConfigError, match="timestep_std"):
        VideoDiffusion(DiffusionConfig(timestep_sampling="logit_normal", timestep_std=0.0))
