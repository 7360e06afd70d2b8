"""Which frames are known: every task is a boolean ``known`` pattern ``(B, T)``.

True marks a conditioning frame. The presets below build the patterns of the tasks the papers
evaluate; the mask samplers draw the training distributions over patterns that each paper uses.
One model trained on a distribution that covers a pattern can do that task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

TASK_NAMES = ("predict", "past", "infill", "interpolate", "upsample", "unconditional", "indices")


def _check_frames(frames: int) -> None:
    if frames < 1:
        raise ValueError(f"a clip needs at least one frame, got frames={frames}")


def _expand(row: Tensor, batch: int) -> Tensor:
    return row.unsqueeze(0).expand(batch, -1).clone()


def from_indices(frames: int, indices: Sequence[int], batch: int = 1) -> Tensor:
    """Known exactly at ``indices`` (negative indices count from the end)."""
    _check_frames(frames)
    row = torch.zeros(frames, dtype=torch.bool)
    for i in indices:
        if not -frames <= i < frames:
            raise ValueError(f"known frame index {i} is outside a clip of {frames} frames")
        row[i] = True
    return _expand(row, batch)


def predict(frames: int, known: int, batch: int = 1) -> Tensor:
    """Future prediction: the first ``known`` frames are given."""
    _check_frames(frames)
    if not 0 <= known < frames:
        raise ValueError(f"predict needs 0 <= known < frames, got known={known}, frames={frames}")
    return from_indices(frames, range(known), batch)


def past(frames: int, known: int, batch: int = 1) -> Tensor:
    """Past prediction: the last ``known`` frames are given, earlier ones are generated."""
    _check_frames(frames)
    if not 0 <= known < frames:
        raise ValueError(f"past needs 0 <= known < frames, got known={known}, frames={frames}")
    return from_indices(frames, range(frames - known, frames), batch)


def infill(frames: int, first: int, last: int | None = None, batch: int = 1) -> Tensor:
    """Infilling: the first ``first`` and the last ``last`` frames are given (last=first
    by default)."""
    _check_frames(frames)
    last = first if last is None else last
    if first < 0 or last < 0 or first + last >= frames:
        raise ValueError(
            f"infill needs first + last < frames, got first={first}, last={last}, frames={frames}"
        )
    return from_indices(frames, [*range(first), *range(frames - last, frames)], batch)


def interpolate(frames: int, every: int, batch: int = 1) -> Tensor:
    """Interpolation: every ``every``-th frame is given, starting with the first."""
    _check_frames(frames)
    if every < 2:
        raise ValueError(f"interpolate needs every >= 2, got {every}")
    return from_indices(frames, range(0, frames, every), batch)


def upsample(frames: int, factor: int = 2, batch: int = 1) -> Tensor:
    """Temporal upsampling by ``factor``: a low-frame-rate clip fills every ``factor``-th slot.

    The same pattern as ``interpolate``; kept as its own name because the input differs (see
    ``spread_frames``) and the papers report it as a task of its own.
    """
    return interpolate(frames, factor, batch)


def unconditional(frames: int, batch: int = 1) -> Tensor:
    """Nothing is given."""
    _check_frames(frames)
    return torch.zeros(batch, frames, dtype=torch.bool)


def make_known(task: str, frames: int, batch: int = 1, **kw: int | Sequence[int]) -> Tensor:
    """Build the pattern of a named task; ``kw`` are that preset's arguments.

    ``make_known("predict", 10, known=5)``, ``make_known("infill", 16, first=2)``,
    ``make_known("interpolate", 9, every=4)``, ``make_known("indices", 8, indices=[0, 7])``.
    """
    presets: dict[str, Callable[..., Tensor]] = {
        "predict": predict,
        "past": past,
        "infill": infill,
        "interpolate": interpolate,
        "upsample": upsample,
        "unconditional": unconditional,
        "indices": from_indices,
    }
    if task not in presets:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    try:
        return presets[task](frames, batch=batch, **kw)
    except TypeError as err:
        raise ValueError(f"task {task!r}: {err}") from err


def spread_frames(low: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """Place a low-frame-rate video ``(B, t, C, H, W)`` in a ``(B, (t-1)*factor+1, ...)`` clip.

    Returns the clip (zeros at the missing frames) and its ``known`` mask, ready for
    ``method.generate`` to do temporal upsampling.
    """
    b, t = low.shape[:2]
    frames = (t - 1) * factor + 1
    video = low.new_zeros(b, frames, *low.shape[2:])
    video[:, ::factor] = low
    return video, upsample(frames, factor, b).to(low.device)


# --------------------------------------------------------------------------- training masks


class MaskSampler:
    """A distribution over ``known`` patterns: ``sampler(batch, frames, generator=, device=)``."""

    def __call__(
        self,
        batch: int,
        frames: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        raise NotImplementedError


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator)


@dataclass
class RamvidMasks(MaskSampler):
    """RaMViD (Höppe et al. 2022, Sec. 3): with probability ``p_uncond`` nothing is known;
    otherwise a uniformly random number ``1..max_known`` of frames, at uniformly random
    positions anywhere in the clip, is known. ``max_known=None`` allows up to ``frames - 1``.
    """

    p_uncond: float = 0.25
    max_known: int | None = None

    def __call__(self, batch, frames, *, generator=None, device="cpu"):
        _check_frames(frames)
        top = min(self.max_known or frames - 1, frames - 1)
        known = torch.zeros(batch, frames, dtype=torch.bool)
        if top >= 1:
            counts = torch.randint(1, top + 1, (batch,), generator=generator)
            # a random permutation per row; its first `count` entries are the known frames
            order = torch.rand(batch, frames, generator=generator).argsort(dim=1)
            rank = torch.empty_like(order).scatter_(
                1, order, torch.arange(frames).expand(batch, -1).contiguous()
            )
            known = rank < counts[:, None]
        uncond = _rand(batch, generator) < self.p_uncond
        known[uncond] = False
        return known.to(device)


@dataclass
class McvdMasks(MaskSampler):
    """MCVD (Voleti et al. 2022, Sec. 3): the clip is ``past | current | future``.

    The ``past`` frames are known unless dropped with probability ``p_mask_past``, the
    ``future`` frames likewise with ``p_mask_future``; the current block is always generated.
    Dropping both gives unconditional generation, dropping only the future gives prediction,
    keeping both gives interpolation. A dropped block is neither known nor generated: the
    method zeroes it (``McvdMasks.current`` says which frames carry loss).
    """

    past: int = 5
    current: int = 5
    future: int = 0
    p_mask_past: float = 0.5
    p_mask_future: float = 0.5

    @property
    def frames(self) -> int:
        return self.past + self.current + self.future

    def current_mask(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        """``(B, T)`` True at the frames the model generates (the current block)."""
        mask = torch.zeros(batch, self.frames, dtype=torch.bool, device=device)
        mask[:, self.past : self.past + self.current] = True
        return mask

    def __call__(self, batch, frames, *, generator=None, device="cpu"):
        if frames != self.frames:
            raise ValueError(
                f"MCVD masks expect clips of past+current+future = {self.frames} frames, "
                f"got {frames}"
            )
        # drawn where the generator lives (else on `device`): a training step needs no
        # host-to-device copy, which would sync the stream
        gen_device = generator.device if generator is not None else device
        keep_past = torch.rand(batch, generator=generator, device=gen_device) >= self.p_mask_past
        keep_future = (
            torch.rand(batch, generator=generator, device=gen_device) >= self.p_mask_future
        )
        known = torch.zeros(batch, frames, dtype=torch.bool, device=device)
        known[:, : self.past] = keep_past.to(device)[:, None]
        if self.future:
            known[:, self.past + self.current :] = keep_future.to(device)[:, None]
        return known


@dataclass
class PrevClipMasks(MaskSampler):
    """PVDM (Yu et al. 2023, Sec. 3.3): a clip of ``2 * clip`` frames whose first half (the
    previous clip) is known with probability ``p_cond`` (λ) and zeroed otherwise, so one model
    both generates a first clip and continues a video. The default is the official code's
    ``cond_prob`` on UCF-101 (0.3; 0.2 on SkyTimelapse).
    """

    clip: int = 16
    p_cond: float = 0.3

    def __call__(self, batch, frames, *, generator=None, device="cpu"):
        if frames != 2 * self.clip:
            raise ValueError(f"PVDM masks expect 2 * clip = {2 * self.clip} frames, got {frames}")
        keep = _rand(batch, generator) < self.p_cond
        known = torch.zeros(batch, frames, dtype=torch.bool)
        known[:, : self.clip] = keep[:, None]
        return known.to(device)


@dataclass
class PrefixMasks(MaskSampler):
    """VideoFlow: the first ``known`` frames condition the rest (the flow models every frame,
    so the mask only says which frames are context at sampling time)."""

    known: int = 1

    def __call__(self, batch, frames, *, generator=None, device="cpu"):
        return predict(frames, self.known, batch).to(device)
