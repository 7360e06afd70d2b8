"""Comparison grids and tiles of videos: ground truth above samples, each frame framed green
where it was given and red where it was generated (the GIFs of ``videogen sample``, the demo
and training previews)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from videogen.io import as_uint8_videos, atomic_path, match_channels, write_video

KNOWN_COLOUR = (0, 200, 0)  # border of a conditioning frame in grids
GENERATED_COLOUR = (220, 30, 30)  # border of a generated frame


def _known_rows(known: object, rows: int, frames: int) -> list[np.ndarray | None]:
    if known is None:
        return [None] * rows
    mask = known.detach().cpu().numpy() if isinstance(known, torch.Tensor) else np.asarray(known)
    mask = mask.astype(bool)
    if mask.shape == (frames,):
        return [mask] * rows
    if mask.shape == (rows, frames):
        return list(mask)
    raise ValueError(f"known must be ({frames},) or ({rows}, {frames}) booleans, got {mask.shape}")


def grid_frames(
    rows: Sequence[np.ndarray | torch.Tensor],
    known: object = None,
    border: int = 2,
) -> np.ndarray:
    """Lay videos out as rows of one video ``uint8 (T, R*(H+2b), W+2b, 3)``.

    Each frame gets a ``border``-pixel frame: green where ``known`` is True (conditioning),
    red where it is False (generated), black when ``known`` is None.
    """
    videos = [v for row in rows for v in as_uint8_videos(row)]
    if not videos:
        raise ValueError("write_grid needs at least one row")
    t, h, w = videos[0].shape[:3]
    for v in videos:
        if v.shape[:3] != (t, h, w):
            raise ValueError(f"all grid rows must be (T, H, W) = {(t, h, w)}, got {v.shape[:3]}")
    marks = _known_rows(known, len(videos), t)
    cell_h, cell_w = h + 2 * border, w + 2 * border
    out = np.zeros((t, len(videos) * cell_h, cell_w, 3), dtype=np.uint8)
    for r, (video, mask) in enumerate(zip(videos, marks)):
        top = r * cell_h
        if mask is not None:
            colours = np.where(mask[:, None], KNOWN_COLOUR, GENERATED_COLOUR).astype(np.uint8)
            out[:, top : top + cell_h] = colours[:, None, None, :]
        out[:, top + border : top + border + h, border : border + w] = match_channels(video, 3)
    return out


def write_grid(
    path: str | Path,
    rows: Sequence[np.ndarray | torch.Tensor],
    known: object = None,
    fps: float = 4.0,
    border: int = 2,
) -> Path:
    """Write a comparison grid: ``rows`` (ground truth first, then samples) top to bottom.

    ``rows``: uint8 videos ``(T, H, W, C)`` and/or float batches ``(B, T, C, H, W)`` in [-1, 1]
    (each batch element is a row). ``known``: bool ``(T,)`` for all rows or ``(rows, T)``;
    known frames get a green border, generated ones red. A ``.gif`` path (or any video suffix)
    gets an animation; a ``.png`` path gets a still with the frames left to right.
    """
    path = Path(path)
    grid = grid_frames(rows, known, border)
    if path.suffix.lower() == ".png":
        t, height, width, _ = grid.shape
        strip = grid.transpose(1, 0, 2, 3).reshape(height, t * width, 3)
        with atomic_path(path) as tmp:
            Image.fromarray(strip).save(tmp, format="PNG")
        return path
    return write_video(path, grid, fps=fps)


def tile(videos: Sequence[np.ndarray], columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile equal-shaped ``uint8 (T, H, W, C)`` videos into one video, row-major."""
    if not videos:
        raise ValueError("tile needs at least one video")
    columns = columns or math.ceil(math.sqrt(len(videos)))
    rows = math.ceil(len(videos) / columns)
    t, h, w, c = videos[0].shape
    out = np.zeros((t, rows * (h + gap) - gap, columns * (w + gap) - gap, c), dtype=np.uint8)
    for i, video in enumerate(videos):
        r, col = divmod(i, columns)
        out[:, r * (h + gap) : r * (h + gap) + h, col * (w + gap) : col * (w + gap) + w] = video
    return out
