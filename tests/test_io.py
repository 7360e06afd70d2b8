"""Video I/O on real mp4 files: reading clips, writing every format, grids, damaged files."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from videogen import io
from videogen.grids import GENERATED_COLOUR, KNOWN_COLOUR, tile, write_grid
from videogen.io import VideoError, read_video, video_info, write_video


@pytest.fixture(scope="module")
def carphone(small_mp4: Path) -> np.ndarray:
    return read_video(small_mp4)


def faststart_copy(src: Path, dst: Path) -> Path:
    """Remux ``src`` with the index (moov) first, so a truncated copy still opens."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dst


def test_info_and_full_read(small_mp4: Path, carphone: np.ndarray) -> None:
    meta = video_info(small_mp4)
    assert meta["frames"] == 120 and (meta["height"], meta["width"]) == (144, 176)
    assert meta["fps"] == pytest.approx(29.97, abs=0.01)
    assert carphone.shape == (120, 144, 176, 3) and carphone.dtype == np.uint8
    assert 40 < carphone.mean() < 220 and carphone.std() > 20  # real content, not blank


def test_clip_read_matches_slices_of_the_full_video(sample_videos: Path) -> None:
    # bikes.mp4 has keyframes every ~30-60 frames: exercises seeking and counting by pts
    path = sample_videos / "bikes.mp4"
    full = read_video(path, size=32)
    assert full.shape == (250, 32, 32, 3)
    for start, stride in [(0, 1), (7, 2), (31, 3), (100, 1), (200, 5)]:
        clip = read_video(path, start=start, frames=8, stride=stride, size=32)
        np.testing.assert_array_equal(clip, full[start : start + 8 * stride : stride][:8])


def _read_in_child(path: Path, queue: multiprocessing.Queue) -> None:
    queue.put([read_video(path, frames=3, size=32).shape, read_video(path, frames=2).shape])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (data-loader workers on Linux)")
def test_a_forked_process_reads_after_the_parent_did(small_mp4: Path) -> None:
    """Regression: with PyAV 18.1.1 a process forked after its parent had converted a frame
    (a data-loader worker) hung for ever in swscale's thread pool."""
    read_video(small_mp4, frames=3, size=32)
    read_video(small_mp4, frames=2)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(small_mp4, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("a forked process hung reading a video its parent had read")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [(3, 32, 32, 3), (2, 144, 176, 3)]


def test_resize_crop_and_grey(small_mp4: Path, carphone: np.ndarray) -> None:
    grey = read_video(small_mp4, frames=4, size=48, channels=1)
    rgb = read_video(small_mp4, frames=4, size=48)
    assert grey.shape == (4, 48, 48, 1) and rgb.shape == (4, 48, 48, 3)
    luma = io.match_channels(rgb, 1).astype(int)
    assert np.abs(luma - grey).mean() < 6  # decoder's Y plane vs. BT.601 luma of RGB
    # the centre crop keeps the middle: compare with a resize of the full frame's centre
    ref = io.resize_crop(carphone[:4], 48).astype(int)
    assert np.abs(ref - rgb).mean() < 6


def test_too_few_frames_is_an_error(small_mp4: Path) -> None:
    with pytest.raises(VideoError, match="carphone_pristine.mp4.*decoded 2 frames"):
        read_video(small_mp4, start=118, frames=5)


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv", ".webm"])
def test_write_read_round_trip(tmp_path: Path, carphone: np.ndarray, suffix: str) -> None:
    clip = carphone[:12]
    path = write_video(tmp_path / f"clip{suffix}", clip, fps=10)
    back = read_video(path)
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip).mean() < 6
    info = video_info(path)
    assert info["frames"] == 12 and info["fps"] == pytest.approx(10)


def test_gif_round_trip_loops_and_keeps_values(tmp_path: Path, carphone: np.ndarray) -> None:
    clip = carphone[:6, ::3, ::3]  # 48 x 59
    path = write_video(tmp_path / "clip.gif", clip, fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.info.get("loop") == 0
        assert gif.info["duration"] == 200
    back = read_video(path)
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip).mean() < 8  # palette quantisation only


