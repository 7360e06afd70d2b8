"""Fuzzing the data edge (issue 18): a few hundred mutated mp4s and array files, seeded, through
``data info`` and the training and test streams. Nothing may end in a traceback; a file that
cannot be used is named in the message that leaves it out; a file ``info`` calls readable
really decodes."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from videogen.config import DataConfig
from videogen.data import DatasetError, SkippedVideoWarning, build_dataset, info
from videogen.io import VideoError, read_video, video_info

SOURCES = ("carphone_pristine.mp4", "carphone_distorted.mp4", "bikes.mp4")
VIDEO_MUTANTS = 240
ARRAY_MUTANTS = 72


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One damage out of five: a cut, bit flips in the first 4 KiB (the headers of most
    files), bit flips anywhere, a zeroed block, or (in an mp4) the codec tag renamed, which
    leaves PyAV a stream without a decoder."""
    out = bytearray(data)
    kind = int(rng.integers(5))
    if kind == 4 and b"avc1" in out:
        return bytes(out.replace(b"avc1", bytes(rng.integers(97, 123, 4, dtype=np.uint8))))
    kind %= 4
    if kind == 0:
        return bytes(out[: int(rng.integers(1, len(out)))])
    if kind in (1, 2):
        span = min(len(out), 4096) if kind == 1 else len(out)
        for _ in range(int(rng.integers(1, 24))):
            out[int(rng.integers(span))] ^= 1 << int(rng.integers(8))
        return bytes(out)
    start = int(rng.integers(len(out)))
    out[start : start + 512] = bytes(len(out[start : start + 512]))
    return bytes(out)


def check_warnings(caught: list[warnings.WarningMessage], names: set[str]) -> None:
    """Every skip names one of the files in ``names``."""
    for w in caught:
        if issubclass(w.category, SkippedVideoWarning):
            assert any(name in str(w.message) for name in names), str(w.message)


@pytest.fixture(scope="module")
def mutants(sample_videos: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz_videos")
    rng = np.random.default_rng(18)
    originals = [(sample_videos / name).read_bytes() for name in SOURCES]
    for i in range(VIDEO_MUTANTS):
        (folder / f"m{i:03d}.mp4").write_bytes(mutate(originals[i % len(SOURCES)], rng))
    (folder / "intact.mp4").write_bytes(originals[0])  # so that a stream always has a video
    return folder


def test_info_of_mutated_mp4s_names_every_bad_file(mutants: Path) -> None:
    files = sorted(mutants.glob("*.mp4"))
    report = info(mutants)
    assert report["count"] + len(report["unreadable"]) == len(files)
    for path, reason in report["reasons"].items():
        assert Path(path).name in reason
    readable = [f for f in files if str(f) not in report["reasons"]]
    assert 40 < len(readable) < len(files) - 40  # the mutations hit and miss
    for f in readable:  # what info calls readable decodes, as many frames as it counts
        frames = video_info(f, count_frames=True)["frames"]
        assert 1 <= frames <= 250
        assert read_video(f, frames=1, size=16).shape == (1, 16, 16, 3)


def test_training_and_test_streams_over_mutated_mp4s(mutants: Path) -> None:
    names = {p.name for p in mutants.glob("*.mp4")}
    # clip by clip (no cache): the training stream and every video of the test set once (a
    # broken one hands its slot on); with the cache, each video drawn is decoded whole
    for cache_mb, draws, whole_test_set in ((0, 60, True), (1024, 30, False)):
        cfg = DataConfig(
            name=str(mutants), frames=4, size=16, channels=3, options={"cache_mb": cache_mb}
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train = build_dataset(cfg, "train", seed=cache_mb)
            clips = list(itertools.islice(train, draws))
            if whole_test_set:
                test = build_dataset(cfg, "test")
                clips += [test[i] for i in range(len(test))]
        assert all(c.shape == (4, 16, 16, 3) for c in clips)
        check_warnings(caught, names)
        assert train.skipped.count > 0


def array_originals(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 255, (3, 6, 16, 16, 3), dtype=np.uint8)
    np.save(folder / "a.npy", videos)
    np.savez(folder / "b.npz", videos=videos, flow=videos[..., :2])
    np.savez_compressed(folder / "c.npz", videos=videos)
    with h5py.File(folder / "d.h5", "w") as f:
        f["group/videos"] = videos
    return sorted(folder.iterdir())


SEMANTIC = {
    "float01": lambda v: v.astype(np.float32) / 255,
    "int64": lambda v: v.astype(np.int64),
    "flat": lambda v: v[0, :, :, :, 0],
    "six_d": lambda v: v[None],
    "empty": lambda v: v[:0],
    "tnhwc": lambda v: v.transpose(1, 0, 2, 3, 4),  # read as NTHWC: 6 videos of 3 frames
    "channels7": lambda v: np.concatenate([v, v, v[..., :1]], axis=-1),
}


@pytest.fixture(scope="module")
def array_mutants(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fuzz_arrays")
    originals = array_originals(tmp_path_factory.mktemp("array_originals"))
    rng = np.random.default_rng(1818)
    paths = []
    for i in range(ARRAY_MUTANTS):
        source = originals[i % len(originals)]
        path = folder / f"x{i:03d}{source.suffix}"
        path.write_bytes(mutate(source.read_bytes(), rng))
        paths.append(path)
    videos = np.load(originals[0])
    for name, change in SEMANTIC.items():
        np.save(folder / f"{name}.npy", change(videos))
        paths.append(folder / f"{name}.npy")
    return paths


def test_mutated_arrays_through_info_and_the_streams(array_mutants: list[Path]) -> None:
    options = {"layout": "NTHWC"}
    report = info(array_mutants[0].parent, options=options)
    assert report["count"] >= 3 and len(report["unreadable"]) > 10
    for path, reason in report["reasons"].items():
        assert Path(path).name in reason
    opened = 0
    for path in array_mutants:
        cfg = DataConfig(name=str(path), frames=3, size=16, channels=3, options=options)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                train = build_dataset(cfg, "train", seed=0)
                clips = list(itertools.islice(train, 4))
                test = build_dataset(cfg, "test")
                clips += [test[i] for i in range(len(test))]
            except (DatasetError, VideoError) as err:
                assert path.name in str(err), str(err)
                continue
        opened += 1
        assert all(c.shape == (3, 16, 16, 3) for c in clips)
        check_warnings(caught, {path.name})
    assert 10 < opened < len(array_mutants) - 10
