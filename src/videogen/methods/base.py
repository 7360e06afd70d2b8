"""The interface every method answers, so the trainer, rollout, CLI and evaluation never ask
which paper they hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from videogen import tasks
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
    # True when ``generate`` takes clips of any length itself (VideoFlow's causal prior);
    # otherwise ``videogen.rollout`` slides a window of ``window`` frames.
    any_length: ClassVar[bool] = False
    # True when some parameters get no gradient in a step (DDP must then look for them)
    ddp_find_unused: ClassVar[bool] = False

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def window(self) -> int:
        return self.cfg.data.frames

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def context(self) -> int:
        """How many already-known frames a rollout window conditions on (default: half)."""
        return max(1, self.window // 2)

    def forward(self, video: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        # The trainer calls the (possibly DDP-wrapped, compiled) module; forward is the loss.
        return self.loss(video, **kwargs)

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

    def usable_known(self, known: Tensor) -> Tensor:
        """The conditioning ``generate`` can use from ``known``: a pattern it supports that only
        drops given frames, never adds any (default: all of them). MCVD conditions on whole
        blocks, so it drops a block that is only partly given."""
        return known

    def fills(self, known: Tensor) -> Tensor:
        """``(B, T)`` True at the frames ``generate`` fills for this pattern (default: every
        unknown frame; MCVD fills only its current block)."""
        return ~known

    def default_known(self, batch: int = 1) -> Tensor:
        """The method's main task within one window (used for preview samples): prediction
        from the first ``context`` frames."""
        return tasks.predict(self.window, self.context, batch).to(self.device)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors``; ``videogen.load(path)`` reads it."""
        from videogen.checkpoint import save_pretrained

        return save_pretrained(self, path)
