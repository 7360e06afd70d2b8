"""Decode a folder of videos once, at the training size, into one ``.npy`` array per video.

Random clips from compressed video are slow to decode: an H.264 file with few keyframes is
decoded from its start for every clip (a few clips per second per core at 720p). Training reads
the prepared folder instead: each clip is a slice of a memory-mapped ``uint8 (T, H, W, C)``
array. The folder layout, the file stems (so UCF-101's split lists and class names still
match) and the split-list files are kept; unreadable videos are skipped, counted and named; a
video already prepared is not decoded again, so an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from videogen.data.errors import DatasetError
from videogen.io import VIDEO_SUFFIXES, VideoError, atomic_path, read_video

LIST_FILES = ("*list0*.txt", "classInd.txt")


def prepare(
    source: str | Path,
    target: str | Path,
    *,
    size: int = 64,
    channels: int = 3,
    progress: bool = True,
) -> dict:
    """Write ``target/<relative path>.npy`` for every video under ``source``.

    Returns ``{"prepared": n, "existing": n, "unreadable": [paths]}``.
    """
    source, target = Path(source), Path(target)
    if not source.is_dir():
        raise DatasetError(f"{source} is not a folder of videos")
    videos = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise DatasetError(f"{source} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
    report: dict = {"prepared": 0, "existing": 0, "unreadable": []}
    for path in tqdm(videos, disable=not progress, desc="prepare", unit="video"):
        out = target / path.relative_to(source).with_suffix(".npy")
        if out.is_file():
            report["existing"] += 1
            continue
        try:
            video = read_video(path, size=size, channels=channels)
        except (VideoError, OSError) as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
            report["unreadable"].append(str(path))
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp, tmp.open("wb") as f:
            np.save(f, np.ascontiguousarray(video))
        report["prepared"] += 1
    for pattern in LIST_FILES:
        for path in source.rglob(pattern):
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    return report
