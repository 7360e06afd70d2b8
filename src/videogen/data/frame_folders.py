"""Clips from videos stored as folders of frame images (SkyTimelapse, Cityscapes, KTH frames).

Every folder that directly holds image files is one video, its frames in natural order
(``frame_2`` before ``frame_10``). Where one folder holds several sequences, as Cityscapes'
``{city}_{sequence}_{frame}_leftImg8bit.png``, ``group`` (a regular expression whose first
group is the sequence name) splits it into videos.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from videogen.data.clips import ClipShape, FileSource, VideoRef
from videogen.io import IMAGE_SUFFIXES, VideoError, centre_crop, fit_size

OPTIONS = {
    "group": None,  # regex: first group = sequence name within a folder
    "test_start": "random",
}


def natural_key(name: str) -> list:
    """Sort key comparing digit runs as numbers: ``img2`` < ``img10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_frame_sequences(root: Path, group: str | None = None) -> list[tuple[str, list[Path]]]:
    """``[(name, frame paths in order), ...]`` of every frame sequence under ``root``."""
    pattern = re.compile(group) if group else None
    sequences = []
    for folder, dirs, files in os.walk(root):
        dirs.sort(key=natural_key)
        images = sorted(
            (f for f in files if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")),
            key=natural_key,
        )
        if not images:
            continue
        if pattern is None:
            sequences.append((folder, [Path(folder, f) for f in images]))
            continue
        grouped: dict[str, list[Path]] = {}
        for f in images:
            match = pattern.search(f)
            if match:
                grouped.setdefault(match.group(1), []).append(Path(folder, f))
        sequences.extend((os.path.join(folder, key), paths) for key, paths in grouped.items())
    return sequences


def load_frame(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as ``uint8 (size, size, channels)``: short side to ``size``, centre crop."""
    with Image.open(path) as image:
        mode = "L" if channels == 1 else "RGB"
        # JPEG can decode at 1/2, 1/4, 1/8 scale directly: much less work for small sizes
        image.draft(mode, (size, size))
        image = image.convert(mode)
        height, width = fit_size(image.height, image.width, size)
        if (height, width) != (image.height, image.width):
            image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
        array = np.asarray(image)
    return centre_crop(array[..., None] if channels == 1 else array, size)


class FrameFolders(FileSource):
    """Clips of ``shape`` from frame-image sequences."""

    def __init__(
        self,
        shape: ClipShape,
        sequences: Sequence[tuple[str, list[Path]]],
        test_start: str = "random",
    ) -> None:
        self.frames_of = {name: paths for name, paths in sequences}
        videos = [VideoRef(name, len(paths)) for name, paths in sequences]
        super().__init__(shape, videos, test_start)

    def read(self, index: int, start: int) -> np.ndarray:
        paths = self.frames_of[self.videos[index].name]
        chosen = paths[start : start + self.shape.span : self.shape.stride]
        try:
            frames = [load_frame(p, self.shape.size, self.shape.channels) for p in chosen]
        # PIL's unreadable / truncated image errors are OSErrors; damaged headers of some
        # formats raise ValueError or SyntaxError, absurd sizes DecompressionBombError
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise VideoError(f"{self.videos[index].name}: cannot read a frame ({err})") from err
        return np.stack(frames)
