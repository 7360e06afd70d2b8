"""The per-frame Glow of VideoFlow: invertibility, exact log-determinant, actnorm init, pixels."""

from __future__ import annotations

import pytest
import torch

from videogen.models.videoflow_glow import FlowStep, Glow
from videogen.models.videoflow_layers import (
    ActNorm,
    ConvLayer,
    data_init,
    from_flow,
    quantize,
    refresh_folds,
    squeeze2d,
    to_flow,
    unsqueeze2d,
)


def _trained_looking(glow: Glow, x: torch.Tensor, seed: int = 0) -> Glow:
    """Initialise actnorms from ``x``, then perturb every parameter so that no layer is the
    identity (zero-initialised couplings would otherwise make the test trivial)."""
    with data_init():
        glow.encode(x)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in glow.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return glow


def test_squeeze_round_trip_and_layout() -> None:
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    s = squeeze2d(x)
    assert s.shape == (2, 12, 2, 3)
    assert torch.equal(s[0, :4, 0, 0], torch.tensor([0.0, 1.0, 6.0, 7.0]))  # one 2x2 block
    assert torch.equal(unsqueeze2d(s), x)


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_glow_encode_decode_round_trip(coupling: str) -> None:
    torch.manual_seed(0)
    glow = Glow(3, levels=2, steps=2, width=16, coupling=coupling, activation="gated")
    x = torch.rand(8, 3, 16, 16) - 0.5
    glow = _trained_looking(glow, x)
    latents, contexts, logdet = glow.encode(x)
    assert [tuple(z.shape[1:]) for z in latents] == glow.latent_shapes(16, 16)
    assert len(contexts) == 1 and contexts[0].shape == latents[0].shape
    assert logdet.shape == (8,) and logdet.dtype == torch.float32
    back = glow.decode(latents[-1], lambda level, x1: latents[level])
    assert (back - x).abs().max() < 1e-4
    with torch.no_grad():  # the folded form, as sampling runs it
        folded = glow.decode(latents[-1], lambda level, x1: latents[level])
    assert (folded - x).abs().max() < 1e-4


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_glow_logdet_matches_brute_force_jacobian(coupling: str) -> None:
    torch.manual_seed(1)
    glow = Glow(1, levels=2, steps=2, width=8, coupling=coupling)
    glow = _trained_looking(glow, torch.rand(64, 1, 4, 4) - 0.5).double()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64) - 0.5

    def flat_latents(v: torch.Tensor) -> torch.Tensor:
        latents, _, _ = glow.encode(v.view(1, 1, 4, 4))
        return torch.cat([z.flatten() for z in latents])

    jacobian = torch.autograd.functional.jacobian(flat_latents, x.flatten())
    assert jacobian.shape == (16, 16)
    sign, expected = torch.linalg.slogdet(jacobian)
    _, _, logdet = glow.encode(x)
    assert sign != 0
    assert abs(expected.item()) > 1.0  # a non-trivial volume change is being checked
    assert logdet.item() == pytest.approx(expected.item(), abs=1e-8)


def test_actnorm_data_init_once_and_only_inside_context() -> None:
    torch.manual_seed(0)
    norm = ActNorm(4)
    x = torch.randn(16, 4, 5, 5) * 3 + 2
    norm(x)
    assert not bool(norm.initialized)  # outside data_init nothing happens
    with data_init():
        y = norm(x)
    assert bool(norm.initialized)
    assert y.mean((0, 2, 3)).abs().max() < 1e-5
    assert (y.std((0, 2, 3), unbiased=False) - 1).abs().max() < 1e-3
    params = [p.clone() for p in norm.parameters()]
    with data_init():
        norm(torch.randn(16, 4, 5, 5))
    assert all(torch.equal(a, b) for a, b in zip(params, norm.parameters()))
    assert torch.allclose(norm.reverse(norm(x)), x, atol=1e-5)


def test_actnorm_flag_survives_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    done, fresh = ActNorm(3), ActNorm(3)
    with data_init():
        done(torch.randn(8, 3, 4, 4))
        assert fresh.ready is False
        fresh.load_state_dict(done.state_dict())
        fresh(torch.randn(8, 3, 4, 4) * 5)  # loaded as initialised: must not re-initialise
    assert torch.equal(fresh.logs, done.logs) and torch.equal(fresh.bias, done.bias)


def test_actnorm_per_time_step_in_3d() -> None:
    torch.manual_seed(0)
    norm = ActNorm(2, dims=3, time_steps=3)
    x = torch.randn(6, 2, 3, 4, 4) * torch.tensor([1.0, 5.0, 9.0]).view(1, 1, 3, 1, 1)
    with data_init():
        y = norm(x)
    assert norm.logs.shape == (1, 2, 3, 1, 1)
    assert (y.std((0, 3, 4), unbiased=False) - 1).abs().max() < 1e-3


def test_causal_conv3d_does_not_see_the_future() -> None:
    torch.manual_seed(0)
    conv = ConvLayer(2, 3, (2, 3, 3), dilation=2, time_steps=4)
    x = torch.randn(1, 2, 4, 6, 6)
    y = conv(x)
    x2 = x.clone()
    x2[:, :, 3] += 1.0
    y2 = conv(x2)
    assert y.shape == (1, 3, 4, 6, 6)
    assert torch.equal(y[:, :, :3], y2[:, :, :3])
    assert not torch.equal(y[:, :, 3], y2[:, :, 3])


