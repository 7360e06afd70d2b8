"""The interface every method answers, so the trainer, rollout, CLI and evaluation never ask
which paper they hold.

A method is a ``VideoMethod`` subclass in its own module ``videogen/methods/<name>.py`` (the
registry finds it by file name). What a new method writes, and what it may leave alone:

- **Always**: ``name``, ``ModelConfig`` (the dataclass its ``model:`` section is checked
  against), ``loss(video, **extra)`` and ``_generate(video, known, opts)``.
- **Sampling**: ``generate`` is written once, here: it checks ``video`` and ``known``, asks
  ``supported_known``, resolves one ``SampleOptions`` from the call and the config's
  ``sample`` section, then calls ``_generate``. A method says which options it uses in
  ``sample_options`` and whether it takes class labels in ``num_classes``.
- **Optimisation** (methods with stages or adversaries, e.g. PVDM's autoencoder): the trainer
  asks ``param_groups()`` for one optimizer per named group (default: one group "model" of
  every trainable parameter), and each step calls ``training_phases(step)`` for the groups to
  update, in order; each phase is a forward pass ``method(video, phase=name, **extra)`` ->
  ``phase_loss`` -> backward -> clip -> that group's optimizer and LR schedule. A frozen
  sub-model (``requires_grad_(False)``) is in no group and outside the EMA; a group with
  ``ema=False`` (a discriminator) is optimised but not averaged; a group's ``grad_clip``
  replaces ``train.grad_clip`` for it. Checkpoints hold every optimizer and schedule.
- **Training data** (optional): ``setup_training()`` runs once before the first step and may
  return the method's own dataset (PVDM's latent cache); its items are dicts the loss takes as
  keywords, and the loss is called with ``video=None``.
- **Previews**: ``preview(video, generator)`` gives the rows of the trainer's preview GIF
  (default: the clips and a sample of ``default_known``; an autoencoder shows reconstructions).
- **Sub-models given by path** (VideoFusion's pretrained base, PVDM's autoencoder):
  ``resolve_submodels(cfg)`` reads them once, before the run writes ``config.yaml``, and
  returns the config with each path replaced by the sub-model's recorded settings and
  provenance plus the weights to load; the sub-model lives in the method's ``state_dict``, so
  checkpoints and exports are self-contained.
- **Windows**: ``window``, ``context``, ``any_length``, ``takes_whole``, ``usable_known``,
  ``fills`` and ``default_known`` tell ``videogen.rollout`` how to make videos longer than one
  call.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from videogen import checkpoint, tasks
from videogen.config import Config, ConfigError


@dataclass(frozen=True)
class SampleOptions:
    """The sampling settings of one ``generate`` call: the call's values where given, else the
    config's ``sample`` section. ``labels`` ``(B,)`` long class indices in
    ``[0, num_classes)``, or None (unconditional / the null label)."""

    sampler: str
    steps: int
    guidance: float
    temperature: float
    generator: torch.Generator | None = None
    labels: Tensor | None = None


@dataclass
class ParamGroup:
    """Parameters updated by one optimizer. ``lr``/``betas``/``weight_decay``/``grad_clip`` of
    None take the ``train`` section's values; ``ema``: the EMA averages these parameters."""

    params: list[nn.Parameter]
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    ema: bool = True
    grad_clip: float | None = None


@dataclass
class Pretrained:
    """A typed config section for a sub-model given by path (an export or run folder, or a
    model folder the method knows how to read).

    ``path`` is read once, by ``build_method`` before a run writes its config: the method
    records the sub-model's settings in its own ``model`` section, moves the path to
    ``loaded_from`` (provenance only) and loads the weights, which from then on live in the
    method's checkpoints and export. ``path: null`` with ``loaded_from`` set is that resolved
    state; both null builds the sub-model from its recorded settings with fresh weights.
    """

    path: str | None = None
    loaded_from: str | None = None


def load_stage_one(cls: type[VideoMethod], cfg: Config, path: str | Path) -> tuple[Any, Any]:
    """``model.autoencoder.path`` of a two-stage method's stage 2: the stage-1 export (or run
    folder) at ``path`` as ``(method, its model config)``, refused by name unless it is this
    method's autoencoder stage for clips of ``cfg``'s channels and size."""
    stage1 = checkpoint.load_pretrained(path)
    s1: Any = getattr(stage1, "model_cfg", None)
    if stage1.name != cls.name or getattr(s1, "stage", None) != "autoencoder":
        raise ConfigError(
            f"model.autoencoder.path: {path} holds a {stage1.name} model, not a stage-1 "
            f"{cls.title or cls.name} autoencoder (model.stage=autoencoder)"
        )
    d, d1 = cfg.data, stage1.cfg.data
    if (d.channels, d.size) != (d1.channels, d1.size):
        raise ConfigError(
            f"model.autoencoder.path: {path} encodes {d1.channels}-channel {d1.size} px "
            f"clips; this run has {d.channels} channels at {d.size} px"
        )
    return stage1, s1


