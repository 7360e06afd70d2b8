"""Bits per dimension for likelihood models (VideoFlow)."""

from __future__ import annotations

import math

from torch import Tensor


def bits_per_dim(log_density: Tensor, dims: int, bin_width: float = 2 / 256) -> Tensor:
    """Discrete bits per dimension from a continuous log density in nats.

    A model of video scaled to [-1, 1] from 8 bits assigns each pixel a bin of width
    ``bin_width`` (2/256), so the probability of the discrete video is about
    ``density * bin_width ** dims``; the result is ``-log2`` of that over ``dims``.
    """
    return -(log_density + dims * math.log(bin_width)) / (dims * math.log(2))
