"""What a training run exports besides its checkpoints: snapshots of the EMA weights on the
clock (``train.snapshot_minutes``), preview GIFs (``train.sample_every``) and the final export."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from videogen.atomic import replace_file
from videogen.checkpoint import save_pretrained
from videogen.config import Config
from videogen.ema import EMA, ema_weights
from videogen.methods.base import VideoMethod


def pending_snapshots(run_dir: Path, minutes: list[float]) -> list[float]:
    """The snapshot times of ``train.snapshot_minutes`` not yet written, in order (a resumed
    run keeps the snapshots it has; its clock restarts at zero)."""
    return [m for m in sorted(minutes) if not (run_dir / "snapshots" / f"{m:g}min").is_dir()]


def write_snapshot(
    method: VideoMethod, ema: EMA | None, run_dir: Path, due: float, step: int, minutes: float
) -> Path:
    """Export the EMA weights to ``<run>/snapshots/<due>min/`` with ``snapshot.json`` (the step
    and the minutes actually trained when it was taken)."""
    path = export(method, ema, run_dir / "snapshots" / f"{due:g}min")
    info = {"due_minutes": due, "minutes": minutes, "step": step}
    replace_file(path / "snapshot.json", (json.dumps(info) + "\n").encode())
    return path


def export(method: VideoMethod, ema: EMA | None, path: Path) -> Path:
    """The method with its EMA weights (its own without an EMA) as a pretrained folder."""
    return save_pretrained(method, path, ema=ema.state_dict() if ema is not None else None)


@torch.no_grad()
def write_preview(
    method: VideoMethod, ema: EMA | None, cfg: Config, path: Path, count: int = 4
) -> None:
    """Write the method's preview (``VideoMethod.preview``: by default its main task) of the
    first test clips as a GIF grid."""
    from videogen.data import build_dataset, to_model
    from videogen.grids import write_grid

    test = build_dataset(cfg.data, "test", seed=cfg.train.seed, length=count)
    clips = torch.stack([c if torch.is_tensor(c) else c[0] for c in test][:count])
    video = to_model(clips.to(method.device))
    was_training = method.training
    method.eval()
    with ema_weights(method, ema):
        gen = torch.Generator(device=method.device).manual_seed(cfg.train.seed)
        rows, known = method.preview(video, gen)
    method.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_grid(path, rows, known=None if known is None else known.cpu())
