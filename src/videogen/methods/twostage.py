"""A two-stage latent method, tiny, that proves the architecture PVDM needs (and shows how to
write it): stage 1 trains a per-frame autoencoder with an alternating adversarial loss, stage 2
a latent diffusion over the autoencoder's codes of a clip, with the autoencoder frozen.

Stage 1 (``model.stage: autoencoder``) declares two parameter groups, "autoencoder" and
"discriminator", updated one after the other every step (``training_phases``): the autoencoder
on reconstruction + ``adv_weight`` x the non-saturating generator loss, the discriminator on
real clips against detached reconstructions. The discriminator is optimised but not averaged
(``ParamGroup(ema=False)``). Its preview shows reconstructions; it cannot ``generate``.

Stage 2 (``model.stage: diffusion``) takes the stage-1 export by path
(``model.autoencoder.path``); ``resolve_submodels`` reads it once, records its settings and
provenance, and loads its weights into the frozen ``autoencoder`` (in no optimizer and not in
the EMA, but in every checkpoint and the export). A clip's codes ``(B, T, z, H/2, W/2)`` are
flattened to one latent ``(B, T z, H/2, W/2)``: the process is ``GaussianDiffusion`` over that
tensor (no clamping: codes have no range). Known frames condition through their codes and a
mask (RaMViD's random training masks); decoded frames fill the unknown ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from videogen.config import Config, ConfigError, from_dict
from videogen.diffusion import GaussianDiffusion
from videogen.methods.base import (
    ParamGroup,
    Pretrained,
    SampleOptions,
    VideoMethod,
    load_stage_one,
    refuse_unresolved,
)
from videogen.models.twostage import FrameAutoencoder, LatentDenoiser, PatchDiscriminator
from videogen.tasks import RamvidMasks


@dataclass
class TwoStageConfig:
    """The ``model:`` section. ``hidden``/``latent_channels``: the autoencoder (in stage 2
    recorded from the stage-1 export); ``disc_hidden``, ``adv_weight``, ``disc_lr`` (None:
    ``train.lr``): the adversarial stage; ``width``/``depth``: the latent denoiser;
    ``p_uncond``/``max_known``: stage 2's random known-frame masks."""

    stage: Literal["autoencoder", "diffusion"] = "autoencoder"
    hidden: int = 16
    latent_channels: int = 2
    disc_hidden: int = 16
    adv_weight: float = 0.1
    disc_lr: float | None = None
    autoencoder: Pretrained = field(default_factory=Pretrained)
    width: int = 32
    depth: int = 3
    p_uncond: float = 0.25
    max_known: int | None = None


