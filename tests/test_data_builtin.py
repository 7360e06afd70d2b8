"""Generated datasets: determinism, the Stochastic Moving MNIST physics, stochastic shapes."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from videogen.config import DataConfig
from videogen.data import DatasetError, build_dataset, to_model, to_uint8
from videogen.data.clips import ClipShape
from videogen.data.digits import load_mnist, rendered_digits
from videogen.data.moving_digits import MovingDigits, trajectories
from videogen.data.shapes import COLOURS, StochasticShapes


def take(dataset, n: int) -> np.ndarray:
    # numpy, not torch, for comparisons: torch's intra-op threads crawl on a busy 2-core box
    return np.stack([clip.numpy() for clip, _ in zip(dataset, range(n))])


def same(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def digits_cfg(**kw) -> DataConfig:
    return DataConfig(**{"name": "moving-digits", "frames": 20, "size": 64, "channels": 1, **kw})


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    ("name", "channels"), [("moving-digits", 1), ("smmnist", 1), ("stochastic-shapes", 3)]
)
def test_same_seed_same_clips_other_seed_other_clips(name: str, channels: int) -> None:
    cfg = DataConfig(name=name, frames=6, size=64, channels=channels)
    a, b = take(build_dataset(cfg, seed=3), 8), take(build_dataset(cfg, seed=3), 8)
    assert a.shape == (8, 6, 64, 64, channels) and a.dtype == np.uint8
    assert same(a, b)
    assert not same(a, take(build_dataset(cfg, seed=4), 8))
    test = build_dataset(cfg, "test", seed=0, length=10)
    again = build_dataset(cfg, "test", seed=0, length=10)
    assert len(test) == 10 and test[0].dtype == torch.uint8
    assert all(same(test[i], again[i]) for i in range(10))
    assert same(test[7], test[7]) and not same(test[0], test[1])
    # clip i depends on (seed, i) only: a longer test set starts with the same clips
    assert same(build_dataset(cfg, "test", seed=0, length=50)[7], test[7])
    assert not any(same(test[i], a[j]) for i in range(10) for j in range(8))


def test_default_test_length_and_index_errors() -> None:
    test = build_dataset(digits_cfg(frames=4), "test")
    assert len(test) == 256
    with pytest.raises(IndexError):
        test[256]


def test_dataloader_workers_draw_distinct_streams() -> None:
    dataset = build_dataset(digits_cfg(frames=3), seed=0, length=8)
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2))
    clips = torch.cat(batches)
    assert clips.shape == (8, 3, 64, 64, 1)
    flat = {tuple(c.flatten()[::97].tolist()) for c in clips}
    assert len(flat) == 8  # no worker repeats another's clips
    again = torch.cat(list(DataLoader(dataset, batch_size=2, num_workers=2)))
    assert same(clips, again)


def test_stride_and_rgb_conversion() -> None:
    cfg = digits_cfg(frames=4)
    full = build_dataset(DataConfig(**{**cfg.__dict__, "frames": 7}), "test", length=2)[1]
    strided = build_dataset(DataConfig(**{**cfg.__dict__, "stride": 2}), "test", length=2)[1]
    assert same(strided, full[::2])
    rgb = build_dataset(DataConfig(**{**cfg.__dict__, "channels": 3}), "test", length=2)[1]
    assert rgb.shape == (4, 64, 64, 3)
    assert same(rgb[..., 2:], build_dataset(cfg, "test", length=2)[1])


def test_to_model_and_back() -> None:
    clips = torch.randint(0, 256, (2, 3, 8, 8, 3), dtype=torch.uint8)
    video = to_model(clips)
    assert video.shape == (2, 3, 3, 8, 8) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    assert video[0, 0, :, 0, 0].tolist() == pytest.approx(
        (clips[0, 0, 0, 0].float() / 127.5 - 1).tolist()
    )
    assert same(to_uint8(video), clips)
    assert (to_uint8(video * 3)[clips > 191] == 255).all()  # clamped
    with pytest.raises(ValueError, match="uint8"):
        to_model(clips.float())
    with pytest.raises(ValueError, match="float"):
        to_uint8(clips)


def test_unknown_option_and_bad_values_name_them() -> None:
    with pytest.raises(DatasetError, match="'num_digit'.*num_digits"):
        build_dataset(digits_cfg(options={"num_digit": 3}))
    with pytest.raises(DatasetError, match="combine"):
        build_dataset(digits_cfg(options={"combine": "avg"}))
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        build_dataset(DataConfig(name="nope"))
    with pytest.raises(DatasetError, match="channels must be 1 or 3"):
        build_dataset(digits_cfg(channels=2))


# --------------------------------------------------------------------------- moving digits


def test_rendered_glyphs_vary_and_splits_differ() -> None:
    train, test = rendered_digits("train"), rendered_digits("test")
    assert train.shape[1:] == (28, 28) and train.dtype == np.uint8
    fours = train[4::10].astype(float)  # every variant of the digit 4
    assert fours.std(axis=0).mean() > 20  # thickness/slant/width differ between variants
    assert not np.array_equal(train, test)
    ink = (train > 128).sum(axis=(1, 2))
    assert ink.min() > 20 and ink.max() < 400  # a digit, neither empty nor a filled square


@pytest.mark.parametrize("deterministic", [False, True])
def test_digits_stay_in_the_canvas_and_change_velocity_only_at_walls(deterministic: bool) -> None:
    room, speed = 32, 4
    pos = trajectories(np.random.default_rng(0), 300, 2, 30, room, speed, deterministic)
    assert pos.min() >= 0 and pos.max() <= room - 1
    step = np.diff(pos, axis=1)  # displacement between frames (n, T-1, D, 2)
    assert np.abs(step).max() <= speed
    changed = np.any(step[:, 1:] != step[:, :-1], axis=-1)  # velocity changed at frame t+1
    at_wall = (pos == 0) | (pos == room - 1)
    near = np.any(at_wall[:, 1:-1] | at_wall[:, 2:], axis=-1)
    assert changed.any()
    assert np.all(near[changed])  # every change of velocity is a bounce
    # after touching a wall, a digit moves away from it (or stays when its speed is 0)
    low = pos[:, 1:-1] == 0
    assert np.all(step[:, 1:][low & (step[:, :-1] < 0)] >= 0)
    speeds = [
        {
            abs(int(s))
            for s, w in zip(step[i, :, d, a], at_wall[i, 1:, d, a] | at_wall[i, :-1, d, a])
            if not w
        }
        for i in range(300)
        for d in range(2)
        for a in range(2)
    ]
    if deterministic:  # reflection keeps each digit's speed on each axis
        assert all(len(s) <= 1 for s in speeds)
    else:  # a bounce draws a new speed
        assert sum(len(s) > 1 for s in speeds) > 50


def test_rendering_pastes_the_digits_on_their_trajectories() -> None:
    for combine in ("sum", "max"):
        source = MovingDigits(ClipShape(12, 64, 1), combine=combine)
        clips = source.render(np.random.default_rng(7), 5, 12)
        rng = np.random.default_rng(7)  # replay the draws: digits first, then trajectories
        which = rng.integers(len(source.digits), size=(5, 2))
        corners = trajectories(rng, 5, 2, 12, 64 - 32, 4, False)
        expected = np.zeros((5, 12, 64, 64), np.int32)
        for i in range(5):
            for t in range(12):
                layers = []
                for d in range(2):
                    layer = np.zeros((64, 64), np.int32)
                    y, x = corners[i, t, d]
                    layer[y : y + 32, x : x + 32] = source.digits[which[i, d]]
                    layers.append(layer)
                combined = sum(layers) if combine == "sum" else np.maximum(*layers)
                expected[i, t] = np.minimum(combined, 255)
        np.testing.assert_array_equal(clips[..., 0], expected)


def test_num_digits_and_digit_size_options() -> None:
    one = build_dataset(digits_cfg(frames=5, options={"num_digits": 1, "digit_size": 28}))
    clip = next(iter(one))[..., 0]
    rows, cols = np.nonzero(clip[0].numpy())
    assert rows.max() - rows.min() < 28 and cols.max() - cols.min() < 28


def test_real_mnist_files_are_used(tmp_path: Path) -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    images[:, 10:18, 12:16] = 255  # three identical "digits": a bar
    header = struct.pack(">IIII", 2051, 3, 28, 28)
    (tmp_path / "raw").mkdir()
    with gzip.open(tmp_path / "raw" / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    np.savez(tmp_path / "mnist.npz", x_train=images, x_test=images)
    assert load_mnist(tmp_path, "test").shape == (3, 28, 28)
    assert load_mnist(tmp_path / "mnist.npz", "train").shape == (3, 28, 28)
    cfg = digits_cfg(frames=2, options={"mnist": str(tmp_path), "num_digits": 1, "digit_size": 28})
    clip = build_dataset(cfg, "test", length=1)[0][0, ..., 0].numpy()
    rows, cols = np.nonzero(clip)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (8, 4)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        build_dataset(DataConfig(name="smmnist", root=str(tmp_path / "raw")), "train")
    (tmp_path / "bad-idx").write_bytes(b"\x00" * 40)
    with pytest.raises(DatasetError, match="bad-idx.*magic"):
        load_mnist(tmp_path / "bad-idx", "train")


# --------------------------------------------------------------------------- stochastic shapes


def test_shapes_move_at_constant_velocity_in_one_of_8_directions() -> None:
    source = StochasticShapes(ClipShape(3, 64, 3))
    clips = source.render(np.random.default_rng(0), 200, 3).astype(np.float64)
    mass = clips.sum(-1)  # (n, T, H, W)
    total = mass.sum(axis=(2, 3))
    assert (total > 0).all()  # three frames: the shape is still fully inside
    rows = (mass.sum(3) * np.arange(64)).sum(2) / total
    cols = (mass.sum(2) * np.arange(64)).sum(2) / total
    centre = np.stack([rows, cols], -1)  # (n, T, 2)
    step = np.diff(centre, axis=1)
    np.testing.assert_allclose(step[:, 0], step[:, 1], atol=0.3)  # constant velocity
    unit = step[:, 0] / 6.4  # 1 canvas unit = 6.4 px at 64 px
    np.testing.assert_allclose(unit, np.round(unit), atol=0.05)
    directions = {tuple(d) for d in np.round(unit).astype(int)}
    assert directions == {(r, c) for r in (-1, 0, 1) for c in (-1, 0, 1)} - {(0, 0)}
    # the first frame is drawn around the canvas centre
    assert np.all(mass[:, 0, 32, 32] > 0)


def test_shapes_keep_one_colour_and_vary_in_size() -> None:
    source = StochasticShapes(ClipShape(4, 64, 3))
    clips = source.render(np.random.default_rng(1), 120, 4)
    colours = set()
    for clip in clips:
        brightest = clip.reshape(4, -1, 3)[np.arange(4), clip.reshape(4, -1, 3).sum(-1).argmax(1)]
        assert (brightest == brightest[0]).all()  # the same colour in every frame
        colours.add(tuple(brightest[0]))
    assert colours == {tuple(c) for c in COLOURS.astype(np.uint8)}
    area = (clips[:, 0].sum(-1) > 0).sum(axis=(1, 2))
    assert area.min() < 60 and area.max() > 250  # sizes 0.5 .. 1.5 units


def test_shapes_grey_and_speed_option() -> None:
    cfg = DataConfig(name="stochastic-shapes", frames=2, channels=1, options={"speed": 0.0})
    clip = build_dataset(cfg, "test", length=1)[0]
    assert clip.shape == (2, 64, 64, 1)
    assert same(clip[0], clip[1])  # speed 0: the shape stays
    with pytest.raises(DatasetError, match="min_size <= max_size"):
        build_dataset(DataConfig(name="stochastic-shapes", options={"min_size": 2.0}))


def test_shapes_directions_option_restricts_the_motion() -> None:
    cfg = DataConfig(name="stochastic-shapes", frames=2, options={"directions": [[1, 0]]})
    clips = take(build_dataset(cfg, "test", length=32), 32).astype(np.float64)
    mass = clips.sum(-1)
    cols = (mass.sum(2) * np.arange(64)).sum(2) / mass.sum(axis=(2, 3))
    rows = (mass.sum(3) * np.arange(64)).sum(2) / mass.sum(axis=(2, 3))
    np.testing.assert_allclose(cols[:, 1] - cols[:, 0], 6.4, atol=0.3)  # one unit right
    np.testing.assert_allclose(rows[:, 1] - rows[:, 0], 0.0, atol=0.3)
    for bad in ([[0, 0]], [], [[2, 1]], 3):
        with pytest.raises(DatasetError, match="option directions="):
            build_dataset(DataConfig(name="stochastic-shapes", options={"directions": bad}))
