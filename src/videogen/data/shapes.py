"""Stochastic shapes: VideoFlow's Stochastic Movement dataset (Kumar et al. 2020), generated.

As tensor2tensor's ``video_stochastic_shapes10k`` draws it: a black canvas spanning 10x10
units, one shape (circle, square or equilateral triangle) of size ``s`` ~ U[0.5, 1.5) units
(circle radius, square half-side, triangle half-base) in one of 6 colours (matplotlib's
b, g, r, c, m, y), starting at the centre and moving ``speed`` = 1 unit per frame in one of 8
directions (the axes and diagonals; a diagonal step is 1 unit on each axis). Size, colour,
shape and direction are fixed within a clip; t2t's videos have 5 frames. Edges are
antialiased by supersampling the coverage of each pixel. At 64 px a unit is 6.4 px, so the
shape leaves a 64x64 canvas after about 5 frames, as in the original.
"""

from __future__ import annotations

import numpy as np

from videogen.data.clips import ClipShape, GeneratedSource
from videogen.data.errors import DatasetError

UNITS = 10.0  # the canvas spans 10 units, as the t2t generator's axes
COLOURS = np.array(
    [
        (0, 0, 255),  # b
        (0, 128, 0),  # g
        (255, 0, 0),  # r
        (0, 191, 191),  # c
        (191, 0, 191),  # m
        (191, 191, 0),  # y
    ],
    dtype=np.float32,
)
# (right, up) steps in canvas units; image rows grow downwards, so up is -row
DIRECTIONS = np.array(
    [(1, 1), (1, 0), (1, -1), (0, 1), (0, -1), (-1, 1), (-1, 0), (-1, -1)], dtype=np.float64
)
SHAPES = ("circle", "square", "triangle")
_SQRT3 = float(np.sqrt(3.0))

OPTIONS = {
    "speed": 1.0,  # units per frame along each moving axis
    "min_size": 0.5,
    "max_size": 1.5,
    "supersample": 4,  # coverage samples per pixel side (antialiasing), 1..15
}


def inside(shape: int, u: np.ndarray, v: np.ndarray, s: float) -> np.ndarray:
    """Whether points (u right, v down, in pixels from the shape's centre) are in the shape
    of size ``s`` pixels."""
    if shape == 0:
        return u * u + v * v <= s * s
    if shape == 1:
        return (np.abs(u) <= s) & (np.abs(v) <= s)
    # equilateral triangle, base of width 2s at v = +s, apex at v = s - s*sqrt(3)
    apex = s - s * _SQRT3
    return (v <= s) & (v >= apex) & (np.abs(u) * _SQRT3 <= v - apex)


class StochasticShapes(GeneratedSource):
    """``uint8 (T, size, size, 3)`` clips of one shape moving in one of 8 directions."""

    def __init__(
        self,
        shape: ClipShape,
        split: str = "train",
        speed: float = 1.0,
        min_size: float = 0.5,
        max_size: float = 1.5,
        supersample: int = 4,
    ) -> None:
        super().__init__(shape)
        if not 0 < min_size <= max_size:
            raise DatasetError(f"options need 0 < min_size <= max_size, got {min_size}, {max_size}")
        if not 1 <= supersample <= 15:  # 15^2 samples still count in a uint8
            raise DatasetError(f"option supersample must be in 1..15, got {supersample}")
        self.speed, self.min_size, self.max_size = speed, min_size, max_size
        self.supersample = supersample

    def draw(self, rng: np.random.Generator) -> dict:
        """The random choices of one clip."""
        return {
            "shape": int(rng.integers(len(SHAPES))),
            "colour": int(rng.integers(len(COLOURS))),
            "direction": int(rng.integers(len(DIRECTIONS))),
            "size": float(rng.uniform(self.min_size, self.max_size)),
        }

    def centres(self, direction: int, frames: int) -> np.ndarray:
        """Shape centres ``(frames, 2)`` as (row, col) in pixels."""
        scale = self.shape.size / UNITS
        right, up = DIRECTIONS[direction] * self.speed
        t = np.arange(frames)
        x = UNITS / 2 + t * right
        y = UNITS / 2 + t * up
        return np.stack([(UNITS - y) * scale, x * scale], axis=1)

    def render(self, rng: np.random.Generator, n: int, frames: int) -> np.ndarray:
        size, ss = self.shape.size, self.supersample
        out = np.zeros((n, frames, size, size, 3), dtype=np.uint8)
        for i in range(n):
            c = self.draw(rng)
            s = c["size"] * size / UNITS
            half = int(np.ceil(s)) + 1  # every shape lies within s of its centre
            box = 2 * half
            sub = (np.arange(box * ss) + 0.5) / ss  # sample offsets within the box, pixels
            centres = self.centres(c["direction"], frames)
            corner = np.floor(centres).astype(np.int64) - half  # (frames, 2) box top-left
            # coverage of every box pixel in every frame at once: (frames, box, box)
            v = (corner[:, 0, None] + sub[None, :] - centres[:, 0, None])[:, :, None]
            u = (corner[:, 1, None] + sub[None, :] - centres[:, 1, None])[:, None, :]
            hit = inside(c["shape"], u, v, s)
            # count the samples per pixel: the contiguous axis first, it is much faster
            hits = hit.view(np.uint8).reshape(frames, box, ss, box, ss).sum(axis=4, dtype=np.uint8)
            hits = hits.sum(axis=2, dtype=np.uint8)
            ink = np.rint(hits[..., None] * (COLOURS[c["colour"]] / ss**2)).astype(np.uint8)
            for t, (top, left) in enumerate(corner):
                r0, c0 = max(top, 0), max(left, 0)
                r1, c1 = min(top + box, size), min(left + box, size)
                if r0 < r1 and c0 < c1:  # else the shape has left the canvas
                    out[i, t, r0:r1, c0:c1] = ink[t, r0 - top : r1 - top, c0 - left : c1 - left]
        return out if self.shape.channels == 3 else _grey(out)


def _grey(clips: np.ndarray) -> np.ndarray:
    from videogen.io import match_channels

    return match_channels(clips, 1)
