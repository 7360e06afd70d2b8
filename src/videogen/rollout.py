"""Long videos from any method: slide a window, condition on what is known or generated.

``rollout(method, video, known)`` fills every unknown frame of a clip of any length. It walks
left to right: the next window starts ``context`` frames before the first frame still unknown,
so it conditions on the last frames already known or generated (MCVD's block-autoregressive
scheme; RaMViD and VideoFusion extend videos the same way), plus any originally known frames
that fall inside it (so infilling across long gaps works too). Each window goes through the
method's own ``generate``; only the frames the method says it fills (``method.fills``) are
taken from it. Methods whose ``generate`` takes any length (``any_length``) are called once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from videogen.methods.base import VideoMethod


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
    frames = video.shape[1]
    window = window or method.window
    if method.any_length or frames <= window:
        # one call; a method that needs exactly `window` frames says so itself
        return method.generate(video, known, **generate_kwargs)
    context = method.context if context is None else context
    if not 0 < context < window:
        raise ValueError(f"rollout context must be in 1..{window - 1}, got {context}")

    out = video.clone()
    done = known.clone()
    windows = 0
    while not bool(done.all()):
        first = int((~done[0]).nonzero()[0])
        start = max(0, min(first - context, frames - window))
        span = slice(start, start + window)
        win_known = done[:, span]
        filled = method.generate(out[:, span], win_known, **generate_kwargs)
        fills = method.fills(win_known) & ~win_known
        if not bool(fills.any()):
            raise ValueError(
                f"{method.name} cannot fill frames {start}..{start + window - 1} with the known "
                f"pattern {win_known[0].int().tolist()}"
            )
        mask = fills.reshape(*fills.shape, 1, 1, 1)
        out[:, span] = torch.where(mask, filled, out[:, span])
        done[:, span] |= fills
        windows += 1
        if progress:
            print(f"rollout: window {windows} filled up to frame {int(done[0].sum())}/{frames}")
    return torch.where(known.reshape(*known.shape, 1, 1, 1), video, out)
