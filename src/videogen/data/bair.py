"""BAIR robot pushing (``softmotion30_44k``) read straight from its TFRecord files.

Each record is one ``tf.train.Example`` holding a 30-frame video: frame ``i`` is the raw
64x64x3 uint8 bytes under ``{i}/image_aux1/encoded`` (the camera the papers use; next to it
are ``{i}/image_main/encoded``, ``{i}/action`` and ``{i}/endeffector_pos``). The files are
indexed once by their record headers, so a clip reads one record from disk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from videogen.data.clips import ClipShape, FileSource, VideoRef
from videogen.data.errors import DatasetError, SkipLog
from videogen.data.tfrecord import index_records, parse_example, read_record
from videogen.io import VideoError

OPTIONS = {
    "image_key": "{}/image_aux1/encoded",
    "frame_shape": [64, 64, 3],  # (H, W, C) of the raw frame bytes
    "verify_crc": False,  # check every record's crc32c (pure Python: slow)
    "test_start": "first",
}


def _frame_count(example: dict, pattern: re.Pattern) -> int:
    return sum(1 for key in example if pattern.fullmatch(key))


class TFRecordVideos(FileSource):
    """Videos stored as per-frame raw image bytes in ``tf.train.Example`` records."""

    def __init__(
        self,
        shape: ClipShape,
        files: Sequence[Path],
        image_key: str = "{}/image_aux1/encoded",
        frame_shape: Sequence[int] = (64, 64, 3),
        verify_crc: bool = False,
        test_start: str = "first",
    ) -> None:
        if "{}" not in image_key:
            raise DatasetError(
                f"option image_key must contain '{{}}' for the frame index, got {image_key!r}"
            )
        if len(frame_shape) != 3 or frame_shape[2] not in (1, 3):
            raise DatasetError(f"option frame_shape must be [H, W, C], got {list(frame_shape)}")
        self.image_key, self.frame_shape = image_key, tuple(int(x) for x in frame_shape)
        self.verify = verify_crc
        pattern = re.compile(re.escape(image_key).replace(r"\{\}", r"\d+"))
        self.records: list[tuple[Path, int, int]] = []
        skips = SkipLog()
        videos = []
        for path in files:
            try:
                records, problem = index_records(path)
                if records:  # every record of a file holds the same number of frames
                    with open(path, "rb") as f:
                        first = parse_example(read_record(f, *records[0], name=str(path)))
                    frames = _frame_count(first, pattern)
            except (OSError, ValueError) as err:
                skips.add(path, f"not a readable TFRecord file ({err})")
                continue
            if problem:
                skips.add(path, f"{problem}; kept the {len(records)} whole records before it")
            for i, (offset, length) in enumerate(records):
                self.records.append((path, offset, length))
                videos.append(VideoRef(f"{path}#{i}", frames))
        super().__init__(shape, videos, test_start, skips)

    def read(self, index: int, start: int) -> np.ndarray:
        path, offset, length = self.records[index]
        name = self.videos[index].name
        with open(path, "rb") as f:
            data = read_record(f, offset, length, self.verify, name)
        try:
            example = parse_example(data)
        except ValueError as err:
            raise VideoError(f"{name}: not a tf.train.Example ({err})") from err
        frames = []
        for i in range(start, start + self.shape.span, self.shape.stride):
            value = example.get(self.image_key.format(i))
            if not value or not isinstance(value, list):
                raise VideoError(f"{name}: no bytes feature {self.image_key.format(i)!r}")
            raw = value[0]
            if len(raw) != int(np.prod(self.frame_shape)):
                raise VideoError(
                    f"{name}: {self.image_key.format(i)} holds {len(raw)} bytes, not a raw "
                    f"{self.frame_shape} uint8 frame (option frame_shape)"
                )
            frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(self.frame_shape))
        return np.stack(frames)