def refuse_unresolved(key: str, value: object, title: str) -> None:
    """A method's ``__init__`` meets a sub-model path only when built around ``build_method``
    (which reads it once and records its settings): say so, naming ``key``."""
    if value:
        raise ConfigError(
            f"{key} is read by videogen.registry.build_method (it loads the folder once and "
            f"records its settings); build {title} with build_method"
        )


class VideoMethod(nn.Module):
    """A trainable video model with its own training recipe and sampler (see the module
    docstring for the hooks). ``window`` is the number of frames one call handles; longer
    videos go through ``videogen.rollout``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # how messages name the method (default: ``name``)
    ModelConfig: ClassVar[type]
    # True when ``generate`` takes clips of any length itself (VideoFlow's causal prior);
    # otherwise ``videogen.rollout`` slides a window of ``window`` frames.
    any_length: ClassVar[bool] = False
    # True when some parameters get no gradient in a step (DDP must then look for them)
    ddp_find_unused: ClassVar[bool] = False
    # the ``generate`` options this method uses; the others are accepted and ignored
    sample_options: ClassVar[frozenset[str]] = frozenset({"steps", "sampler", "guidance"})
    # inductor settings its networks need when compiled (``videogen.compile_options``)
    inductor_config: ClassVar[dict[str, Any]] = {}

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

    @property
    def num_classes(self) -> int:
        """Number of classes ``generate(labels=)`` and ``loss(labels=)`` take; 0: none."""
        return 0

    # ------------------------------------------------------------------ sub-models

    @classmethod
    def resolve_submodels(cls, cfg: Config) -> tuple[Config, dict[str, Tensor]]:
        """``(cfg, weights)``: the config with every sub-model path replaced by what rebuilds
        the sub-model without the file (its settings, and where it was loaded from), and the
        sub-model weights under their names in this method's ``state_dict``. Called once by
        ``videogen.registry.build_method``; a config without paths comes back unchanged."""
        return cfg, {}

    @staticmethod
    def with_model(cfg: Config, **model: Any) -> Config:
        """A copy of ``cfg`` whose ``model`` section has ``model`` updated (for
        ``resolve_submodels``: the caller's config is not changed)."""
        return dataclasses.replace(cfg, model={**cfg.model, **model})

    # ------------------------------------------------------------------ training

    def forward(self, video: Tensor, *, phase: str = "model", **extra: Any) -> dict[str, Tensor]:
        # The trainer calls the (possibly DDP-wrapped, compiled) module: forward is a loss.
        return self.phase_loss(phase, video, **extra)

    def loss(self, video: Tensor) -> dict[str, Tensor]:
        """Training loss of a batch ``(B, T, C, H, W)`` in ``[-1, 1]``; the method draws its own
        ``known`` mask. Returns ``{"loss": scalar, ...anything worth logging}``."""
        raise NotImplementedError

    def param_groups(self) -> dict[str, ParamGroup]:
        """One optimizer per named group; default: every trainable parameter in "model"."""
        return {"model": ParamGroup([p for p in self.parameters() if p.requires_grad])}

    def setup_training(self) -> Dataset | None:
        """Called once by the trainer before the first step: load what only training needs
        (PVDM: LPIPS weight files, its latent cache) and return the method's own training data
        (items the loss takes as keywords, e.g. ``{"latents": ...}``), or None for the
        configured clips (default)."""
        return None

    def training_phases(self, step: int) -> tuple[str, ...]:
        """The groups updated at training step ``step`` (0-based), in order (default: all)."""
        return tuple(self.param_groups())

    def phase_loss(self, phase: str, video: Tensor, **extra: Any) -> dict[str, Tensor]:
        """The loss that phase ``phase`` back-propagates into its group (default: ``loss``)."""
        return self.loss(video, **extra)

    @torch.no_grad()
    def preview(
        self, video: Tensor, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """Rows of the trainer's preview grid (each ``(B, T, C, H, W)`` in [-1, 1]) and the
        ``(T,)`` known row to mark: the clips and a sample of the method's main task."""
        known = self.default_known(video.shape[0])
        return [video, self.generate(video, known, generator=generator)], known[0]

    # ------------------------------------------------------------------ sampling

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
        labels: Tensor | None = None,
    ) -> Tensor:
        """Fill the frames of ``video`` ``(B, T, C, H, W)`` where ``known`` ``(B, T)`` is False.

        Known frames come back exactly as given; values of unknown frames in ``video`` are
        ignored. Options left None take the config's ``sample`` section; options the method
        does not list in ``sample_options`` are ignored. ``labels`` ``(B,)`` asks a
        class-conditional method (``num_classes`` > 0) for those classes. A pattern
        ``supported_known`` refuses raises ValueError with its reason.
        """
        self._check_input(video, known)
        reason = self.supported_known(known)
        if reason is not None:
            raise ValueError(reason)
        self.check_video(video)
        opts = self.resolve_options(
            video.shape[0],
            video.device,
            steps=steps,
            sampler=sampler,
            temperature=temperature,
            guidance=guidance,
            generator=generator,
            labels=labels,
        )
        return self._generate(video, known.to(device=video.device, dtype=torch.bool), opts)

    def resolve_options(
        self,
        batch: int,
        device: torch.device,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        temperature: float | None = None,
        guidance: float | None = None,
        generator: torch.Generator | None = None,
        labels: Any = None,
    ) -> SampleOptions:
        """The ``SampleOptions`` of a call for ``batch`` clips: given values, else the config's
        ``sample`` section; ``labels`` checked against ``num_classes``."""
        s = self.cfg.sample
        return SampleOptions(
            sampler=sampler or s.sampler,
            steps=steps or s.steps,
            guidance=s.guidance if guidance is None else float(guidance),
            temperature=s.temperature if temperature is None else float(temperature),
            generator=generator,
            labels=self._check_labels(labels, batch, device),
        )

    def _generate(self, video: Tensor, known: Tensor, opts: SampleOptions) -> Tensor:
        """``generate`` after the checks: ``known`` is a bool ``(B, T)`` on ``video``'s
        device that ``supported_known`` accepts."""
        raise NotImplementedError

    def check_video(self, video: Tensor) -> None:
        """Raise ValueError when ``video`` does not fit this method beyond the shared checks
        (``(B, T, C, H, W)`` with ``data.channels``, ``known`` matching); default: fits."""

    def _check_clips(self, video: Tensor) -> None:
        """The shared check of a batch: ``(B, T, data.channels, H, W)``."""
        c = self.cfg.data.channels
        if video.dim() != 5 or video.shape[2] != c:
            raise ValueError(
                f"{self.title or self.name} expects video of shape (B, T, {c}, H, W) in "
                f"[-1, 1], got {tuple(video.shape)}"
            )

    def _check_input(self, video: Tensor, known: Tensor) -> None:
        self._check_clips(video)
        if tuple(known.shape) != tuple(video.shape[:2]):
            raise ValueError(
                f"known mask has shape {tuple(known.shape)}; it must be (B, T) = "
                f"{tuple(video.shape[:2])} to match the video"
            )

    def _check_labels(self, labels: Any, batch: int, device: torch.device) -> Tensor | None:
        if labels is None:
            return None
        n = self.num_classes
        if not n:
            raise ValueError(
                f"labels given to an unconditional {self.title or self.name} model "
                "(model.num_classes: 0)"
            )
        labels = torch.as_tensor(labels, device=device).long().reshape(-1)
        if labels.shape[0] != batch:
            raise ValueError(f"{labels.shape[0]} labels for a batch of {batch} clips")
        if bool((labels < 0).any() | (labels >= n).any()):
            raise ValueError(f"class labels must lie in [0, {n}), got {labels.tolist()}")
        return labels

    def supported_known(self, known: Tensor) -> str | None:
        """``None`` if ``generate`` can take this pattern within one window, else why not."""
        return None

    def takes_whole(self, known: Tensor) -> bool:
        """True when one ``generate`` call fills a request of this pattern ``(B, T)`` as it
        stands, so ``videogen.rollout`` need not pad it to a window (default: ``any_length``).
        PVDM generates a single new clip, shorter than its two-clip window, this way."""
        return self.any_length

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
        """Write ``config.json`` + ``model.safetensors``; ``load_pretrained(path)`` reads it."""
        return checkpoint.save_pretrained(self, path)
