"""Known-frame presets and the papers' training mask samplers (videogen.tasks)."""

from __future__ import annotations

import pytest
import torch

from videogen import tasks
from videogen.tasks import McvdMasks, PrefixMasks, PrevClipMasks, RamvidMasks


def rows(mask: torch.Tensor) -> list[list[int]]:
    return mask.int().tolist()


# --------------------------------------------------------------------------- presets


def test_presets_mark_the_right_frames() -> None:
    assert rows(tasks.predict(6, 2)) == [[1, 1, 0, 0, 0, 0]]
    assert rows(tasks.past(6, 2)) == [[0, 0, 0, 0, 1, 1]]
    assert rows(tasks.infill(7, 2)) == [[1, 1, 0, 0, 0, 1, 1]]
    assert rows(tasks.infill(7, 1, 3)) == [[1, 0, 0, 0, 1, 1, 1]]
    assert rows(tasks.interpolate(9, 4)) == [[1, 0, 0, 0, 1, 0, 0, 0, 1]]
    assert rows(tasks.upsample(7, 3)) == [[1, 0, 0, 1, 0, 0, 1]]
    assert rows(tasks.unconditional(3)) == [[0, 0, 0]]
    assert rows(tasks.from_indices(5, [0, -1, 2])) == [[1, 0, 1, 0, 1]]
    assert rows(tasks.predict(4, 0)) == [[0, 0, 0, 0]]


def test_presets_batch_dtype_and_independent_rows() -> None:
    mask = tasks.predict(5, 2, batch=3)
    assert mask.shape == (3, 5) and mask.dtype == torch.bool
    mask[0, 4] = True  # rows are real memory, not views of one row
    assert rows(mask[1:]) == [[1, 1, 0, 0, 0]] * 2


@pytest.mark.parametrize(
    ("task", "kw", "expected"),
    [
        ("predict", {"known": 5}, [1] * 5 + [0] * 5),
        ("past", {"known": 3}, [0] * 7 + [1] * 3),
        ("infill", {"first": 2}, [1, 1] + [0] * 6 + [1, 1]),
        ("interpolate", {"every": 3}, [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]),
        ("upsample", {"factor": 9}, [1] + [0] * 8 + [1]),
        ("unconditional", {}, [0] * 10),
        ("indices", {"indices": [0, 9]}, [1] + [0] * 8 + [1]),
    ],
)
def test_make_known_covers_every_task(task: str, kw: dict, expected: list[int]) -> None:
    assert task in tasks.TASK_NAMES
    assert rows(tasks.make_known(task, 10, batch=2, **kw)) == [expected] * 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tasks.predict(5, 5), "known < frames"),
        (lambda: tasks.predict(5, -1), "known < frames"),
        (lambda: tasks.past(3, 3), "known < frames"),
        (lambda: tasks.infill(6, 3), "first \\+ last < frames"),
        (lambda: tasks.infill(6, -1, 2), "first \\+ last < frames"),
        (lambda: tasks.interpolate(6, 1), "every >= 2"),
        (lambda: tasks.from_indices(4, [4]), "outside a clip of 4"),
        (lambda: tasks.from_indices(4, [-5]), "outside a clip of 4"),
        (lambda: tasks.unconditional(0), "at least one frame"),
        (lambda: tasks.make_known("extrapolate", 5), "unknown task 'extrapolate'"),
        (lambda: tasks.make_known("predict", 5), "task 'predict'"),
        (lambda: tasks.make_known("predict", 5, every=2), "task 'predict'"),
    ],
)
def test_bad_arguments_raise_value_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_spread_frames_places_the_low_rate_video() -> None:
    low = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(2, 3, 2, 4, 4)
    video, known = tasks.spread_frames(low, 3)
    assert video.shape == (2, 7, 2, 4, 4)
    assert rows(known) == [[1, 0, 0, 1, 0, 0, 1]] * 2
    assert video[:, ::3, 0, 0, 0].tolist() == [[0.0, 1.0, 2.0]] * 2
    assert video[:, known[0].logical_not()].abs().sum() == 0


