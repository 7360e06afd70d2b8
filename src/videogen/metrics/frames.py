"""Per-frame PSNR and SSIM on images ``(..., C, H, W)`` in [0, 1], batched on any device.

SSIM follows Wang et al. 2004 as scikit-image computes it with ``gaussian_weights=True,
sigma=1.5, use_sample_covariance=False``: an 11-tap Gaussian window (radius int(3.5 sigma +
0.5)), K1 = 0.01, K2 = 0.03, population (co)variances, the map averaged over the pixels at least
5 from the border (scikit-image filters with reflection and then crops those 5 pixels, so only
"valid" windows count) and over channels. The window is separable: two 1-D convolutions.

``grey_uint8`` makes the input of MCVD's SSIM: 8-bit grey frames.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_pair(x: Tensor, y: Tensor, name: str) -> None:
    if x.shape != y.shape:
        raise ValueError(f"{name} compares images of one shape, got {tuple(x.shape)}, {y.shape}")
    if x.ndim < 3:
        raise ValueError(f"{name} takes (..., C, H, W) images, got shape {tuple(x.shape)}")


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image: ``(..., C, H, W) -> (...)``."""
    _check_pair(x, y, "psnr")
    dtype = torch.promote_types(x.dtype, torch.float32)
    mse = (x.to(dtype) - y.to(dtype)).square().mean(dim=(-3, -2, -1))
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5, dtype=torch.float32) -> Tensor:
    """The normalised 1-D Gaussian of ``scipy.ndimage.gaussian_filter`` (11 taps at 1.5)."""
    radius = int(truncate * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (taps / sigma) ** 2)
    return (w / w.sum()).to(dtype)


@functools.lru_cache(maxsize=16)
def _window_on(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    return gaussian_window(sigma, dtype=dtype).to(device)  # one copy per device, not per call


def ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Mean SSIM per image: ``(..., C, H, W) -> (...)``; images need H, W >= 11."""
    _check_pair(x, y, "ssim")
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    dtype = torch.promote_types(x.dtype, torch.float32)
    win = _window_on(sigma, dtype, x.device)
    k = win.numel()
    if h < k or w < k:
        raise ValueError(f"SSIM with an {k}-pixel window needs images of at least {k}x{k}")
    a = x.reshape(-1, 1, h, w).to(dtype)
    b = y.reshape(-1, 1, h, w).to(dtype)
    # one pass of the separable window over the five maps the statistics need
    maps = torch.cat([a, b, a * a, b * b, a * b])
    maps = F.conv2d(maps, win.view(1, 1, k, 1))
    maps = F.conv2d(maps, win.view(1, 1, 1, k))
    ux, uy, uxx, uyy, uxy = maps.chunk(5)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).view(*lead, c).mean(-1)


def grey_uint8(x: Tensor) -> Tensor:
    """Images ``(..., C, H, W)`` in [0, 1] -> uint8 grey ``(..., 1, H, W)`` as MCVD makes them
    for SSIM: torchvision's ``ToPILImage`` (``x * 255`` truncated to uint8), then PIL's
    ``convert("L")`` (ITU-R 601-2 luma in PIL's fixed point: ``(19595 R + 38470 G + 7471 B +
    32768) >> 16``); one channel passes through as it is."""
    if x.shape[-3] not in (1, 3):
        raise ValueError(f"grey_uint8 takes 1 or 3 channels, got shape {tuple(x.shape)}")
    levels = (x.clamp(0, 1) * 255).to(torch.uint8)
    if levels.shape[-3] == 1:
        return levels
    r, g, b = levels.long().unbind(-3)
    luma = (19595 * r + 38470 * g + 7471 * b + 32768) >> 16
    return luma.to(torch.uint8).unsqueeze(-3)