class TwoStage(VideoMethod):
    """Autoencoder + adversary (stage 1), latent diffusion over frozen codes (stage 2)."""

    name = "twostage"
    title = "TwoStage"
    ModelConfig = TwoStageConfig
    ddp_find_unused = True  # the discriminator phase leaves the autoencoder without gradients
    sample_options = frozenset({"steps", "sampler"})

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        m: TwoStageConfig = from_dict(TwoStageConfig, cfg.model, "model")
        refuse_unresolved("model.autoencoder.path", m.autoencoder.path, self.title or self.name)
        if cfg.data.size % 2:
            raise ConfigError(f"data.size={cfg.data.size} must be even (codes are half size)")
        self.model_cfg = m
        c = cfg.data.channels
        self.autoencoder = FrameAutoencoder(c, m.hidden, m.latent_channels)
        if m.stage == "autoencoder":
            self.discriminator = PatchDiscriminator(c, m.disc_hidden)
            return
        self.autoencoder.requires_grad_(False)
        latent = cfg.data.frames * m.latent_channels
        self.denoiser = LatentDenoiser(latent, latent + cfg.data.frames, m.width, m.depth)
        self.diffusion = GaussianDiffusion(cfg.diffusion, data_range=None)
        self.masks = RamvidMasks(m.p_uncond, m.max_known)

    # ------------------------------------------------------------------ sub-model by path

    @classmethod
    def resolve_submodels(cls, cfg: Config) -> tuple[Config, dict[str, Tensor]]:
        """Stage 2's ``model.autoencoder.path``: a stage-1 export or run folder."""
        m: TwoStageConfig = from_dict(TwoStageConfig, cfg.model, "model")
        path = m.autoencoder.path
        if path is None:
            return cfg, {}
        if m.stage != "diffusion":
            raise ConfigError("model.autoencoder.path is for model.stage=diffusion")
        stage1, s1 = load_stage_one(cls, cfg, path)
        resolved = cls.with_model(
            cfg,
            hidden=s1.hidden,
            latent_channels=s1.latent_channels,
            autoencoder={"path": None, "loaded_from": str(Path(path))},
        )
        weights = {f"autoencoder.{k}": v for k, v in stage1.autoencoder.state_dict().items()}
        return resolved, weights

    # ------------------------------------------------------------------ stage 1

    def param_groups(self) -> dict[str, ParamGroup]:
        if self.model_cfg.stage == "diffusion":
            return {"model": ParamGroup(list(self.denoiser.parameters()))}
        return {
            "autoencoder": ParamGroup(list(self.autoencoder.parameters())),
            "discriminator": ParamGroup(
                list(self.discriminator.parameters()), lr=self.model_cfg.disc_lr, ema=False
            ),
        }

    def phase_loss(self, phase: str, video: Tensor, **extra: Any) -> dict[str, Tensor]:
        if phase == "discriminator":
            return self.discriminator_loss(video)
        return self.loss(video)

    def _frames(self, video: Tensor) -> Tensor:
        return rearrange(video, "b t c h w -> (b t) c h w")

    def reconstruct(self, video: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` through the autoencoder, frame by frame."""
        rec = self.autoencoder.decode(self.autoencoder.encode(self._frames(video)))
        return rearrange(rec, "(b t) c h w -> b t c h w", b=video.shape[0])

    def autoencoder_loss(self, video: Tensor) -> dict[str, Tensor]:
        """Mean squared reconstruction error + ``adv_weight`` x softplus(-D(reconstruction))."""
        rec = self.reconstruct(video)
        recon = F.mse_loss(rec, video)
        adv = F.softplus(-self.discriminator(self._frames(rec))).mean()
        return {"loss": recon + self.model_cfg.adv_weight * adv, "recon": recon.detach()}

    def discriminator_loss(self, video: Tensor) -> dict[str, Tensor]:
        """softplus(-D(real)) + softplus(D(reconstruction)), reconstructions detached."""
        with torch.no_grad():
            rec = self.reconstruct(video)
        real = self.discriminator(self._frames(video))
        fake = self.discriminator(self._frames(rec))
        return {"loss": F.softplus(-real).mean() + F.softplus(fake).mean()}

    # ------------------------------------------------------------------ stage 2

    def codes(self, video: Tensor) -> Tensor:
        """A clip's latent ``(B, T z, H/2, W/2)``."""
        z = self.autoencoder.encode(self._frames(video))
        return rearrange(z, "(b t) z h w -> b (t z) h w", b=video.shape[0])

    def _cond(self, z: Tensor, known: Tensor) -> Tensor:
        """Known frames' codes (zeros elsewhere) and one mask plane per frame."""
        per_frame = known.to(z.dtype).repeat_interleave(self.model_cfg.latent_channels, 1)
        planes = known.to(z.dtype)[:, :, None, None].expand(-1, -1, *z.shape[-2:])
        return torch.cat([z * per_frame[:, :, None, None], planes], dim=1)

    def loss(self, video: Tensor) -> dict[str, Tensor]:
        """Stage 1: the autoencoder's loss. Stage 2: denoising loss on the codes of the unknown
        frames of ``video`` ``(B, T, C, H, W)``, known frames drawn at random."""
        self._check_clips(video)
        if self.model_cfg.stage == "autoencoder":
            return self.autoencoder_loss(video)
        b, t = video.shape[:2]
        known = self.masks(b, t).to(video.device, non_blocking=True)
        with torch.no_grad():
            z = self.codes(video)
        cond = self._cond(z, known)
        unknown = (~known).repeat_interleave(self.model_cfg.latent_channels, 1)
        out = self.diffusion.denoising_loss(
            lambda z_t, tt: self.denoiser(z_t, tt, cond), z, weight=unknown[:, :, None, None]
        )
        return {"loss": out["loss"]}

    def supported_known(self, known: Tensor) -> str | None:
        if self.model_cfg.stage == "autoencoder":
            return (
                "this is stage 1 of twostage (an autoencoder): it reconstructs, it does not "
                "generate; train stage 2 (model.stage=diffusion, model.autoencoder.path=<this "
                "export>)"
            )
        if known.shape[-1] != self.window:
            return f"TwoStage generates clips of exactly {self.window} frames (data.frames)"
        return None

    def check_video(self, video: Tensor) -> None:
        size = self.cfg.data.size
        if tuple(video.shape[-2:]) != (size, size):
            raise ValueError(f"TwoStage expects {size}x{size} frames, got {tuple(video.shape)}")

    def _generate(self, video: Tensor, known: Tensor, opts: SampleOptions) -> Tensor:
        """Sample the clip's codes given the known frames' codes, decode, keep the known
        frames exactly."""
        b, t = video.shape[:2]
        z = self.codes(video)
        cond = self._cond(z, known)
        z = self.diffusion.sample_loop(
            lambda z_t, tt: self.denoiser(z_t, tt, cond),
            z,
            sampler=opts.sampler,
            steps=opts.steps,
            generator=opts.generator,
        )
        z = rearrange(z, "b (t z) h w -> (b t) z h w", t=t)
        frames = rearrange(self.autoencoder.decode(z), "(b t) c h w -> b t c h w", b=b)
        return torch.where(known[:, :, None, None, None], video, frames.to(video.dtype))

    @torch.no_grad()
    def preview(
        self, video: Tensor, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """Stage 1: clips and their reconstructions; stage 2: the default sample."""
        if self.model_cfg.stage == "autoencoder":
            return [video, self.reconstruct(video)], None
        return super().preview(video, generator)
