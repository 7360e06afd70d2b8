"""Spatial down- and upsampling for 2D ``(B, C, H, W)`` and 3D ``(B, C, T, H, W)`` maps.

3D maps are resampled in space only: none of the papers' video U-Nets downsample time. Their
convolutions may still look across ``time_kernel`` frames (RaMViD's 3x3x3 resampling convs).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from videogen.nn.resblocks import conv_nd


class Downsample(nn.Module):
    """Halve H and W: a stride-2 3x3 conv (``conv=True``) or 2x2 average pooling."""

    def __init__(
        self, channels: int, *, dims: int = 2, conv: bool = True, time_kernel: int = 1
    ) -> None:
        super().__init__()
        self.dims = dims
        stride = 2 if dims == 2 else (1, 2, 2)
        kernel = 3 if dims == 2 else (time_kernel, 3, 3)
        pad = 1 if dims == 2 else (time_kernel // 2, 1, 1)
        self.op = (
            conv_nd(dims, channels, channels, kernel, stride=stride, padding=pad)
            if conv
            else {2: nn.AvgPool2d, 3: nn.AvgPool3d}[dims](stride, stride)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W: nearest neighbour, then a 3x3 conv when ``conv=True``."""

    def __init__(
        self, channels: int, *, dims: int = 2, conv: bool = True, time_kernel: int = 1
    ) -> None:
        super().__init__()
        self.dims = dims
        kernel = 3 if dims == 2 else (time_kernel, 3, 3)
        pad = 1 if dims == 2 else (time_kernel // 2, 1, 1)
        self.conv = conv_nd(dims, channels, channels, kernel, padding=pad) if conv else None

    def forward(self, x: Tensor) -> Tensor:
        scale = 2.0 if self.dims == 2 else (1.0, 2.0, 2.0)
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
        return self.conv(x) if self.conv is not None else x
