"""Gaussian diffusion over diffusers schedulers: the process over any tensor
(``GaussianDiffusion``) and its known-frame adapter for pixel video (``VideoDiffusion``)."""

from videogen.diffusion.gaussian import GaussianDiffusion, TensorDenoiser, gaussian_noise
from videogen.diffusion.process import Denoiser, VideoDiffusion
from videogen.diffusion.schedulers import SAMPLERS, alphas_cumprod, make_scheduler

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "GaussianDiffusion",
    "TensorDenoiser",
    "VideoDiffusion",
    "alphas_cumprod",
    "gaussian_noise",
    "make_scheduler",
]
