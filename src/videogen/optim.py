"""The trainer's optimizers and learning-rate schedules: one Adam(W) per parameter group a
method declares, a linear warm-up, then a constant rate or a cosine decay."""

from __future__ import annotations

import math
from typing import Any

import torch

from videogen.config import Config, TrainConfig
from videogen.methods.base import ParamGroup
from videogen.train_errors import TrainingError


def make_optimizer(group: ParamGroup, cfg: Config) -> torch.optim.Optimizer:
    """Adam(W) over one parameter group; the group's settings override the ``train`` section."""
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    kwargs: dict[str, Any] = {
        "lr": t.lr if group.lr is None else group.lr,
        "betas": t.betas if group.betas is None else group.betas,
        "eps": t.eps,
        "weight_decay": t.weight_decay if group.weight_decay is None else group.weight_decay,
    }
    check_lr(kwargs["lr"], group, "train.lr" if group.lr is None else "the group's lr")
    # fused on every device: one kernel per step, and an update with non-finite gradients is
    # skipped inside it (videogen.update_guard)
    return cls(group.params, fused=True, **kwargs)


def check_lr(lr: float, group: ParamGroup, key: str) -> None:
    """A learning rate beyond the parameters' largest float makes every Adam update overflow
    (torch refuses the step): say so before training, not in a traceback."""
    largest = min((torch.finfo(p.dtype).max for p in group.params), default=float("inf"))
    if not abs(lr) <= largest:
        raise TrainingError(
            f"{key}={lr:g} does not fit the parameters' float type (largest {largest:.3g}): "
            "every update would make the weights non-finite, so nothing was trained or "
            "written. Lower it (the paper configs use 1e-4 to 2e-4)."
        )


def lr_factor(step: int, warmup: int, steps: int, schedule: str) -> float:
    """The learning rate's multiplier after ``step`` optimizer steps: linear warm-up from 0 over
    ``warmup`` steps, then constant (as MCVD and RaMViD train) or, for ``cosine``, half a cosine
    from 1 down to 0 at ``steps`` (Loshchilov & Hutter 2017, without restarts)."""
    if warmup > 0 and step + 1 < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    # the last of ``steps`` updates still moves the weights (its factor is just above 0)
    done = min(1.0, max(0, step + 1 - warmup) / max(1, steps - warmup + 1))
    return 0.5 * (1 + math.cos(math.pi * done))


def lr_schedule(optimizer: torch.optim.Optimizer, train_cfg: TrainConfig):
    """``lr_factor`` as a scheduler stepped once per optimizer step of ``optimizer``."""
    warmup, steps, kind = train_cfg.warmup, train_cfg.steps, train_cfg.lr_schedule
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, steps, kind)
    )
