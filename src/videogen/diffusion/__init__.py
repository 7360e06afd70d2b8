"""Gaussian diffusion over video with known frames, over diffusers schedulers."""

from videogen.diffusion.process import Denoiser, VideoDiffusion, gaussian_noise
from videogen.diffusion.schedulers import SAMPLERS, alphas_cumprod, make_scheduler

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "VideoDiffusion",
    "alphas_cumprod",
    "gaussian_noise",
    "make_scheduler",
]