# --------------------------------------------------------------------------- training samplers


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_ramvid_masks_distribution() -> None:
    sampler = RamvidMasks(p_uncond=0.25)
    known = sampler(20_000, 10, generator=gen())
    assert known.shape == (20_000, 10) and known.dtype == torch.bool
    counts = known.sum(1)
    assert (counts == 0).float().mean().item() == pytest.approx(0.25, abs=0.015)
    conditioned = counts[counts > 0]
    assert conditioned.max() == 9  # never all frames: something is always generated
    histogram = torch.bincount(conditioned, minlength=10)[1:].float() / len(conditioned)
    assert torch.allclose(histogram, torch.full((9,), 1 / 9), atol=0.012)  # uniform 1..9
    per_frame = known[counts > 0].float().mean(0)
    assert torch.allclose(per_frame, torch.full((10,), 0.5), atol=0.02)  # positions uniform
    assert torch.equal(known, sampler(20_000, 10, generator=gen()))  # seeded
    assert not torch.equal(known, sampler(20_000, 10, generator=gen(1)))


def test_ramvid_masks_options() -> None:
    capped = RamvidMasks(p_uncond=0.0, max_known=2)(5000, 8, generator=gen())
    assert capped.sum(1).min() == 1 and capped.sum(1).max() == 2
    assert RamvidMasks(p_uncond=1.0)(100, 8, generator=gen()).sum() == 0
    assert RamvidMasks()(4, 1, generator=gen()).sum() == 0  # one frame: nothing can be known
    with pytest.raises(ValueError, match="at least one frame"):
        RamvidMasks()(4, 0)


def test_mcvd_masks_distribution_and_blocks() -> None:
    sampler = McvdMasks(past=2, current=3, future=2, p_mask_past=0.3, p_mask_future=0.6)
    assert sampler.frames == 7
    known = sampler(20_000, 7, generator=gen())
    past, current, future = known[:, :2], known[:, 2:5], known[:, 5:]
    assert not current.any()
    assert torch.equal(past[:, 0], past[:, 1]) and torch.equal(future[:, 0], future[:, 1])
    assert past[:, 0].float().mean().item() == pytest.approx(0.7, abs=0.015)
    assert future[:, 0].float().mean().item() == pytest.approx(0.4, abs=0.015)
    both = (past[:, 0] & future[:, 0]).float().mean().item()
    assert both == pytest.approx(0.7 * 0.4, abs=0.015)  # drawn independently
    assert rows(sampler.current_mask(2)) == [[0, 0, 1, 1, 1, 0, 0]] * 2
    no_future = McvdMasks(past=5, current=5)(1000, 10, generator=gen())
    assert not no_future[:, 5:].any()
    with pytest.raises(ValueError, match="past\\+current\\+future = 7 frames, got 8"):
        sampler(2, 8)


def test_prev_clip_masks() -> None:
    sampler = PrevClipMasks(clip=4, p_cond=0.9)
    known = sampler(20_000, 8, generator=gen())
    assert not known[:, 4:].any()
    assert torch.equal(known[:, :4].all(1), known[:, :4].any(1))  # the whole clip or nothing
    assert known[:, 0].float().mean().item() == pytest.approx(0.9, abs=0.01)
    with pytest.raises(ValueError, match="2 \\* clip = 8 frames, got 16"):
        sampler(2, 16)


def test_prefix_masks() -> None:
    known = PrefixMasks(known=3)(4, 8, generator=gen())
    assert rows(known) == [[1, 1, 1, 0, 0, 0, 0, 0]] * 4
    with pytest.raises(ValueError, match="known < frames"):
        PrefixMasks(known=8)(1, 8)


def test_samplers_put_masks_on_the_device() -> None:
    for sampler, frames in ((RamvidMasks(), 6), (McvdMasks(), 10), (PrevClipMasks(clip=2), 4)):
        known = sampler(3, frames, generator=gen(), device="meta")
        assert known.device.type == "meta" and known.shape == (3, frames)
