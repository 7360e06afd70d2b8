"""Rollout over fake methods whose generate is exact arithmetic, so every frame is checkable."""

import pytest
import torch

from videogen import tasks
from videogen.config import Config, DataConfig
from videogen.methods.base import VideoMethod
from videogen.rollout import rollout


class Counter(VideoMethod):
    """Fills each unknown frame with (last known frame before it) + 0.01 per step of distance;
    records every window it was asked for."""

    name = "counter"

    def __init__(self, window: int):
        super().__init__(Config(data=DataConfig(frames=window)))
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.calls: list[torch.Tensor] = []

    def generate(self, video, known, **kwargs):
        assert video.shape[1] == self.window
        self.calls.append(known[0].clone())
        out = video.clone()
        for t in range(video.shape[1]):
            if not known[0, t]:
                out[:, t] = out[:, t - 1] + 0.01 if t > 0 else 0.0
        return out


class BlockFiller(Counter):
    """Like MCVD: window = past | current | future, fills only the current block, and
    accepts only whole-block patterns with the current block unknown."""

    def __init__(self, past=2, current=2, future=1):
        super().__init__(past + current + future)
        self.p, self.c = past, current

    @property
    def context(self):
        return self.p

    def supported_known(self, known):
        p, c = self.p, self.c
        blocks = [known[:, :p], known[:, p : p + c], known[:, p + c :]]
        if blocks[1].any():
            return "current block must be unknown"
        for b in (blocks[0], blocks[2]):
            if b.numel() and not (b.all() or not b.any()):
                return "past/future blocks must be all known or all unknown"
        return None

    def fills(self, known):
        mask = torch.zeros_like(known)
        mask[:, self.p : self.p + self.c] = True
        return mask

    def generate(self, video, known, **kwargs):
        assert self.supported_known(known) is None
        return super().generate(video, known, **kwargs)


def ramp(frames):
    return (
        torch.arange(frames, dtype=torch.float32)
        .reshape(1, frames, 1, 1, 1)
        .expand(2, frames, 1, 2, 2)
        .clone()
    )


def test_prediction_far_beyond_the_window_is_continuous_and_keeps_known_frames():
    method = Counter(window=6)
    video = ramp(20)
    known = tasks.predict(20, 2, 2)
    out = rollout(method, video, known)
    assert out.shape == video.shape
    assert torch.equal(out[:, :2], video[:, :2])
    # each generated frame continues from the frame before it: a continuous ramp of +0.01
    expected = 1.0 + 0.01 * torch.arange(1, 19)
    assert torch.allclose(out[0, 2:, 0, 0, 0], expected)
    # every later window conditions on the last `context` = 3 generated frames
    assert all(int(k.sum()) >= 2 for k in method.calls)
    assert len(method.calls) == 1 + 5  # 4 frames, then 3 per window for 14 more


def test_clip_no_longer_than_the_window_is_one_call():
    method = Counter(window=6)
    out = rollout(method, ramp(6), tasks.infill(6, 1, 1, 2))
    assert len(method.calls) == 1
    assert out[0, -1, 0, 0, 0] == 5.0


def test_block_method_predicts_past_future_and_unconditional_by_shifting_windows():
    method = BlockFiller(past=2, current=2, future=1)
    for known in (tasks.predict(9, 2, 2), tasks.past(9, 2, 2), tasks.unconditional(9, 2)):
        method.calls.clear()
        out = rollout(method, ramp(9), known)
        assert out.shape == (2, 9, 1, 2, 2)
        assert torch.equal(out[known], ramp(9)[known])
        assert method.calls  # every window was a supported pattern (generate asserts it)


def test_block_method_regenerates_a_frame_to_close_a_one_frame_gap():
    method = BlockFiller(past=2, current=2, future=1)
    known = tasks.infill(8, 2, 1, 2)  # gap of 5 frames: blocks of 2 leave one frame over
    out = rollout(method, ramp(8), known)
    assert torch.equal(out[known], ramp(8)[known])
    assert all(method.supported_known(k[None]) is None for k in method.calls)


def test_mixed_patterns_in_a_batch_are_rejected():
    known = tasks.predict(8, 2, 2)
    known[1, 3] = True
    with pytest.raises(ValueError, match="same known pattern"):
        rollout(Counter(4), ramp(8), known)
