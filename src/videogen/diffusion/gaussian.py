"""Gaussian diffusion over any tensor: schedule, prediction target, loss weighting, the training
loss and the sampler loop over diffusers schedulers.

Nothing here knows about frames: ``x0`` is any batch ``(B, ...)`` (pixel clips, PVDM's latent
planes, a tiny autoencoder's codes). A *denoiser* is ``denoiser(x_t, t) -> prediction`` with
``x_t`` shaped like ``x0``, ``t`` ``(B,)`` float timesteps in ``[0, timesteps)``, and the
prediction eps, v or x0 (``DiffusionConfig.prediction``). Known-frame conditioning is an adapter
on top (``videogen.diffusion.process.VideoDiffusion``).

Settings of the method that owns the process:

- ``noise``: the noise policy, ``noise(shape, generator=, device=, dtype=) -> Tensor``. The
  default draws i.i.d. standard normals; a *structured* policy (VideoFusion's frame-correlated
  noise) is used for every draw of the process, so ancestral samplers take it per step
  (DDPM runs as DDIM with η = 1, which is DDPM's posterior step with the noise as an argument).
- ``data_range``: the range of clean data, ``(-1, 1)`` for video: samples are clamped to it at
  the end, and ``clip_denoised`` clips each implied clean sample to it. ``None`` for latents,
  which have no range.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from videogen.config import ConfigError, DiffusionConfig
from videogen.diffusion.schedulers import alphas_cumprod, is_stochastic, make_scheduler, step_takes

TensorDenoiser = Callable[[Tensor, Tensor], Tensor]
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


def bcast(values: Tensor, like: Tensor) -> Tensor:
    """``(B,)`` -> ``(B, 1, 1, ...)`` broadcasting against ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


