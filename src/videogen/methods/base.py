"""The interface every method answers, so the trainer, rollout, CLI and evaluation never ask
which paper they hold."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from videogen.config import Config


class VideoMethod(nn.Module):
    """A trainable video model with its own training recipe and sampler.

    Subclasses set ``name`` (the ``method:`` value in configs, equal to the module name under
    ``videogen.methods``) and ``ModelConfig`` (a dataclass the ``model:`` section is checked
    against), and implement ``loss`` and ``generate``.

    ``window`` is the number of frames the method handles in one call; longer videos go through
    ``videogen.rollout``.
    """

    name: ClassVar[str] = ""
    ModelConfig: ClassVar[type]

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def window(self) -> int:
        return self.cfg.data.frames

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def loss(self, video: Tensor) -> dict[str, Tensor]:
        """Training loss of a batch ``(B, T, C, H, W)`` in ``[-1, 1]``; the method draws its own
        ``known`` mask. Returns ``{"loss": scalar, ...anything worth logging}``."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(
        self,
        video: Tensor,
        known: Tensor,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        temperature: float | None = None,
        guidance: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Fill the frames of ``video`` ``(B, T, C, H, W)`` where ``known`` ``(B, T)`` is False.

        Known frames come back exactly as given. Values of unknown frames in ``video`` are
        ignored. ``steps``/``sampler``/``guidance`` default to the config's ``sample`` section.
        """
        raise NotImplementedError

    def supported_known(self, known: Tensor) -> str | None:
        """``None`` if ``generate`` can take this pattern within one window, else why not."""
        return None

    def extra_state_for_export(self) -> dict[str, Any]:
        return {}
