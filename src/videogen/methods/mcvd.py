"""MCVD: Masked Conditional Video Diffusion (Voleti et al., NeurIPS 2022).

A clip is ``past | current | future``. A 2D U-Net (``videogen.models.unet_stack2d``) denoises
the current block, its frames stacked in channels, conditioned on the clean past and future
frames (concatenated in channels, or through SPATIN). In training the past block is dropped
(zeroed) with probability ``p_mask_past`` and the future block with ``p_mask_future``,
independently, so one model does future prediction, past prediction, interpolation and
unconditional generation; the loss covers the current block only. Longer videos are made
block by block by ``videogen.rollout``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from videogen import tasks
from videogen.config import Config, ConfigError, from_dict
from videogen.diffusion import VideoDiffusion
from videogen.methods.base import SampleOptions, VideoMethod
from videogen.models.unet_stack2d import StackUNet, StackUNetSpec
from videogen.tasks import McvdMasks


@dataclass
class ModelConfig:
    """The ``model:`` section of an MCVD config. Names of the official config in brackets."""

    past: int = 5  # conditioning frames before the current block [data.num_frames_cond]
    current: int = 5  # frames generated per call [data.num_frames]
    future: int = 0  # conditioning frames after it [data.num_frames_future]
    p_mask_past: float = 0.0  # probability of dropping the past block [data.prob_mask_cond]
    p_mask_future: float = 0.0  # same for the future block [data.prob_mask_future]
    cond: Literal["concat", "spatin"] = "concat"  # [model.spade: false / true]
    ngf: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (8, 16, 32)
    head_channels: int = 64  # channels per attention head [model.n_head_channels]
    dropout: float = 0.1
    spatin_dim: int = 128  # hidden channels of each SPATIN conv net [model.spade_dim]
    # "fir": the official [1, 3, 3, 1] FIR resampling (exact, with stock ops);
    # "naive": average pooling / nearest neighbour.
    resample: Literal["fir", "naive"] = "fir"
    # "half_sum": the official loss, 0.5 * squared error summed over the current block of a
    # clip, mean over the batch (its size sets how often train.grad_clip bites);
    # "mean": mean squared error per element.
    loss_reduction: Literal["half_sum", "mean"] = "half_sum"


class MCVD(VideoMethod):
    """MCVD over windows of ``past + current + future`` frames (``cfg.data.frames``)."""

    name = "mcvd"
    title = "MCVD"
    ModelConfig = ModelConfig

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        m: ModelConfig = from_dict(ModelConfig, cfg.model, "model")
        self.model_cfg = m
        if m.past < 0 or m.future < 0 or m.current < 1:
            raise ConfigError(
                f"model.past={m.past}, model.current={m.current}, model.future={m.future}: "
                "need past >= 0, current >= 1, future >= 0"
            )
        if m.past + m.current + m.future != cfg.data.frames:
            raise ConfigError(
                f"data.frames={cfg.data.frames} must equal model.past + model.current + "
                f"model.future = {m.past} + {m.current} + {m.future}; set data.frames="
                f"{m.past + m.current + m.future}"
            )
        for key in ("p_mask_past", "p_mask_future"):
            if not 0.0 <= getattr(m, key) <= 1.0:
                raise ConfigError(f"model.{key}={getattr(m, key)} must be in [0, 1]")
        self.net = StackUNet(
            StackUNetSpec(
                channels=cfg.data.channels,
                frames=m.current,
                cond_frames=m.past + m.future,
                size=cfg.data.size,
                cond=m.cond,
                ngf=m.ngf,
                ch_mult=tuple(m.ch_mult),
                num_res_blocks=m.num_res_blocks,
                attn_resolutions=tuple(m.attn_resolutions),
                head_channels=m.head_channels,
                dropout=m.dropout,
                spatin_dim=m.spatin_dim,
                resample=m.resample,
            )
        )
        self.masks = McvdMasks(m.past, m.current, m.future, m.p_mask_past, m.p_mask_future)
        self.diffusion = VideoDiffusion(cfg.diffusion, known_in_input=False)

    # ------------------------------------------------------------------ the denoiser

    @property
    def _current(self) -> slice:
        return slice(self.model_cfg.past, self.model_cfg.past + self.model_cfg.current)

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor, known: Tensor) -> Tensor:
        """The engine's denoiser: ``(B, T, C, H, W)`` in, prediction for the current block out
        (zeros at the other frames, which carry no loss and are never sampled).

        The network sees the noisy current frames and the clean past and future frames; a block
        that is not known (dropped in training, the unconditional branch of guidance) is zeros.
        """
        p, c = self.model_cfg.past, self.model_cfg.current
        x_cur = x_t[:, p : p + c]
        ctx = None
        if self.model_cfg.past + self.model_cfg.future:
            keep = torch.cat([known[:, :p], known[:, p + c :]], dim=1)
            ctx = torch.cat([cond[:, :p], cond[:, p + c :]], dim=1)
            ctx = ctx * keep[:, :, None, None, None].to(ctx.dtype)
        out = self.net(x_cur, t, ctx)
        before = out.new_zeros(out.shape[0], p, *out.shape[2:])
        after = out.new_zeros(out.shape[0], self.model_cfg.future, *out.shape[2:])
        return torch.cat([before, out, after], dim=1)

    # ------------------------------------------------------------------ training

    def loss(self, video: Tensor) -> dict[str, Tensor]:
        """Denoising loss on the current block of ``video`` ``(B, T, C, H, W)`` in [-1, 1], with
        the past / future blocks dropped at random (``McvdMasks``)."""
        self.check_video(video)
        b = video.shape[0]
        known = self.masks(b, video.shape[1], device=video.device)
        out = self.diffusion.loss(
            self.denoise,
            video,
            known,
            loss_mask=self.masks.current_mask(b, device=video.device),
        )
        mse = out["loss"]
        if self.model_cfg.loss_reduction == "half_sum":
            per_clip = self.model_cfg.current * math.prod(video.shape[2:])
            loss = 0.5 * per_clip * mse
        else:
            loss = mse
        return {"loss": loss, "mse": mse.detach()}

    # ------------------------------------------------------------------ sampling

    @property
    def context(self) -> int:
        """Rollout conditions each new block on the ``past`` frames before it."""
        return max(1, self.model_cfg.past)

    def usable_known(self, known: Tensor) -> Tensor:
        """A past or future block given only in part is dropped (MCVD conditions on whole
        blocks); the current block is never conditioning."""
        m = self.model_cfg
        use = known.clone()
        use[:, self._current] = False
        for block in (slice(0, m.past), slice(m.past + m.current, self.window)):
            partial = ~use[:, block].all(1)
            use[partial, block] = False
        return use

    def fills(self, known: Tensor) -> Tensor:
        """MCVD generates its current block only."""
        return self.masks.current_mask(known.shape[0], device=known.device)

    def default_known(self, batch: int = 1) -> Tensor:
        """Prediction: the past block known, the rest unknown."""
        return tasks.predict(self.window, self.model_cfg.past, batch).to(self.device)

    def supported_known(self, known: Tensor) -> str | None:
        """``None`` when MCVD can fill ``known`` ``(B, T)`` in one call, else the reason.

        Supported: ``T == past + current + future``; in each row the past block all known or
        all unknown, the future block likewise, the current block all unknown.
        """
        m = self.model_cfg
        if known.dim() != 2 or known.shape[1] != self.window:
            return (
                f"MCVD takes windows of past + current + future = {m.past} + {m.current} + "
                f"{m.future} = {self.window} frames; known has shape {tuple(known.shape)} "
                "(use videogen.rollout for other lengths)"
            )
        known = known.bool()
        cur = known[:, self._current]
        if bool(cur.any()):
            return (
                f"MCVD generates the whole current block (frames {m.past}.."
                f"{m.past + m.current - 1}) and cannot condition on frames inside it; mark them "
                "unknown"
            )
        blocks = (("past", known[:, : m.past]), ("future", known[:, m.past + m.current :]))
        for name, block in blocks:
            if block.shape[1] and bool((block.any(1) & ~block.all(1)).any()):
                return (
                    f"MCVD conditions on the whole {name} block or none of it; known marks only "
                    f"part of the {name} block (frames of one block must be all known or all "
                    "unknown)"
                )
        return None

    def _generate(self, video: Tensor, known: Tensor, opts: SampleOptions) -> Tensor:
        """Generate the current block; a known past / future block conditions it, an unknown one
        is dropped (zeros), as in masked training: past unknown + future unknown =
        unconditional generation, past known = prediction, both known = interpolation.

        Every frame outside the current block comes back exactly as given in ``video``: the
        known ones and also unknown past / future frames, which MCVD does not generate.
        ``guidance`` != 1 mixes in the unconditional prediction (classifier-free guidance,
        possible thanks to masked training).
        """
        out = self.diffusion.sample(
            self.denoise,
            video,
            known,
            sampler=opts.sampler,
            steps=opts.steps,
            guidance=opts.guidance,
            generator=opts.generator,
        )
        current = self.masks.current_mask(video.shape[0], device=video.device)
        return torch.where(current[:, :, None, None, None], out, video)

    def check_video(self, video: Tensor) -> None:
        if video.dim() != 5 or video.shape[1] != self.window:
            raise ValueError(
                f"MCVD expects clips (B, {self.window}, C, H, W) (past + current + future = "
                f"{self.model_cfg.past} + {self.model_cfg.current} + {self.model_cfg.future}); got "
                f"{tuple(video.shape)}"
            )
