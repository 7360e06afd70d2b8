"""Latent dynamics priors of VideoFlow: ``p(z_t^l | z_{t-n..t-1}^l, x1_t^l)``.

Each level ``l`` of a frame's Glow has a diagonal Gaussian prior over its latent ``z_t^l``
``(c, h, w)``. It sees

- the same level's latents of the previous ``n`` frames (the *history*, ``(N, n, c, h, w)``), and
- for the split levels, the frame's own higher levels: the half ``x1_t^l`` that went on up, through
  the mean of Glow's split prior (a zero-initialised 3x3 conv of ``x1``), as in the official code.

A frame with fewer than ``n`` previous frames uses the level's *marginal* prior: Glow's split prior
``N(conv(x1))`` below the top, a learned Gaussian (one mean and scale per element) at the top.

The dynamics network (``prior``):

- ``pointwise``: mean = marginal mean + ``a * z_{t-1}`` (``a`` learned per element, starts at 1);
  scale = the marginal's (split levels) or learned (top). Uses the last frame only.
- ``conv``: a 2-D residual network over the history stacked in channels (with the marginal mean),
  blocks of ``ConvStack`` added to the input, then a zero-initialised 3x3 conv to mean, log-scale.
- ``conv3d``: the paper's BAIR choice, a causal 3-D residual network over the history with time as
  depth: ``[2, 3, 3]`` kernels left-padded in time, actnorm per time step, gated tanh * sigmoid
  units, branches with spatial dilations 1/2/4 run in parallel and summed (a dilation is used only
  where its 3x3 footprint, ``2d + 1``, fits the level), zero-initialised outputs; the last time
  step goes through a zero-initialised 1x1 conv to mean and log-scale.

With ``latent_skip`` the network predicts a change: mean = ``z_{t-1}`` + network output. Every
network starts as the identity/zero map, so a fresh prior is ``N(z_{t-1}, 1)`` or ``N(0, 1)``.
With ``scale_per_channel`` (not in the paper) a dynamics prior's log-scale is the spatial mean
of the network's, one scale per channel and clip: the scale can no longer grow just where the
shape lands, so the mean has to carry the motion (BENCHMARKS.md, VideoFlow session 6).
With ``components`` K > 1 (not in the paper) a dynamics prior is a mixture of K Gaussians: the
network's output conv gives K means and log-scales, ``(N, K, c, h, w)``, and the top level holds
the mixture weights, a zero-initialised linear map of the last frame's top latent to K logits
(the latent keeps where the shape is, which tells the way it is going). One component is drawn
per frame and used at every level (``methods/videoflow`` trains the components by balanced hard
assignment). Marginal priors stay single Gaussians.
Log-scales are soft-clamped to ``+-b`` (``b * tanh(s / b)``, ``b`` = ``LOG_SCALE_BOUND`` unless
given): no overflow, and the gradient never vanishes as a hard clamp's would.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videogen.models.videoflow_layers import Activation, ConvLayer, ConvStack, wide

PriorKind = Literal["pointwise", "conv", "conv3d"]
LOG_SCALE_BOUND = 10.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def soft_clamp(x: Tensor, bound: float = LOG_SCALE_BOUND) -> Tensor:
    return bound * torch.tanh(x / bound)


def gaussian_log_prob(z: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """``log N(z; mean, exp(log_scale))`` summed over all but the first dim, float32, ``(N,)``."""
    z, mean, log_scale = wide(z), wide(mean), wide(log_scale)
    eps = (z - mean) * torch.exp(-log_scale)
    return (-0.5 * eps.square() - log_scale - _HALF_LOG_2PI).flatten(1).sum(1)


class SplitMarginal(nn.Module):
    """Glow's split prior: mean and log-scale of ``z^l`` from a zero-init 3x3 conv of ``x1``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvLayer(channels, 2 * channels, (3, 3), zero=True)

    def forward(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_scale = wide(self.conv(x1)).chunk(2, dim=1)
        return mean, log_scale


class TopMarginal(nn.Module):
    """A learned Gaussian, one mean and log-scale per element of the top latent."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, *shape))
        self.log_scale = nn.Parameter(torch.zeros(1, *shape))

    def forward(self, batch: int) -> tuple[Tensor, Tensor]:
        shape = (batch, *self.mean.shape[1:])
        return self.mean.expand(shape), self.log_scale.expand(shape)


class PointwiseDynamics(nn.Module):
    """``N(marginal mean + a * z_{t-1}, marginal scale)``; at the top ``N(a * z_{t-1}, s)``."""

    def __init__(self, shape: tuple[int, int, int], split: bool) -> None:
        super().__init__()
        self.split = split
        self.multiplier = nn.Parameter(torch.ones(1, *shape))
        self.log_scale = None if split else nn.Parameter(torch.zeros(1, *shape))

    def forward(
        self, history: Tensor, marginal: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        previous = history[:, -1]
        if self.log_scale is None:
            assert marginal is not None
            return marginal[0] + self.multiplier * previous, marginal[1]
        return self.multiplier * previous, self.log_scale.expand_as(previous)


class Conv2dDynamics(nn.Module):
    """2-D residual network over ``[marginal mean, z_{t-n}, ..., z_{t-1}]`` stacked in channels."""

    def __init__(
        self,
        channels: int,
        cond_frames: int,
        split: bool,
        *,
        depth: int,
        width: int,
        activation: Activation,
        components: int = 1,
    ) -> None:
        super().__init__()
        self.split = split
        res = cond_frames * channels + (channels if split else 0)
        self.blocks = nn.ModuleList(
            ConvStack(res, width, res, activation=activation) for _ in range(depth)
        )
        self.out = ConvLayer(res, 2 * channels * components, (3, 3), zero=True)

    def forward(
        self, history: Tensor, marginal: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        h = rearrange(history, "n t c h w -> n (t c) h w")
        if self.split:
            assert marginal is not None
            h = torch.cat([marginal[0].to(h.dtype), h], 1)
        for block in self.blocks:
            h = h + block(h)
        mean, log_scale = wide(self.out(h)).chunk(2, dim=1)
        return mean, log_scale


class Conv3dDynamics(nn.Module):
    """Causal 3-D residual network over the history ``(N, c [+ c], n, h, w)``.

    Each of ``depth`` blocks adds the sum of its dilation branches (``ConvStack`` in 3-D) to its
    input; the last time step, which has seen the whole window, is mapped to mean and log-scale.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        cond_frames: int,
        split: bool,
        *,
        depth: int,
        width: int,
        activation: Activation,
        dilations: list[int],
        components: int = 1,
    ) -> None:
        super().__init__()
        channels, height, width_px = shape
        self.split = split
        self.cond_frames = cond_frames
        res = channels * (2 if split else 1)
        fits = [d for d in dilations if d == 1 or 2 * d + 1 <= min(height, width_px)]
        self.dilations = fits or [1]
        branch = {
            "activation": activation,
            "dims": 3,
            "time_kernel": min(2, cond_frames),
            "time_steps": cond_frames,
        }
        self.blocks = nn.ModuleList(
            nn.ModuleList(ConvStack(res, width, res, dilation=d, **branch) for d in self.dilations)
            for _ in range(depth)
        )
        self.out = ConvLayer(res, 2 * channels * components, (1, 1), zero=True)

    def forward(
        self, history: Tensor, marginal: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        h = rearrange(history, "n t c h w -> n c t h w")
        if self.split:
            assert marginal is not None
            context = marginal[0].to(h.dtype)[:, :, None].expand(-1, -1, h.shape[2], -1, -1)
            h = torch.cat([h, context], 1)
        for branches in self.blocks:
            h = h + sum(branch(h) for branch in branches)
        mean, log_scale = wide(self.out(h[:, :, -1])).chunk(2, dim=1)
        return mean, log_scale


class ComponentWeights(nn.Module):
    """Mixture logits ``(N, K)`` from the last frame's top latent ``(N, c, h, w)``: a linear map
    of the whole latent (a pooled conv would forget where the shape is), zero-initialised so
    that a fresh mixture weighs its components equally (and draws nothing from the random
    generator: the other layers start as they would with one component)."""

    def __init__(self, shape: tuple[int, int, int], components: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(components, math.prod(shape)))
        self.bias = nn.Parameter(torch.zeros(components))

    def forward(self, latent: Tensor) -> Tensor:
        return F.linear(wide(latent.flatten(1)), self.weight, self.bias)


class LevelPrior(nn.Module):
    """The prior of one level: marginal for frames without history, dynamics otherwise."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        *,
        split: bool,
        kind: PriorKind,
        cond_frames: int,
        depth: int,
        width: int,
        activation: Activation,
        dilations: list[int],
        latent_skip: bool,
        log_scale_bound: float = LOG_SCALE_BOUND,
        scale_per_channel: bool = False,
        components: int = 1,
    ) -> None:
        super().__init__()
        if components < 1 or (components > 1 and kind == "pointwise"):
            raise ValueError(
                f"components={components}: need at least 1, and 1 with the pointwise prior"
            )
        self.split = split
        self.components = components
        self.marginal: nn.Module = SplitMarginal(shape[0]) if split else TopMarginal(shape)
        self.dynamics: nn.Module
        if kind == "pointwise":
            self.dynamics = PointwiseDynamics(shape, split)
        elif kind == "conv":
            self.dynamics = Conv2dDynamics(
                shape[0],
                cond_frames,
                split,
                depth=depth,
                width=width,
                activation=activation,
                components=components,
            )
        elif kind == "conv3d":
            self.dynamics = Conv3dDynamics(
                shape,
                cond_frames,
                split,
                depth=depth,
                width=width,
                activation=activation,
                dilations=dilations,
                components=components,
            )
        else:
            raise ValueError(f"unknown prior {kind!r}; choose pointwise, conv or conv3d")
        # the top level holds the mixture weights; every level holds its components' Gaussians
        self.weights = ComponentWeights(shape, components) if components > 1 and not split else None
        # pointwise already starts as z_{t-1}: a skip would double it
        self.latent_skip = latent_skip and kind != "pointwise"
        self.log_scale_bound = log_scale_bound
        self.scale_per_channel = scale_per_channel

    def forward(
        self, history: Tensor | None, context: Tensor | None, batch: int
    ) -> tuple[Tensor, Tensor]:
        """Mean and log-scale ``(N, c, h, w)`` (float32) of ``z_t`` at this level; with K > 1
        components and a history, ``(N, K, c, h, w)``, one Gaussian per component.

        ``history`` ``(N, n, c, h, w)``: this level's latents of the previous ``n`` frames, or
        ``None`` for a frame without them. ``context``: ``x1_t`` ``(N, c, h, w)`` for split
        levels, ``None`` at the top.
        """
        marginal = None
        if self.split:
            if context is None:
                raise ValueError("a split level's prior needs the half x1 from above")
            marginal = self.marginal(context)
        elif history is None:
            marginal = self.marginal(batch)
        if history is None:
            assert marginal is not None
            mean, log_scale = marginal
        else:
            # split levels see their marginal mean (the frame's higher levels); the top does not
            mean, log_scale = self.dynamics(history, marginal)
            previous = wide(history[:, -1])
            if self.components > 1:
                mean = mean.unflatten(1, (self.components, -1))
                log_scale = log_scale.unflatten(1, (self.components, -1))
                previous = previous[:, None]
            if self.latent_skip:
                mean = mean + previous
            if self.scale_per_channel:
                # a per-element scale absorbs what the mean fails to predict, and 1/scale^2
                # then starves the mean's gradient there; one scale per channel cannot
                log_scale = log_scale.mean((-2, -1), keepdim=True).expand_as(log_scale)
        return mean, soft_clamp(log_scale, self.log_scale_bound)

    def component_logits(self, history: Tensor) -> Tensor:
        """Mixture logits ``(N, K)`` of the top level given its history ``(N, n, c, h, w)``."""
        if self.weights is None:
            raise ValueError("only the top level of a prior with components > 1 has weights")
        return self.weights(history[:, -1])
