"""VideoFusion (Luo et al., *VideoFusion: Decomposed Diffusion Models for High-Quality Video
Generation*, CVPR 2023).

The noise of every frame is a shared base noise plus a per-frame residual noise
(``videogen.diffusion.decomposed``), and two jointly trained networks match that split
(``videogen.models.videofusion``): an image U-Net (a diffusers ``UNet2DModel``, optionally
pretrained) estimates the base noise from the noisy key frame once per clip, and a space-time
U-Net estimates every frame's residual once the base is taken out. The training loss is the
paper's, on the combined noise ``sqrt(λ^i) b̂ + sqrt(1 - λ^i) r̂^i`` of every frame, with the base
generator receiving gradients through the key frame only. Sampling runs both stages at every step
of any diffusers sampler, every noise drawn decomposed; class labels take classifier-free
guidance.

The authors did not release code; this is a first implementation. Choices where the paper is
silent are stated in ``VideoFusionModelConfig`` and the model module. Beyond the paper, with
``cond_frames`` the residual generator also sees the clean known frames and their mask (the
engine's known-frame conditioning, with RaMViD's random training masks), so one model does
prediction, infilling and unconditional generation, and ``videogen.rollout`` can extend videos.
The paper's own long videos (one base noise for all windows, fresh residuals per window) are
``VideoFusion.generate_long``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from videogen.config import Config, ConfigError, from_dict
from videogen.diffusion import Denoiser, VideoDiffusion
from videogen.diffusion.decomposed import DecomposedNoise, key_frame
from videogen.methods.base import SampleOptions, VideoMethod, refuse_unresolved
from videogen.models.videofusion import (
    DEFAULT_BASE,
    ResidualUNet,
    VideoFusionNet,
    base_architecture,
    build_base_unet,
    load_base_unet,
)
from videogen.tasks import RamvidMasks


def _default_base() -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in DEFAULT_BASE.items()}


@dataclass
class VideoFusionModelConfig:
    """The ``model:`` section of a VideoFusion config.

    Decomposed noise (paper Sec. 3.2): ``lam`` is λ of every frame but the key frame (the
    paper's ablation favours 0.5); ``key_lambda`` is λ of the key frame, 1 by default so that its
    noise is the base noise and the base generator is an image denoiser (``null``: same as
    ``lam``); ``lambdas`` is a per-frame schedule that replaces both.

    Base generator: ``base`` holds ``diffusers.UNet2DModel`` settings (block_out_channels,
    layers_per_block, down/up_block_types, attention_head_dim, ...; channels and size come from
    the data section); ``base_pretrained`` a local ``UNet2DModel`` folder to start from instead.
    ``build_method`` reads it once, before a run writes its config, and records the folder's
    architecture with ``base_pretrained: null`` and ``base_loaded_from: <folder>``, so that the
    run folder and the export agree and an export reloads without the folder.
    ``base_class_cond``: the base U-Net gets the class label through its class embedding (the
    paper does not say how its class-conditional model conditions the base generator; with
    ``key_lambda`` 1 the key frame comes from the base generator alone, so it needs the label).
    ``stop_base_grad``: gradients reach the base generator through the key frame only (the
    paper's choice). ``base_frames``: frames of each clip the base generator learns from as an
    image denoiser; 1 is the paper's (the key frame, through the combined loss), ``k`` > 1 adds
    ``k - 1`` other frames of every clip, drawn at random, each with its own timestep and plain
    Gaussian noise, to a loss of the base generator alone, each image weighted as the key frame
    (beyond the paper: it starts its base from an image model trained on images; this trains
    one on the clips' frames alongside). Needs λ = 1 at the key frame, where the base
    generator's task is exactly image denoising.

    Residual generator (our layout, the paper gives none): an improved-diffusion style U-Net of
    2D residual blocks with ``channels`` x ``channel_mult`` features, ``num_res_blocks`` per
    level, spatial attention at ``attention_resolutions`` (px), temporal attention after every
    block.

    Conditioning: ``num_classes`` > 0 makes both generators class-conditional, with the label
    dropped to a null label with probability ``p_drop_label`` for classifier-free guidance.
    ``cond_frames`` (beyond the paper) adds the clean known frames and their mask as residual
    inputs and trains on RaMViD's random masks (``p_uncond``, ``max_known``).
    """

    lam: float = 0.5
    key_lambda: float | None = 1.0
    lambdas: tuple[float, ...] | None = None
    base: dict[str, Any] = field(default_factory=_default_base)
    base_pretrained: str | None = None
    base_loaded_from: str | None = None  # written by the method: provenance only
    base_class_cond: bool = True
    stop_base_grad: bool = True
    base_frames: int = 1
    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16, 8)
    heads: int = 4
    head_dim: int | None = None
    dropout: float = 0.1
    num_classes: int = 0
    p_drop_label: float = 0.1
    cond_frames: bool = False
    p_uncond: float = 0.25
    max_known: int | None = None


def other_frames(batch: int, frames: int, k: int, device: torch.device | str) -> Tensor:
    """``(batch, k)`` frame indices, each row ``k`` distinct frames other than the key frame,
    drawn uniformly."""
    scores = torch.rand(batch, frames, device=device)
    # rand draws from [0, 1): the key frame sorts last and is never among the first k
    scores[:, key_frame(frames)] = 2.0
    return scores.argsort(dim=1)[:, :k]


def _class_embeds(m: VideoFusionModelConfig) -> int | None:
    """Class embeddings of the base U-Net: the classes and the null label, when it takes them."""
    return m.num_classes + 1 if m.num_classes and m.base_class_cond else None


class VideoFusion(VideoMethod):
    """Decomposed video diffusion: a base image generator once per clip, a residual space-time
    generator for all frames. ``loss(video, labels=None)``, ``generate(video, known, ...,
    labels=None)``, ``generate_long(frames, ...)``."""

    name = "videofusion"
    title = "VideoFusion"
    ModelConfig = VideoFusionModelConfig

    @property
    def num_classes(self) -> int:
        return self.model_cfg.num_classes

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        if cfg.diffusion.prediction != "eps":
            raise ConfigError(
                f"diffusion.prediction: VideoFusion decomposes the noise, so its networks "
                f"predict eps; got {cfg.diffusion.prediction!r}, set diffusion.prediction=eps"
            )
        m: VideoFusionModelConfig = from_dict(VideoFusionModelConfig, cfg.model, "model")
        self.model_cfg = m
        data = cfg.data
        self.noise = DecomposedNoise(m.lam, m.key_lambda, m.lambdas)
        try:
            lambdas = self.noise.lambdas(data.frames)
        except ValueError as err:
            raise ConfigError(f"model.lam / model.key_lambda / model.lambdas: {err}") from err
        if not 1 <= m.base_frames <= data.frames:
            raise ConfigError(
                f"model.base_frames must be between 1 and data.frames ({data.frames}), "
                f"got {m.base_frames}"
            )
        if m.base_frames > 1 and float(lambdas[key_frame(data.frames)]) != 1.0:
            raise ConfigError(
                f"model.base_frames={m.base_frames} trains the base generator as an image "
                f"denoiser, which it is only with λ = 1 at the key frame (model.key_lambda: 1); "
                f"got λ = {float(lambdas[key_frame(data.frames)])}"
            )
        refuse_unresolved("model.base_pretrained", m.base_pretrained, self.title or self.name)
        try:
            base = self._build_base(m, cfg)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        residual = ResidualUNet(
            in_channels=data.channels,
            extra_channels=data.channels + 1 if m.cond_frames else 0,
            image_size=data.size,
            channels=m.channels,
            channel_mult=m.channel_mult,
            num_res_blocks=m.num_res_blocks,
            attention_resolutions=m.attention_resolutions,
            heads=m.heads,
            head_dim=m.head_dim,
            dropout=m.dropout,
            num_classes=m.num_classes,
        )
        self.net = VideoFusionNet(
            base,
            residual,
            lambdas,
            stop_base_grad=m.stop_base_grad,
            base_class_cond=_class_embeds(m) is not None,
        )
        # The network sees every frame noisy (the key frame must be, for the base generator);
        # known frames arrive clean through ``cond``.
        self.diffusion = VideoDiffusion(cfg.diffusion, known_in_input=False, noise_fn=self.noise)
        self.masks = RamvidMasks(m.p_uncond, m.max_known) if m.cond_frames else None

    @staticmethod
    def _build_base(m: VideoFusionModelConfig, cfg: Config):
        """The base U-Net from ``model.base``. With a pretrained base its random start is
        replaced by the loaded weights, so it draws from a forked RNG: the residual generator
        starts from the same weights as when the base was loaded in place."""
        data = cfg.data
        with torch.random.fork_rng(enabled=m.base_loaded_from is not None, devices=[]):
            return build_base_unet(
                m.base, channels=data.channels, size=data.size, num_class_embeds=_class_embeds(m)
            )

    @classmethod
    def resolve_submodels(cls, cfg: Config) -> tuple[Config, dict[str, Tensor]]:
        """``model.base_pretrained`` (a diffusers ``UNet2DModel`` folder): its architecture goes
        into ``model.base``, the path into ``model.base_loaded_from``, its weights into the
        base generator; an export then needs no other file."""
        m: VideoFusionModelConfig = from_dict(VideoFusionModelConfig, cfg.model, "model")
        if not m.base_pretrained:
            return cfg, {}
        try:
            unet = load_base_unet(
                m.base_pretrained,
                channels=cfg.data.channels,
                size=cfg.data.size,
                num_class_embeds=_class_embeds(m),
            )
        except ValueError as err:
            raise ConfigError(str(err)) from err
        arch = {
            k: list(v) if isinstance(v, tuple) else v for k, v in base_architecture(unet).items()
        }
        resolved = cls.with_model(
            cfg, base=arch, base_pretrained=None, base_loaded_from=str(Path(m.base_pretrained))
        )
        return resolved, {f"net.base.{k}": v for k, v in unet.state_dict().items()}

    # ------------------------------------------------------------------ the denoiser

    def _noise_scale(self, t: Tensor) -> Tensor:
        """``sqrt(1 - ᾱ_t)`` ``(B,)`` for float timesteps ``t``."""
        abar = self.diffusion.schedule(t.device)
        index = t.round().long().clamp(0, abar.numel() - 1)
        return (1 - abar[index]).sqrt()

    def _extra(self, cond: Tensor, known: Tensor) -> Tensor | None:
        """The residual generator's conditioning channels: clean known frames, known mask."""
        if not self.model_cfg.cond_frames:
            return None
        mask = known.to(cond.dtype)[:, :, None, None, None].expand(-1, -1, 1, *cond.shape[-2:])
        return torch.cat([cond, mask], dim=2)

    def denoiser(self, labels: Tensor | None = None, guidance: float = 1.0) -> Denoiser:
        """The process's denoiser ``(x_t, t, cond, known) -> eps`` for class ``labels``.

        With ``guidance != 1`` and labels it does classifier-free guidance on the class, both
        branches (label, null label) in one batched call: ``u + guidance * (c - u)``.
        """

        def denoise(x_t: Tensor, t: Tensor, cond: Tensor, known: Tensor) -> Tensor:
            scale = self._noise_scale(t)
            extra = self._extra(cond, known)
            y = labels
            if y is not None and y.shape[0] != x_t.shape[0]:
                # the engine's own guidance stacks its two branches along the batch
                y = y.repeat(x_t.shape[0] // y.shape[0])
            if y is None or guidance == 1.0:
                return self.net(x_t, t, scale, y, extra)
            null = torch.full_like(y, self.model_cfg.num_classes)
            both = self.net(
                torch.cat([x_t, x_t]),
                torch.cat([t, t]),
                torch.cat([scale, scale]),
                torch.cat([y, null]),
                None if extra is None else torch.cat([extra, extra]),
            )
            c, u = both.chunk(2)
            return u + guidance * (c - u)

        return denoise

    # ------------------------------------------------------------------ training

    def check_video(self, video: Tensor) -> None:
        c, frames = self.cfg.data.channels, self.window
        if video.dim() != 5 or video.shape[2] != c or video.shape[1] != frames:
            raise ValueError(
                f"VideoFusion expects clips of shape (B, {frames}, {c}, H, W) in [-1, 1] "
                f"(one λ per frame fixes the clip length; longer videos go through "
                f"generate_long or videogen.rollout), got {tuple(video.shape)}"
            )

    def _train_labels(self, labels: Tensor | None, batch: int, device: torch.device):
        n = self.model_cfg.num_classes
        if not n:
            return None  # an unconditional model trained on labelled data ignores the labels
        null = torch.full((batch,), n, dtype=torch.long, device=device)
        if labels is None:
            return null
        labels = labels.to(device=device, dtype=torch.long, non_blocking=True)
        drop = torch.rand(batch, device=device) < self.model_cfg.p_drop_label
        return torch.where(drop, null, labels)

    def loss(self, video: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        """The paper's loss: mean squared error between every frame's decomposed noise and
        ``sqrt(λ^i) b̂ + sqrt(1 - λ^i) r̂^i``, over the unknown frames and the key frame.

        ``video`` ``(B, T, C, H, W)`` in [-1, 1]; ``labels`` ``(B,)`` long class indices
        (dropped to the null label with probability ``p_drop_label``). Returns ``loss``; with
        ``base_frames`` > 1 also ``base_loss`` (the base generator's image loss, part of
        ``loss``); with ``cond_frames`` also ``known_frames`` (mean known frames per clip).
        """
        self.check_video(video)
        b, frames = video.shape[:2]
        if self.masks is not None:
            # drawn on the CPU; a non-blocking copy keeps the host from waiting on the GPU
            known = self.masks(b, frames).to(video.device, non_blocking=True)
        else:
            known = torch.zeros(b, frames, dtype=torch.bool, device=video.device)
        # The key frame always carries loss: it is the base generator's only training signal.
        is_key = torch.arange(frames, device=video.device) == key_frame(frames)
        y = self._train_labels(labels, b, video.device)
        out = self.diffusion.loss(self.denoiser(y), video, known, loss_mask=~known | is_key)
        logs = {"loss": out["loss"]}
        extra = self.model_cfg.base_frames - 1
        if extra:
            idx = other_frames(b, frames, extra, video.device)
            image_loss = self.base_image_loss(video, idx, y)
            # each image counts as the key frame does among the frames that carry loss
            covered = (~known | is_key).float().sum(1).mean()
            logs = {"loss": out["loss"] + image_loss * extra / covered, "base_loss": image_loss}
        if self.masks is not None:
            logs["known_frames"] = known.float().sum(1).mean()
        return logs

    def base_image_loss(
        self,
        video: Tensor,
        idx: Tensor,
        labels: Tensor | None = None,
        *,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """The base generator's image denoising loss on frames ``idx`` ``(B, k)`` of ``video``
        ``(B, T, C, H, W)`` in [-1, 1]: the process's eps loss (with its loss weighting) over the
        ``B k`` frames, each with its own timestep ``t`` ``(B k,)`` and noise (drawn when not
        given; plain Gaussian, since a lone image has no base/residual split)."""
        b, k = idx.shape
        images = video[torch.arange(b, device=video.device)[:, None], idx].flatten(0, 1)
        y = None if labels is None else labels.repeat_interleave(k)
        if noise is None:
            noise = torch.randn_like(images)

        def base(x_t: Tensor, tt: Tensor) -> Tensor:
            return self.net.base_noise(x_t, tt, y)

        return self.diffusion.denoising_loss(base, images, t=t, noise=noise)["loss"]

    # ------------------------------------------------------------------ sampling

    def supported_known(self, known: Tensor) -> str | None:
        if known.shape[-1] != self.window:
            return (
                f"VideoFusion generates clips of exactly {self.window} frames (one λ per frame); "
                "for longer videos use generate_long or videogen.rollout"
            )
        if not self.model_cfg.cond_frames and bool(known.any()):
            return (
                "this VideoFusion model was trained without known frames (model.cond_frames: "
                "false) and only generates whole clips; train with model.cond_frames=true for "
                "prediction and infilling"
            )
        return None

    def default_known(self, batch: int = 1) -> Tensor:
        """The main task: prediction with ``cond_frames``, otherwise whole clips."""
        if self.model_cfg.cond_frames:
            return super().default_known(batch)
        return torch.zeros(batch, self.window, dtype=torch.bool, device=self.device)

    def _sample(
        self, diffusion: VideoDiffusion, video: Tensor, known: Tensor, opts: SampleOptions
    ) -> Tensor:
        n = self.model_cfg.num_classes
        class_guided = opts.labels is not None
        y = opts.labels
        if y is None and n:
            y = torch.full((video.shape[0],), n, dtype=torch.long, device=video.device)
        # Without labels, guidance is the engine's: against the branch with nothing known.
        engine_guidance = opts.guidance if self.model_cfg.cond_frames and not class_guided else 1.0
        diffusion.alphas_cumprod = self.diffusion.schedule(video.device)
        return diffusion.sample(
            self.denoiser(y, opts.guidance if class_guided else 1.0),
            video,
            known,
            sampler=opts.sampler,
            steps=opts.steps,
            guidance=engine_guidance,
            generator=opts.generator,
        )

    def _generate(self, video: Tensor, known: Tensor, opts: SampleOptions) -> Tensor:
        """Known frames come back bit-exact (they need ``cond_frames``). Without ``labels`` a
        class-conditional model samples the null label (unconditional); with labels,
        ``guidance`` is classifier-free guidance on the class, otherwise guidance against the
        nothing-known branch. Each sampler step calls the base generator once per clip and the
        residual generator once."""
        return self._sample(self.diffusion, video, known, opts)

    @torch.no_grad()
    def generate_long(
        self,
        frames: int,
        *,
        batch: int = 1,
        labels: Tensor | None = None,
        overlap: int = 0,
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A video of ``frames`` frames, ``(batch, frames, C, H, W)`` in [-1, 1], as the paper
        makes long videos: window after window, every noise of every window shares one base
        noise sequence (drawn once) while the residual noises are fresh, so the scene stays and
        the motion goes on.

        With ``overlap`` > 0 (needs ``cond_frames``, beyond the paper) each window also starts
        from the last ``overlap`` frames of the previous one as known frames, for continuity.
        """
        window, c, size = self.window, self.cfg.data.channels, self.cfg.data.size
        if not 0 <= overlap < window:
            raise ValueError(f"overlap must lie in [0, {window}), got {overlap}")
        if overlap and not self.model_cfg.cond_frames:
            raise ValueError(
                "overlapping windows need a model trained with known frames "
                "(model.cond_frames: true); use overlap=0"
            )
        if frames < 1:
            raise ValueError(f"frames must be positive, got {frames}")
        device = self.device
        opts = self.resolve_options(
            batch,
            device,
            steps=steps,
            sampler=sampler,
            guidance=guidance,
            generator=generator,
            labels=labels,
        )
        gen_device = generator.device if generator is not None else device
        base_seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device))
        out = torch.zeros(batch, frames, c, size, size, device=device)
        start = 0
        while True:
            clip = torch.zeros(batch, window, c, size, size, device=device)
            known = torch.zeros(batch, window, dtype=torch.bool, device=device)
            if start and overlap:
                clip[:, :overlap] = out[:, start : start + overlap]
                known[:, :overlap] = True
            # a fresh noise source per window, all with the same base noise sequence
            diffusion = VideoDiffusion(
                self.cfg.diffusion,
                known_in_input=False,
                noise_fn=self.noise.with_base_seed(base_seed),
            )
            clip = self._sample(diffusion, clip, known, opts)
            n = min(window, frames - start)
            out[:, start : start + n] = clip[:, :n]
            if start + window >= frames:
                return out
            start += window - overlap
