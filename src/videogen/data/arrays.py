"""Clips from arrays of videos in .npy / .npz / .h5 files.

The axes of an array are named by a layout: a string of the letters N (video), T (frame), H, W
and, when there is one, C (channel), one letter per axis: ``NTHW``, ``TNHW``, ``NTHWC``,
``NTCHW``, ``TNHWC``, single videos ``THW``, ``THWC``, ``TCHW``. Option ``layout`` names it.
Left at ``auto``, a layout is inferred only where the shape or name leaves no doubt: a 4-D
array whose last axis holds 1, 3 or 4 channels is one video ``THWC`` (what ``videogen data
prepare`` writes), and Srivastava et al.'s ``mnist_test_seq.npy`` is ``TNHW`` (20 frames of
10,000 videos). Anything else, (N, T, H, W) against (T, N, H, W) above all, is an error that
names the file, its shape, what each reading would mean and the option to set.

Values must be ``uint8`` 0-255; other data is refused with the range found and the conversion
that fits it. In a file of several arrays the videos are the one named by option ``key``, else
the one named ``videos``, else the only one. Files are opened lazily, in the process that reads
them (.npy as a memory map, .h5 as a dataset), so DataLoader workers never receive a copy.
"""

from __future__ import annotations

import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from videogen.data.clips import ClipShape, FileSource, VideoRef
from videogen.data.errors import DatasetError
from videogen.io import VideoError

ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
LAYOUTS = ("NTHW", "TNHW", "NTHWC", "NTCHW", "TNHWC", "THW", "THWC", "TCHW")
CHANNEL_COUNTS = (1, 3, 4)
VIDEOS_KEY = "videos"
OPTIONS = {
    "key": None,  # array name in a .npz / .h5 file (default: "videos", or the only array)
    "layout": "auto",  # axis names, e.g. NTHW; auto infers only unambiguous cases
    "test_start": "random",
}
# What reading a damaged .npy / .npz / .h5 file raises: OSError and ValueError mostly, EOFError
# and zlib.error from a cut or corrupt archive member, tokenize.TokenError, SyntaxError from
# numpy parsing a mangled .npy header, KeyError and RuntimeError from h5py.
_FILE_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    RuntimeError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)
_RANGE_SAMPLE = 1 << 22  # values looked at to tell a float array's range


