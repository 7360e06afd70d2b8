"""``build_dataset``: from a ``DataConfig`` to a dataset of ``uint8 (T, H, W, C)`` clips.

``cfg.name`` is a built-in generator (``moving-digits``, ``stochastic-shapes``), a benchmark
of the registry (with ``cfg.root``), or a path whose format is detected: a video file, an
array file (.npy/.npz/.h5), a TFRecord file, or a folder of any of these or of frame folders.
``cfg.options`` holds the options of that dataset; an unknown one is an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, IterableDataset

from videogen.config import DataConfig
from videogen.data import arrays, bair, frame_folders, moving_digits, shapes, video_files
from videogen.data.arrays import ARRAY_SUFFIXES, ArrayVideos
from videogen.data.bair import TFRecordVideos
from videogen.data.clips import ClipShape, ClipSource, FileSource, TestClips, TrainClips
from videogen.data.errors import DatasetError
from videogen.data.frame_folders import FrameFolders, find_frame_sequences
from videogen.data.moving_digits import MovingDigits
from videogen.data.registry import BENCHMARKS, open_benchmark, split_by_lists
from videogen.data.shapes import StochasticShapes
from videogen.data.video_files import VideoFiles
from videogen.io import VIDEO_SUFFIXES

BUILTINS = {
    "moving-digits": (MovingDigits, moving_digits.OPTIONS),
    "stochastic-shapes": (StochasticShapes, shapes.OPTIONS),
}
# what each kind of file-backed source accepts in cfg.options
FILE_OPTIONS = {
    "videos": video_files.OPTIONS,
    "frames": frame_folders.OPTIONS,
    "tfrecord": bair.OPTIONS,
    "array": arrays.OPTIONS,
}
DATASETS: tuple[str, ...] = (*BUILTINS, *(n for n in BENCHMARKS if n not in BUILTINS))
SPLITS = ("train", "test")


def check_options(options: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DatasetError(
            f"unknown data option {unknown[0]!r} for {where}; known options: "
            f"{', '.join(sorted(allowed)) or 'none'}"
        )


def make_file_source(kind: str, items: Any, shape: ClipShape, options: dict) -> FileSource:
    """A file-backed source of ``kind`` ("videos", "frames", "tfrecord", "array")."""
    check_options(options, FILE_OPTIONS[kind], f"{kind} data")
    if kind == "videos":
        return VideoFiles(shape, items, **options)
    if kind == "frames":
        options = {k: v for k, v in options.items() if k != "group"}  # used when listing
        return FrameFolders(shape, items, **options)
    if kind == "tfrecord":
        return TFRecordVideos(shape, items, **options)
    return ArrayVideos(shape, items, **options)


def _split_file(folder: Path, split: str) -> Path | None:
    """``train.npy`` / ``test.h5`` ... in ``folder`` for ``split``, if any."""
    for suffix in ARRAY_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def open_path(path: Path, split: str, shape: ClipShape, options: dict) -> FileSource:
    """Detect what ``path`` holds and open it (see the module docstring)."""
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix in ARRAY_SUFFIXES:
            return make_file_source("array", path, shape, options)
        if suffix in VIDEO_SUFFIXES:
            return make_file_source("videos", [path], shape, options)
        if ".tfrecord" in path.name:
            return make_file_source("tfrecord", [path], shape, options)
        raise DatasetError(
            f"{path}: cannot tell what this file holds (video: {', '.join(VIDEO_SUFFIXES)}; "
            f"arrays: {', '.join(ARRAY_SUFFIXES)}; .tfrecord)"
        )
    array = _split_file(path, split)
    if array is not None:
        return make_file_source("array", array, shape, options)
    singles = sorted(p for p in path.iterdir() if p.suffix.lower() in ARRAY_SUFFIXES)
    if len(singles) == 1:
        return make_file_source("array", singles[0], shape, options)
    records = sorted(path.glob("*.tfrecord*")) or sorted((path / split).glob("*.tfrecord*"))
    if records:
        return make_file_source("tfrecord", records, shape, options)
    videos = sorted(
        p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
    )
    if videos:
        videos, _ = split_by_lists(videos, path, split)
        return make_file_source("videos", videos, shape, options)
    prepared = sorted(path.rglob("*.npy"))  # `videogen data prepare`: one array per video
    if len(prepared) > 1:
        prepared, _ = split_by_lists(prepared, path, split)
        return make_file_source("videos", prepared, shape, options)
    sequences = find_frame_sequences(path, options.get("group"))
    if sequences:
        return make_file_source("frames", sequences, shape, options)
    raise DatasetError(
        f"{path}: holds no video files, frame folders, array files ({split}.npy, ...) or "
        ".tfrecord files"
    )


def build_source(cfg: DataConfig, split: str = "train") -> ClipSource:
    """The clip source ``cfg`` describes, for ``split`` ("train" or "test")."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose 'train' or 'test'")
    shape = ClipShape(cfg.frames, cfg.size, cfg.channels, cfg.stride)
    options = dict(cfg.options)
    name = cfg.name
    builtin = BENCHMARKS[name].builtin if name in BENCHMARKS else name
    if builtin in BUILTINS:
        cls, allowed = BUILTINS[builtin]
        check_options(options, allowed, name)
        if builtin == "moving-digits" and cfg.root and "mnist" not in options:
            options["mnist"] = cfg.root  # the root of smmnist is where MNIST lies
        return cls(shape, split=split, **options)
    if name in BENCHMARKS:
        allowed = {k for kind in FILE_OPTIONS.values() for k in kind}
        check_options(
            options, dict.fromkeys(allowed | ({"fold"} if name == "ucf101" else set())), name
        )
        return open_benchmark(name, cfg.root, split, shape, options, make_file_source)
    path = Path(name).expanduser()
    if not path.exists():
        raise DatasetError(
            f"unknown dataset {name!r}: not a built-in ({', '.join(BUILTINS)}), a benchmark "
            f"({', '.join(n for n in BENCHMARKS if n not in BUILTINS)}) or an existing path"
        )
    source = open_path(path, split, shape, options)
    source.require_videos(str(path))
    return source


def build_dataset(
    cfg: DataConfig, split: str = "train", seed: int = 0, length: int | None = None
) -> Dataset | IterableDataset:
    """The dataset of ``cfg`` for ``split``: ``uint8 (T, H, W, C)`` tensors with
    T = cfg.frames, H = W = cfg.size, C = cfg.channels.

    "train" streams random clips forever (``length`` clips if given), each DataLoader worker
    from its own seed; "test" is a fixed set of ``length`` clips (default: 256 for generated
    data, one clip per test video for files), the same on every call. ``.skipped`` counts
    the videos left out as unreadable.
    """
    source = build_source(cfg, split)
    if split == "train":
        return TrainClips(source, seed, length)
    return TestClips(source, seed, length)
