"""The error that ends a training run, with a message that says why and what was kept."""

from __future__ import annotations

from pathlib import Path

from videogen.checkpoint import kept_checkpoint


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, bad data); the message says why."""


def non_finite_stop(what: str, run_dir: Path) -> TrainingError:
    """The error for non-finite values met in ``run_dir``'s run: it names the checkpoint kept
    and the settings that usually help."""
    return TrainingError(
        f"{what}; the run stopped and wrote nothing non-finite. {kept_checkpoint(run_dir)} "
        "Lower train.lr, raise train.warmup or set train.grad_clip."
    )
