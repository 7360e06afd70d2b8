"""The frame resizes of the FVD protocols, each exactly as its reference computes it.

- ``tf1_bilinear``: TensorFlow 1's ``tf.image.resize_bilinear`` with its defaults
  (``align_corners=False``, ``half_pixel_centers=False``), which the original FVD code
  (google-research ``frechet_video_distance.preprocess``) applies to every frame: output pixel
  ``i`` samples the input at ``i * in / out``, so the image shifts by up to half an input pixel
  against the half-pixel convention.
- ``half_pixel_bilinear``: PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)``
  without antialiasing: output pixel ``i`` samples ``(i + 0.5) * in / out - 0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def tf1_bilinear(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(N, C, H, W)`` float frames to ``size`` as TF1's ``resize_bilinear`` does."""
    for dim, n_out in ((-2, size[0]), (-1, size[1])):
        n_in = frames.shape[dim]
        # TF1 computes the source coordinate in float32 from the float32 scale in / out
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        src = torch.arange(n_out, dtype=torch.float32) * scale
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (src - lo.float()).to(frames.device, frames.dtype)
        shape = [1] * frames.ndim
        shape[dim] = n_out
        a = frames.index_select(dim, lo.to(frames.device))
        b = frames.index_select(dim, hi.to(frames.device))
        frames = a + (b - a) * frac.view(shape)
    return frames


def half_pixel_bilinear(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(N, C, H, W)`` float frames to ``size``, half-pixel centres, no antialiasing."""
    return F.interpolate(frames, size, mode="bilinear", align_corners=False)
