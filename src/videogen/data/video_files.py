"""Clips from video files (mp4, avi, webm, mkv, mov, gif), decoded with PyAV.

Decoding dominates the cost of a clip: a 720p H.264 video with one keyframe must be decoded
from its start for any clip. When the whole dataset, decoded at the training size, fits in
``cache_mb`` (per process: each DataLoader worker keeps its own), every video is decoded once,
at that size, on first use and its clips are sliced from memory afterwards. Otherwise each
clip is decoded on its own: the decoder seeks to the keyframe before the clip and resizes in
its output step. A video longer than ``cache_frames`` frames is never decoded whole (a
200,000-frame video would take minutes before the first step): its clips are always decoded
on their own, and it does not count against the cache.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from videogen.data.clips import ClipShape, FileSource, VideoRef
from videogen.data.errors import SkipLog
from videogen.io import VideoError, read_video, video_info

OPTIONS = {
    "cache_mb": 1024,  # decoded-video cache per process; 0 turns it off
    "cache_frames": 5000,  # longer videos are decoded clip by clip, never whole
    "test_start": "random",
    "labels": False,  # yield (clip, class index) pairs; see class_name
}

UCF_NAME = re.compile(r"^v_(?P<cls>[A-Za-z0-9]+)_g\d+_c\d+$")


def class_name(path: Path) -> str:
    """The class of a video: UCF-101's ``v_<Class>_gNN_cNN`` names, else its folder's name
    (Kinetics' ``ROOT/<split>/<class>/<video>.mp4``)."""
    match = UCF_NAME.match(path.stem)
    return match["cls"] if match else path.parent.name


class VideoFiles(FileSource):
    """Clips of ``shape`` from a list of video files; unreadable files are skipped."""

    def __init__(
        self,
        shape: ClipShape,
        paths: Sequence[Path],
        cache_mb: float = 1024,
        cache_frames: int = 5000,
        test_start: str = "random",
        labels: bool = False,
    ) -> None:
        skips = SkipLog()
        videos = []
        # class indices in sorted order of the class names present (UCF-101's classInd.txt
        # order, which is alphabetical too)
        classes = sorted({class_name(Path(p)) for p in paths}) if labels else []
        for path in paths:
            label = classes.index(class_name(Path(path))) if labels else None
            try:
                videos.append(VideoRef(str(path), video_info(path)["frames"], label))
            except VideoError as err:
                skips.add(path, str(err))
        super().__init__(shape, videos, test_start, skips)
        self.cache_frames = cache_frames
        cached = sum(v.frames for v in self.videos if v.frames <= cache_frames)
        decoded = cached * shape.size**2 * shape.channels
        self.cache_all = cache_mb > 0 and decoded <= cache_mb * 2**20
        self._decoded: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict:
        # workers start with an empty cache rather than a pickled copy of the parent's
        return {**self.__dict__, "_decoded": {}}

    def read(self, index: int, start: int) -> np.ndarray:
        path, shape = Path(self.videos[index].name), self.shape
        if not self.cache_all or self.videos[index].frames > self.cache_frames:
            return read_video(
                path,
                start=start,
                frames=shape.frames,
                stride=shape.stride,
                size=shape.size,
                channels=shape.channels,
            )
        video = self._decoded.get(index)
        if video is None:
            # no more than the frames indexed: a header that under-counts cannot make this
            # decode an arbitrarily long video; fewer frames than announced is a VideoError
            video = read_video(
                path, frames=self.videos[index].frames, size=shape.size, channels=shape.channels
            )
            self._decoded[index] = video
        # a copy: the caller may change its clip in place, the cache must not change
        return video[start : start + shape.span : shape.stride].copy()
