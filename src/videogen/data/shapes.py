"""Stochastic shapes: VideoFlow's Stochastic Movement dataset (Kumar et al. 2020), generated.

As tensor2tensor's ``video_stochastic_shapes10k`` draws it: a black canvas spanning 10x10
units, one shape (circle, square or equilateral triangle) of size ``s`` ~ U[0.5, 1.5) units
(circle radius, square half-side, triangle half-base) in one of 6 colours (matplotlib's
b, g, r, c, m, y), starting at the centre and moving ``speed`` = 1 unit per frame in one of 8
directions (the axes and diagonals; a diagonal step is 1 unit on each axis). Size, colour,
shape and direction are fixed within a clip; t2t's videos have 5 frames. Option ``directions``
restricts the draw to some of the 8 (not in the original). Edges are
antialiased from each pixel's distance to the edge. At 64 px a unit is 6.4 px, so the
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
    # (right, up) steps to draw from, e.g. [[1, 0]] (always right: deterministic motion, a
    # sanity check for a predictor); null = all 8
    "directions": None,
}


def coverage(kind: np.ndarray, u: np.ndarray, v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Fraction of each pixel inside the shape (antialiased edges), ``float (..., H, W)``.

    ``u`` (right) and ``v`` (down) are pixel centres relative to the shape's centre, ``s`` its
    size in pixels, ``kind`` (one per clip: the first axis) 0 = circle, 1 = square,
    2 = triangle; ``u``, ``v`` and ``s`` broadcast together.
    A pixel's coverage is its signed distance to the edge plus one half, clipped to [0, 1]:
    exact for the square's straight edges, a close approximation at curves and corners.
    """
    out = np.empty(np.broadcast_shapes(u.shape, v.shape, s.shape), dtype=np.float32)
    for k in range(len(SHAPES)):
        sel = kind == k  # whole clips of this shape: index the first axis only
        if not sel.any():
            continue
        uk, vk, sk = u[sel], v[sel], s[sel]
        if k == 0:
            inside = sk - np.hypot(uk, vk)
        elif k == 1:
            out[sel] = np.clip(sk - np.abs(uk) + 0.5, 0, 1) * np.clip(sk - np.abs(vk) + 0.5, 0, 1)
            continue
        else:  # base at v = +s from u = -s to +s, apex at v = s - s*sqrt(3): three half-planes
            left = (uk + sk) * (_SQRT3 / 2) + (vk - sk) / 2
            right = (sk - uk) * (_SQRT3 / 2) + (vk - sk) / 2
            inside = np.minimum(np.minimum(sk - vk, left), right)
        out[sel] = np.clip(inside + 0.5, 0, 1)
    return out


class StochasticShapes(GeneratedSource):
    """``uint8 (T, size, size, 3)`` clips of one shape moving in one of 8 directions."""

    def __init__(
        self,
        shape: ClipShape,
        split: str = "train",
        speed: float = 1.0,
        min_size: float = 0.5,
        max_size: float = 1.5,
        directions: list[list[int]] | None = None,
    ) -> None:
        super().__init__(shape)
        if not 0 < min_size <= max_size:
            raise DatasetError(f"options need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.speed, self.min_size, self.max_size = speed, min_size, max_size
        self.directions = DIRECTIONS if directions is None else _checked_directions(directions)

    def render(self, rng: np.random.Generator, n: int, frames: int) -> np.ndarray:
        size = self.shape.size
        scale = size / UNITS  # pixels per unit
        kind = rng.integers(len(SHAPES), size=n)
        colour = rng.integers(len(COLOURS), size=n)
        direction = rng.integers(len(self.directions), size=n)
        radius = rng.uniform(self.min_size, self.max_size, size=n) * scale
        # centres (n, frames) in pixels: x right, rows down (the units' y axis points up)
        right, up = (self.directions[direction] * self.speed).T
        t = np.arange(frames)
        col = (UNITS / 2 + right[:, None] * t) * scale
        row = (UNITS / 2 - up[:, None] * t) * scale
        # every shape lies within its size of its centre: draw it in a box around that
        half = int(np.ceil(self.max_size * scale)) + 1
        box = 2 * half
        top = np.floor(row).astype(np.int64) - half
        left = np.floor(col).astype(np.int64) - half
        centre = np.arange(box) + 0.5
        v = (top[..., None] + centre - row[..., None])[..., :, None]  # (n, frames, box, 1)
        u = (left[..., None] + centre - col[..., None])[..., None, :]  # (n, frames, 1, box)
        cover = coverage(
            kind, u.astype(np.float32), v.astype(np.float32), radius[:, None, None, None]
        )
        ink = np.rint(cover[..., None] * COLOURS[colour][:, None, None, None]).astype(np.uint8)
        out = np.zeros((n, frames, size, size, 3), dtype=np.uint8)
        # boxes fully inside the canvas: one scatter through a view of every box position
        st = out.strides
        windows = np.lib.stride_tricks.as_strided(
            out, (n, frames, size - box + 1, size - box + 1, box, box, 3), (*st[:4], *st[2:])
        )
        inside = (top >= 0) & (left >= 0) & (top + box <= size) & (left + box <= size)
        i, f = np.nonzero(inside)
        windows[i, f, top[i, f], left[i, f]] = ink[i, f]
        # boxes across an edge: clip them one by one (a shape that left is not drawn)
        across = ~inside & (top < size) & (left < size) & (top + box > 0) & (left + box > 0)
        for i, f in zip(*np.nonzero(across)):
            y, x = top[i, f], left[i, f]
            r0, c0, r1, c1 = max(y, 0), max(x, 0), min(y + box, size), min(x + box, size)
            out[i, f, r0:r1, c0:c1] = ink[i, f, r0 - y : r1 - y, c0 - x : c1 - x]
        return out if self.shape.channels == 3 else _grey(out)


def _checked_directions(directions: list[list[int]]) -> np.ndarray:
    """The ``directions`` option as an array of rows of ``DIRECTIONS``, or a ``DatasetError``."""
    allowed = {tuple(int(v) for v in d) for d in DIRECTIONS}
    try:
        steps = [tuple(d) for d in directions]
    except TypeError:
        steps = []
    if not steps or any(s not in allowed for s in steps):
        raise DatasetError(
            f"option directions={directions!r}: give a list of (right, up) steps out of "
            f"{sorted(allowed)}, e.g. [[1, 0]] for always right"
        )
    return np.array(steps, dtype=np.float64)


def _grey(clips: np.ndarray) -> np.ndarray:
    from videogen.io import match_channels

    return match_channels(clips, 1)
