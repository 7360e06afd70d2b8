"""Gaussian diffusion over video with known frames: the adapter the pixel methods use on top of
the process over any tensor (``videogen.diffusion.gaussian``).

A *video denoiser* is any callable ``denoiser(x_t, t, cond, known) -> prediction`` where

- ``x_t``  ``(B, T, C, H, W)``: the noisy clip, with the clean known frames written in when the
  process was built with ``known_in_input=True`` (RaMViD); otherwise noisy everywhere (MCVD);
- ``t``    ``(B,)`` float timesteps in ``[0, timesteps)``;
- ``cond`` ``(B, T, C, H, W)``: the clean known frames, zeros elsewhere;
- ``known`` ``(B, T)`` bool;

and the prediction is eps, v or x0 (``DiffusionConfig.prediction``) for every frame. The adapter
turns it into the process's ``denoiser(x_t, t)``: it writes the known frames in, passes them as
``cond``, takes the loss on the unknown frames only (or on ``loss_mask``, a per-frame mask), and
at sampling imposes the known frames at every step, returns them exactly and does
classifier-free guidance against the nothing-known branch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from videogen.config import DiffusionConfig
from videogen.diffusion.gaussian import GaussianDiffusion, NoiseFn, gaussian_noise

Denoiser = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def _frames(mask: Tensor, like: Tensor) -> Tensor:
    """``(B, T)`` -> ``(B, T, 1, 1, 1)``."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - 2)))


class VideoDiffusion(GaussianDiffusion):
    """The process of a pixel method: ``GaussianDiffusion`` (schedule, target, noise policy)
    with known frames.

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
        super().__init__(cfg, noise_fn=noise_fn, data_range=(-1.0, 1.0))
        self.known_in_input = known_in_input

    def clipped(self, denoiser: Denoiser) -> Denoiser:
        """``denoiser`` with the clean clip it implies clipped to [-1, 1]
        (``GaussianDiffusion.clip_prediction``)."""

        def clipped_denoiser(x_t: Tensor, t: Tensor, cond: Tensor, known: Tensor) -> Tensor:
            return self.clip_prediction(x_t, t, denoiser(x_t, t, cond, known))

        return clipped_denoiser

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
        known_f = _frames(known, x0)
        cond = x0 * known_f

        def net(x_t: Tensor, tt: Tensor) -> Tensor:
            if self.known_in_input:
                x_t = torch.where(known_f, x0, x_t)
            return denoiser(x_t, tt, cond, known)

        mask = ~known if loss_mask is None else loss_mask
        out = self.denoising_loss(
            net, x0, weight=_frames(mask, x0), t=t, noise=noise, generator=generator
        )
        return {"loss": out["loss"], "t": out["t"]}

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
        known_f = _frames(known, video)
        clean = video * known_f
        guided = guidance != 1.0
        if guided:
            no_known = torch.zeros_like(known)
            zeros = torch.zeros_like(clean)

        def net(x_in: Tensor, tt: Tensor) -> Tensor:
            cond_in = torch.where(known_f, clean, x_in) if self.known_in_input else x_in
            if not guided:
                pred = denoiser(cond_in, tt, clean, known)
                return self.clip_prediction(cond_in, tt, pred) if clip_denoised else pred
            # The unconditional branch sees known positions noised to the current level,
            # as in its training, rather than clean frames.
            idx = tt.round().long().clamp(0, self.cfg.timesteps - 1)
            noised = self.q_sample(clean, idx, self.noise(tuple(video.shape), video, generator))
            unc_in = torch.where(known_f, noised, x_in)
            x_both = torch.cat([cond_in, unc_in])
            t_both = torch.cat([tt, tt])
            both = denoiser(x_both, t_both, torch.cat([clean, zeros]), torch.cat([known, no_known]))
            if clip_denoised:
                both = self.clip_prediction(x_both, t_both, both)
            c, u = both.chunk(2)
            return u + guidance * (c - u)

        x = self.sample_loop(
            net,
            video,
            sampler=sampler,
            steps=steps,
            generator=generator,
            eta=eta,
            progress=progress,
            x_init=x_init,
        )
        return torch.where(known_f, video, x)
