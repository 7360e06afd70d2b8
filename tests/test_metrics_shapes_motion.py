"""shapes_motion on real stochastic-shapes clips (their own ground truth) and on broken ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videogen.config import DataConfig
from videogen.data import build_dataset, to_model
from videogen.data.shapes import COLOURS
from videogen.metrics import shapes_motion
from videogen.metrics.shapes_motion import CHECKS
from videogen.tasks import predict

N = 24


def clips(frames: int, channels: int = 3, size: int = 64) -> torch.Tensor:
    cfg = DataConfig(name="stochastic-shapes", frames=frames, size=size, channels=channels)
    data = build_dataset(cfg, "test", seed=0, length=N)
    return torch.stack([data[i] for i in range(N)])  # uint8 (N, T, H, W, C)


@pytest.fixture(scope="module")
def real() -> torch.Tensor:
    return clips(8)


def check(video: torch.Tensor, known: int):
    return shapes_motion(video, predict(video.shape[1], known, len(video)))


@pytest.mark.parametrize(("frames", "known"), [(3, 1), (5, 1), (8, 1), (5, 2), (8, 3)])
def test_real_clips_pass_every_check(real: torch.Tensor, frames: int, known: int) -> None:
    r = check(to_model(real[:, :frames]), known)
    s = r.summary()
    assert s["clips"] == s["checkable"] == N
    assert all(s[name] == 1.0 for name in (*CHECKS, "all", "steps")), s
    assert r.ok.all()
    assert not ((r.status == 3) | (r.status == 4)).any()  # nothing lost, nothing came back
    # each checked step is one unit (6.4 px) along an axis or a diagonal, in the clip's one
    # direction; the steps of a clip all point the same way
    steps = r.step[r.step_checked] / 6.4
    np.testing.assert_allclose(steps, steps.round(), atol=0.1)
    assert set(steps.round().abs().flatten().tolist()) <= {0.0, 1.0}
    d = torch.where(r.step_checked, r.step_direction, -1)
    assert all(len(set(row[row >= 0].tolist())) == 1 for row in d)
    if frames == 3:
        assert s["excluded_frames"] == 0  # the paper's 3 frames: the shape is always inside
    if frames == 8:
        # by frame 5 the shape reaches the border and then leaves: excluded, not failed
        assert (r.status == 2).any() and 0 < s["excluded_frames"] < 1


def test_shape_measurements_follow_the_generator(real: torch.Tensor) -> None:
    r = check(to_model(real[:, :3]), 1)
    # drawn around the canvas centre (px 31.5); a triangle's centroid lies 0.42 of its size
    # (at most 9.6 px) below that point (base s below it, apex s * (sqrt(3) - 1) above)
    np.testing.assert_allclose(r.centroid[:, 0, 1], 31.5, atol=0.01)
    assert ((r.centroid[:, 0, 0] > 31.49) & (r.centroid[:, 0, 0] < 31.5 + 0.43 * 9.6)).all()
    assert (r.palette >= 0).all()
    # the measured colour is the colour drawn: the brightest pixel of the first frame
    flat = real[:, 0].reshape(N, -1, 3)
    drawn = flat[torch.arange(N), flat.sum(-1).argmax(1)].float()
    palette = torch.as_tensor(COLOURS)[r.palette[:, 0]]
    assert torch.equal(drawn, palette)
    assert (r.area[:, 1:] / r.area[:, :1] - 1).abs().max() < 0.05


def test_reversed_generated_frames_fail_motion_and_direction(real: torch.Tensor) -> None:
    # 1 known frame: 0 | 3 2 1 jumps 3 units, then goes backwards
    video = to_model(real[:, [0, 3, 2, 1]])
    r = check(video, 1)
    assert r.checkable.all()
    assert not r.motion.any() and not r.direction.any() and not r.ok.any()
    assert r.colour.all() and r.area_ok.all()  # the right shape, wrong motion
    # 2 known frames: 0 1 | 4 3 2 goes against the direction the known frames show
    r = check(to_model(real[:, [0, 1, 4, 3, 2]]), 2)
    assert not r.direction.any() and not r.ok.any()
    assert r.summary()["direction"] == 0.0


def test_recoloured_generated_frames_fail_colour_only(real: torch.Tensor) -> None:
    frames = real[:, :5].numpy().astype(np.float64)
    drawn = check(to_model(real[:, :3]), 1).palette[:, 0].numpy()
    other = COLOURS[(drawn + 1) % len(COLOURS)]  # the next palette colour
    # keep each pixel's coverage (its brightness over the drawn colour's peak), swap the colour
    cover = frames.max(-1, keepdims=True) / COLOURS[drawn].max(-1)[:, None, None, None, None]
    frames[:, 1:] = np.rint(cover[:, 1:] * other[:, None, None, None, :])
    r = check(to_model(torch.from_numpy(frames.astype(np.uint8))), 1)
    assert not r.colour.any() and r.summary()["colour"] == 0.0
    assert r.motion.all() and r.direction.all() and r.area_ok.all() and r.presence.all()


def test_grown_shape_fails_area(real: torch.Tensor) -> None:
    video = to_model(real[:, :3])
    grown = F.max_pool2d(video[:, 1:].flatten(0, 1), 5, 1, 2).view_as(video[:, 1:])
    r = check(torch.cat([video[:, :1], grown], 1), 1)
    assert not r.area_ok.any() and r.colour.all() and r.presence.all()


def test_noise_black_and_static_frames_fail(real: torch.Tensor) -> None:
    video = to_model(real[:, :3])
    g = torch.Generator().manual_seed(0)
    noise = torch.cat([video[:, :1], torch.rand(N, 2, 3, 64, 64, generator=g) * 2 - 1], 1)
    r = check(noise, 1)
    assert (r.status[:, 1:] == 3).all()  # lost: no shape leaving the canvas looks like that
    assert not r.presence.any() and not r.ok.any() and r.summary()["all"] == 0.0
    black = video.clone()
    black[:, 1:] = -1
    r = check(black, 1)  # vanished from the middle of the canvas
    assert (r.status[:, 1:] == 3).all() and not r.presence.any()
    static = video[:, :1].repeat(1, 3, 1, 1, 1)  # copy the known frame: no motion
    r = check(static, 1)
    assert not r.motion.any() and r.colour.all() and r.area_ok.all() and r.presence.all()


def test_shape_that_comes_back_fails_presence(real: torch.Tensor) -> None:
    # 0 1 2 3 4 5 6 | 7 then frame 3 again: the shape left and reappeared
    long = clips(10)
    gone = check(to_model(long), 2).status[:, 7] == 2
    assert gone.sum() >= 4
    video = to_model(long[gone][:, [0, 1, 2, 3, 4, 5, 6, 7, 3]])
    r = check(video, 2)
    assert (r.status[:, -1] == 4).all() and not r.presence.any()


def test_grey_clips_skip_colour() -> None:
    r = check(to_model(clips(5, channels=1)), 1)
    s = r.summary()
    assert math.isnan(s["colour"]) and (r.n_colour == 0).all() and (r.palette == -1).all()
    assert all(s[name] == 1.0 for name in ("motion", "direction", "area", "presence", "all"))


def test_32px_clips_and_bad_inputs() -> None:
    assert check(to_model(clips(5, size=32)), 1).summary()["all"] == 1.0
    video = torch.zeros(2, 3, 3, 16, 16)
    with pytest.raises(ValueError, match="prefix"):
        shapes_motion(video, torch.tensor([[True, False, True]] * 2))
    with pytest.raises(ValueError, match="prefix"):
        shapes_motion(video, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="known must be bool"):
        shapes_motion(video, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="takes video"):
        shapes_motion(video[:, :, :2], predict(3, 1, 2))
