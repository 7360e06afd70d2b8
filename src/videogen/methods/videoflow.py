"""VideoFlow (Kumar et al., *VideoFlow: A Conditional Flow-Based Model for Stochastic Video
Generation*, ICLR 2020): a normalizing flow over frames with an autoregressive latent prior.

Every frame goes through the same multi-scale Glow (``models/videoflow_glow``) to latents
``z_t^1 .. z_t^L``; each level's latent has a Gaussian prior given the same level's latents of
the previous ``cond_frames`` frames and the higher levels of the same frame
(``models/videoflow_prior``). The likelihood is exact::

    log p(x_t | x_<t) = log|det dz_t/dx_t| + sum_l log p(z_t^l | z_{t-n..t-1}^l, z_t^{>l})
                        - D * n_bits * log 2           (uniform dequantisation, D = C*H*W)

The loss is bits per dimension over the frames after the first ``context_frames`` (the
official code does not score the conditioning frames). Sampling runs each prior forward and the
flow backward, one frame at a time, with every prior's standard deviation multiplied by the
temperature; the prior only looks ``cond_frames`` back, so any number of frames can follow the
known ones (long rollouts happen inside ``generate``).

Data-dependent actnorm initialisation happens on the first batch ``loss`` sees; a flag buffer in
each actnorm keeps it across resume and export. Under ``torch.distributed`` the statistics are
averaged over ranks, so all ranks start from the same parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from videogen.config import Config, ConfigError, from_dict
from videogen.cuda_graphs import CudaGraphed
from videogen.methods.base import SampleOptions, VideoMethod
from videogen.models.videoflow_glow import Glow
from videogen.models.videoflow_layers import data_init, from_flow, refresh_folds, to_flow
from videogen.models.videoflow_prior import LevelPrior, gaussian_log_prob


@dataclass
class VideoFlowConfig:
    """The ``model:`` section. In brackets: the official tensor2tensor hparam."""

    levels: int = 3  # [n_levels] squeeze-flow-split levels of the per-frame Glow
    steps_per_level: int = 24  # [depth] flow steps per level
    coupling: Literal["affine", "additive"] = "affine"  # [coupling]
    coupling_width: int = 512  # [coupling_width]
    coupling_activation: Literal["relu", "gated"] = "relu"  # [activation] relu or gatu
    n_bits: int = 8  # [n_bits_x] pixels are quantised to this many bits
    prior: Literal["pointwise", "conv", "conv3d"] = "conv3d"  # [latent_dist_encoder]
    prior_depth: int = 5  # [latent_encoder_depth] residual blocks
    prior_width: int = 256  # [latent_encoder_width]
    prior_activation: Literal["relu", "gated"] = "gated"  # [latent_activation]
    # [latent_dilation_rates 1, 3 -> dilations rate + 1, and 1]; used where they fit the level
    prior_dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    cond_frames: int = 3  # [num_cond_latents] frames of history the prior sees
    latent_skip: bool = True  # [latent_skip] prior mean = z_{t-1} + network output
    # priors' log-scales are soft-clamped to +- this (the official code leaves them unbounded;
    # 10 lies far above the log-scales of about 5 that the runs here reached)
    log_scale_bound: float = 10.0
    # not in the paper: the dynamics priors' log-scale averaged over space, one per channel
    # and clip. With the paper's per-element scale (false) the tiny models here learnt to put
    # the moving shape into the scale and kept the mean at zero, so samples near the mean lost
    # the shape; with it the mean carries the motion (BENCHMARKS.md, VideoFlow session 6)
    prior_scale_per_channel: bool = False
    # not in the paper: each dynamics prior a mixture of this many Gaussians, one component
    # drawn per frame for every level, weights from the top latent of the last frame; trained
    # by balanced hard assignment (``assign_balanced``). A single Gaussian decodes a shape that
    # may go left or right into both at half strength (BENCHMARKS.md, VideoFlow session 9)
    prior_components: int = 1
    # the most frames one component may take at a time step, as a multiple of an equal share
    # (N / K): 1 is equal shares; above 1 lets a batch whose clips do not split evenly (9 going
    # left, 7 right) keep each clip with the component that fits it. On the CPU 1.5 lost to 1
    # with 2 scored frames and won only with 4 (BENCHMARKS.md, VideoFlow session 17)
    prior_component_share: float = 1.0
    context_frames: int = 3  # [video_num_input_frames] leading frames not scored by the loss
    train_frames: int | None = None  # [num_train_frames] random sub-clip per step; null = all
    score_context: bool = False  # [model_input] also score the leading context frames


def _check(m: VideoFlowConfig, cfg: Config) -> None:
    """Reject settings the model cannot run with, naming the key."""
    size, frames = cfg.data.size, cfg.data.frames
    positive = ("levels", "steps_per_level", "coupling_width", "prior_width", "cond_frames")
    for key in positive:
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key} must be at least 1, got {getattr(m, key)}")
    if m.prior_components < 1 or (m.prior_components > 1 and m.prior == "pointwise"):
        raise ConfigError(
            f"model.prior_components={m.prior_components}: need at least 1, and 1 with "
            "model.prior=pointwise"
        )
    if not 1.0 <= m.prior_component_share <= m.prior_components:
        raise ConfigError(
            f"model.prior_component_share={m.prior_component_share}: must lie in 1.."
            f"model.prior_components ({m.prior_components})"
        )
    if m.prior_depth < 0 or m.context_frames < 0:
        raise ConfigError("model.prior_depth and model.context_frames must be >= 0")
    if m.log_scale_bound <= 0:
        raise ConfigError(f"model.log_scale_bound must be > 0, got {m.log_scale_bound}")
    if not 1 <= m.n_bits <= 8:
        raise ConfigError(f"model.n_bits must be in 1..8, got {m.n_bits}")
    if any(d < 1 for d in m.prior_dilations):
        raise ConfigError(f"model.prior_dilations must be >= 1, got {m.prior_dilations}")
    if size % 2**m.levels:
        raise ConfigError(
            f"data.size={size} must be divisible by 2**model.levels={2**m.levels}; "
            "change the frame size or the number of levels"
        )
    clip = m.train_frames or frames
    if m.train_frames is not None and not 1 <= m.train_frames <= frames:
        raise ConfigError(f"model.train_frames={m.train_frames} must be in 1..data.frames={frames}")
    if not m.score_context and m.context_frames >= clip:
        raise ConfigError(
            f"model.context_frames={m.context_frames} leaves no frame to score in a training clip "
            f"of {clip} frames; lower it or raise model.train_frames / data.frames"
        )


class VideoFlow(VideoMethod):
    """Glow per frame + causal latent dynamics prior; exact bits per pixel."""

    name = "videoflow"
    title = "VideoFlow"
    ModelConfig = VideoFlowConfig
    sample_options = frozenset({"temperature"})
    any_length = True  # the causal prior conditions on the last frames at any length
    ddp_find_unused = True  # marginal priors get no gradient when context covers them

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        m = from_dict(VideoFlowConfig, cfg.model, "model")
        _check(m, cfg)
        self.model_cfg = m
        self.glow = Glow(
            cfg.data.channels,
            m.levels,
            m.steps_per_level,
            m.coupling_width,
            m.coupling,
            m.coupling_activation,
        )
        self.latent_shapes = self.glow.latent_shapes(cfg.data.size, cfg.data.size)
        self.priors = nn.ModuleList(
            LevelPrior(
                shape,
                split=level < m.levels - 1,
                kind=m.prior,
                cond_frames=m.cond_frames,
                depth=m.prior_depth,
                width=m.prior_width,
                activation=m.prior_activation,
                dilations=m.prior_dilations,
                latent_skip=m.latent_skip,
                log_scale_bound=m.log_scale_bound,
                scale_per_channel=m.prior_scale_per_channel,
                components=m.prior_components,
            )
            for level, shape in enumerate(self.latent_shapes)
        )
        # faster stand-ins for ``_next_frame`` and ``_known_latents``: compiled, or replayed
        # from CUDA graphs
        self._fast_frame: Callable[..., tuple[Tensor, list[Tensor]]] | None = None
        self._fast_encode: Callable[[Tensor], list[Tensor]] | None = None
        self._auto_graphs = cfg.sample.cuda_graphs  # graph_sampler on the first CUDA call

    # ------------------------------------------------------------------ likelihood

    def check_video(self, video: Tensor) -> None:
        d = self.cfg.data
        expected = (d.channels, d.size, d.size)
        if video.dim() != 5 or tuple(video.shape[2:]) != expected:
            raise ValueError(
                f"VideoFlow expects video (B, T, {d.channels}, {d.size}, {d.size}) in [-1, 1] "
                f"(data.channels, data.size), got {tuple(video.shape)}"
            )

    def _first_scored(self, frames: int) -> int:
        if self.model_cfg.score_context:
            return 0
        return min(self.model_cfg.context_frames, frames - 1)

    def frame_bits(
        self,
        video: Tensor,
        *,
        first: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Bits per dimension ``(B, T - first)`` of each frame from ``first`` on, given the
        frames before it: ``-log2 p(x_t | x_<t) / (C H W)`` with uniform dequantisation noise
        (an upper bound on the discrete bits; the paper's metric). ``first`` defaults to
        ``context_frames`` (0 with ``score_context``). A mixture prior's components are summed
        out: the bits stay exact."""
        log_p = self._component_log_probs(video, first, generator)
        return self._bits(torch.logsumexp(log_p, -1), video)

    def _bits(self, log_p: Tensor, video: Tensor) -> Tensor:
        """Nats of a frame -> bits per dimension (with the dequantisation's ``n_bits``)."""
        dims = math.prod(video.shape[2:])
        return self.model_cfg.n_bits - log_p / (dims * math.log(2.0))

    def _component_log_probs(
        self, video: Tensor, first: int | None, generator: torch.Generator | None
    ) -> Tensor:
        """``log p(x_t, k | x_<t)`` in nats ``(B, T - first, K)`` per mixture component ``k``
        (K = 1 with one Gaussian per level): the flow's log-determinant plus every level's
        log-density under component k, plus the top level's log-weight of k."""
        self.check_video(video)
        b, t = video.shape[:2]
        first = self._first_scored(t) if first is None else first
        if not 0 <= first < t:
            raise ValueError(f"first={first} must index a frame of a {t}-frame clip")
        n = self.model_cfg.cond_frames
        start = max(0, first - n)  # frames before this cannot influence the scored ones
        clip = video[:, start:]
        x = to_flow(clip, self.model_cfg.n_bits, _noise(torch.rand, clip.shape, clip, generator))
        latents, contexts, logdet = self.glow.encode(rearrange(x, "b t c h w -> (b t) c h w"))
        first -= start
        log_p = rearrange(logdet, "(b t) -> b t 1", b=b)[:, first:]
        for level, prior in enumerate(self.priors):
            z = rearrange(latents[level], "(b t) c h w -> b t c h w", b=b)
            context = None
            if level < len(contexts):
                context = rearrange(contexts[level], "(b t) c h w -> b t c h w", b=b)
            log_p = log_p + self._level_log_prob(prior, z, context, first)
        return log_p

    def _level_log_prob(
        self, prior: LevelPrior, z: Tensor, context: Tensor | None, first: int
    ) -> Tensor:
        """``log p(z_t, k)`` ``(B, T - first, K)`` at one level: the marginal prior for frames
        with fewer than ``cond_frames`` frames before them in ``z`` (the same for every
        component), the dynamics for the rest (all windows at once: the history of frame t is
        ``z[t - n : t]``). The top level of a mixture adds the components' log-weights."""
        b, t = z.shape[:2]
        n = self.model_cfg.cond_frames
        k = prior.components
        with_history = max(first, min(t, n))
        parts = []

        def flat(x: Tensor | None, frames: slice) -> Tensor | None:
            return None if x is None else rearrange(x[:, frames], "b t c h w -> (b t) c h w")

        if with_history > first:
            frames = slice(first, with_history)
            target = flat(z, frames)
            mean, log_scale = prior(None, flat(context, frames), target.shape[0])
            part = gaussian_log_prob(target, mean, log_scale).view(b, -1, 1)
            if prior.weights is not None:
                part = part - math.log(k)  # equal weights: the marginal has no component
            parts.append(part.expand(-1, -1, k))
        if t > with_history:
            frames = slice(with_history, t)
            windows = z.unfold(1, n, 1)[:, with_history - n : t - n]
            history = rearrange(windows, "b k c h w n -> (b k) n c h w")
            target = flat(z, frames)
            mean, log_scale = prior(history, flat(context, frames), target.shape[0])
            if k == 1:
                part = gaussian_log_prob(target, mean, log_scale).view(b, -1, 1)
            else:
                target = target[:, None].expand_as(mean)
                part = gaussian_log_prob(*(x.flatten(0, 1) for x in (target, mean, log_scale)))
                part = part.view(b, -1, k)
            if prior.weights is not None:
                weights = prior.component_logits(history).log_softmax(-1)
                part = part + weights.view(b, -1, k)
            parts.append(part)
        return torch.cat(parts, 1)

    def loss(self, video: Tensor) -> dict[str, Tensor]:
        """Bits per dimension of the predicted frames of a batch ``(B, T, C, H, W)`` in
        ``[-1, 1]``. The first call initialises every actnorm from this batch.

        With a mixture prior the loss is the bits of each frame together with one component,
        ``-log2 p(x_t, k)``, an upper bound on the exact bits (``bpd``): hard EM, each frame's
        component chosen by ``assign_balanced``. Summing the components out instead lets the
        first component to fit take every frame and the others die (BENCHMARKS.md, VideoFlow
        session 15); equal shares keep every component learning."""
        video = self._train_clip(video)
        with data_init():
            log_p = self._component_log_probs(video, None, None)
        bpd = self._bits(torch.logsumexp(log_p, -1), video).mean()
        if log_p.shape[-1] == 1:
            return {"loss": bpd, "bpd": bpd.detach()}
        # equal shares among the clips at each time step: balanced over the whole batch, the
        # components split by time step (which the history already tells) and not by what the
        # history leaves open, such as the way a shape will go from the centre
        scores = log_p.detach().cpu()  # one transfer for every time step's greedy pass
        share = self.model_cfg.prior_component_share
        chosen = torch.stack([assign_balanced(s, share) for s in scores.unbind(1)], 1)
        chosen = chosen.to(log_p.device)
        loss = self._bits(log_p.gather(-1, chosen[..., None])[..., 0], video).mean()
        return {"loss": loss, "bpd": bpd.detach()}

    def _train_clip(self, video: Tensor) -> Tensor:
        length = self.model_cfg.train_frames
        if length is None or video.shape[1] <= length:
            return video
        start = int(torch.randint(0, video.shape[1] - length + 1, (1,)))  # CPU: no device sync
        return video[:, start : start + length]

    @torch.no_grad()
    def log_likelihood(self, video: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact bits per dimension ``(B,)``: the mean of ``frame_bits`` over the frames after
        the first ``context_frames`` (the paper's test metric: 10 frames given 3 on BAIR)."""
        return self.frame_bits(video, generator=generator).mean(1)

    # ------------------------------------------------------------------ sampling

    def supported_known(self, known: Tensor) -> str | None:
        frames = known.shape[1]
        count = known.sum(1)
        prefix = torch.arange(frames, device=known.device)[None] < count[:, None]
        if not torch.equal(prefix, known.bool()):
            return "VideoFlow predicts forward: the known frames must be the first k frames"
        if not bool((count == count[0]).all()):
            return "VideoFlow needs the same number of known frames in every row of the batch"
        return None

    def _generate(self, video: Tensor, known: Tensor, opts: SampleOptions) -> Tensor:
        """Sample every frame after the known prefix, one frame at a time, for any clip length.

        ``temperature`` (default ``sample.temperature``) multiplies every prior's standard
        deviation; 0 gives the deterministic mode path. Known frames come back exactly; generated
        frames lie on the ``n_bits`` grid in ``[-1, 1]``.

        On CUDA each frame's step is replayed from CUDA graphs (``graph_sampler``) unless
        ``sample.cuda_graphs`` is false or another sampler was chosen (``compile_sampler``,
        ``eager_sampler``).

        A frame with fewer than ``cond_frames`` frames before it comes from the marginal priors
        (as in the official code). Those are trained only on frames the loss scores without a
        full history: with ``context_frames >= cond_frames`` (both paper configs) give at
        least ``cond_frames`` known frames, or train with ``score_context``.
        """
        b, t = video.shape[:2]
        k = int(known[0].sum())
        if k == t:
            return video.clone()
        temperature = opts.temperature
        n = self.model_cfg.cond_frames
        if self._fast_frame is None and self._auto_graphs and video.is_cuda:
            self.graph_sampler()
        history = self._encode_history(video[:, max(0, k - n) : k])
        refresh_folds(self)  # graph replays cannot notice changed parameters themselves
        next_frame = self._fast_frame or self._next_frame
        out = video.clone()
        for i in range(k, t):
            noise = None
            if temperature != 0:
                noise = [
                    _noise(torch.randn, (b, *shape), video, opts.generator)
                    for shape in self.latent_shapes
                ]
                components = self.model_cfg.prior_components
                if components > 1:  # Gumbel noise: draws each clip's component
                    u = _noise(torch.rand, (b, components), video, opts.generator)
                    noise.append(-torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-7))))
            full = history[0].shape[1] == n
            frame, latents = next_frame(history if full else None, noise, temperature, b)
            out[:, i] = frame
            # contiguous: the same strides every frame (no recompiles of a compiled sampler)
            history = [
                torch.cat([h, z[:, None]], 1)[:, -n:].contiguous() for h, z in zip(history, latents)
            ]
        return out

    def _encode_history(self, frames: Tensor) -> list[Tensor]:
        """Latents ``(B, k, c, h, w)`` per level of known frames (at their bins' centres)."""
        b, k = frames.shape[:2]
        if k == 0:
            return [frames.new_zeros(b, 0, *shape) for shape in self.latent_shapes]
        return (self._fast_encode or self._known_latents)(frames)

    def _known_latents(self, frames: Tensor) -> list[Tensor]:
        b = frames.shape[0]
        x = to_flow(frames, self.model_cfg.n_bits)
        latents, _, _ = self.glow.encode(rearrange(x, "b t c h w -> (b t) c h w"))
        return [rearrange(z, "(b t) c h w -> b t c h w", b=b).contiguous() for z in latents]

    def _next_frame(
        self,
        history: list[Tensor] | None,
        noise: list[Tensor] | None,
        temperature: float,
        batch: int,
    ) -> tuple[Tensor, list[Tensor]]:
        """One frame ``(B, C, H, W)`` in ``[-1, 1]`` (float32, on the ``n_bits`` grid) and its
        latents per level. ``history``: the last ``cond_frames`` latents per level, or ``None``
        (marginal priors). ``noise``: standard normal per level, or ``None`` for the means;
        with a mixture prior, Gumbel noise ``(B, K)`` last, which draws each clip's component
        from the weights (without noise: the likeliest component)."""
        latents: list[Tensor] = [torch.empty(0)] * len(self.priors)
        component = None
        if history is not None and self.model_cfg.prior_components > 1:
            logits = self.priors[-1].component_logits(history[-1])
            component = (logits if noise is None else logits + noise[-1]).argmax(1)

        def sample(level: int, context: Tensor | None) -> Tensor:
            past = None if history is None else history[level]
            mean, log_scale = self.priors[level](past, context, batch)
            if component is not None:  # every level takes the frame's component
                pick = component.view(-1, 1, 1, 1, 1).expand(-1, 1, *mean.shape[2:])
                mean, log_scale = mean.gather(1, pick)[:, 0], log_scale.gather(1, pick)[:, 0]
            z = mean if noise is None else mean + temperature * torch.exp(log_scale) * noise[level]
            latents[level] = z
            return z

        top = sample(len(self.priors) - 1, None)
        return from_flow(self.glow.decode(top, sample), self.model_cfg.n_bits), latents

    def compile_sampler(self, **compile_kwargs: object) -> None:
        """Sample each generated frame through ``torch.compile`` (e.g.
        ``mode="reduce-overhead"`` for CUDA graphs); the known frames are encoded eagerly.

        (Compiling the encoding as well failed under ``reduce-overhead``: CUDA graph trees
        overwrote its outputs before the first frame read them.) The first frame of each kind
        (with or without history, autocast state) also runs eagerly once, so that the layers'
        folded tensors exist before the compiled code reads them (see
        ``videoflow_layers.Folded``)."""
        compiled = torch.compile(self._next_frame, **compile_kwargs)  # type: ignore[arg-type]
        primed: set[tuple] = set()

        def frame(
            history: list[Tensor] | None,
            noise: list[Tensor] | None,
            temperature: float,
            batch: int,
        ) -> tuple[Tensor, list[Tensor]]:
            device = next(self.parameters()).device.type
            kind = (history is None, torch.is_autocast_enabled(device))
            if kind not in primed:
                self._next_frame(history, noise, temperature, batch)
                primed.add(kind)
            return compiled(history, noise, temperature, batch)

        self._fast_frame = frame
        self._fast_encode = None

    def graph_sampler(self) -> None:
        """Sample on CUDA by replaying the encoding of the known frames and each frame's step
        from CUDA graphs: the same kernels as eager sampling without its launch overhead, and
        no compilation. One capture per batch size, temperature and autocast state (the first
        call of each runs the step a few times to capture it). Captures read the parameters in
        place, so later training is seen."""
        self._fast_frame = CudaGraphed(self._next_frame)
        self._fast_encode = CudaGraphed(self._known_latents)

    def eager_sampler(self) -> None:
        """Sample eagerly from now on, on CUDA too (after ``compile_sampler`` or
        ``graph_sampler``, or instead of the default CUDA graphs)."""
        self._fast_frame = self._fast_encode = None
        self._auto_graphs = False


