"""Clips from arrays of videos in .npy / .npz / .h5 files.

The array is ``uint8`` of shape ``(N, T, H, W[, C])``; ``(N, T, C, H, W)`` is recognised by
its channel axis, and Srivastava et al.'s ``mnist_test_seq.npy`` (``(T, N, 64, 64)``: 20 frames
of 10,000 videos) by its name. ``layout`` forces one of ``NTHW``, ``NTHWC``, ``NTCHW``,
``TNHW``, ``TNHWC``. Files are opened lazily, in the process that reads them (.npy as a memory
map, .h5 as a dataset), so DataLoader workers never receive a copy of the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from videogen.data.clips import ClipShape, FileSource, VideoRef
from videogen.data.errors import DatasetError

ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
LAYOUTS = ("NTHW", "NTHWC", "NTCHW", "TNHW", "TNHWC")
OPTIONS = {
    "key": None,  # array name in a .npz / .h5 file (default: the only, or first 4/5-D, one)
    "layout": "auto",
    "test_start": "random",
}


def _pick_key(path: Path, arrays: dict[str, Any]) -> str:
    videos = [k for k, a in arrays.items() if len(a.shape) in (4, 5)]
    if not videos:
        shapes = ", ".join(f"{k}: {tuple(a.shape)}" for k, a in arrays.items()) or "nothing"
        raise DatasetError(f"{path}: no 4-D or 5-D video array in it (found {shapes})")
    return videos[0]


def open_array(path: Path, key: str | None) -> tuple[Any, Any]:
    """(array-like, handle to close or None) for a .npy / .npz / .h5 file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                key = key or _pick_key(path, {k: data[k] for k in data.files})
                if key not in data.files:
                    raise DatasetError(f"{path}: no array {key!r} (has {', '.join(data.files)})")
                return data[key], None
        import h5py

        handle = h5py.File(path, "r")
        found: dict[str, Any] = {}
        handle.visititems(
            lambda name, obj: found.setdefault(name, obj) if hasattr(obj, "shape") else None
        )
        key = key or _pick_key(path, found)
        if key not in found:
            handle.close()
            raise DatasetError(f"{path}: no dataset {key!r} (has {', '.join(found)})")
        return found[key], handle
    except (OSError, ValueError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{path}: not a readable {suffix} array file ({err})") from err


def detect_layout(path: Path, shape: tuple[int, ...]) -> str:
    if len(shape) == 4:
        return "TNHW" if path.stem.startswith("mnist_test_seq") else "NTHW"
    if len(shape) == 5:
        if shape[-1] in (1, 3, 4):
            return "NTHWC"
        if shape[2] in (1, 3, 4):
            return "NTCHW"
    raise DatasetError(
        f"{path}: array of shape {shape} is not a batch of videos (N, T, H, W[, C]) or "
        f"(N, T, C, H, W); set option layout to one of {', '.join(LAYOUTS)}"
    )


class ArrayVideos(FileSource):
    """Clips of ``shape`` from the videos of one array file."""

    def __init__(
        self,
        shape: ClipShape,
        path: Path,
        key: str | None = None,
        layout: str = "auto",
        test_start: str = "random",
    ) -> None:
        self.path, self.key = Path(path), key
        array, handle = open_array(self.path, key)
        dims, dtype = tuple(array.shape), array.dtype
        if handle is not None:
            handle.close()
        if dtype != np.uint8:
            raise DatasetError(
                f"{self.path}: videos must be stored as uint8 0-255, found {dtype}; convert "
                "with (x * 255).round().astype(np.uint8) for [0, 1] floats"
            )
        self.layout = detect_layout(self.path, dims) if layout == "auto" else layout
        if self.layout not in LAYOUTS or len(self.layout) != len(dims):
            raise DatasetError(
                f"{self.path}: layout {self.layout!r} does not fit an array of shape {dims}; "
                f"choose one of {', '.join(LAYOUTS)}"
            )
        count, frames = (dims[1], dims[0]) if self.layout.startswith("TN") else (dims[0], dims[1])
        self._array: Any = None
        self._handle: Any = None
        videos = [VideoRef(f"{self.path}[{i}]", frames) for i in range(count)]
        super().__init__(shape, videos, test_start)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None, "_handle": None}

    def read(self, index: int, start: int) -> np.ndarray:
        if self._array is None:
            self._array, self._handle = open_array(self.path, self.key)
        i = index  # all videos of an array have one length, so none was filtered out
        stop, step = start + self.shape.span, self.shape.stride
        if self.layout.startswith("TN"):
            clip = np.array(self._array[start:stop:step, i])  # a copy, out of the memory map
        else:
            clip = np.array(self._array[i, start:stop:step])
        if self.layout == "NTCHW":
            clip = clip.transpose(0, 2, 3, 1)
        return clip if clip.ndim == 4 else clip[..., None]
