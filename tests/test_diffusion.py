import pytest
import torch

from videogen import tasks
from videogen.config import DiffusionConfig
from videogen.diffusion import SAMPLERS, VideoDiffusion


def make_clip(seed=0, shape=(2, 6, 1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def oracle_for(process, x0):
    """A perfect eps-predictor for one fixed clean clip."""

    def denoiser(x_t, t, cond, known):
        reps = x_t.shape[0] // x0.shape[0]
        a, s = process._coefs(t.round().long(), x_t)
        return (x_t - a * x0.repeat(reps, 1, 1, 1, 1)) / s

    return denoiser


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_loss_is_zero_for_the_exact_target_and_only_on_unknown_frames(prediction):
    proc = VideoDiffusion(DiffusionConfig(prediction=prediction))
    x0 = make_clip()
    known = tasks.predict(6, 2, 2)
    noise = torch.randn_like(x0)
    t = torch.tensor([10, 900])

    def exact(x_t, tt, cond, kn):
        return proc.target(x0, t, noise)

    assert proc.loss(exact, x0, known, t=t, noise=noise)["loss"] < 1e-10

    def wrong_on_known(x_t, tt, cond, kn):
        out = proc.target(x0, t, noise).clone()
        out[:, :2] += 5.0  # garbage on the known frames carries no loss
        return out

    assert proc.loss(wrong_on_known, x0, known, t=t, noise=noise)["loss"] < 1e-10

    def wrong_on_unknown(x_t, tt, cond, kn):
        out = proc.target(x0, t, noise).clone()
        out[:, 2:] += 1.0
        return out

    assert proc.loss(wrong_on_unknown, x0, known, t=t, noise=noise)["loss"] == pytest.approx(1.0)


def test_known_frames_are_clean_in_the_input_or_in_cond():
    x0 = make_clip()
    known = tasks.predict(6, 3, 2)
    seen = {}

    def spy(x_t, t, cond, kn):
        seen.update(x_t=x_t, cond=cond, known=kn)
        return torch.zeros_like(x_t)

    VideoDiffusion(DiffusionConfig(), known_in_input=True).loss(spy, x0, known)
    assert torch.equal(seen["x_t"][:, :3], x0[:, :3])
    assert not torch.equal(seen["x_t"][:, 3:], x0[:, 3:])
    assert torch.equal(seen["cond"][:, :3], x0[:, :3]) and seen["cond"][:, 3:].abs().sum() == 0
    VideoDiffusion(DiffusionConfig(), known_in_input=False).loss(spy, x0, known)
    assert not torch.equal(seen["x_t"][:, :3], x0[:, :3])


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_recovers_the_clip_from_a_perfect_denoiser(sampler):
    proc = VideoDiffusion(DiffusionConfig())
    x0 = make_clip(1)
    known = tasks.infill(6, 1, 1, 2)
    out = proc.sample(
        oracle_for(proc, x0),
        x0,
        known,
        sampler=sampler,
        steps=25,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(out[:, 0], x0[:, 0]) and torch.equal(out[:, -1], x0[:, -1])
    assert (out - x0).abs().max() < (0.1 if sampler == "deis" else 1e-3)


def test_sampler_reimposes_known_frames_at_every_step():
    proc = VideoDiffusion(DiffusionConfig(), known_in_input=True)
    x0 = make_clip(2)
    known = tasks.predict(6, 2, 2)
    inputs = []

    def spy(x_t, t, cond, kn):
        inputs.append(x_t.clone())
        return torch.zeros_like(x_t)

    proc.sample(spy, x0, known, sampler="ddim", steps=5)
    assert len(inputs) == 5
    for x_t in inputs:
        assert torch.equal(x_t[:, :2], x0[:, :2])


def test_guidance_batches_a_conditional_and_an_unconditional_branch():
    proc = VideoDiffusion(DiffusionConfig())
    x0 = make_clip(3)
    known = tasks.predict(6, 2, 2)
    calls = []

    def spy(x_t, t, cond, kn):
        calls.append(kn.clone())
        return torch.zeros_like(x_t)

    proc.sample(spy, x0, known, sampler="ddim", steps=3, guidance=2.0)
    assert len(calls) == 3
    assert calls[0].shape == (4, 6)
    assert calls[0][:2].equal(known) and not calls[0][2:].any()


def test_structured_noise_reaches_ancestral_steps():
    drawn = []

    def noise_fn(shape, *, generator=None, device="cpu", dtype=torch.float32):
        drawn.append(shape)
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    proc = VideoDiffusion(DiffusionConfig(), noise_fn=noise_fn)
    x0 = make_clip(4)
    proc.sample(oracle_for(proc, x0), x0, tasks.unconditional(6, 2), sampler="ddpm", steps=4)
    assert len(drawn) == 1 + 4  # the initial noise and one draw per step
    with pytest.raises(ValueError, match="draws its own"):
        proc.sample(oracle_for(proc, x0), x0, tasks.unconditional(6, 2), sampler="euler_a", steps=2)
