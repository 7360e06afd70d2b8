"""VideoFlow with a mixture prior (``model.prior_components``): exact bits, balanced hard
assignment, one component per sampled frame, and a toy where it learns two directions."""

from __future__ import annotations

import math

import pytest
import torch
from test_videoflow import initialised, moving_squares, tiny

from videogen.config import ConfigError
from videogen.methods.videoflow import VideoFlow, assign_balanced
from videogen.models.videoflow_layers import from_flow, to_flow
from videogen.tasks import predict

STEPS = 150  # seed 0 splits by step 50 (seeds 1-3: 250, 100, 100)


def test_assign_balanced_takes_pairs_by_score_in_equal_shares() -> None:
    scores = torch.tensor([[5.0, 4.0], [3.0, 0.0], [2.0, 1.0], [9.0, 8.0]])
    # rows 3 and 0 fill component 0; row 1 prefers it too but gets what is left
    assert assign_balanced(scores).tolist() == [0, 1, 1, 0]
    assert assign_balanced(torch.zeros(3, 2)).tolist() == [0, 0, 1]  # ties: lower first
    shares = torch.bincount(assign_balanced(torch.randn(64, 8)), minlength=8)
    assert shares.tolist() == [8] * 8


def test_a_larger_share_keeps_an_uneven_batch_with_its_best_component() -> None:
    # three rows fit component 0 best, one fits 1: equal shares move row 2 to component 1
    scores = torch.tensor([[0.0, -5.0], [0.0, -4.0], [0.0, -3.0], [-6.0, 0.0]])
    assert assign_balanced(scores).tolist() == [0, 0, 1, 1]
    assert assign_balanced(scores, share=1.5).tolist() == [0, 0, 0, 1]  # capacity 3
    # a share of K lets one component take every row
    every_row_fits_0 = torch.tensor([[0.0, -1.0]]).repeat(5, 1)
    assert assign_balanced(every_row_fits_0, share=2).tolist() == [0] * 5


def test_bad_component_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match="model.prior_components=0"):
        tiny(prior_components=0)
    with pytest.raises(ConfigError, match="model.prior_components=2"):
        tiny(prior_components=2, prior="pointwise")
    with pytest.raises(ConfigError, match="model.prior_component_share=3"):
        tiny(prior_components=2, prior_component_share=3)


def test_a_fresh_mixture_scores_as_one_gaussian() -> None:
    # zero-initialised heads: every component equal, weights uniform, so the sum over the
    # components is the single Gaussian's density, and the other layers start the same
    video = moving_squares()
    bits = []
    for components in (1, 3):
        torch.manual_seed(0)
        method = initialised(tiny(prior_components=components), video)
        bits.append(method.frame_bits(video, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(bits[1], bits[0], rtol=0, atol=1e-5)


def _perturbed_mixture(scale: float = 0.003) -> VideoFlow:
    torch.manual_seed(0)
    method = initialised(tiny(prior_components=2), moving_squares())
    with torch.no_grad():
        for p in method.priors.parameters():  # the heads start equal: make them differ
            p.add_(torch.randn(p.shape) * scale)
    return method


def test_mixture_bits_sum_the_components_out() -> None:
    method = _perturbed_mixture()
    video = moving_squares()
    bits = method.frame_bits(video, generator=torch.Generator().manual_seed(0))
    # reference: the flow's latents of the same dequantised frames, each level's Gaussians
    # scored with torch.distributions, components summed by logsumexp with their weights
    noise = torch.rand(video.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = to_flow(video, 8, noise).flatten(0, 1)
        latents, contexts, logdet = method.glow.encode(x)
        b, t, n = 2, 4, 2
        joint = logdet.view(b, t)[:, n:, None].repeat(1, 1, 2)
        above = [c.view(b, t, *c.shape[1:]) for c in contexts]
        for level, prior in enumerate(method.priors):
            z = latents[level].view(b, t, *latents[level].shape[1:])
            for f in range(n, t):
                context = above[level][:, f] if level < len(above) else None
                mean, log_scale = prior(z[:, f - n : f], context, b)
                normal = torch.distributions.Normal(mean, log_scale.exp())
                joint[:, f - n] += normal.log_prob(z[:, f, None]).flatten(2).sum(2)
                if prior.weights is not None:
                    joint[:, f - n] += prior.component_logits(z[:, f - n : f]).log_softmax(1)
        dims = 3 * 16 * 16
        expected = 8 - torch.logsumexp(joint, -1) / (dims * math.log(2))
    torch.testing.assert_close(bits, expected, rtol=0, atol=1e-5)
    # the components differ by a few nats: taking the likelier one instead of summing both
    # would be off by more than the tolerance
    gap = (joint[..., 0] - joint[..., 1]).abs()
    assert gap.min() > 0.5 and gap.max() < 5


def test_training_loss_is_the_bits_of_the_assigned_components() -> None:
    method = _perturbed_mixture()
    torch.manual_seed(3)
    out = method.loss(moving_squares())
    # hard EM: -log2 p(x, k) of one component bounds the exact bits from above
    assert out["loss"].item() > out["bpd"].item()
    log_p = method._component_log_probs(moving_squares(), None, None)
    assert log_p.shape == (2, 2, 2)


def test_sampling_uses_one_component_at_every_level() -> None:
    method = _perturbed_mixture(0.05)
    video, known = moving_squares(3), predict(3, 2, 2)
    with torch.no_grad():
        method.priors[-1].weights.bias.copy_(torch.tensor([0.0, 50.0]))
        out = method.generate(video, known, temperature=0.0)
        # reference: every level's mean of component 1, decoded by the flow
        x = to_flow(video[:, :2], 8).flatten(0, 1)
        history = [z.view(2, 2, *z.shape[1:]) for z in method.glow.encode(x)[0]]

        def frame(k: int) -> torch.Tensor:
            def split(level: int, x1: torch.Tensor) -> torch.Tensor:
                return method.priors[level](history[level], x1, 2)[0][:, k]

            top = method.priors[-1](history[-1], None, 2)[0][:, k]
            return from_flow(method.glow.decode(top, split), 8)

        torch.testing.assert_close(out[:, 2], frame(1))
        assert (frame(0) - frame(1)).abs().max() > 0.1  # the other component differs


def test_a_mixture_learns_the_two_ways_a_square_can_go() -> None:
    """A square at the centre goes left in half the clips and right in the others: two
    components split the clips by direction, and each sample shows one square, where one
    Gaussian decodes both at partial brightness (BENCHMARKS.md, VideoFlow sessions 9, 16)."""
    video = -torch.ones(8, 3, 3, 16, 16)
    for i in range(8):
        way = 1 if i % 2 else -1
        for t in range(3):
            video[i, t, 0, 6:10, 6 + 3 * way * t : 10 + 3 * way * t] = 1
    torch.manual_seed(0)
    method = tiny(frames=3, cond_frames=1, context_frames=1, prior_components=2)
    opt = torch.optim.Adam(method.parameters(), lr=2e-3)
    for _ in range(STEPS):
        loss = method.loss(video)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(method.parameters(), 1.0)
        opt.step()
    method.eval()
    with torch.no_grad():
        first = method._component_log_probs(video, None, torch.Generator().manual_seed(0))[:, 0]
    ways = first.argmax(1)
    assert ways[0::2].unique().numel() == 1 and ways[1::2].unique().numel() == 1
    assert ways[0] != ways[1]