def test_odd_sizes_grey_and_float_inputs(tmp_path: Path) -> None:
    grey = np.random.default_rng(0).integers(0, 255, (5, 33, 47, 1), dtype=np.uint8)
    back = read_video(write_video(tmp_path / "odd.mp4", grey))
    assert back.shape == (5, 34, 48, 3)  # padded to even by repeating the edge
    float_video = torch.linspace(-1, 1, 4 * 3 * 8 * 8).reshape(4, 3, 8, 8)
    back = read_video(write_video(tmp_path / "f.npy", float_video))
    expected = ((float_video + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(back, expected)


def test_failed_write_keeps_the_old_file(tmp_path: Path, carphone: np.ndarray, monkeypatch) -> None:
    target = tmp_path / "keep.mp4"
    write_video(target, carphone[:4])
    before = target.read_bytes()

    def broken(path: Path, *args) -> None:
        Path(path).write_bytes(b"half a video")
        raise RuntimeError("disk full")

    monkeypatch.setattr(io, "_write_av", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(target, carphone[:8])
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.mp4"]  # no temporary file left behind
    with pytest.raises(VideoError, match="cannot write .xyz"):
        write_video(tmp_path / "x.xyz", carphone[:2])
    assert sorted(os.listdir(tmp_path)) == ["keep.mp4"]


def test_grid_png_layout_and_borders(tmp_path: Path) -> None:
    t, h, w = 5, 8, 10
    truth = np.full((t, h, w, 1), 200, np.uint8)
    samples = torch.full((2, t, 3, h, w), -1.0)  # a float batch: two black rows
    known = torch.tensor([True, True, False, False, False])
    path = write_grid(tmp_path / "grid.png", [truth, samples], known=known, border=2)
    grid = np.asarray(Image.open(path))
    cell_h, cell_w = h + 4, w + 4
    assert grid.shape == (3 * cell_h, t * cell_w, 3)
    assert tuple(grid[0, 0]) == KNOWN_COLOUR and tuple(grid[0, 2 * cell_w]) == GENERATED_COLOUR
    assert tuple(grid[2, 2]) == (200, 200, 200)  # ground truth row, frame 0, grey -> RGB
    assert tuple(grid[cell_h + 2, 3 * cell_w + 2]) == (0, 0, 0)  # a sample pixel
    assert tuple(grid[2 * cell_h, 4 * cell_w + 1]) == GENERATED_COLOUR


def test_grid_gif_per_row_known(tmp_path: Path) -> None:
    ramp = np.arange(4, dtype=np.uint8)[:, None, None, None] * 60  # distinct frames
    rows = [np.broadcast_to(ramp, (4, 6, 6, 3)), np.broadcast_to(ramp, (4, 6, 6, 3))]
    known = np.array([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=bool)
    path = write_grid(tmp_path / "grid.gif", rows, known=known, fps=4)
    back = read_video(path)
    assert back.shape == (4, 2 * 10, 10, 3)
    assert np.abs(back[1, 0, 0].astype(int) - GENERATED_COLOUR).max() < 10  # row 0, frame 1
    assert np.abs(back[1, 10, 0].astype(int) - KNOWN_COLOUR).max() < 10  # row 1, frame 1
    with pytest.raises(ValueError, match="known must be"):
        write_grid(tmp_path / "bad.gif", rows, known=np.ones(3, bool))


def test_damaged_files_raise_one_error_naming_them(tmp_path: Path, small_mp4: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    cut = tmp_path / "cut.mp4"  # index at the end: the cut loses it
    cut.write_bytes(small_mp4.read_bytes()[:200_000])
    for path in (empty, noise, cut, tmp_path / "missing.mp4"):
        with pytest.raises(VideoError, match=path.name):
            video_info(path)
        with pytest.raises(VideoError, match=path.name):
            read_video(path)
    # index first: the header still announces 120 frames, decoding runs out
    cut_fast = tmp_path / "cut_fast.mp4"
    cut_fast.write_bytes(faststart_copy(small_mp4, tmp_path / "fast.mp4").read_bytes()[:200_000])
    assert video_info(cut_fast)["frames"] == 120
    with pytest.raises(VideoError, match="cut_fast.mp4"):
        read_video(cut_fast)


def test_npy_video_and_bad_arrays(tmp_path: Path) -> None:
    video = np.random.default_rng(1).integers(0, 255, (6, 20, 30), dtype=np.uint8)
    np.save(tmp_path / "v.npy", video)
    assert video_info(tmp_path / "v.npy")["frames"] == 6
    np.testing.assert_array_equal(
        read_video(tmp_path / "v.npy", start=1, stride=2)[..., 0], video[1::2]
    )
    np.save(tmp_path / "f.npy", video.astype(np.float32))
    with pytest.raises(VideoError, match="f.npy.*uint8"):
        read_video(tmp_path / "f.npy")


def test_tile_and_channels() -> None:
    videos = [np.full((2, 4, 4, 1), i * 50, np.uint8) for i in range(5)]
    tiled = tile(videos, columns=3, gap=1)
    assert tiled.shape == (2, 2 * 5 - 1, 3 * 5 - 1, 1)
    assert tiled[0, 5, 0, 0] == 150  # second row, first column: video 3
    rgb = np.array([[[[255, 0, 0]]]], np.uint8)
    assert io.match_channels(rgb, 1).item() == 76  # 0.299 * 255
    assert io.match_channels(np.array([[[[9]]]], np.uint8), 3).tolist() == [[[[9, 9, 9]]]]


def test_written_files_get_the_usual_permissions(tmp_path):
    """Regression: atomic writes went through mkstemp and left files readable by owner only."""
    from videogen.io import write_video

    path = tmp_path / "clip.gif"
    write_video(path, np.zeros((2, 8, 8, 3), dtype=np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
