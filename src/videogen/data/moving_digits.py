"""Moving digits: Stochastic Moving MNIST (SVG, Denton & Fergus 2018; used by MCVD) and the
deterministic bouncing variant, generated on the fly.

The protocol, as in SVG's and MCVD's data loaders: a 64x64 canvas, 2 digits, each MNIST
digit resized to 32x32, a start position uniform over the canvas, an integer velocity per
axis uniform in [-4, 4]. Before each frame a digit that left the canvas is put back at the
wall; in the stochastic version it then draws a new velocity: a speed 1..4 away from that
wall and a new -4..4 on the other axis; in the deterministic version the velocity on that
axis is reflected. Digits are added and clipped at 255 (``combine="max"`` overlays them).
"""

from __future__ import annotations

import numpy as np

from videogen.data.clips import ClipShape, GeneratedSource
from videogen.data.digits import load_mnist, rendered_digits, resize_digits
from videogen.data.errors import DatasetError

OPTIONS = {
    "num_digits": 2,
    "deterministic": False,
    "mnist": None,  # path to MNIST (idx / .gz / mnist.npz / a folder); None = rendered glyphs
    "digit_size": None,  # default half the canvas: SVG/MCVD resize MNIST's digits to 32 of 64
    "max_speed": 4,  # velocities are integers in [-max_speed, max_speed] pixels per frame
    "combine": "sum",  # "sum" (clipped at 255, as the protocol) or "max"
}


def trajectories(
    rng: np.random.Generator,
    n: int,
    digits: int,
    frames: int,
    room: int,
    max_speed: int,
    deterministic: bool,
) -> np.ndarray:
    """Top-left corners ``int (n, frames, digits, 2)`` as (row, col), each in ``[0, room)``.

    ``room`` = canvas size - digit size: positions a digit can take fully inside the canvas.
    """
    size = (n, digits)
    pos = rng.integers(0, room, size=(n, digits, 2))
    vel = rng.integers(-max_speed, max_speed + 1, size=(n, digits, 2))
    out = np.empty((n, frames, digits, 2), dtype=np.int64)
    for t in range(frames):
        for axis in (0, 1):  # rows first, then columns, as the reference loop
            p, v = pos[..., axis], vel[..., axis]
            low, high = p < 0, p >= room
            hit = low | high
            if not hit.any():
                continue
            p[low], p[high] = 0, room - 1
            if deterministic:
                v[hit] = -v[hit]
            else:
                away = np.where(
                    low,
                    rng.integers(1, max_speed + 1, size=size),
                    rng.integers(-max_speed, 0, size=size),
                )
                other = rng.integers(-max_speed, max_speed + 1, size=size)
                v[hit] = away[hit]
                vel[..., 1 - axis][hit] = other[hit]
        out[:, t] = pos
        pos += vel
    return out


class MovingDigits(GeneratedSource):
    """``uint8 (T, size, size, 1)`` clips of ``num_digits`` digits bouncing in the canvas."""

    def __init__(
        self,
        shape: ClipShape,
        split: str = "train",
        num_digits: int = 2,
        deterministic: bool = False,
        mnist: str | None = None,
        digit_size: int | None = None,
        max_speed: int = 4,
        combine: str = "sum",
    ) -> None:
        super().__init__(shape)
        digit_size = digit_size or shape.size // 2
        if num_digits < 1:
            raise DatasetError(f"option num_digits must be >= 1, got {num_digits}")
        if not 1 <= digit_size < shape.size:
            raise DatasetError(
                f"option digit_size={digit_size} must be smaller than the canvas ({shape.size})"
            )
        if max_speed < 1:
            raise DatasetError(f"option max_speed must be >= 1, got {max_speed}")
        if combine not in ("sum", "max"):
            raise DatasetError(f"option combine must be 'sum' or 'max', got {combine!r}")
        images = load_mnist(mnist, split) if mnist else rendered_digits(split)
        self.digits = resize_digits(images, digit_size)
        self.num_digits, self.deterministic = num_digits, deterministic
        self.digit_size, self.max_speed, self.combine = digit_size, max_speed, combine

    def render(self, rng: np.random.Generator, n: int, frames: int) -> np.ndarray:
        size, ds = self.shape.size, self.digit_size
        which = rng.integers(len(self.digits), size=(n, self.num_digits))
        corners = trajectories(
            rng, n, self.num_digits, frames, size - ds, self.max_speed, self.deterministic
        )
        canvas = np.zeros((n, frames, size, size), dtype=np.uint8)
        # every ds x ds window of every frame, as a writable view: pasting a digit into all
        # frames of all clips is one gather and one scatter (one digit never overlaps itself)
        s = canvas.strides
        windows = np.lib.stride_tricks.as_strided(
            canvas, (n, frames, size - ds + 1, size - ds + 1, ds, ds), (*s, s[2], s[3])
        )
        clip_i = np.arange(n)[:, None]
        time_i = np.arange(frames)[None, :]
        for d in range(self.num_digits):
            at = (clip_i, time_i, corners[:, :, d, 0], corners[:, :, d, 1])
            glyph = self.digits[which[:, d]][:, None]  # (n, 1, ds, ds)
            below = windows[at]
            if self.combine == "sum":  # saturating uint8 add: below + min(glyph, 255 - below)
                windows[at] = below + np.minimum(glyph, 255 - below)
            else:
                windows[at] = np.maximum(below, glyph)
        clips = canvas[..., None]
        return clips if self.shape.channels == 1 else np.repeat(clips, 3, axis=-1)
