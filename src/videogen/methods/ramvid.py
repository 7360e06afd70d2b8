"""RaMViD (Höppe et al., *Diffusion Models for Video Prediction and Infilling*, TMLR 2022).

One 3D-convolution U-Net (``videogen.models.unet3d``) denoises the whole clip. Conditioning is
the paper's: the clean known frames are written into the noisy input at every step, with no
extra channels, and the loss is taken on the unknown frames only. Training draws the known set
at random (``videogen.tasks.RamvidMasks``): nothing with probability ``p_uncond``, otherwise
1..``max_known`` frames anywhere in the clip. So one model does prediction, past prediction,
infilling, temporal upsampling and unconditional generation, and any diffusers sampler runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from videogen.config import Config, from_dict
from videogen.diffusion import VideoDiffusion
from videogen.methods.base import SampleOptions, VideoMethod
from videogen.models.unet3d import UNet3D
from videogen.tasks import RamvidMasks


@dataclass
class RamvidModelConfig:
    """The ``model:`` section of a RaMViD config: network size and masking recipe.

    Defaults are the official BAIR flags (``--num_channels 128 --num_res_blocks 2
    --scale_time_dim 0``, improved-diffusion's 64 px defaults: channel_mult 1,2,3,4, attention
    at 16 and 8 px with 4 heads, scale/shift norm, no dropout; K = 4, p_U = 0.25).
    """

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16, 8)  # frame sizes (px) with attention
    heads: int = 4
    head_dim: int | None = None  # set to fix the head width instead of the head count
    dropout: float = 0.0
    resample_time_kernel: int = 3  # official: 3x3x3 down/upsampling convs; 1 = spatial only
    p_uncond: float = 0.25  # p_U: probability that no frame is known in a training clip
    max_known: int | None = 4  # K: at most this many known frames (None: up to frames - 1)
    activation_checkpointing: bool = False  # recompute each block in backward: less memory
    clip_denoised: bool = True  # sampling: clip the implied clean clip to [-1, 1] at each step


class Ramvid(VideoMethod):
    """Random-mask video diffusion. ``loss`` draws its own known-frame mask; ``generate`` fills
    any pattern of unknown frames in a clip of any length (the network is convolutional and
    attends over all positions)."""

    name = "ramvid"
    title = "RaMViD"
    ModelConfig = RamvidModelConfig

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        m: RamvidModelConfig = from_dict(RamvidModelConfig, cfg.model, "model")
        self.model_cfg = m
        self.unet = UNet3D(
            in_channels=cfg.data.channels,
            image_size=cfg.data.size,
            channels=m.channels,
            channel_mult=m.channel_mult,
            num_res_blocks=m.num_res_blocks,
            attention_resolutions=m.attention_resolutions,
            heads=m.heads,
            head_dim=m.head_dim,
            dropout=m.dropout,
            resample_time_kernel=m.resample_time_kernel,
            activation_checkpointing=m.activation_checkpointing,
            channels_last=cfg.train.channels_last,
        )
        self.diffusion = VideoDiffusion(cfg.diffusion, known_in_input=True)
        self.masks = RamvidMasks(p_uncond=m.p_uncond, max_known=m.max_known)

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor, known: Tensor) -> Tensor:
        """The process's denoiser: the known frames are already clean inside ``x_t``, so the
        network sees nothing else (``cond`` and ``known`` are unused by design)."""
        return self.unet(x_t, t)

    def loss(self, video: Tensor) -> dict[str, Tensor]:
        """Denoising loss on the unknown frames of ``video`` ``(B, T, C, H, W)`` in [-1, 1].

        Also returns ``known_frames``, the mean number of known frames per clip.
        """
        self._check_clips(video)
        b, t = video.shape[:2]
        # Drawn on the CPU; a non-blocking copy keeps the host from waiting on the GPU.
        known = self.masks(b, t).to(video.device, non_blocking=True)
        out = self.diffusion.loss(self.denoise, video, known)
        return {"loss": out["loss"], "known_frames": known.float().sum(1).mean()}

    def _generate(self, video: Tensor, known: Tensor, opts: SampleOptions) -> Tensor:
        """Any pattern of unknown frames in a clip of any length (``temperature`` has no
        meaning for this Gaussian process)."""
        return self.diffusion.sample(
            self.denoise,
            video,
            known,
            sampler=opts.sampler,
            steps=opts.steps,
            guidance=opts.guidance,
            generator=opts.generator,
            clip_denoised=self.model_cfg.clip_denoised,
        )