def test_zero_conv_starts_at_zero_and_edge_channel_exists() -> None:
    conv = ConvLayer(4, 6, (3, 3), zero=True)
    assert conv.weight.shape == (6, 5, 3, 3)  # one extra input channel flags the padding
    assert torch.equal(conv(torch.randn(2, 4, 5, 5)), torch.zeros(2, 6, 5, 5))


def _perturbed(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return module


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (lambda: ConvLayer(3, 5, (3, 3), dilation=2), (2, 3, 7, 6)),
        (lambda: ConvLayer(3, 5, (1, 1)), (2, 3, 4, 4)),
        (lambda: ConvLayer(3, 5, (3, 3), zero=True), (2, 3, 5, 5)),
        (lambda: ConvLayer(2, 4, (2, 3, 3), dilation=2, time_steps=3), (2, 2, 3, 6, 6)),
    ],
    ids=["2d-edge-dilated", "2d-pointwise", "2d-zero", "3d-causal-per-step-actnorm"],
)
def test_folded_conv_layer_equals_the_layer_as_written(layer, shape) -> None:
    torch.manual_seed(0)
    conv = _perturbed(layer())
    x = torch.randn(shape)
    written = conv(x)  # gradients enabled: the layer as written
    with torch.no_grad():
        folded = conv(x)
    assert folded.shape == written.shape
    torch.testing.assert_close(folded, written.detach(), atol=1e-5, rtol=1e-5)


def test_folded_forms_follow_parameter_changes_in_place() -> None:
    """A changed parameter is seen by the next call, and ``refresh_folds`` recomputes into the
    tensors handed out before (what a captured CUDA graph reads)."""
    torch.manual_seed(0)
    step = _perturbed(FlowStep(8, 16, "affine", "relu"))
    y = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        step.reverse(y)
    conv = step.coupling.net.first
    (held,) = [tensors for _, _, tensors in conv.folds._entries.values()]
    before = [t.clone() for t in held]
    _perturbed(step, seed=1)
    refresh_folds(step)
    assert all(t is u for t, u in zip(held, next(iter(conv.folds._entries.values()))[2]))
    assert not torch.equal(held[0], before[0])
    with torch.no_grad():
        folded = step.reverse(y)
    torch.testing.assert_close(folded, step.reverse(y).detach(), atol=1e-5, rtol=1e-5)
    x = torch.randn(2, 8, 4, 4)
    forward, _ = step(x)
    with torch.no_grad():  # inverse of the forward map, through the folded inverse
        torch.testing.assert_close(step.reverse(forward), x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_folded_flow_step_forward_equals_the_step_as_written(coupling: str) -> None:
    """Without gradients, actnorm and the 1x1 convolution run as one matrix product with a
    constant log-determinant: same output and log-determinant as the step as written."""
    torch.manual_seed(0)
    step = _perturbed(FlowStep(8, 16, coupling, "gated"))
    x = torch.randn(3, 8, 4, 6)
    written, written_logdet = step(x)
    with torch.no_grad():
        folded, folded_logdet = step(x)
    torch.testing.assert_close(folded, written.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded_logdet, written_logdet.detach(), atol=1e-4, rtol=1e-5)
    _perturbed(step, seed=1)  # the folded form follows a parameter change
    with torch.no_grad():
        folded, folded_logdet = step(x)
    written, written_logdet = step(x)
    torch.testing.assert_close(folded, written.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded_logdet, written_logdet.detach(), atol=1e-4, rtol=1e-5)


def test_folded_forms_under_inference_mode_survive_later_training() -> None:
    torch.manual_seed(0)
    conv = _perturbed(ConvLayer(3, 4, (3, 3)))
    x = torch.randn(2, 3, 5, 5)
    with torch.inference_mode():
        conv(x)
    _perturbed(conv, seed=1)  # a training step outside inference mode
    with torch.inference_mode():
        folded = conv(x)
    torch.testing.assert_close(folded, conv(x).detach(), atol=1e-5, rtol=1e-5)


def test_data_init_without_gradients_still_initialises() -> None:
    """The folded form is skipped while an actnorm waits for its data-dependent init."""
    torch.manual_seed(0)
    conv = ConvLayer(3, 4, (3, 3))
    with torch.no_grad(), data_init():
        y = conv(torch.randn(16, 3, 6, 6) * 4 + 1)
    assert conv.norm.ready
    assert y.mean((0, 2, 3)).abs().max() < 1e-4


@pytest.mark.parametrize("n_bits", [8, 5])
def test_pixels_round_trip_on_the_bit_grid(n_bits: int) -> None:
    pixels = torch.arange(256, dtype=torch.float32)
    video = pixels / 127.5 - 1
    x = to_flow(video, n_bits)
    assert x.min() >= -0.5 and x.max() <= 0.5
    back = from_flow(x, n_bits)
    step = 2 ** (8 - n_bits)
    assert torch.allclose((back + 1) * 127.5, torch.floor(pixels / step) * step, atol=1e-4)
    noisy = to_flow(video, n_bits, torch.rand(256) * 0.999)
    assert torch.equal(from_flow(noisy, n_bits), back)  # dequantisation stays inside the bin
    assert quantize(video, n_bits).max() == 2**n_bits - 1


def test_actnorm_init_under_torch_distributed(tmp_path) -> None:
    """The statistics go through all_reduce when a process group exists (one rank here)."""
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        norm = ActNorm(3)
        x = torch.randn(8, 3, 4, 4) * 2 + 1
        with data_init():
            y = norm(x)
    finally:
        dist.destroy_process_group()
    assert y.mean((0, 2, 3)).abs().max() < 1e-5
