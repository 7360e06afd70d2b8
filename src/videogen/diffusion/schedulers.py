"""Noise schedules and samplers, by name, from diffusers.

The training process and every sampler share one beta schedule (``DiffusionConfig``); a sampler
is a diffusers scheduler built on it, chosen by name and step count.
"""

from __future__ import annotations

import inspect

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from videogen.config import DiffusionConfig

# our names -> diffusers' prediction_type
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
BETA_SCHEDULES = {
    "linear": "linear",
    "cosine": "squaredcos_cap_v2",
    "scaled_linear": "scaled_linear",
}

SAMPLERS: dict[str, tuple[type[SchedulerMixin], dict]] = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": (UniPCMultistepScheduler, {}),
    "deis": (DEISMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
}


def _common(cfg: DiffusionConfig) -> dict:
    common = {
        "num_train_timesteps": cfg.timesteps,
        "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end,
        "beta_schedule": BETA_SCHEDULES[cfg.schedule],
        "prediction_type": PREDICTION_TYPES[cfg.prediction],
    }
    if cfg.zero_terminal_snr:
        # named only when on: several diffusers schedulers lack the argument
        common["rescale_betas_zero_snr"] = True
    return common


def takes_zero_terminal_snr(name: str) -> bool:
    """Whether sampler ``name`` can run on a schedule rescaled to zero terminal SNR."""
    cls, _ = SAMPLERS[name]
    return "rescale_betas_zero_snr" in inspect.signature(cls.__init__).parameters


def make_scheduler(name: str, cfg: DiffusionConfig, **overrides) -> SchedulerMixin:
    """A fresh diffusers scheduler for sampler ``name`` over the training schedule of ``cfg``.

    ``overrides`` go to the scheduler's constructor (``eta`` is not one: pass it to ``step``).
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if cfg.zero_terminal_snr and not takes_zero_terminal_snr(name):
        able = ", ".join(n for n in SAMPLERS if takes_zero_terminal_snr(n))
        raise ValueError(
            f"sampler {name!r} cannot run with diffusion.zero_terminal_snr=true; use one of {able}"
        )
    cls, kw = SAMPLERS[name]
    kwargs = {**_common(cfg), **kw, **overrides}
    if name == "ddim":
        # the schedule ends at the clean sample, as the DDIM paper's sampler does
        kwargs.setdefault("set_alpha_to_one", True)
    if name in ("ddpm", "ddim"):
        # clipping is the process's job (VideoDiffusion.sample's clip_denoised), for every sampler
        kwargs.setdefault("clip_sample", False)
    return cls(**kwargs)


def alphas_cumprod(cfg: DiffusionConfig) -> torch.Tensor:
    """``ᾱ_t`` for t = 0..T-1 (float64) of the training schedule."""
    sched = DDPMScheduler(**_common(cfg))
    return sched.alphas_cumprod.to(torch.float64)


def step_takes(scheduler: SchedulerMixin, argument: str) -> bool:
    """Whether ``scheduler.step`` accepts keyword ``argument`` (``variance_noise``, ``eta``)."""
    return argument in inspect.signature(scheduler.step).parameters


def is_stochastic(name: str) -> bool:
    """Samplers that draw fresh noise at every step."""
    return name in ("ddpm", "dpm++sde", "euler_a")
