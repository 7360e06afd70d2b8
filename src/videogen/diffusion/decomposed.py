"""VideoFusion's decomposed noise (Luo et al., *VideoFusion: Decomposed Diffusion Models for
High-Quality Video Generation*, CVPR 2023, Sec. 3).

The noise of frame ``i`` of a clip is split into a *base* noise ``b`` shared by every frame and a
*residual* noise ``r^i`` of its own::

    eps^i = sqrt(λ^i) b + sqrt(1 - λ^i) r^i,        b, r^i ~ N(0, I) independent

so every frame's noise is still standard normal, and two frames' noises are correlated by
``sqrt(λ^i λ^j)``. The noisy clip is the usual ``x_t^i = sqrt(ᾱ_t) x^i + sqrt(1 - ᾱ_t) eps^i``.

The key frame is the middle one, ``floor(N / 2)``. Its λ defaults to 1 (``key_lambda``): its
noise *is* the base noise, so the base generator that estimates ``b`` from the noisy key frame
is exactly an image denoiser and a pretrained image diffusion model fits it. With
``key_lambda=None`` the key frame takes the same λ as the others. The paper's ablation favours
λ = 0.5 for the other frames; a per-frame schedule ``λ^0..λ^{N-1}`` may replace both.

``DecomposedNoise`` is the ``noise_fn`` that ``videogen.diffusion.VideoDiffusion`` draws every
noise of the process with (training noise, the initial sample, the per-step noise of ancestral
samplers). ``remove_base`` and ``combine`` are the two halves of the denoiser's arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


def key_frame(frames: int) -> int:
    """Index of the key frame of a clip of ``frames`` frames: the middle one, ``floor(N/2)``."""
    if frames < 1:
        raise ValueError(f"a clip needs at least one frame, got frames={frames}")
    return frames // 2


def frame_lambdas(
    frames: int,
    lam: float = 0.5,
    key_lambda: float | None = 1.0,
    schedule: Sequence[float] | None = None,
) -> Tensor:
    """The share of base noise in each frame's noise, ``(frames,)`` float32 in ``[0, 1]``.

    ``schedule`` (one value per frame) overrides ``lam`` and ``key_lambda``; otherwise every
    frame gets ``lam`` and the key frame ``key_lambda`` (``None``: ``lam`` as well).
    """
    if schedule is not None:
        if len(schedule) != frames:
            raise ValueError(
                f"the λ schedule has {len(schedule)} values but the clip has {frames} frames; "
                "give one λ per frame (model.lambdas) or leave it unset"
            )
        values = [float(v) for v in schedule]
    else:
        values = [float(lam)] * frames
        if key_lambda is not None:
            values[key_frame(frames)] = float(key_lambda)
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"every λ must lie in [0, 1], got {values}")
    return torch.tensor(values, dtype=torch.float32, device="cpu")


def noise_covariance(lambdas: Tensor) -> Tensor:
    """Covariance ``(T, T)`` between the noises of two frames at one pixel: ``sqrt(λ^i λ^j)``
    off the diagonal, 1 on it."""
    root = lambdas.double().sqrt()
    cov = root[:, None] * root[None, :]
    cov.fill_diagonal_(1.0)
    return cov


def _coefs(lambdas: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """``sqrt(λ)`` and ``sqrt(1 - λ)`` shaped ``(1, T, 1, 1, 1)`` for ``like`` ``(B, T, ...)``."""
    lam = lambdas.to(device=like.device, dtype=torch.float32)
    shape = (1, -1, *([1] * (like.dim() - 2)))
    return lam.sqrt().reshape(shape).to(like.dtype), (1 - lam).sqrt().reshape(shape).to(like.dtype)


def combine(base: Tensor, residual: Tensor, lambdas: Tensor) -> Tensor:
    """``eps^i = sqrt(λ^i) base + sqrt(1 - λ^i) residual^i``.

    ``base`` is ``(B, 1, C, H, W)`` (one per clip) or ``(B, T, C, H, W)``; ``residual`` is
    ``(B, T, C, H, W)``; ``lambdas`` ``(T,)``.
    """
    a, s = _coefs(lambdas, residual)
    return a * base + s * residual


def remove_base(x_t: Tensor, base: Tensor, lambdas: Tensor, noise_scale: Tensor) -> Tensor:
    """Take the (estimated) base noise out of every frame of the noisy clip::

        x_t^i - sqrt(1 - ᾱ_t) sqrt(λ^i) b  =  sqrt(ᾱ_t) x^i + sqrt(1 - ᾱ_t) sqrt(1 - λ^i) r^i

    ``x_t`` ``(B, T, C, H, W)``, ``base`` ``(B, 1 or T, C, H, W)``, ``noise_scale`` ``(B,)``
    holding ``sqrt(1 - ᾱ_t)``.
    """
    a, _ = _coefs(lambdas, x_t)
    s = noise_scale.reshape(-1, *([1] * (x_t.dim() - 1))).to(x_t.dtype)
    return x_t - s * a * base


def _randn(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str
) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


def decomposed_noise(
    shape: tuple[int, ...],
    lambdas: Tensor,
    *,
    generator: torch.Generator | None = None,
    base_generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw decomposed noise of ``shape`` ``(B, T, C, H, W)``.

    The base noise comes from ``base_generator`` when given (so it can be held fixed while the
    residuals vary, as the paper's long videos do), else from ``generator``, like the residuals.
    """
    if len(shape) != 5:
        raise ValueError(f"decomposed noise needs a (B, T, C, H, W) shape, got {shape}")
    b, t = shape[:2]
    if lambdas.numel() != t:
        raise ValueError(f"{lambdas.numel()} values of λ for a clip of {t} frames")
    base = _randn((b, 1, *shape[2:]), base_generator or generator, device)
    residual = _randn(tuple(shape), generator, device)
    return combine(base, residual, lambdas).to(dtype)


