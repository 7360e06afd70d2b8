"""VideoFlow as a method: exact bits per pixel, training, sampling, rollout, configs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from videogen.config import Config, ConfigError, from_dict, load_config
from videogen.cuda_graphs import CudaGraphed
from videogen.methods import build_method
from videogen.methods.videoflow import VideoFlow
from videogen.models.videoflow_layers import ActNorm, to_flow
from videogen.models.videoflow_prior import gaussian_log_prob
from videogen.tasks import predict

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "videoflow"


def tiny(frames: int = 4, sample: dict[str, Any] | None = None, **model: Any) -> VideoFlow:
    """Levels 2, 2 steps, width 16, 16x16 RGB frames, 2 frames of history."""
    settings = {
        "levels": 2,
        "steps_per_level": 2,
        "coupling_width": 16,
        "prior_depth": 1,
        "prior_width": 16,
        "cond_frames": 2,
        "context_frames": 2,
    }
    settings.update(model)
    data = {"frames": frames, "size": 16, "channels": 3}
    raw = {"method": "videoflow", "data": data, "model": settings, "sample": sample or {}}
    cfg = from_dict(Config, raw)
    method = build_method(cfg)
    assert isinstance(method, VideoFlow)
    return method


def moving_squares(frames: int = 4) -> torch.Tensor:
    """Two clips, a red square moving right and a green one moving left, on black."""
    video = -torch.ones(2, frames, 3, 16, 16)
    for t in range(frames):
        video[0, t, 0, 4:8, 2 + 2 * t : 6 + 2 * t] = 1
        video[1, t, 1, 8:12, 10 - 2 * t : 14 - 2 * t] = 1
    return video


def initialised(method: VideoFlow, video: torch.Tensor) -> VideoFlow:
    with torch.no_grad():
        method.loss(video)
    return method.eval()


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- likelihood


def test_bits_per_pixel_finite_and_positive() -> None:
    torch.manual_seed(0)
    method = tiny()
    out = method.loss(moving_squares())
    assert set(out) >= {"loss", "bpd"}
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    bits = method.log_likelihood(moving_squares())
    assert bits.shape == (2,) and torch.isfinite(bits).all() and (bits > 0).all()


def test_first_loss_initialises_every_actnorm() -> None:
    torch.manual_seed(0)
    method = tiny()
    norms = [m for m in method.modules() if isinstance(m, ActNorm)]
    assert norms and not any(bool(m.initialized) for m in norms)
    method.loss(moving_squares())
    assert all(bool(m.initialized) for m in norms)
    # a resumed model keeps its initialisation instead of taking it from its first batch
    torch.manual_seed(1)
    resumed = tiny()
    resumed.load_state_dict(method.state_dict())
    resumed.loss(torch.rand(2, 4, 3, 16, 16) * 2 - 1)
    for a, b in zip(method.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def _reference_frame_bits(method: VideoFlow, video: torch.Tensor, first: int) -> torch.Tensor:
    """The likelihood frame by frame, with the priors called one frame at a time."""
    n = method.model_cfg.cond_frames
    noise = torch.rand(video.shape, generator=_seeded(3))
    x = to_flow(video, 8, noise)
    codes = [method.glow.encode(x[:, t]) for t in range(video.shape[1])]
    bits = []
    for t in range(first, video.shape[1]):
        latents, contexts, log_p = codes[t]
        for level, prior in enumerate(method.priors):
            history = None
            if t >= n:
                history = torch.stack([codes[s][0][level] for s in range(t - n, t)], 1)
            context = contexts[level] if level < len(contexts) else None
            mean, log_scale = prior(history, context, video.shape[0])
            log_p = log_p + gaussian_log_prob(latents[level], mean, log_scale)
        bits.append(8 - log_p / (math.prod(video.shape[2:]) * math.log(2)))
    return torch.stack(bits, 1)


@pytest.mark.parametrize("first", [0, 2])
def test_frame_bits_match_a_frame_by_frame_reference(first: int) -> None:
    torch.manual_seed(0)
    video = moving_squares(5)
    method = initialised(tiny(frames=5), video)
    with torch.no_grad():
        # perturb the zero-initialised prior outputs so that history and context matter
        for p in method.priors.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        fast = method.frame_bits(video, first=first, generator=_seeded(3))
        slow = _reference_frame_bits(method, video, first)
    assert fast.shape == (2, 5 - first)
    assert torch.allclose(fast, slow, atol=1e-4)


def test_likelihood_is_causal() -> None:
    torch.manual_seed(0)
    video = moving_squares(5)
    method = initialised(tiny(frames=5), video)
    changed = video.clone()
    changed[:, -1] = -changed[:, -1]
    with torch.no_grad():
        a = method.frame_bits(video, generator=_seeded(1))
        b = method.frame_bits(changed, generator=_seeded(1))
    assert torch.allclose(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_loss_decreases_on_a_repeated_batch() -> None:
    torch.manual_seed(0)
    method = tiny()
    video = moving_squares()
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = method.loss(video)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.8


@pytest.mark.parametrize(
    "model",
    [
        {"prior": "pointwise"},
        {"prior": "conv", "prior_activation": "relu"},
        {"prior": "conv3d", "coupling": "additive", "latent_skip": False, "cond_frames": 1},
        {"n_bits": 5, "train_frames": 3, "coupling_activation": "gated"},
    ],
)
def test_variants_train_and_sample(model: dict[str, Any]) -> None:
    torch.manual_seed(0)
    method = tiny(**model)
    loss = method.loss(moving_squares())["loss"]
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    grads = [p.grad for p in method.glow.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    method.eval()
    out = method.generate(moving_squares(), predict(4, 2, batch=2), generator=_seeded())
    assert torch.isfinite(out).all()
    step = 2 ** (8 - method.model_cfg.n_bits)
    levels = (out[:, 2:] + 1) * 127.5 / step
    assert torch.allclose(levels, levels.round(), atol=1e-3)


# --------------------------------------------------------------------------- sampling


def test_generate_keeps_known_frames_and_range() -> None:
    torch.manual_seed(0)
    method = initialised(tiny(), moving_squares())
    video = torch.rand(2, 4, 3, 16, 16) * 2 - 1  # off the 8-bit grid: must come back untouched
    known = predict(4, 2, batch=2)
    out = method.generate(video, known, temperature=1.0, generator=_seeded())
    assert out.shape == video.shape
    assert torch.equal(out[:, :2], video[:, :2])
    assert out.min() >= -1 and out.max() <= 1
    pixels = (out[:, 2:] + 1) * 127.5
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)


def test_temperature_zero_is_deterministic_and_noise_follows_the_generator() -> None:
    torch.manual_seed(0)
    method = initialised(tiny(), moving_squares())
    video, known = moving_squares(), predict(4, 2, batch=2)
    a = method.generate(video, known, temperature=0.0)
    b = method.generate(video, known, temperature=0.0)
    assert torch.equal(a, b)
    c = method.generate(video, known, temperature=1.0, generator=_seeded(5))
    d = method.generate(video, known, temperature=1.0, generator=_seeded(5))
    e = method.generate(video, known, temperature=1.0, generator=_seeded(6))
    assert torch.equal(c, d)
    assert not torch.equal(c, e)


def test_rollout_beyond_the_training_window() -> None:
    torch.manual_seed(0)
    method = initialised(tiny(), moving_squares())
    long = torch.zeros(2, 11, 3, 16, 16)
    long[:, :3] = moving_squares()[:, :3]
    out = method.generate(long, predict(11, 3, batch=2), temperature=0.6, generator=_seeded())
    assert out.shape == (2, 11, 3, 16, 16)
    assert torch.equal(out[:, :3], long[:, :3])
    assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1


def test_unconditional_generation_and_rejected_patterns() -> None:
    torch.manual_seed(0)
    method = initialised(tiny(), moving_squares())
    video = moving_squares()
    out = method.generate(video, predict(4, 0, batch=2), temperature=0.5, generator=_seeded())
    assert out.shape == video.shape and out.min() >= -1 and out.max() <= 1
    gap = torch.tensor([[True, False, True, False]] * 2)
    assert method.supported_known(gap) is not None
    with pytest.raises(ValueError, match="first k frames"):
        method.generate(video, gap)
    uneven = torch.tensor([[True, False, False, False], [True, True, False, False]])
    assert method.supported_known(uneven) is not None
    with pytest.raises(ValueError, match="VideoFlow expects video"):
        method.generate(video[:, :, :1], predict(4, 2, batch=2))


# --------------------------------------------------------------------------- configs


def test_bad_model_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match="data.size=20"):
        VideoFlow(from_dict(Config, {"method": "videoflow", "data": {"size": 20}}))
    with pytest.raises(ConfigError, match="model.couplings"):
        tiny(couplings="affine")
    with pytest.raises(ConfigError, match="model.context_frames"):
        tiny(context_frames=4)
    with pytest.raises(ConfigError, match="model.log_scale_bound"):
        tiny(log_scale_bound=0.0)


def test_log_scale_bound_limits_every_prior_scale() -> None:
    torch.manual_seed(0)
    method = initialised(tiny(log_scale_bound=0.5), moving_squares())
    with torch.no_grad():
        for p in method.parameters():
            p.add_(torch.randn(p.shape) * 3)  # push the log-scales far out
        history = torch.randn(2, 2, *method.latent_shapes[-1]) * 10
        _, log_scale = method.priors[-1](history, None, 2)
    assert log_scale.abs().max() <= 0.5
    assert log_scale.abs().max() > 0.4  # reached: the bound, not the network, limits it


def _perturbed_pair(**model: Any) -> tuple[VideoFlow, VideoFlow]:
    """The same initialised tiny model twice, with and without ``model``, weights perturbed."""
    torch.manual_seed(0)
    plain = initialised(tiny(), moving_squares())
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(torch.randn(p.shape) * 0.3)
    other = tiny(**model)
    other.load_state_dict(plain.state_dict())
    return plain, other.eval()


def test_per_channel_scale_is_the_spatial_mean_of_the_element_scale() -> None:
    plain, per_channel = _perturbed_pair(prior_scale_per_channel=True)
    torch.manual_seed(1)
    with torch.no_grad():
        for level, shape in enumerate(plain.latent_shapes):
            history = torch.randn(2, 2, *shape)
            context = None if level == len(plain.latent_shapes) - 1 else torch.randn(2, *shape)
            mean_a, log_a = plain.priors[level].dynamics(
                history, None if context is None else plain.priors[level].marginal(context)
            )
            mean_b, log_b = per_channel.priors[level](history, context, 2)
            expected = 10.0 * torch.tanh(log_a.mean((2, 3), keepdim=True) / 10.0)
            # the mean is untouched: the network's plus z_{t-1} (latent_skip, the default)
            torch.testing.assert_close(mean_b, mean_a + history[:, -1])
            torch.testing.assert_close(log_b, expected.expand_as(log_b))
            assert log_a.std((2, 3)).min() > 0  # the element-wise scale did vary over space


def test_latent_skip_prior_starts_at_the_previous_latent() -> None:
    torch.manual_seed(0)
    method = initialised(tiny(latent_skip=True), moving_squares())
    with torch.no_grad():
        for level, shape in enumerate(method.latent_shapes):
            history = torch.randn(2, 2, *shape)
            context = None if level == len(method.latent_shapes) - 1 else torch.randn(2, *shape)
            mean, log_scale = method.priors[level](history, context, 2)
            assert torch.equal(mean, history[:, -1])  # zero-initialised outputs: exactly z_{t-1}
            assert torch.equal(log_scale, torch.zeros_like(log_scale))  # and unit scale


@pytest.mark.parametrize(
    ("name", "params", "known", "frames"),
    [("bair", 67_457_276, 3, 13), ("stochastic_shapes", 67_984_804, 1, 3)],
)
def test_paper_configs_build(name: str, params: int, known: int, frames: int) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.method == "videoflow" and cfg.paper
    assert (cfg.model["context_frames"], cfg.data.frames) == (known, frames)
    with torch.device("meta"):  # count parameters without allocating 67M of them
        method = build_method(cfg)
    assert sum(p.numel() for p in method.parameters()) == params
    assert method.latent_shapes == [(6, 32, 32), (12, 16, 16), (48, 8, 8)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_train_step_and_sample() -> None:
    torch.manual_seed(0)
    method = tiny().cuda()
    video = moving_squares().cuda()
    loss = method.loss(video)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    method.eval()
    out = method.generate(video, predict(4, 2, batch=2).cuda(), generator=_seeded())
    assert torch.equal(out[:, :2], video[:, :2]) and torch.isfinite(out).all()


def _ready_to_sample() -> tuple[VideoFlow, torch.Tensor, torch.Tensor]:
    """A tiny model with initialised actnorms in eval mode, a clip and a 2-known mask."""
    torch.manual_seed(0)
    method = tiny()
    video = moving_squares()
    method.loss(video)  # actnorm initialisation
    method.eval()
    return method, video, predict(4, 2, batch=2)


def test_graph_sampler_on_cpu_samples_as_eager() -> None:
    method, video, known = _ready_to_sample()
    eager = method.generate(video, known, generator=_seeded())
    method.graph_sampler()  # CPU tensors: the CUDA-graph wrapper calls the step directly
    assert torch.equal(method.generate(video, known, generator=_seeded()), eager)


def test_compiled_sampler_samples_as_eager_and_follows_training() -> None:
    """Regression: compiled code must read the folded layers prepared eagerly (tracing their
    storage check broke the graph at every layer; under CUDA graphs, folds made inside the
    compiled region were overwritten by the next replay)."""
    method, video, known = _ready_to_sample()
    torch._dynamo.reset()
    method.compile_sampler(backend="eager", fullgraph=True)  # fullgraph: a graph break fails
    compiled = method.generate(video, known, generator=_seeded())
    method.eager_sampler()
    torch.testing.assert_close(compiled, method.generate(video, known, generator=_seeded()))
    with torch.no_grad():
        for p in method.parameters():
            p.mul_(1.01)  # "training": generate must refresh what the compiled code reads
    method.compile_sampler(backend="eager", fullgraph=True)
    compiled = method.generate(video, known, temperature=0.0)
    method.eager_sampler()
    torch.testing.assert_close(compiled, method.generate(video, known, temperature=0.0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("bf16", [False, True])
def test_cuda_graph_sampler_matches_eager(bf16: bool) -> None:
    torch.manual_seed(0)
    method = tiny(frames=6).cuda()
    video = torch.cat([moving_squares(), moving_squares()[:, :2]], 1).cuda()
    method.loss(video)  # actnorm initialisation
    method.eval()
    known = predict(6, 2, batch=2).cuda()
    method.eager_sampler()  # CUDA samples replay graphs by default
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        eager = [method.generate(video, known, generator=_seeded(s)) for s in (0, 1)]
        mode = method.generate(video, known, temperature=0.0)
        method.graph_sampler()
        # twice per seed: the first call captures, the second replays
        for _ in range(2):
            for seed, want in zip((0, 1), eager):
                assert torch.equal(method.generate(video, known, generator=_seeded(seed)), want)
        assert torch.equal(method.generate(video, known, temperature=0.0), mode)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_samples_replay_graphs_unless_the_config_says_no() -> None:
    video = moving_squares().cuda()
    known = predict(4, 2, batch=2).cuda()
    torch.manual_seed(0)
    method = initialised(tiny().cuda(), video)
    graphed = method.generate(video, known, generator=_seeded())
    assert isinstance(method._fast_frame, CudaGraphed)
    method.eager_sampler()
    assert torch.equal(method.generate(video, known, generator=_seeded()), graphed)
    assert method._fast_frame is None
    torch.manual_seed(0)
    method = initialised(tiny(sample={"cuda_graphs": False}).cuda(), video)
    assert torch.equal(method.generate(video, known, generator=_seeded()), graphed)
    assert method._fast_frame is None