def _npz_members(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an .npz, read from the headers (nothing is loaded)."""
    members = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith(".npy"):
                continue
            with archive.open(name) as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
            members[name[: -len(".npy")]] = (tuple(shape), dtype)
    return members


def _h5_members(handle: Any) -> dict[str, Any]:
    """Every dataset of an open .h5 file by its path (groups searched)."""
    found: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:  # a value other than None would stop the visit
        if hasattr(obj, "shape"):
            found[name] = obj

    handle.visititems(visit)
    return found


def _pick_key(path: Path, shapes: dict[str, tuple[int, ...]], key: str | None) -> str:
    """The array of ``path`` that holds the videos (see the module docstring)."""
    listing = ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items()) or "no arrays"
    if key is not None:
        if key not in shapes:
            raise DatasetError(f"{path}: no array {key!r} (data.options.key); it holds {listing}")
        return key
    if VIDEOS_KEY in shapes:
        return VIDEOS_KEY
    if len(shapes) == 1:
        return next(iter(shapes))
    raise DatasetError(
        f"{path}: holds {listing}; name the videos' array with data.options.key=NAME (--key "
        f"in videogen data), or store them under the name {VIDEOS_KEY!r}"
    )


def open_array(path: Path, key: str | None) -> tuple[Any, Any, str | None]:
    """(array-like, handle to close or None, key) for a .npy / .npz / .h5 file.

    A .npy is a memory map, an .npz array is loaded, an .h5 dataset is read on indexing.
    """
    suffix = path.suffix.lower()
    handle = None
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None, None
        if suffix == ".npz":
            members = _npz_members(path)
            key = _pick_key(path, {k: s for k, (s, _) in members.items()}, key)
            with np.load(path, allow_pickle=False) as data:
                return data[key], None, key
        import h5py

        handle = h5py.File(path, "r")
        found = _h5_members(handle)
        key = _pick_key(path, {k: v.shape for k, v in found.items()}, key)
        return found[key], handle, key
    except DatasetError:
        if handle is not None:
            handle.close()
        raise
    except _FILE_ERRORS as err:
        if handle is not None:
            handle.close()
        raise DatasetError(
            f"{path}: not a readable {suffix} array file ({type(err).__name__}: {err})"
        ) from err


def check_layout(path: Path, layout: str, shape: tuple[int, ...]) -> str:
    """``layout`` if it names every axis of ``shape`` once (T, H, W required), else an error."""
    letters = set(layout) if isinstance(layout, str) else set()
    if (
        not letters
        or len(layout) != len(shape)
        or len(letters) != len(layout)
        or not letters <= set("NTHWC")
        or not {"T", "H", "W"} <= letters
    ):
        raise DatasetError(
            f"{path}: data.options.layout={layout!r} does not name the {len(shape)} axes of "
            f"shape {shape}; give one letter per axis out of N, T, H, W, C (T, H, W required), "
            f"e.g. {', '.join(k for k in LAYOUTS if len(k) == len(shape)) or 'NTHWC'}"
        )
    if "C" in layout and shape[layout.index("C")] not in CHANNEL_COUNTS:
        raise DatasetError(
            f"{path}: data.options.layout={layout!r} puts {shape[layout.index('C')]} channels "
            f"on axis C of shape {shape}; channels must be 1, 3 or 4"
        )
    return layout


def _readings(shape: tuple[int, ...]) -> list[str]:
    """What each layout that fits ``shape`` would make of it, for an error message."""
    out = []
    for layout in LAYOUTS:
        if len(layout) != len(shape):
            continue
        dims = dict(zip(layout, shape))
        if "C" in dims and dims["C"] not in CHANNEL_COUNTS:
            continue
        n = dims.get("N", 1)
        out.append(f"{layout} = {n} video{'s' * (n != 1)} of {dims['T']} frames")
    return out


def infer_layout(path: Path, shape: tuple[int, ...]) -> str:
    """The layout of ``shape`` where shape and name leave no doubt, else a ``DatasetError``."""
    if len(shape) == 4 and path.stem.startswith("mnist_test_seq"):
        return "TNHW"
    if len(shape) == 4 and shape[-1] in CHANNEL_COUNTS and min(shape[1:3]) > max(CHANNEL_COUNTS):
        return "THWC"
    readings = _readings(shape)
    hint = f" ({'; '.join(readings)})" if readings else ""
    choices = ", ".join(r.split(" ")[0] for r in readings) or ", ".join(LAYOUTS)
    raise DatasetError(
        f"{path}: cannot tell the axes of an array of shape {shape}; set data.options.layout "
        f"(--layout in videogen data) to one of {choices}{hint}"
    )


def _range_advice(path: Path, array: Any, dtype: np.dtype) -> DatasetError:
    """Why a non-uint8 array is refused: the value range found and the conversion to use."""
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        return DatasetError(f"{path}: videos must be stored as uint8 0-255, found dtype {dtype}")
    rows = max(1, _RANGE_SAMPLE // max(1, int(np.prod(array.shape[1:]))))
    sample = np.asarray(array[:rows])
    seen = f"{min(rows, array.shape[0])} of {array.shape[0]} rows"
    if sample.size and not np.isfinite(sample).all():
        return DatasetError(f"{path}: {dtype} values include NaN or inf (in the first {seen})")
    low, high = (float(sample.min()), float(sample.max())) if sample.size else (0.0, 0.0)
    found = f"found {dtype} in [{low:g}, {high:g}] (first {seen})"
    if low >= 0 and high <= 1 and np.issubdtype(dtype, np.floating):
        fix = "[0, 1] floats: (x * 255).round().astype(np.uint8)"
    elif low >= -1 and high <= 1 and np.issubdtype(dtype, np.floating):
        fix = "[-1, 1] floats: ((x + 1) * 127.5).round().astype(np.uint8)"
    elif low >= 0 and high <= 255:
        fix = "values already 0-255: x.round().astype(np.uint8)"
    else:
        fix = f"rescale the range [{low:g}, {high:g}] to 0-255 and store uint8"
    return DatasetError(f"{path}: videos must be stored as uint8 0-255, {found}; convert {fix}")


def describe(path: str | Path, key: str | None = None, layout: str = "auto") -> dict[str, Any]:
    """What an array file holds: ``dict(videos, frames, height, width, channels, layout, key)``.

    Raises ``DatasetError`` naming the file when it is unreadable, not uint8, or its layout is
    wrong or cannot be inferred.
    """
    path = Path(path)
    array, handle, key = open_array(path, key)
    try:
        shape, dtype = tuple(int(d) for d in array.shape), np.dtype(array.dtype)
        if 0 in shape:
            raise DatasetError(f"{path}: the array {key or ''} of shape {shape} holds no videos")
        if layout == "auto":
            layout = infer_layout(path, shape)
        else:  # nthw as NTHW
            layout = check_layout(
                path, layout.upper() if isinstance(layout, str) else layout, shape
            )
        if dtype != np.uint8:
            raise _range_advice(path, array, dtype)
    except _FILE_ERRORS as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{path}: not a readable array ({type(err).__name__}: {err})") from err
    finally:
        if handle is not None:
            handle.close()
    dims = dict(zip(layout, shape))
    return {
        "videos": dims.get("N", 1),
        "frames": dims["T"],
        "height": dims["H"],
        "width": dims["W"],
        "channels": dims.get("C", 1),
        "layout": layout,
        "key": key,
    }


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
        self.path = Path(path)
        facts = describe(self.path, key, layout)
        self.key, self.layout = facts["key"], facts["layout"]
        self._array: Any = None
        self._handle: Any = None
        count, frames = facts["videos"], facts["frames"]
        videos = [VideoRef(f"{self.path}[{i}]", frames) for i in range(count)]
        super().__init__(shape, videos, test_start)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None, "_handle": None}

    def read(self, index: int, start: int) -> np.ndarray:
        if self._array is None:
            self._array, self._handle, _ = open_array(self.path, self.key)
        # all videos of an array have one length, so none was filtered out: index is video i
        frames = slice(start, start + self.shape.span, self.shape.stride)
        where = tuple(
            index if a == "N" else frames if a == "T" else slice(None) for a in self.layout
        )
        try:
            clip = np.array(self._array[where])  # a copy, out of the memory map / file
        except _FILE_ERRORS as err:
            raise VideoError(
                f"{self.path}: reading video {index} failed ({type(err).__name__}: {err})"
            ) from err
        axes = self.layout.replace("N", "")
        clip = clip.transpose([axes.index(a) for a in "THWC" if a in axes])
        return clip if clip.ndim == 4 else clip[..., None]