class GaussianDiffusion(nn.Module):
    """The diffusion process of a method over tensors of any shape (see the module docstring).

    ``cfg`` gives the schedule, the prediction target and the loss weighting.
    """

    def __init__(
        self,
        cfg: DiffusionConfig,
        *,
        noise_fn: NoiseFn = gaussian_noise,
        data_range: tuple[float, float] | None = (-1.0, 1.0),
    ) -> None:
        if cfg.zero_terminal_snr and cfg.prediction != "v":
            raise ConfigError(
                f"diffusion.zero_terminal_snr=true needs diffusion.prediction=v (got "
                f"{cfg.prediction!r}): at zero SNR an {cfg.prediction} prediction does not "
                "determine the clean clip"
            )
        if cfg.loss_weighting == "min_snr" and cfg.min_snr_gamma <= 0:
            raise ConfigError(f"diffusion.min_snr_gamma={cfg.min_snr_gamma} must be > 0")
        if cfg.timestep_sampling == "logit_normal" and cfg.timestep_std <= 0:
            raise ConfigError(f"diffusion.timestep_std={cfg.timestep_std} must be > 0")
        super().__init__()
        self.cfg = cfg
        self.noise_fn = noise_fn
        self.data_range = data_range
        abar = alphas_cumprod(cfg)
        # buffers outside the state dict: they move with the method that owns the process
        # (``method.to(device)``) and are never checkpointed. Moved on first use instead, inside
        # a compiled training step on a GPU, the move failed the compiled graph's guards at the
        # next step, which compiled the whole step a second time (2.4 minutes, session 9)
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)
        # from float64: in float32, 1 - ᾱ near t = 0 keeps only three digits
        self.register_buffer("_snr", (abar / (1 - abar)).float(), persistent=False)

    @property
    def structured(self) -> bool:
        """True when the noise policy is not i.i.d. Gaussian."""
        return self.noise_fn is not gaussian_noise

    # ------------------------------------------------------------------ forward process

    def schedule(self, device: torch.device | str) -> Tensor:
        """``ᾱ_t`` on ``device``. A process used apart from a method (not moved with it) moves
        its schedule there once: a blocking host-to-device copy per step would sync the
        stream."""
        if self.alphas_cumprod.device != torch.device(device):
            self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self.alphas_cumprod

    def _coefs(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        abar = self.schedule(like.device)[t.long()]
        return bcast(abar.sqrt(), like).to(like.dtype), bcast((1 - abar).sqrt(), like).to(
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
        """The clean sample implied by a network prediction at ``x_t``."""
        a, s = self._coefs(t, x_t)
        if self.cfg.prediction == "eps":
            return (x_t - s * pred) / a
        if self.cfg.prediction == "x0":
            return pred
        return a * x_t - s * pred

    def from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """The network prediction (eps, v or x0) that implies clean sample ``x0`` at ``x_t``."""
        if self.cfg.prediction == "x0":
            return x0
        a, s = self._coefs(t, x_t)
        eps = (x_t - a * x0) / s
        return eps if self.cfg.prediction == "eps" else a * eps - s * x0

    def clip_prediction(self, x_t: Tensor, t: Tensor, pred: Tensor) -> Tensor:
        """``pred`` with the clean sample it implies clipped to ``data_range``, returned in the
        process's parametrisation (improved-diffusion's ``clip_denoised``, used by the official
        RaMViD and MCVD samplers). Where nothing is clipped the prediction is unchanged; without
        it an eps error at high noise becomes an x0 error up to sqrt((1 - ᾱ) / ᾱ) ≈ 157 times
        larger. ``t`` are float timesteps."""
        low, high = self.data_range or (-float("inf"), float("inf"))
        pred, x_t = pred.float(), x_t.float()
        idx = t.round().long().clamp(0, self.cfg.timesteps - 1)
        return self.from_x0(x_t, idx, self.predict_x0(x_t, idx, pred).clamp(low, high))

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
        """Training timesteps ``(B,)`` long in ``[0, timesteps)``, drawn as
        ``diffusion.timestep_sampling`` says."""
        gen_device = generator.device if generator is not None else device
        steps = self.cfg.timesteps
        if self.cfg.timestep_sampling == "uniform":
            t = torch.randint(0, steps, (batch,), generator=generator, device=gen_device)
            return t.to(device)
        n = torch.randn((batch,), generator=generator, device=gen_device, dtype=torch.float64)
        u = torch.sigmoid(self.cfg.timestep_mean + self.cfg.timestep_std * n)
        return (u * steps).long().clamp(0, steps - 1).to(device)

    def noise(
        self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """A draw of the process noise of ``shape`` on ``like``'s device and dtype."""
        return self.noise_fn(shape, generator=generator, device=like.device, dtype=like.dtype)

    # ------------------------------------------------------------------ training

    def denoising_loss(
        self,
        denoiser: TensorDenoiser,
        x0: Tensor,
        *,
        weight: Tensor | None = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Mean squared error of ``denoiser(x_t, t)`` against the target, over ``x0`` ``(B,
        ...)``.

        ``weight`` (0/1 or any non-negative values, broadcasting against ``x0`` with size-1
        dimensions) selects the elements that count; the mean is over the elements it covers.
        Each sample's error is scaled by ``loss_weight(t)``. Returns ``loss``, ``t``, ``noise``.
        """
        if t is None:
            t = self.sample_timesteps(x0.shape[0], x0.device, generator)
        if noise is None:
            noise = self.noise(tuple(x0.shape), x0, generator)
        pred = denoiser(self.q_sample(x0, t, noise), t.float())
        err = (pred.float() - self.target(x0, t, noise).float()).square()
        if weight is None:
            weight = torch.ones((1,) * x0.dim(), device=x0.device)
        weight = weight.to(pred.dtype)
        err = err * weight
        if self.cfg.loss_weighting != "none":
            err = err * bcast(self.loss_weight(t), err)
        covered = (weight.sum() * (x0.numel() // weight.numel())).clamp_min(1.0)
        return {"loss": err.sum() / covered, "t": t, "noise": noise}

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample_loop(
        self,
        denoiser: TensorDenoiser,
        like: Tensor,
        *,
        sampler: str = "ddpm",
        steps: int = 100,
        generator: torch.Generator | None = None,
        eta: float | None = None,
        progress: bool = False,
        x_init: Tensor | None = None,
        clip_denoised: bool = False,
    ) -> Tensor:
        """Run a diffusers sampler from noise to a sample shaped like ``like`` (its device and
        dtype too), calling ``denoiser(x_in, t)`` once per step with the scheduler's scaled
        input. With ``clip_denoised`` each prediction's implied clean sample is clipped to
        ``data_range``; the result is clamped to ``data_range`` (solvers without per-step
        clipping can overshoot at the end)."""
        if clip_denoised:
            net = denoiser

            def denoiser(x: Tensor, t: Tensor) -> Tensor:
                return self.clip_prediction(x, t, net(x, t))

        sched = make_scheduler(sampler, self.cfg)
        sched.set_timesteps(steps, device=like.device)
        shape = tuple(like.shape)
        x = (
            self.noise(shape, like, generator) * sched.init_noise_sigma
            if x_init is None
            else x_init
        )
        step_kwargs: dict = {}
        if eta is not None and step_takes(sched, "eta"):
            step_kwargs["eta"] = eta
        if self.structured and is_stochastic(sampler) and not step_takes(sched, "variance_noise"):
            # This sampler draws i.i.d. noise inside diffusers; the process needs its own noise at
            # every step. DDIM with eta = 1 is DDPM ancestral sampling with the posterior variance
            # and takes the noise as an argument.
            if sampler != "ddpm":
                raise ValueError(
                    f"sampler {sampler!r} draws its own i.i.d. noise, which this method's "
                    "structured noise cannot replace; use ddpm, ddim, dpm++, dpm++sde or unipc"
                )
            sched = make_scheduler("ddim", self.cfg)
            sched.set_timesteps(steps, device=like.device)
            step_kwargs["eta"] = 1.0
        uses_variance_noise = self.structured and step_takes(sched, "variance_noise")
        if step_takes(sched, "generator") and not uses_variance_noise:
            # DDIM refuses a generator next to variance_noise; the noise is drawn here then
            step_kwargs["generator"] = generator

        # the step values read once: a float() of a device tensor per step would sync the host
        values = sched.timesteps.tolist()
        steps_iter = zip(sched.timesteps, values)
        for t, value in tqdm(
            steps_iter, total=len(values), disable=not progress, desc="sampling", leave=False
        ):
            x_in = sched.scale_model_input(x, t)
            pred = denoiser(x_in, torch.full((shape[0],), float(value), device=like.device))
            if uses_variance_noise:
                step_kwargs["variance_noise"] = self.noise(shape, like, generator)
            x = sched.step(pred.to(x.dtype), t, x, **step_kwargs).prev_sample
        return x if self.data_range is None else x.clamp(*self.data_range)
