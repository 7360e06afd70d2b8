"""Each process's random state when a run resumes: its own back when the run has as many
processes as the one that wrote the checkpoint, otherwise a fresh one per rank."""

from __future__ import annotations

from typing import Any

from accelerate.utils import set_seed

from videogen.batch_stream import stream_seed
from videogen.checkpoint import set_rng_state


def restore_rank_rng(
    saved: list[dict[str, Any]],
    *,
    rank: int,
    world: int,
    seed: int,
    step: int,
    batch_size: tuple[int | None, int],
) -> str | None:
    """Restore this rank's RNG state from a checkpoint's per-rank states ``saved``.

    With as many processes as wrote the checkpoint each rank takes its own state back (the run
    continues exactly). With another number no saved state belongs to this rank: handing one
    rank's state to several would give them the same noise, timesteps and masks, so every
    rank is seeded afresh from ``(seed, rank, step)`` instead, and the returned message says so
    and what became of the global batch (``batch_size`` = (saved, now), per process; the saved
    one is None in older checkpoints). Returns None when nothing changed."""
    if len(saved) == world:
        set_rng_state(saved[rank])
        return None
    # a seed apart from the data stream's (seeded with stream_seed itself)
    set_seed((stream_seed(seed, rank, step) + 104_729) % (2**31 - 1))
    then, now = batch_size
    note = (
        f"the checkpoint was written by {len(saved)} processes and this run has {world}; "
        f"each rank's random state is reseeded from (train.seed, rank, step), so the run goes "
        "on with independent noise per rank but does not repeat an uninterrupted run's draws"
    )
    if then is None:
        return note + f"; the global batch is now {world} x train.batch_size={now}"
    old_global, new_global = len(saved) * then, world * now
    if old_global == new_global:
        return note + f"; the global batch stays {new_global} ({world} x {now})"
    keep = f"train.batch_size={old_global // world}" if old_global % world == 0 else None
    return note + (
        f"; the global batch changes from {old_global} ({len(saved)} x {then}) to "
        f"{new_global} ({world} x {now})" + (f": set {keep} to keep it" if keep else "")
    )
