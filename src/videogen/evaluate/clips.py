"""Test clips as the protocol takes them: uint8 ``(T, H, W, C)`` clips, uint8 ``(B, T, H, W, C)``
or float ``(B, T, C, H, W)`` batches in [-1, 1], any of them with class labels (``(clip, label)``
pairs, ``(clips, labels)`` batches or dicts with ``video`` and ``labels``), cut into batches of
one shape."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from videogen.evaluate.protocol import ProtocolError

RANGE_TOLERANCE = 1e-3  # generated values may overshoot [-1, 1] by float error, no more


def _as_clips(item: Any) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Clips ``(T, C, H, W)`` from one item of the test iterable, each with its class label
    (a long scalar) or None: uint8 as given (converted on the device, a quarter of the bytes
    to move), float checked to lie in [-1, 1]."""
    labels = None
    if isinstance(item, dict):
        item, labels = item["video"], item.get("labels")
    if (
        isinstance(item, (tuple, list))
        and len(item) == 2
        and isinstance(item[0], Tensor)
        and getattr(item[1], "ndim", 0) <= 1
    ):
        item, labels = item  # a (clip, class label) pair of a labelled dataset, or a batch
    x = torch.as_tensor(np.asarray(item)) if not isinstance(item, Tensor) else item
    if x.dtype == torch.uint8:
        if x.ndim == 4:
            x = x[None]
        if x.ndim != 5:
            raise ProtocolError(f"uint8 clips are (T, H, W, C), got shape {tuple(x.shape)}")
        x = rearrange(x, "b t h w c -> b t c h w")
    elif x.is_floating_point():
        if x.ndim == 4:
            x = x[None]
        if x.ndim != 5:
            raise ProtocolError(f"float batches are (B, T, C, H, W), got {tuple(x.shape)}")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ProtocolError(
                f"a float test batch has values in [{lo:.3f}, {hi:.3f}]; the protocol takes "
                "float video in [-1, 1] (or uint8 clips)"
            )
        x = x.float()
    else:
        raise ProtocolError(f"test clips must be uint8 or float tensors, got {x.dtype}")
    if labels is None:
        yield from ((clip, None) for clip in x.unbind(0))
        return
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() != x.shape[0]:
        raise ProtocolError(f"a test item has {x.shape[0]} clips but {labels.numel()} labels")
    yield from zip(x.unbind(0), labels.unbind(0))


def to_float(video: Tensor) -> Tensor:
    """uint8 -> float in [-1, 1] (0 -> -1, 255 -> 1); float video passes through."""
    return video.float() / 127.5 - 1 if video.dtype == torch.uint8 else video


def _stack(clips: list[Tensor]) -> Tensor:
    if all(c.dtype == torch.uint8 for c in clips):
        return torch.stack(clips)
    return torch.stack([to_float(c) for c in clips])


def iter_batches(clips: Iterable[Any], batch_size: int, num_clips: int) -> Iterator[Tensor]:
    """Batches ``(B, T, C, H, W)`` of the first ``num_clips`` clips, all of one shape: uint8
    where the clips are uint8, else float in [-1, 1] (``to_float`` converts)."""
    for video, _ in iter_labelled_batches(clips, batch_size, num_clips):
        yield video


def iter_labelled_batches(
    clips: Iterable[Any], batch_size: int, num_clips: int
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """``iter_batches`` with the clips' class labels ``(B,)`` (long), or None where the test
    items carry none; either every clip has a label or none has."""
    if hasattr(clips, "__len__") and len(clips) < num_clips and _clips_are_single(clips):
        raise _too_few(len(clips), num_clips)
    pending: list[Tensor] = []
    pending_labels: list[Tensor] = []
    count, shape, labelled = 0, None, False
    for item in clips:
        for clip, label in _as_clips(item):
            if shape is None:
                shape, labelled = clip.shape, label is not None
            elif clip.shape != shape:
                raise ProtocolError(
                    f"test clip {count} is {_shape(clip)} but clip 0 is {shape_text(shape)}; "
                    "a real set has one frame count and resolution (data.frames, data.size)"
                )
            elif (label is not None) != labelled:
                raise ProtocolError(
                    f"test clip {count} {'has no' if labelled else 'has a'} class label but "
                    f"clip 0 {'has one' if labelled else 'has none'}"
                )
            pending.append(clip)
            if label is not None:
                pending_labels.append(label)
            count += 1
            if len(pending) == batch_size or count == num_clips:
                yield _stack(pending), torch.stack(pending_labels) if labelled else None
                pending, pending_labels = [], []
            if count == num_clips:
                return
    if count < num_clips:
        raise _too_few(count, num_clips)


def _clips_are_single(clips: Any) -> bool:
    try:
        first = clips[0]
    except (TypeError, IndexError, KeyError):
        return False
    return getattr(first, "ndim", None) == 4


def _too_few(count: int, num_clips: int) -> ProtocolError:
    return ProtocolError(
        f"the protocol asks for num_clips={num_clips} test clips but the data gives {count}; "
        "use a larger test split or lower --num-clips (the count is written with every value)"
    )


def _shape(clip: Tensor) -> str:
    return shape_text(clip.shape)


def shape_text(shape: Sequence[int]) -> str:
    t, c, h, w = shape
    return f"{t} frames x {c} channels x {h}x{w}"
