"""Run a trained method on a task: pick the input clips, build the ``known`` pattern, fill it.

``sample_task`` is what ``videogen sample`` calls; it goes through ``videogen.rollout`` so any
task length works with any method.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from videogen import tasks
from videogen.methods.base import VideoMethod
from videogen.rollout import rollout


@dataclass
class TaskResult:
    """Inputs and outputs of a task run, all ``(N, T, C, H, W)`` in [-1, 1]."""

    video: Tensor  # the ground truth (unknown frames included when the input had them)
    known: Tensor  # (N, T) bool
    samples: Tensor  # (N, T, C, H, W): one per input clip and per sample index
    source: list[int]  # for each sample row, the index of its input clip

    def grid_rows(self) -> list[Tensor]:
        """The rows of a comparison grid (``grids.write_grid``): each input clip followed by its
        samples; with nothing known (unconditional) the samples alone, since a data clip beside
        them would be unrelated to them and framed as generated."""
        if not self.known.any():
            return list(self.samples)
        rows: list[Tensor] = []
        for i in dict.fromkeys(self.source):
            rows.append(self.video[self.source.index(i)])
            rows.extend(s for s, j in zip(self.samples, self.source) if j == i)
        return rows


def task_known(
    task: str,
    frames: int,
    batch: int,
    *,
    known: int | None = None,
    every: int | None = None,
    indices: list[int] | None = None,
) -> Tensor:
    """The ``known`` pattern of a CLI task with its one numeric argument."""
    if task in ("predict", "past"):
        return tasks.make_known(task, frames, batch, known=1 if known is None else known)
    if task == "infill":
        return tasks.make_known(task, frames, batch, first=1 if known is None else known)
    if task in ("interpolate", "upsample"):
        return tasks.make_known(task, frames, batch, every=2 if every is None else every)
    if task == "indices":
        return tasks.make_known(task, frames, batch, indices=indices or [])
    return tasks.make_known(task, frames, batch)


def load_input_clips(
    source: str | Path | None, method: VideoMethod, frames: int, count: int, seed: int = 0
) -> Tensor:
    """``count`` uint8 clips ``(N, frames, H, W, C)`` at the method's resolution.

    ``source`` is a video file (its first clip, repeated), a dataset name or folder (its
    first test clips), or None for the method's own test set.
    """
    import dataclasses

    from videogen.data import build_dataset
    from videogen.io import read_video

    data = method.cfg.data
    path = Path(source) if source is not None else None
    if path is not None and path.is_file() and path.suffix.lower() not in {".npz", ".h5", ".hdf5"}:
        clip = torch.from_numpy(
            read_video(
                path, frames=frames, stride=data.stride, size=data.size, channels=data.channels
            )
        )
        return clip.unsqueeze(0).expand(count, *clip.shape).clone()
    cfg = dataclasses.replace(data, frames=frames)
    if source is not None:
        cfg = dataclasses.replace(cfg, name=str(source), root=None)
    clips = [c if torch.is_tensor(c) else c[0] for c in build_dataset(cfg, "test", seed, count)]
    if len(clips) < count:
        raise ValueError(f"{source or data.name} has only {len(clips)} clips; asked for {count}")
    return torch.stack(clips[:count])


def check_counts(**counts: int | None) -> None:
    """Refuse a count below 1 by name (``frames=0``, ``steps=-5``); None means the default."""
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(
                f"{name}={value} (--{name}): must be at least 1; leave it out for the default"
            )


@torch.no_grad()
def sample_task(
    method: VideoMethod,
    task: str,
    *,
    source: str | Path | None = None,
    frames: int | None = None,
    known: int | None = None,
    every: int | None = None,
    indices: list[int] | None = None,
    clips: int = 1,
    samples: int = 1,
    steps: int | None = None,
    sampler: str | None = None,
    guidance: float | None = None,
    temperature: float | None = None,
    label: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TaskResult:
    """Run ``task`` on ``clips`` input clips, ``samples`` samples each.

    ``frames`` is the length of the output video (default: the method's window); for
    ``upsample`` the input is read at low frame rate and spread by ``every``. ``label`` is a
    class index for class-conditional models (VideoFusion with ``num_classes``).
    """
    from videogen.data import to_model

    check_counts(frames=frames, every=every, clips=clips, samples=samples, steps=steps)
    frames = method.window if frames is None else frames
    device = method.device
    if task == "upsample":
        factor = 2 if every is None else every
        low = (frames - 1) // factor + 1
        raw = to_model(load_input_clips(source, method, low, clips, seed).to(device))
        video, pattern = tasks.spread_frames(raw, factor)
    else:
        raw = load_input_clips(source, method, frames, clips, seed)
        video = to_model(raw.to(device))
        pattern = task_known(task, frames, clips, known=known, every=every, indices=indices).to(
            device
        )
    reason = None if video.shape[1] > method.window else method.supported_known(pattern)
    if reason:
        raise ValueError(f"{method.name} cannot do task {task!r} here: {reason}")
    video = video.repeat_interleave(samples, dim=0)
    pattern = pattern.repeat_interleave(samples, dim=0)
    extra = {}
    if label is not None:
        if not method.num_classes:
            raise ValueError(f"{method.name} here is not class-conditional; drop --label")
        extra["labels"] = torch.full((video.shape[0],), label, dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = rollout(
        method,
        video,
        pattern,
        steps=steps,
        sampler=sampler,
        guidance=guidance,
        temperature=temperature,
        generator=gen,
        progress=progress,
        **extra,
    )
    source_index = [i for i in range(clips) for _ in range(samples)]
    return TaskResult(video=video, known=pattern, samples=out, source=source_index)
