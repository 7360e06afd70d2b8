"""Glow for one frame: the invertible per-frame flow of VideoFlow (Kumar et al., ICLR 2020).

A frame ``x`` ``(N, C, H, W)`` with values in ``[-0.5, 0.5]`` goes through ``L`` levels. Each
level squeezes space by 2 (four times the channels), runs ``K`` flow steps and, below the top,
splits off half of its channels as that level's latent ``z^l``::

    level l:  squeeze -> K x [actnorm -> invertible 1x1 conv -> coupling] -> split (x1 | z^l)

``Glow.encode`` returns the latents, the halves ``x1`` that went on up (the priors condition on
them: "the higher levels of the same frame") and ``log|det dz/dx|`` per frame. ``Glow.decode``
runs the flow backwards and asks a callback for each split latent, so that a prior can sample
``z^l`` given the levels above it. Nothing here knows about time: the flow is the same for every
frame; the dynamics live in ``videoflow_prior``.

What follows the official TensorFlow code (tensor2tensor ``glow_ops``; the layers are in
``videoflow_layers``): actnorm with data-dependent initialisation and log-scales stored divided
by 3; LU-parametrised 1x1 convolutions started from a random rotation; convolutions whose zero
padding is flagged by an extra input channel of ones (the "edge bias"); coupling networks
3x3 conv -> ReLU -> 1x1 conv -> ReLU (or gated tanh * sigmoid) -> zero-initialised 3x3 conv;
affine scale ``sigmoid(h + 2)``.
Log-determinants are float32 sums, and the invertible arithmetic runs outside autocast.

Without gradients (sampling, evaluation) the layers run a *folded* form with fewer kernels, which
is what batch-1 sampling is bound by: a ``ConvLayer`` is one convolution and one ``addcmul`` (its
edge-bias term, bias and scale precomputed per input shape), and a flow step's actnorm and 1x1
convolution (or their inverses) are one matrix product with a constant log-determinant. The
folded tensors are cached and recomputed in place whenever a parameter changes
(``refresh_folds``), so CUDA graphs captured over them stay valid after training. With
gradients enabled, the layers run as written above.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videogen.models.videoflow_layers import (
    LOGSCALE_FACTOR,
    Activation,
    ActNorm,
    ConvStack,
    Folded,
    InvConv1x1,
    folding,
    full_precision,
    squeeze2d,
    unsqueeze2d,
    wide,
)

CouplingKind = Literal["affine", "additive"]

# --------------------------------------------------------------------------- flow


class Coupling(nn.Module):
    """``x = (x1, x2)``; x1 passes, ``y2 = (x2 + shift(x1)) * sigmoid(h(x1) + 2)`` (affine) or
    ``y2 = x2 + shift(x1)`` (additive, volume preserving). The sigmoid keeps the scale in
    ``(0, 1)``: bounded, and its log is computed stably as ``logsigmoid``."""

    def __init__(self, channels: int, width: int, kind: CouplingKind, activation: Activation):
        super().__init__()
        self.affine = kind == "affine"
        half = channels // 2
        self.net = ConvStack(half, width, channels if self.affine else half, activation=activation)

    def _shift_and_log_scale(self, x1: Tensor) -> tuple[Tensor, Tensor | None]:
        h = wide(self.net(x1))
        if not self.affine:
            return h, None
        shift, raw = h.chunk(2, dim=1)
        return shift, F.logsigmoid(raw + 2.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x.chunk(2, dim=1)
        shift, log_scale = self._shift_and_log_scale(x1)
        if log_scale is None:
            return torch.cat([x1, x2 + shift], 1), wide(x.new_zeros(x.shape[0]))
        y2 = (x2 + shift) * torch.exp(log_scale)
        return torch.cat([x1, y2], 1), log_scale.flatten(1).sum(1)

    def reverse(self, y: Tensor) -> Tensor:
        y1, y2 = y.chunk(2, dim=1)
        h = wide(self.net(y1))
        if not self.affine:
            return torch.cat([y1, y2 - h], 1)
        shift, raw = h.chunk(2, dim=1)
        return torch.cat([y1, y2 / torch.sigmoid(raw + 2.0) - shift], 1)


class FlowStep(nn.Module):
    """actnorm -> invertible 1x1 conv -> coupling; returns the output and ``log|det|`` (N,)."""

    def __init__(
        self, channels: int, width: int, coupling: CouplingKind, activation: Activation
    ) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv1x1(channels)
        self.coupling = Coupling(channels, width, coupling, activation)
        self.folds = Folded()

    def fold_params(self) -> list[Tensor]:
        return [self.actnorm.bias, self.actnorm.logs, *self.invconv.parameters()]

    def _fold(self) -> list[Tensor]:
        """``[A, c]`` (``(C, C)``, ``(1, C, 1)``) with the inverse actnorm of the inverse 1x1
        convolution equal to ``A y + c`` per pixel: ``A = diag(exp(-3 s)) W^-1``, ``c = -b``."""
        w_inv = self.invconv.inverse_weight()
        scale = torch.exp(-self.actnorm.logs * LOGSCALE_FACTOR).flatten()
        return [scale[:, None] * w_inv, -self.actnorm.bias.flatten()[None, :, None]]

    def _fold_forward(self) -> list[Tensor]:
        """``[A, c, d]`` with actnorm then the 1x1 convolution equal to ``A x + c`` per pixel
        (``A = W diag(exp(3 s))``, ``c = A b``) and ``d`` their ``log|det|`` per pixel."""
        with full_precision(self.invconv.log_s):
            a = self.invconv.weight() * torch.exp(self.actnorm.logs * LOGSCALE_FACTOR).flatten()
            c = (a @ self.actnorm.bias.flatten())[None, :, None]
            d = self.actnorm.logs.sum() * LOGSCALE_FACTOR + self.invconv.log_s.sum()
        return [a, c, d]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if folding(self.actnorm.ready):
            a, c, d = self.folds.get(("forward", x.device), self.fold_params(), self._fold_forward)
            y = _pointwise_affine(a, c, x)
            logdet = d * (x.shape[-2] * x.shape[-1])
        else:
            y = self.actnorm(x)  # initialises itself first when asked to, so logdet comes after
            logdet = self.actnorm.logdet(y) + self.invconv.logdet(y)
            y = self.invconv(y)
        y, coupling_logdet = self.coupling(y)
        return y, logdet + coupling_logdet

    def reverse(self, y: Tensor) -> Tensor:
        x = self.coupling.reverse(y)
        if not folding():
            return self.actnorm.reverse(self.invconv.reverse(x))
        a, c = self.folds.get((x.device,), self.fold_params(), self._fold)
        return _pointwise_affine(a, c, x)


def _pointwise_affine(a: Tensor, c: Tensor, x: Tensor) -> Tensor:
    """``A x + c`` at every pixel of ``x`` ``(N, C, H, W)``, in float32 (one batched matmul)."""
    n, channels, h, w = x.shape
    with full_precision(x):
        flat = x.to(a.dtype).flatten(2)
        return torch.baddbmm(c, a.expand(n, -1, -1), flat).view(n, channels, h, w)


SplitSampler = Callable[[int, Tensor], Tensor]


class Glow(nn.Module):
    """Multi-scale Glow over single frames ``(N, C, H, W)``; ``H, W`` divisible by ``2**levels``."""

    def __init__(
        self,
        in_channels: int,
        levels: int = 3,
        steps: int = 24,
        width: int = 512,
        coupling: CouplingKind = "affine",
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.levels = nn.ModuleList()
        channels = in_channels
        for level in range(levels):
            channels *= 4
            self.levels.append(
                nn.ModuleList(FlowStep(channels, width, coupling, activation) for _ in range(steps))
            )
            if level < levels - 1:
                channels //= 2

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """``(c, h, w)`` of each level's latent, bottom level first, the top latent last."""
        shapes = []
        c, h, w = self.in_channels, height, width
        for level in range(self.num_levels):
            c, h, w = c * 4, h // 2, w // 2
            if level < self.num_levels - 1:
                c //= 2
            shapes.append((c, h, w))
        return shapes

    def encode(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """``x`` ``(N, C, H, W)`` -> ``(latents, contexts, logdet)``.

        ``latents[l]`` is ``z^l`` (the top latent last), ``contexts[l]`` the half ``x1`` that went
        on up from level ``l`` (one fewer than latents), ``logdet`` ``(N,)`` float32.
        """
        logdet = wide(x.new_zeros(x.shape[0]))
        latents, contexts = [], []
        for level, steps in enumerate(self.levels):
            x = squeeze2d(x)
            for step in steps:
                x, step_logdet = step(x)
                logdet = logdet + step_logdet
            if level < self.num_levels - 1:
                x, z = x.chunk(2, dim=1)
                latents.append(z)
                contexts.append(x)
        latents.append(x)
        return latents, contexts, logdet

    def decode(self, top: Tensor, sample_split: SplitSampler) -> Tensor:
        """Top latent -> frame. ``sample_split(level, x1)`` returns ``z^level`` given the half
        ``x1`` coming down from above."""
        x = top
        for level in reversed(range(self.num_levels)):
            if level < self.num_levels - 1:
                x = torch.cat([x, sample_split(level, x)], 1)
            for step in reversed(self.levels[level]):
                x = step.reverse(x)
            x = unsqueeze2d(x)
        return x
