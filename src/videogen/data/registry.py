"""The papers' benchmarks: each one's protocol, its file layout and how to find its splits.

``BENCHMARKS[name]`` says what a config for that benchmark should hold (resolution,
channels, conditioning and predicted frames per paper) and ``open_benchmark`` turns a root
folder into a clip source for a split, or raises one ``DatasetError`` naming the root and
the layout it expected. The protocol numbers are the papers' settings; where a paper has
several, each is listed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.data.clips import ClipShape, FileSource
from videogen.data.errors import DatasetError

VIDEO_GLOB = ("*.mp4", "*.avi", "*.webm", "*.mkv", "*.mov", "*.m4v", "*.gif")


@dataclass(frozen=True)
class Protocol:
    """One paper's setting: ``cond`` frames given, ``pred`` generated, at ``size`` pixels.
    ``train`` is the clip length trained on when it differs from cond + pred."""

    paper: str
    size: int
    cond: int
    pred: int
    train: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    channels: int
    size: int  # the resolution most of its papers use
    frames: int  # a sensible default clip length
    layout: str  # the root layout we read, for messages and --help
    protocols: tuple[Protocol, ...]
    builtin: str | None = None  # generated on the fly by this built-in dataset


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "smmnist",
            "Stochastic Moving MNIST (SVG protocol): 2 digits bouncing with random re-direction",
            channels=1,
            size=64,
            frames=15,
            layout="generated; data.root (optional) = MNIST idx files or mnist.npz, else "
            "rendered digits",
            protocols=(
                Protocol("MCVD", 64, cond=5, pred=10, train=10, note="5 past -> 5 current"),
            ),
            builtin="moving-digits",
        ),
        Benchmark(
            "stochastic-shapes",
            "VideoFlow's Stochastic Movement dataset: one shape moving in 1 of 8 directions",
            channels=3,
            size=64,
            frames=5,
            layout="generated; no root",
            protocols=(
                Protocol(
                    "VideoFlow",
                    64,
                    cond=1,
                    pred=4,
                    note="t2t videos are 5 frames; the first fixes shape, size and colour",
                ),
            ),
            builtin="stochastic-shapes",
        ),
        Benchmark(
            "kth",
            "KTH human actions, grey, persons 1-20 train / 21-25 test",
            channels=1,
            size=64,
            frames=15,
            layout="ROOT/**/personNN_<action>_dN_uncomp.avi (the KTH download), or one frame "
            "folder per video named personNN_<action>_dN*",
            protocols=(Protocol("MCVD", 64, cond=10, pred=30, train=15, note="also 10 -> 40"),),
        ),
        Benchmark(
            "bair",
            "BAIR robot pushing (softmotion30_44k), 30-frame videos, aux1 camera",
            channels=3,
            size=64,
            frames=16,
            layout="ROOT/softmotion30_44k/{train,test}/*.tfrecords (or ROOT/{train,test}/"
            "*.tfrecords)",
            protocols=(
                Protocol("RaMViD", 64, cond=1, pred=15),
                Protocol(
                    "MCVD",
                    64,
                    cond=1,
                    pred=15,
                    train=6,
                    note="and 2 -> 28, 2 -> 14 trained on 2 -> 5",
                ),
                Protocol("VideoFlow", 64, cond=3, pred=10, note="bits/pixel; FVD on 16 frames"),
            ),
        ),
        Benchmark(
            "cityscapes",
            "Cityscapes leftImg8bit_sequence: 30-frame snippets per {city}_{sequence}",
            channels=3,
            size=128,
            frames=7,
            layout="ROOT/leftImg8bit_sequence/{train,test}/<city>/<city>_<seq>_<frame>_"
            "leftImg8bit.png (or ROOT/{train,test}/<city>/...)",
            protocols=(Protocol("MCVD", 128, cond=2, pred=28, train=7),),
        ),
        Benchmark(
            "ucf101",
            "UCF-101 action videos (split lists of fold 1 unless options.fold)",
            channels=3,
            size=64,
            frames=16,
            layout="ROOT/**/v_<Class>_gNN_cNN.avi with ROOT/**/ucfTrainTestlist/"
            "{trainlist,testlist}0F.txt (without the lists every video is in both splits)",
            protocols=(
                Protocol("RaMViD", 64, cond=0, pred=16, note="unconditional"),
                Protocol("MCVD", 64, cond=4, pred=16, train=8),
                Protocol("VideoFusion", 128, cond=0, pred=16, note="unconditional"),
                Protocol("PVDM", 256, cond=0, pred=16, note="also 128-frame videos"),
            ),
        ),
        Benchmark(
            "kinetics600",
            "Kinetics-600 clips",
            channels=3,
            size=64,
            frames=16,
            layout="ROOT/{train,test}/**/*.mp4 (ROOT/val is used for test when there is no "
            "ROOT/test)",
            protocols=(Protocol("RaMViD", 64, cond=5, pred=11),),
        ),
        Benchmark(
            "sky",
            "SkyTimelapse, frame folders",
            channels=3,
            size=128,
            frames=16,
            layout="ROOT/sky_train/<video>/<clip>/*.jpg and ROOT/sky_test/... (or ROOT/"
            "sky_timelapse/sky_train ...)",
            protocols=(
                Protocol("VideoFusion", 128, cond=0, pred=16, note="unconditional"),
                Protocol("PVDM", 256, cond=0, pred=16, note="unconditional"),
            ),
        ),
        Benchmark(
            "taichi",
            "TaiChi-HD (FOMM's preprocessing)",
            channels=3,
            size=128,
            frames=16,
            layout="ROOT/{train,test}/<video>.mp4, or ROOT/{train,test}/<video>/*.png frame "
            "folders",
            protocols=(Protocol("VideoFusion", 128, cond=0, pred=16, note="unconditional"),),
        ),
    ]
}


def _error(name: str, root: Path | None, problem: str) -> DatasetError:
    layout = BENCHMARKS[name].layout
    where = f"data.root={root}" if root is not None else "data.root is not set"
    return DatasetError(f"{name}: {where}: {problem}. Expected layout: {layout}")


def _videos(folder: Path) -> list[Path]:
    # is_file: FOMM's TaiChi frames live in folders named like videos ("x.mp4/0001.png")
    return sorted({p for pattern in VIDEO_GLOB for p in folder.rglob(pattern) if p.is_file()})


def _first_dir(root: Path, *candidates: str) -> Path | None:
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return None


def split_by_lists(
    videos: list[Path], root: Path, split: str, fold: int = 1
) -> tuple[list[Path], bool]:
    """UCF-101 style split lists: the videos named in ``{train,test}list0{fold}.txt`` found
    anywhere under ``root``. Returns (videos, whether a list was found)."""
    listname = f"{'train' if split == 'train' else 'test'}list0{fold}.txt"
    lists = sorted(root.rglob(listname))
    if not lists:
        return videos, False
    names = set()
    for line in lists[0].read_text().splitlines():
        if line.strip():
            names.add(Path(line.split()[0]).stem)  # "Class/v_x.avi 12" -> "v_x"
    # stems, so a prepared folder (v_x.npy) matches the lists as the videos (v_x.avi) do
    return [v for v in videos if v.stem in names], True


def _sources(name: str, root: Path, split: str) -> tuple[str, Any, dict]:
    """(kind, items, fixed options) for a benchmark's split: kind is "videos" (list of
    files), "frames" (list of frame sequences) or "tfrecord" (list of files)."""
    from videogen.data.frame_folders import find_frame_sequences

    test = "test" if split != "train" else "train"
    if name == "bair":
        base = _first_dir(root, "softmotion30_44k") or root
        folder = base / test
        files = sorted(folder.glob("*.tfrecord*")) if folder.is_dir() else []
        if not files:
            raise _error(name, root, f"no *.tfrecords in {folder}")
        return "tfrecord", files, {}
    if name == "cityscapes":
        base = _first_dir(root, "leftImg8bit_sequence") or root
        folder = base / test
        group = r"^(.+?_\d+)_\d+_leftImg8bit"
        sequences = find_frame_sequences(folder, group) if folder.is_dir() else []
        if not sequences:
            raise _error(name, root, f"no <city>_<seq>_<frame>_leftImg8bit.png in {folder}")
        return "frames", sequences, {"test_start": "first"}
    if name == "kth":
        person = re.compile(r"person(\d+)_")
        wanted = range(1, 21) if split == "train" else range(21, 26)

        def keep(p: Path | str) -> bool:
            m = person.search(Path(p).name)
            return bool(m) and int(m.group(1)) in wanted

        videos = [v for v in _videos(root) if keep(v)] if root.is_dir() else []
        if videos:
            return "videos", videos, {}
        sequences = [s for s in find_frame_sequences(root) if keep(s[0])] if root.is_dir() else []
        if not sequences:
            raise _error(
                name, root, f"no personNN_* videos or frame folders of the {split} persons"
            )
        return "frames", sequences, {}
    if name == "ucf101":
        videos = _videos(root) if root.is_dir() else []
        if not videos:
            raise _error(name, root, "no video files")
        return "videos", videos, {}
    if name == "kinetics600":
        folder = _first_dir(root, "train") if split == "train" else _first_dir(root, "test", "val")
        videos = _videos(folder) if folder else []
        if not videos:
            raise _error(name, root, f"no videos in {root}/{test}")
        return "videos", videos, {}
    if name == "sky":
        base = _first_dir(root, "sky_timelapse") or root
        folder = base / f"sky_{test}"
        sequences = find_frame_sequences(folder) if folder.is_dir() else []
        if not sequences:
            raise _error(name, root, f"no frame folders in {folder}")
        return "frames", sequences, {}
    if name == "taichi":
        folder = root / test
        videos = _videos(folder) if folder.is_dir() else []
        if videos:
            return "videos", videos, {}
        sequences = find_frame_sequences(folder) if folder.is_dir() else []
        if not sequences:
            raise _error(name, root, f"no videos or frame folders in {folder}")
        return "frames", sequences, {}
    raise DatasetError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


def open_benchmark(
    name: str,
    root: str | Path | None,
    split: str,
    shape: ClipShape,
    options: dict[str, Any],
    make: Callable[[str, Any, ClipShape, dict[str, Any]], FileSource],
) -> FileSource:
    """A file source for ``split`` of benchmark ``name`` under ``root``.

    ``make(kind, items, shape, options)`` builds the source (see ``build.py``). Raises one
    ``DatasetError`` naming the root and the expected layout when the root is missing,
    empty, or holds nothing of the layout.
    """
    if root is None:
        raise _error(name, None, "the benchmark reads files")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise _error(name, path, "no such folder")
    options = dict(options)
    fold = options.pop("fold", 1) if name == "ucf101" else None
    kind, items, fixed = _sources(name, path, split)
    if name == "ucf101":
        items, found = split_by_lists(items, path, split, fold)
        if not found:
            warnings.warn(
                f"ucf101: no trainlist0{fold}.txt/testlist0{fold}.txt under {path}: every "
                "video is in both splits",
                stacklevel=2,
            )
        elif not items:
            raise _error(name, path, f"none of the videos is named in {split}list0{fold}.txt")
    source = make(kind, items, shape, {**fixed, **options})
    source.require_videos(f"{name} ({split}) under {path}")
    return source
