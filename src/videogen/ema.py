"""The exponential moving average of a method's weights, and swapping it in for sampling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import Tensor


class EMA:
    """Exponential moving average of the trainable parameters: ``s <- d s + (1 - d) p``.

    The average starts at the weights after the first optimizer step, not at construction:
    data-dependent initialisation (VideoFlow's actnorm) happens in the first forward pass, and
    an average that began before it would carry the uninitialised values.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        decay: float,
        warmup: bool = False,
        params: Iterable[torch.nn.Parameter] | None = None,
    ) -> None:
        self.decay = decay
        self.warmup = warmup
        # ``params``: the averaged parameters (default: every trainable one), in model order
        chosen = None if params is None else {id(p) for p in params}
        self.names = [
            n
            for n, p in model.named_parameters()
            if (p.requires_grad if chosen is None else id(p) in chosen)
        ]
        self.shadow: list[Tensor] | None = None

    def decay_at(self, step: int) -> float:
        """The decay of update ``step`` (0-based); with warm-up ``(1 + n) / (10 + n)`` caps it,
        so the average of a short run is not dominated by its first weights."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        params = dict(model.named_parameters())
        current = [params[n].detach().float() for n in self.names]
        if self.shadow is None:
            self.shadow = [p.clone() for p in current]
        else:
            torch._foreach_lerp_(self.shadow, current, 1.0 - self.decay_at(step))

    def state_dict(self) -> dict[str, Tensor] | None:
        return None if self.shadow is None else dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.shadow = [state[name].float().clone() for name in self.names]


@contextlib.contextmanager
def ema_weights(method: torch.nn.Module, ema: EMA | None):
    """Temporarily swap the EMA weights into ``method``."""
    if ema is None or ema.shadow is None:
        yield method
        return
    params = dict(method.named_parameters())
    saved = [params[n].detach().clone() for n in ema.names]
    with torch.no_grad():
        for n, s in zip(ema.names, ema.shadow):
            params[n].copy_(s)
    try:
        yield method
    finally:
        with torch.no_grad():
            for n, s in zip(ema.names, saved):
                params[n].copy_(s)
