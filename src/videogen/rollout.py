"""Long videos from any method: slide a window, condition on what is known or generated.

``rollout(method, video, known)`` fills every unknown frame of a clip of any length. It walks
left to right. For the first frame still unknown, it places a window of the method's length so
that the window conditions on the ``context`` frames before it (a leading gap before known
frames is filled backwards, from its end) (MCVD's block-autoregressive
scheme; RaMViD and VideoFusion extend videos the same way) and on any known frames inside it (so
infilling across long gaps works too). Where the method only fills part of a window (MCVD fills
its current block), the window shifts until that part covers the frame, padding the clip with
unknown frames at either end when needed. Each window goes through the method's own
``generate``; only the frames the method says it fills (``method.fills``) are taken.
Methods whose ``generate`` takes the request as it stands (``takes_whole``: any length, or
PVDM's single new clip) are called once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from videogen.methods.base import VideoMethod


def _frames(mask: Tensor) -> Tensor:
    return mask.reshape(*mask.shape, 1, 1, 1)


def place_window(
    method: VideoMethod,
    done: Tensor,
    known: Tensor,
    first: int,
    window: int,
    context: int,
    backward: bool,
) -> tuple[int, Tensor, Tensor] | None:
    """Where the next window goes: a start (may be negative or run past the end) whose pattern
    the method supports and whose filled frames include ``first``.

    Windows close to the preferred start come first: ``context`` frames of history before
    ``first`` (or, going ``backward``, after it). The window conditions on the frames done so
    far that the method can use (``method.usable_known``). If no window fits the frames done so far
    (a one-frame gap between known frames for a method that fills blocks of two, say), frames
    generated earlier may be generated again; originally ``known`` frames never are.
    Returns (start, the window's conditioning pattern, its fill mask), or None.
    """
    frames = done.shape[1]
    if backward:
        preferred = min(frames - window, max(0, first + context + 1 - window))
    else:
        preferred = max(0, min(first - context, frames - window))
    starts = sorted(range(first - window + 1, first + 1), key=lambda s: (abs(s - preferred), s))
    for regenerate in (False, True):
        for start in starts:
            idx = torch.arange(start, start + window)
            inside = (idx >= 0) & (idx < frames)
            win_done = torch.zeros(done.shape[0], window, dtype=torch.bool, device=done.device)
            win_done[:, inside] = done[:, idx[inside]]
            if regenerate:
                win_orig = torch.zeros_like(win_done)
                win_orig[:, inside] = known[:, idx[inside]]
                win_done &= ~(method.fills(win_done) & ~win_orig) | win_orig
            use = method.usable_known(win_done)
            if method.supported_known(use) is not None:
                continue
            fills = method.fills(use) & ~win_done
            fills[:, ~inside] = False
            if bool(fills[0, first - start]):
                return start, use, fills
    return None


@torch.no_grad()
def rollout(
    method: VideoMethod,
    video: Tensor,
    known: Tensor,
    *,
    window: int | None = None,
    context: int | None = None,
    progress: bool = False,
    **generate_kwargs: Any,
) -> Tensor:
    """Fill the unknown frames of ``video`` ``(B, T, C, H, W)``, any ``T``.

    ``known`` ``(B, T)`` must be the same pattern for every row (rows are generated together).
    ``window`` defaults to the method's, ``context`` (frames each window conditions on) to the
    method's ``context``. Extra keyword arguments go to ``generate`` (steps, sampler,
    guidance, temperature, generator, ...). Known frames come back exactly.
    """
    if video.dim() != 5 or known.shape != video.shape[:2]:
        raise ValueError(
            f"rollout needs video (B, T, C, H, W) and known (B, T); got {tuple(video.shape)} "
            f"and {tuple(known.shape)}"
        )
    if not bool((known == known[:1]).all()):
        raise ValueError("rollout needs the same known pattern in every row of the batch")
    if method.takes_whole(known):
        return method.generate(video, known, **generate_kwargs)
    frames = video.shape[1]
    window = window or method.window
    context = method.context if context is None else context
    if not 0 < context < window:
        raise ValueError(f"rollout context must be in 1..{window - 1}, got {context}")

    # Pad with unknown frames so a window can start before frame 0 or end after the last.
    pad = window - 1
    out = torch.cat(
        [
            video.new_zeros(video.shape[0], pad, *video.shape[2:]),
            video,
            video.new_zeros(video.shape[0], pad, *video.shape[2:]),
        ],
        dim=1,
    )
    done = known.clone()
    windows = 0
    while not bool(done.all()):
        first = int((~done[0]).nonzero()[0])
        backward = first == 0 and bool(done[0].any())
        if backward:  # a leading gap before known frames: fill it from its end, backwards
            first = int(done[0].nonzero()[0]) - 1
        placed = place_window(method, done, known, first, window, context, backward)
        if placed is None:
            raise ValueError(
                f"{method.name} has no window of {window} frames that fills frame {first} "
                f"given the known frames {done[0].int().tolist()}"
            )
        start, win_known, fills = placed
        idx = torch.arange(start, start + window)
        inside = (idx >= 0) & (idx < frames)
        span = slice(start + pad, start + pad + window)
        filled = method.generate(out[:, span], win_known, **generate_kwargs)
        out[:, span] = torch.where(_frames(fills), filled, out[:, span])
        done[:, idx[inside]] |= fills[:, inside]
        windows += 1
        if progress:
            print(f"rollout: window {windows} at frame {start}, {int(done[0].sum())}/{frames} done")
    return torch.where(_frames(known), video, out[:, pad : pad + frames])
