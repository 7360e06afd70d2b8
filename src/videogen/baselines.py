"""Copy baselines every prediction number should stand next to.

``copy_last_known``: each unknown frame is the last known frame before it (the first known
after it when none comes before). ``copy_nearest_known``: the nearest known frame in time
(the earlier one on a tie). For prediction the two agree. ``CopyBaseline`` wraps either in the
``generate`` interface so ``videogen.evaluate.evaluate_run`` scores it like a model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _source_frames(known_row: Tensor, nearest: bool) -> list[int]:
    idx = known_row.nonzero().flatten().tolist()
    if not idx:
        raise ValueError("a copy baseline needs at least one known frame")
    sources = []
    for t in range(known_row.numel()):
        before = [i for i in idx if i <= t]
        after = [i for i in idx if i >= t]
        if nearest and after and (not before or after[0] - t < t - before[-1]):
            sources.append(after[0])
        else:
            sources.append(before[-1] if before else after[0])
    return sources


def copy_known(video: Tensor, known: Tensor, *, nearest: bool = False) -> Tensor:
    """``video`` ``(B, T, C, H, W)`` with every unknown frame replaced by a known one."""
    out = torch.empty_like(video)
    for b in range(video.shape[0]):
        out[b] = video[b, _source_frames(known[b], nearest)]
    return out


def copy_last_known(video: Tensor, known: Tensor) -> Tensor:
    return copy_known(video, known, nearest=False)


def copy_nearest_known(video: Tensor, known: Tensor) -> Tensor:
    return copy_known(video, known, nearest=True)


class CopyBaseline:
    """A 'method' whose ``generate`` copies known frames (for ``evaluate_run``)."""

    def __init__(self, nearest: bool = False) -> None:
        self.nearest = nearest

    def generate(self, video: Tensor, known: Tensor, **_: Any) -> Tensor:
        return copy_known(video, known, nearest=self.nearest)