@dataclass
class DecomposedNoise:
    """The ``noise_fn`` of VideoFusion's process: ``noise(shape, generator=, device=, dtype=)``.

    λ per frame comes from ``frame_lambdas(T, lam, key_lambda, schedule)`` for the clip length
    ``T = shape[1]``. With ``base_seed`` set, the base noise is drawn from a generator of its
    own, seeded once with ``base_seed`` at the first draw: two instances with the same seed draw
    the same sequence of base noises (one per call) whatever ``generator`` the residuals use.
    """

    lam: float = 0.5
    key_lambda: float | None = 1.0
    schedule: tuple[float, ...] | None = None
    base_seed: int | None = None
    _base_generator: torch.Generator | None = field(default=None, init=False, repr=False)
    # λ per (clip length, device): one host-to-device copy, not one per draw
    _lambdas: dict = field(default_factory=dict, init=False, repr=False)

    def lambdas(self, frames: int, device: torch.device | str = "cpu") -> Tensor:
        if torch.compiler.is_compiling():
            # a tensor made inside a compiled step lives in that graph's memory: under CUDA
            # graphs (reduce-overhead) the next replay overwrites a cached one, and the compiled
            # step makes these values once anyway
            return frame_lambdas(frames, self.lam, self.key_lambda, self.schedule).to(device)
        key = (frames, str(torch.device(device)))
        if key not in self._lambdas:
            values = frame_lambdas(frames, self.lam, self.key_lambda, self.schedule)
            self._lambdas[key] = values.to(device)
        return self._lambdas[key]

    def with_base_seed(self, seed: int) -> DecomposedNoise:
        """A fresh copy whose base noise sequence is fixed by ``seed``."""
        return DecomposedNoise(self.lam, self.key_lambda, self.schedule, base_seed=seed)

    def __call__(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        base_generator = None
        if self.base_seed is not None:
            if self._base_generator is None:
                gen_device = generator.device if generator is not None else torch.device(device)
                self._base_generator = torch.Generator(gen_device).manual_seed(self.base_seed)
            base_generator = self._base_generator
        return decomposed_noise(
            tuple(shape),
            self.lambdas(shape[1], device),
            generator=generator,
            base_generator=base_generator,
            device=device,
            dtype=dtype,
        )