def _noise(
    draw: Callable[..., Tensor],
    shape: tuple[int, ...],
    like: Tensor,
    generator: torch.Generator | None,
) -> Tensor:
    """``torch.rand`` / ``torch.randn`` of ``shape`` on ``like``'s device, float32; the
    generator may live on another device."""
    device = like.device if generator is None else generator.device
    return draw(shape, generator=generator, device=device).to(like.device)


def assign_balanced(scores: Tensor, share: float = 1.0) -> Tensor:
    """Hard assignment of N rows to K components in bounded shares: ``scores`` ``(N, K)`` (a
    frame's log-probability with each component) -> the component of each row ``(N,)``.

    Greedy: (row, component) pairs are taken in order of falling score, a component accepting
    at most ``ceil(share * N / K)`` rows (``share`` in ``[1, K]``). Equal shares (1) are what
    makes every component learn (as balanced cluster assignment does in SwAV or k-means with
    equal sizes): a component that fits no frame best still gets its share, and so a gradient;
    a larger share still leaves each component at least ``N - (K - 1) * capacity`` rows where
    that is positive. Ties go to the lower component."""
    n, k = scores.shape
    capacity = math.ceil(share * n / k - 1e-9)  # a whole product stays whole (1.5 * 16 / 2)
    order = scores.float().flatten().argsort(descending=True, stable=True).tolist()
    chosen, load, left = [-1] * n, [0] * k, n
    for index in order:
        row, component = divmod(index, k)
        if chosen[row] < 0 and load[component] < capacity:
            chosen[row] = component
            load[component] += 1
            left -= 1
            if not left:
                break
    return torch.tensor(chosen, device=scores.device)
