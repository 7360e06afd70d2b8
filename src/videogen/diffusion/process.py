"""Gaussian diffusion over video with known frames: the training loss and the sampling loop.

A *denoiser* is any callable ``denoiser(x_t, t, cond, known) -> prediction`` where

- ``x_t``  ``(B, T, C, H, W)``: the noisy clip, with the clean known frames written in when the
  process was built with ``known_in_input=True`` (RaMViD); otherwise noisy everywhere (MCVD);
- ``t``    ``(B,)`` float timesteps in ``[0, timesteps)``;
- ``cond`` ``(B, T, C, H, W)``: the clean known frames, zeros elsewhere;
- ``known`` ``(B, T)`` bool;

and the prediction is eps, v or x0 (``DiffusionConfig.prediction``) for every frame. Loss is
taken on the unknown frames only (or on ``loss_mask``); at sampling, known frames are imposed at
every step and returned exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from videogen.config import ConfigError, DiffusionConfig
from videogen.diffusion.schedulers import (
    alphas_cumprod,
    is_stochastic,
    make_scheduler,
    step_takes,
)

Denoiser = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
NoiseFn = Callable[..., Tensor]


def gaussian_noise(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Independent standard normal noise. The generator may live on another device."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _bcast(values: Tensor, like: Tensor) -> Tensor:
    """``(B,)`` -> ``(B, 1, 1, ...)`` broadcasting against ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def _frames(mask: Tensor, like: Tensor) -> Tensor:
    """``(B, T)`` -> ``(B, T, 1, 1, 1)``."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - 2)))


class VideoDiffusion:
    """The diffusion process of a method: schedule, target, loss and sampler loop.

    ``noise_fn(shape, generator=, device=, dtype=)`` draws the process noise; VideoFusion passes
    its decomposed (frame-correlated) noise, everything else the default i.i.d. Gaussian.
    """

    def __init__(
        self,
        cfg: DiffusionConfig,
        *,
        known_in_input: bool = True,
        noise_fn: NoiseFn = gaussian_noise,
    ) -> None:
        if cfg.zero_terminal_snr and cfg.prediction != "v":
            raise ConfigError(
                f"diffusion.zero_terminal_snr=true needs diffusion.prediction=v (got "
                f"{cfg.prediction!r}): at zero SNR an {cfg.prediction} prediction does not "
                "determine the clean clip"
            )
        if cfg.loss_weighting == "min_snr" and cfg.min_snr_gamma <= 0:
            raise ConfigError(f"diffusion.min_snr_gamma={cfg.min_snr_gamma} must be > 0")
        self.cfg = cfg
        self.known_in_input = known_in_input
        self.noise_fn = noise_fn
        abar = alphas_cumprod(cfg)
        self.alphas_cumprod = abar.float()
        # from float64: in float32, 1 - ᾱ near t = 0 keeps only three digits
        self._snr = (abar / (1 - abar)).float()

    # ------------------------------------------------------------------ forward process

    def schedule(self, device: torch.device | str) -> Tensor:
        """``ᾱ_t`` on ``device``, moved there once: a blocking host-to-device copy per step
        would sync the stream."""
        if self.alphas_cumprod.device != torch.device(device):
            self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self.alphas_cumprod

    def _coefs(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        abar = self.schedule(like.device)[t.long()]
        return _bcast(abar.sqrt(), like).to(like.dtype), _bcast((1 - abar).sqrt(), like).to(
            like.dtype
        )

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) noise``."""
        a, s = self._coefs(t, x0)
        return a * x0 + s * noise

    def target(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """What the network regresses: eps, v = sqrt(ᾱ) eps - sqrt(1-ᾱ) x0, or x0."""
        if self.cfg.prediction == "eps":
            return noise
        if self.cfg.prediction == "x0":
            return x0
        a, s = self._coefs(t, x0)
        return a * noise - s * x0

    def predict_x0(self, x_t: Tensor, t: Tensor, pred: Tensor) -> Tensor:
        """The clean clip implied by a network prediction at ``x_t``."""
        a, s = self._coefs(t, x_t)
        if self.cfg.prediction == "eps":
            return (x_t - s * pred) / a
        if self.cfg.prediction == "x0":
            return pred
        return a * x_t - s * pred

    def from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """The network prediction (eps, v or x0) that implies clean clip ``x0`` at ``x_t``."""
        if self.cfg.prediction == "x0":
            return x0
        a, s = self._coefs(t, x_t)
        eps = (x_t - a * x0) / s
        return eps if self.cfg.prediction == "eps" else a * eps - s * x0

    def clipped(self, denoiser: Denoiser) -> Denoiser:
        """``denoiser`` with the clean clip it implies clipped to [-1, 1], returned in the
        process's parametrisation (improved-diffusion's ``clip_denoised``, used by the official
        RaMViD and MCVD samplers). Where nothing is clipped the prediction is unchanged; without
        it an eps error at high noise becomes an x0 error up to sqrt((1 - ᾱ) / ᾱ) ≈ 157 times
        larger."""

        def clipped_denoiser(x_t: Tensor, t: Tensor, cond: Tensor, known: Tensor) -> Tensor:
            pred = denoiser(x_t, t, cond, known).float()
            x_t = x_t.float()
            idx = t.round().long().clamp(0, self.cfg.timesteps - 1)
            x0 = self.predict_x0(x_t, idx, pred).clamp(-1.0, 1.0)
            return self.from_x0(x_t, idx, x0)

        return clipped_denoiser

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio ``ᾱ_t / (1 - ᾱ_t)`` at integer timesteps ``t`` ``(B,)``."""
        if self._snr.device != t.device:
            self._snr = self._snr.to(t.device)
        return self._snr[t.long()]

    def loss_weight(self, t: Tensor) -> Tensor:
        """Per-sample weight ``(B,)`` of the squared error at timesteps ``t``.

        min-SNR-γ weights the x0 error by ``min(SNR, γ)``; written in each prediction's own
        error that is ``min(SNR, γ) / SNR`` for eps, ``min(SNR, γ) / (SNR + 1)`` for v and
        ``min(SNR, γ)`` for x0 (the eps error is SNR times the x0 error, the v error SNR + 1
        times).
        """
        if self.cfg.loss_weighting == "none":
            return torch.ones(t.shape, device=t.device)
        snr = self.snr(t)
        clipped = snr.clamp(max=self.cfg.min_snr_gamma)
        if self.cfg.prediction == "eps":
            return clipped / snr
        if self.cfg.prediction == "v":
            return clipped / (snr + 1)
        return clipped

    def sample_timesteps(
        self, batch: int, device: torch.device | str, generator: torch.Generator | None = None
    ) -> Tensor:
        gen_device = generator.device if generator is not None else device
        t = torch.randint(0, self.cfg.timesteps, (batch,), generator=generator, device=gen_device)
        return t.to(device)

    # ------------------------------------------------------------------ training

    def loss(
        self,
        denoiser: Denoiser,
        x0: Tensor,
        known: Tensor,
        *,
        loss_mask: Tensor | None = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Denoising loss on the frames of ``loss_mask`` (default: the unknown frames).

        ``x0`` ``(B, T, C, H, W)`` in [-1, 1], ``known`` ``(B, T)``. Returns ``loss`` (mean
        squared error per masked element, each clip's error times ``loss_weight(t)``) and ``t``.
        """
        b = x0.shape[0]
        if t is None:
            t = self.sample_timesteps(b, x0.device, generator)
        if noise is None:
            noise = self.noise_fn(
                tuple(x0.shape), generator=generator, device=x0.device, dtype=x0.dtype
            )
        x_t = self.q_sample(x0, t, noise)
        known_f = _frames(known, x0)
        cond = x0 * known_f
        if self.known_in_input:
            x_t = torch.where(known_f, x0, x_t)
        pred = denoiser(x_t, t.float(), cond, known)
        mask = ~known if loss_mask is None else loss_mask
        weight = _frames(mask, x0).to(pred.dtype)
        err = (pred.float() - self.target(x0, t, noise).float()).square() * weight
        if self.cfg.loss_weighting != "none":
            err = err * _bcast(self.loss_weight(t), err)
        per_frame = x0[0, 0].numel()
        loss = err.sum() / (weight.sum() * per_frame).clamp_min(1.0)
        return {"loss": loss, "t": t}

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(
        self,
        denoiser: Denoiser,
        video: Tensor,
        known: Tensor,
        *,
        sampler: str = "ddpm",
        steps: int = 100,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
        eta: float | None = None,
        progress: bool = False,
        x_init: Tensor | None = None,
        clip_denoised: bool = True,
    ) -> Tensor:
        """Generate the unknown frames of ``video`` with a diffusers sampler.

        At every step the clean known frames are written into the network input (or passed as
        ``cond``), the network is called, the scheduler steps. With ``guidance != 1`` the
        prediction is ``u + guidance * (c - u)``, ``u`` from the same network with nothing known
        (the branch masked training learns), both branches in one batched call. With
        ``clip_denoised`` the clean clip each prediction implies is clipped to [-1, 1].

        Returns ``(B, T, C, H, W)`` in [-1, 1] with the known frames of ``video`` bit-exact.
        """
        if clip_denoised:
            denoiser = self.clipped(denoiser)
        sched = make_scheduler(sampler, self.cfg)
        sched.set_timesteps(steps, device=video.device)
        known_f = _frames(known, video)
        clean = video * known_f
        shape = tuple(video.shape)

        def noise(shape=shape) -> Tensor:
            return self.noise_fn(shape, generator=generator, device=video.device, dtype=video.dtype)

        x = noise() * sched.init_noise_sigma if x_init is None else x_init
        step_kwargs: dict = {}
        structured = self.noise_fn is not gaussian_noise
        if eta is not None and step_takes(sched, "eta"):
            step_kwargs["eta"] = eta
        if structured and is_stochastic(sampler) and not step_takes(sched, "variance_noise"):
            # This sampler draws i.i.d. noise inside diffusers; the process needs its own noise at
            # every step. DDIM with eta = 1 is DDPM ancestral sampling with the posterior variance
            # and takes the noise as an argument.
            if sampler != "ddpm":
                raise ValueError(
                    f"sampler {sampler!r} draws its own i.i.d. noise, which this method's "
                    "structured noise cannot replace; use ddpm, ddim, dpm++, dpm++sde or unipc"
                )
            sched = make_scheduler("ddim", self.cfg)
            sched.set_timesteps(steps, device=video.device)
            step_kwargs["eta"] = 1.0
        uses_variance_noise = structured and step_takes(sched, "variance_noise")
        if step_takes(sched, "generator") and not uses_variance_noise:
            # DDIM refuses a generator next to variance_noise; the noise is drawn here then
            step_kwargs["generator"] = generator
        guided = guidance != 1.0
        if guided:
            no_known = torch.zeros_like(known)
            zeros = torch.zeros_like(clean)

        # the step values read once: a float() of a device tensor per step would sync the host
        values = sched.timesteps.tolist()
        steps_iter = zip(sched.timesteps, values)
        for t, value in tqdm(
            steps_iter, total=len(values), disable=not progress, desc="sampling", leave=False
        ):
            x_in = sched.scale_model_input(x, t)
            tt = torch.full((shape[0],), float(value), device=video.device)
            cond_in = torch.where(known_f, clean, x_in) if self.known_in_input else x_in
            if guided:
                # The unconditional branch sees known positions noised to the current level,
                # as in its training, rather than clean frames.
                idx = torch.full((shape[0],), int(round(value)), device=video.device)
                idx = idx.clamp(0, self.cfg.timesteps - 1)
                unc_in = torch.where(known_f, self.q_sample(clean, idx, noise()), x_in)
                both = denoiser(
                    torch.cat([cond_in, unc_in]),
                    torch.cat([tt, tt]),
                    torch.cat([clean, zeros]),
                    torch.cat([known, no_known]),
                )
                c, u = both.chunk(2)
                pred = u + guidance * (c - u)
            else:
                pred = denoiser(cond_in, tt, clean, known)
            if uses_variance_noise:
                step_kwargs["variance_noise"] = noise()
            x = sched.step(pred.to(x.dtype), t, x, **step_kwargs).prev_sample
        # video lives in [-1, 1]; solvers without per-step clipping can overshoot at the end
        return torch.where(known_f, video, x.clamp(-1.0, 1.0))
