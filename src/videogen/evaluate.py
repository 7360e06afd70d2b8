"""Evaluation protocols of the papers, and the files ``videogen eval`` writes.

``evaluate_run(method, clips, ...)`` takes any object with ``generate(video, known, *, steps,
sampler, temperature, guidance, generator)`` (and, for likelihood models, ``log_likelihood``),
and an iterable of test clips (uint8 ``(T, H, W, C)`` clips, uint8 ``(B, T, H, W, C)`` or float
``(B, T, C, H, W)`` batches in [-1, 1]; any of them with class labels, as ``(clip, label)`` pairs,
``(clips, labels)`` batches or dicts with ``video`` and ``labels``). For every test clip it draws
``best_of`` samples with the task's known frames (a class-conditional method, one with
``num_classes``, gets the clip's own class as ``labels=``) and computes:

- FVD / KVD: I3D features of the test clips against those of the first ``fvd_samples`` samples
  per clip, over all frames or only the generated ones (``fvd_include_known``). Real features
  are cached per (data, weight file sha256, protocol), so the real side is computed once.
- IS: C3D probabilities of the first 16 frames of the first sample per clip.
- SSIM / PSNR / LPIPS: per generated frame, against the truth; per test clip and metric, the
  sample with the best mean over the generated frames is kept (best-of-k as SRVP and MCVD
  report it), giving the value and the per-frame curve.
- BPD: ``method.log_likelihood(video)`` averaged over the test clips.

Every value is written with its protocol (weight file and sha256, resize mode, clip counts, k,
frames included, seed). Sharding: with several processes (``accelerate launch``) the batches are
split between processes and the per-clip results gathered and de-duplicated by clip index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from einops import rearrange
from torch import Tensor, nn

from videogen.methods.base import VideoMethod
from videogen.metrics import (
    frechet_distance_features,
    inception_score,
    kernel_distance,
    load_c3d,
    load_i3d,
    load_lpips,
    psnr,
    ssim,
)
from videogen.metrics.c3d import C3D_FRAMES
from videogen.metrics.i3d import I3D_MIN_FRAMES, PRECISIONS, RESIZE_MODES, i3d_features
from videogen.metrics.report import gif_grid, render_report
from videogen.rollout import rollout
from videogen.tasks import make_known

METRICS = ("fvd", "kvd", "is", "ssim", "psnr", "lpips", "bpd")
# +1: higher is better, -1: lower is better (used to pick the best of k samples)
FRAME_METRICS = {"ssim": 1, "psnr": 1, "lpips": -1}
RANGE_TOLERANCE = 1e-3  # generated values may overshoot [-1, 1] by float error, no more
CACHE_VERSION = 1
TEST_LABELS = "test clips' classes"
NULL_LABEL = "null label: the test clips carry no class labels"


class ProtocolError(ValueError):
    """Inputs do not fit the evaluation protocol; the message names the setting."""


@dataclass
class Protocol:
    """Every setting that changes a number. Written next to every value in ``metrics.json``."""

    task: str = "predict"
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    known: list[int] | None = None  # explicit known frame indices; overrides task
    metrics: tuple[str, ...] = ("fvd", "ssim", "psnr", "lpips")
    best_of: int = 1
    num_clips: int = 2048
    num_real: int = 2048  # real clips in FVD / KVD: num_clips unless a separate real set is given
    batch_size: int = 16
    seed: int = 0
    fvd_include_known: bool = True
    fvd_samples: int = 1
    i3d_resize: str = "resize"
    i3d_bn_eps: float = 1e-5
    precision: str = "fp32"
    is_splits: int = 10
    is_shuffle_seed: int | None = None
    steps: int | None = None
    sampler: str | None = None
    temperature: float | None = None
    guidance: float | None = None
    # the class labels a class-conditional method samples with (TEST_LABELS or NULL_LABEL);
    # None for a method that takes no labels. Set from the first test batch.
    labels: str | None = None

    def check(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ProtocolError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
        if self.best_of < 1:
            raise ProtocolError(f"best_of must be >= 1, got {self.best_of}")
        if not 1 <= self.fvd_samples <= self.best_of:
            raise ProtocolError(
                f"fvd_samples={self.fvd_samples} must be between 1 and best_of={self.best_of}"
            )
        if self.num_clips < 1 or self.num_real < 1 or self.batch_size < 1:
            raise ProtocolError("num_clips, num_real and batch_size must be positive")
        if self.i3d_resize not in RESIZE_MODES:
            raise ProtocolError(f"i3d_resize={self.i3d_resize!r}; choose one of {RESIZE_MODES}")
        if self.precision not in PRECISIONS:
            raise ProtocolError(f"precision={self.precision!r}; choose one of {PRECISIONS}")


# --------------------------------------------------------------------------- test clips


def _as_clips(item: Any) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Clips ``(T, C, H, W)`` from one item of the test iterable, each with its class label
    (a long scalar) or None: uint8 as given (converted on the device, a quarter of the bytes
    to move), float checked to lie in [-1, 1]."""
    labels = None
    if isinstance(item, dict):
        item, labels = item["video"], item.get("labels")
    if (
        isinstance(item, (tuple, list))
        and len(item) == 2
        and isinstance(item[0], Tensor)
        and getattr(item[1], "ndim", 0) <= 1
    ):
        item, labels = item  # a (clip, class label) pair of a labelled dataset, or a batch
    x = torch.as_tensor(np.asarray(item)) if not isinstance(item, Tensor) else item
    if x.dtype == torch.uint8:
        if x.ndim == 4:
            x = x[None]
        if x.ndim != 5:
            raise ProtocolError(f"uint8 clips are (T, H, W, C), got shape {tuple(x.shape)}")
        x = rearrange(x, "b t h w c -> b t c h w")
    elif x.is_floating_point():
        if x.ndim == 4:
            x = x[None]
        if x.ndim != 5:
            raise ProtocolError(f"float batches are (B, T, C, H, W), got {tuple(x.shape)}")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ProtocolError(
                f"a float test batch has values in [{lo:.3f}, {hi:.3f}]; the protocol takes "
                "float video in [-1, 1] (or uint8 clips)"
            )
        x = x.float()
    else:
        raise ProtocolError(f"test clips must be uint8 or float tensors, got {x.dtype}")
    if labels is None:
        yield from ((clip, None) for clip in x.unbind(0))
        return
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() != x.shape[0]:
        raise ProtocolError(f"a test item has {x.shape[0]} clips but {labels.numel()} labels")
    yield from zip(x.unbind(0), labels.unbind(0))


def to_float(video: Tensor) -> Tensor:
    """uint8 -> float in [-1, 1] (0 -> -1, 255 -> 1); float video passes through."""
    return video.float() / 127.5 - 1 if video.dtype == torch.uint8 else video


def _stack(clips: list[Tensor]) -> Tensor:
    if all(c.dtype == torch.uint8 for c in clips):
        return torch.stack(clips)
    return torch.stack([to_float(c) for c in clips])


def iter_batches(clips: Iterable[Any], batch_size: int, num_clips: int) -> Iterator[Tensor]:
    """Batches ``(B, T, C, H, W)`` of the first ``num_clips`` clips, all of one shape: uint8
    where the clips are uint8, else float in [-1, 1] (``to_float`` converts)."""
    for video, _ in iter_labelled_batches(clips, batch_size, num_clips):
        yield video


def iter_labelled_batches(
    clips: Iterable[Any], batch_size: int, num_clips: int
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """``iter_batches`` with the clips' class labels ``(B,)`` (long), or None where the test
    items carry none; either every clip has a label or none has."""
    if hasattr(clips, "__len__") and len(clips) < num_clips and _clips_are_single(clips):
        raise _too_few(len(clips), num_clips)
    pending: list[Tensor] = []
    pending_labels: list[Tensor] = []
    count, shape, labelled = 0, None, False
    for item in clips:
        for clip, label in _as_clips(item):
            if shape is None:
                shape, labelled = clip.shape, label is not None
            elif clip.shape != shape:
                raise ProtocolError(
                    f"test clip {count} is {_shape(clip)} but clip 0 is {_shape_of(shape)}; "
                    "a real set has one frame count and resolution (data.frames, data.size)"
                )
            elif (label is not None) != labelled:
                raise ProtocolError(
                    f"test clip {count} {'has no' if labelled else 'has a'} class label but "
                    f"clip 0 {'has one' if labelled else 'has none'}"
                )
            pending.append(clip)
            if label is not None:
                pending_labels.append(label)
            count += 1
            if len(pending) == batch_size or count == num_clips:
                yield _stack(pending), torch.stack(pending_labels) if labelled else None
                pending, pending_labels = [], []
            if count == num_clips:
                return
    if count < num_clips:
        raise _too_few(count, num_clips)


def _clips_are_single(clips: Any) -> bool:
    try:
        first = clips[0]
    except (TypeError, IndexError, KeyError):
        return False
    return getattr(first, "ndim", None) == 4


def _too_few(count: int, num_clips: int) -> ProtocolError:
    return ProtocolError(
        f"the protocol asks for num_clips={num_clips} test clips but the data gives {count}; "
        "use a larger test split or lower --num-clips (the count is written with every value)"
    )


def _shape(clip: Tensor) -> str:
    return _shape_of(clip.shape)


def _shape_of(shape: Sequence[int]) -> str:
    t, c, h, w = shape
    return f"{t} frames x {c} channels x {h}x{w}"


# --------------------------------------------------------------------------- per-batch work


def _sample_seed(seed: int, clip_index: int, sample: int) -> int:
    digest = hashlib.sha256(f"{seed}/{clip_index}/{sample}".encode()).hexdigest()
    return int(digest[:15], 16)


def _check_shape(out: Any, video: Tensor) -> Tensor:
    if not isinstance(out, Tensor) or out.shape != video.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ProtocolError(
            f"method.generate returned {got} for input {tuple(video.shape)}; real and generated "
            "sets must have the same frames and resolution"
        )
    return out


class RangeCheck:
    """Tracks the value range of generated video on the device; one host sync per batch."""

    def __init__(self) -> None:
        self.lo: Tensor | None = None
        self.hi: Tensor | None = None
        self.bad = None

    def update(self, out: Tensor) -> Tensor:
        lo, hi = out.detach().aminmax()
        bad = ~torch.isfinite(out).all()
        if self.lo is None or self.hi is None:
            self.lo, self.hi, self.bad = lo, hi, bad
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)
            self.bad = self.bad | bad
        return out.clamp(-1, 1)

    def check(self) -> None:
        if self.lo is None or self.hi is None:
            return
        if bool(self.bad):
            raise ProtocolError("method.generate returned NaN or inf")
        lo, hi = float(self.lo), float(self.hi)
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ProtocolError(
                f"method.generate returned values in [{lo:.3f}, {hi:.3f}]; the protocol expects "
                "video in [-1, 1] (clamp in the method)"
            )


def _frame_scores(
    fake: Tensor, real: Tensor, names: Sequence[str], lpips_net: nn.Module | None
) -> dict[str, Tensor]:
    """Per-frame scores ``(B, T)`` of generated frames against the truth."""
    out: dict[str, Tensor] = {}
    fake01, real01 = (fake + 1) / 2, (real + 1) / 2
    if "ssim" in names:
        out["ssim"] = ssim(fake01, real01)
    if "psnr" in names:
        out["psnr"] = psnr(fake01, real01)
    if "lpips" in names:
        assert lpips_net is not None
        b = fake.shape[0]
        flat_f = rearrange(fake, "b t c h w -> (b t) c h w")
        flat_r = rearrange(real, "b t c h w -> (b t) c h w")
        dist = torch.cat([lpips_net(f, r) for f, r in zip(flat_f.split(512), flat_r.split(512))])
        out["lpips"] = rearrange(dist, "(b t) -> b t", b=b)
    return out


class BestOf:
    """Per video, the per-frame curve ``(B, T)`` of the sample with the best mean over frames."""

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.score: Tensor | None = None
        self.curve: Tensor | None = None

    def update(self, curve: Tensor) -> None:
        score = self.sign * curve.mean(dim=1)
        if self.score is None or self.curve is None:
            self.score, self.curve = score, curve
            return
        better = score > self.score
        self.score = torch.where(better, score, self.score)
        self.curve = torch.where(better[:, None], curve, self.curve)


@dataclass
class _Shown:
    """Truth and the first samples of the first clips, for the report's GIF grid."""

    videos: int
    samples: int
    rows: list[list[Tensor]] = field(default_factory=list)
    current: list[list[Tensor]] = field(default_factory=list)  # rows of the batch at hand

    def truth(self, video: Tensor) -> None:
        room = max(self.videos - len(self.rows), 0)
        self.current = [[v.cpu()] for v in video[:room]]
        self.rows.extend(self.current)

    def sample(self, index: int, out: Tensor) -> None:
        if index < self.samples:
            for row, v in zip(self.current, out):
                row.append(v.cpu())


@dataclass
class _Nets:
    i3d: nn.Module | None = None
    c3d: nn.Module | None = None
    lpips: nn.Module | None = None


# --------------------------------------------------------------------------- the run


def evaluate_run(
    method: Any,
    clips: Iterable[Any],
    *,
    task: str = "predict",
    task_kwargs: dict[str, Any] | None = None,
    known: Sequence[int] | Tensor | None = None,
    metrics: Sequence[str] = ("fvd", "ssim", "psnr", "lpips"),
    best_of: int = 1,
    num_clips: int = 2048,
    batch_size: int = 16,
    seed: int = 0,
    i3d_path: str | Path | None = None,
    i3d_resize: str = "resize",
    i3d_bn_eps: float = 1e-5,
    c3d_path: str | Path | None = None,
    c3d_mean_path: str | Path | None = None,
    lpips_alexnet_path: str | Path | None = None,
    lpips_lin_path: str | Path | None = None,
    fvd_include_known: bool = True,
    fvd_samples: int = 1,
    precision: str = "fp32",
    is_splits: int = 10,
    is_shuffle_seed: int | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    temperature: float | None = None,
    guidance: float | None = None,
    data_spec: Any = None,
    real_clips: Iterable[Any] | None = None,
    num_real: int | None = None,
    real_spec: Any = None,
    cache_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    run_name: str = "",
    device: torch.device | str | None = None,
    gif_videos: int = 6,
    gif_samples: int = 3,
) -> dict[str, Any]:
    """Evaluate ``method`` on ``clips`` under one protocol; returns the ``metrics.json`` dict.

    ``known`` (frame indices or a ``(T,)`` bool mask) overrides ``task``/``task_kwargs``
    (``videogen.tasks.make_known``). ``data_spec`` names the test data (dataset, split, frames,
    size, seed: anything JSON-serialisable); with it, real I3D features are cached under
    ``cache_dir`` (default ``$VIDEOGEN_CACHE`` or ``~/.cache/videogen``). With ``out_dir``, the
    main process writes ``metrics.json`` and ``report.html`` there.

    FVD / KVD compare against the test clips themselves unless ``real_clips`` (``num_real`` of
    them, named by ``real_spec`` for the cache) gives another real set, as unconditional
    generation protocols do with the train split; it must match the test clips' frames and
    resolution.

    A class-conditional method (``method.num_classes`` > 0) samples each test clip
    with the clip's own class (``generate(..., labels=)``) where the test items carry labels;
    where they carry none it samples with the null label and warns. The protocol's ``labels``
    says which; other methods ignore labels in the data (``labels``: None).
    """
    proto = Protocol(
        task="indices" if known is not None else task,
        task_kwargs=dict(task_kwargs or {}),
        known=_known_list(known),
        metrics=tuple(metrics),
        best_of=best_of,
        num_clips=num_clips,
        num_real=num_real or num_clips,
        batch_size=batch_size,
        seed=seed,
        fvd_include_known=fvd_include_known,
        fvd_samples=fvd_samples,
        i3d_resize=i3d_resize,
        i3d_bn_eps=i3d_bn_eps,
        precision=precision,
        is_splits=is_splits,
        is_shuffle_seed=is_shuffle_seed,
        steps=steps,
        sampler=sampler,
        temperature=temperature,
        guidance=guidance,
    )
    proto.check()
    if real_clips is None and num_real not in (None, num_clips):
        raise ProtocolError(
            f"num_real={num_real} needs a separate real set (real_clips); without one the real "
            f"set is the num_clips={num_clips} test clips"
        )
    # without CUDA, processes started by accelerate/torchrun shard over gloo on the CPU
    state = PartialState(cpu=not torch.cuda.is_available())
    dev = torch.device(device) if device is not None else state.device
    if isinstance(method, nn.Module):
        method.to(dev).eval()
    if "bpd" in proto.metrics and not callable(getattr(method, "log_likelihood", None)):
        raise ProtocolError(
            f"metric bpd needs a likelihood model; {type(method).__name__} has no log_likelihood"
        )
    wants_feats = any(m in proto.metrics for m in ("fvd", "kvd"))
    # load every network first: a missing weight file fails before any sampling
    nets = _Nets(
        i3d=load_i3d(i3d_path, bn_eps=i3d_bn_eps, device=dev) if wants_feats else None,
        c3d=load_c3d(c3d_path, c3d_mean_path, device=dev) if "is" in proto.metrics else None,
        lpips=(
            load_lpips(lpips_alexnet_path, lpips_lin_path, device=dev)
            if "lpips" in proto.metrics
            else None
        ),
    )
    n_batches = math.ceil(num_clips / batch_size)
    with state.split_between_processes(list(range(n_batches))) as mine:
        my_batches = set(mine)

    shard: dict[str, list[Tensor]] = {}
    shown = _Shown(gif_videos, gif_samples)
    known_row: Tensor | None = None
    shape: tuple[int, ...] | None = None
    cache: _RealCache | None = None
    real_spec = real_spec if real_clips is not None else data_spec
    for b_idx, (video, labels) in enumerate(iter_labelled_batches(clips, batch_size, num_clips)):
        if known_row is None:
            shape = tuple(video.shape[1:])
            known_row = _known_row(proto, video.shape[1])
            _check_task(proto, known_row, shape)
            _check_method(method, known_row, len(video))
            proto.labels = _labels_protocol(method, labelled=labels is not None)
            if nets.i3d is not None and real_clips is None:
                cache = _RealCache.open(proto, nets.i3d, known_row, shape, real_spec, cache_dir)
        if b_idx not in my_batches:
            continue
        keep = shown if state.is_main_process else None
        in_loop = cache is not None and cache.features is None  # real features on the way
        batch = to_float(video.to(dev, non_blocking=True))
        labels = labels if proto.labels == TEST_LABELS else None  # only for class-conditional
        _evaluate_batch(method, batch, labels, b_idx, proto, nets, known_row, in_loop, shard, keep)

    assert known_row is not None and shape is not None
    merged = merge_shards(gather_object([{k: torch.cat(v) for k, v in shard.items()}]))
    real = None
    if nets.i3d is not None:
        if cache is None:  # a separate real set: its own pass, or its cache
            cache = _RealCache.open(proto, nets.i3d, known_row, shape, real_spec, cache_dir)
        real = cache.features
        if real is None:
            if real_clips is None:
                real = merged["real_feats"]
            else:
                real = _real_features(real_clips, proto, nets.i3d, known_row, shape, state, dev)
            if state.is_main_process:
                cache.save(real)
    result = _summarise(
        proto, merged, nets, known_row, shape, real, cache, real_spec, data_spec, state, run_name
    )
    if out_dir is not None and state.is_main_process:
        write_outputs(result, out_dir, gif_grid(shown.rows, known_row) if shown.rows else None)
    return result


def _fvd_frames(proto: Protocol, known_row: Tensor) -> list[int]:
    if proto.fvd_include_known:
        return list(range(known_row.numel()))
    return _gen_list(known_row)


def _real_features(
    real_clips: Any,
    proto: Protocol,
    i3d: nn.Module,
    known_row: Tensor,
    shape: tuple[int, ...],
    state: PartialState,
    dev: torch.device,
) -> Tensor:
    """I3D features ``(num_real, 400)`` of a separate real set, sharded like the test clips."""
    frames = _fvd_frames(proto, known_row)
    n_batches = math.ceil(proto.num_real / proto.batch_size)
    with state.split_between_processes(list(range(n_batches))) as mine:
        my_batches = set(mine)
    shard: dict[str, list[Tensor]] = {"index": [], "real_feats": []}
    for b_idx, video in enumerate(iter_batches(real_clips, proto.batch_size, proto.num_real)):
        if tuple(video.shape[1:]) != shape:
            raise ProtocolError(
                f"real clips are {_shape_of(video.shape[1:])} but the generated clips are "
                f"{_shape_of(shape)}; FVD compares sets of one frame count and resolution "
                "(check the real split's data.frames and data.size)"
            )
        if b_idx not in my_batches:
            continue
        batch = to_float(video.to(dev, non_blocking=True))[:, frames]
        first = b_idx * proto.batch_size
        shard["index"].append(torch.arange(first, first + len(batch)))
        shard["real_feats"].append(
            i3d_features(i3d, batch, proto.i3d_resize, proto.precision).cpu()
        )
    mine_cat = {k: torch.cat(v) for k, v in shard.items() if v}
    return merge_shards(gather_object([mine_cat]))["real_feats"]


def _known_list(known: Sequence[int] | Tensor | None) -> list[int] | None:
    if known is None:
        return None
    if isinstance(known, Tensor) and known.dtype == torch.bool:
        return known.reshape(-1).nonzero().flatten().tolist()
    return [int(i) for i in known]


def _known_row(proto: Protocol, frames: int) -> Tensor:
    if proto.known is not None:
        return make_known("indices", frames, 1, indices=proto.known)[0]
    return make_known(proto.task, frames, 1, **proto.task_kwargs)[0]


def _check_task(proto: Protocol, known_row: Tensor, shape: tuple[int, ...]) -> None:
    frames = shape[0]
    n_known = int(known_row.sum())
    frame_metrics = [m for m in proto.metrics if m in FRAME_METRICS]
    if frame_metrics and n_known == 0:
        raise ProtocolError(
            f"{', '.join(frame_metrics)} compare samples with the truth of a conditional task; "
            f"task={proto.task!r} gives no known frames (use fvd/kvd/is for generation)"
        )
    if n_known == frames:
        raise ProtocolError(f"task {proto.task!r} leaves no frame to generate in {frames} frames")
    if any(m in proto.metrics for m in ("fvd", "kvd")):
        used = frames if proto.fvd_include_known else frames - n_known
        if used < I3D_MIN_FRAMES:
            raise ProtocolError(
                f"FVD with fvd_include_known={proto.fvd_include_known} uses {used} frames per "
                f"clip; I3D needs at least {I3D_MIN_FRAMES}"
            )
    if "is" in proto.metrics and frames < C3D_FRAMES:
        raise ProtocolError(f"IS scores the first {C3D_FRAMES} frames; clips have {frames}")
    if "is" in proto.metrics and proto.num_clips < proto.is_splits:
        raise ProtocolError(
            f"IS with is_splits={proto.is_splits} needs at least that many clips "
            f"(num_clips={proto.num_clips})"
        )


def _check_method(method: Any, known_row: Tensor, batch: int) -> None:
    """Ask the method (``VideoMethod.supported_known``) whether it can do the task at all.

    Clips longer than a ``VideoMethod``'s window go through ``videogen.rollout``, which
    places windows the method supports, so only clips within one window are asked here."""
    if isinstance(method, VideoMethod) and known_row.shape[-1] != method.window:
        return
    supported = getattr(method, "supported_known", None)
    if callable(supported):
        reason = supported(known_row.expand(batch, -1))
        if reason:
            raise ProtocolError(f"{type(method).__name__} cannot do this task: {reason}")


def _labels_protocol(method: Any, labelled: bool) -> str | None:
    """``Protocol.labels``: what a class-conditional method samples with (the test clips'
    classes, or the null label, with a warning, where the test data has none); None for a
    method without classes, which ignores labels in the data."""
    if not getattr(method, "num_classes", 0):
        return None
    if labelled:
        return TEST_LABELS
    warnings.warn(
        f"{type(method).__name__} is class-conditional but the test clips carry no class "
        "labels: every clip is sampled with the null label (unconditional). For a labelled "
        "video dataset set data.options.labels: true in the run's config",
        stacklevel=3,
    )
    return NULL_LABEL


def _generate(method: Any, video: Tensor, known: Tensor, **kwargs: Any) -> Tensor:
    return method.generate(video, known, **kwargs)


def _evaluate_batch(
    method: Any,
    video: Tensor,
    labels: Tensor | None,
    b_idx: int,
    proto: Protocol,
    nets: _Nets,
    known_row: Tensor,
    real_in_loop: bool,
    shard: dict[str, list[Tensor]],
    shown: _Shown | None,
) -> None:
    b, t = video.shape[:2]
    first_clip = b_idx * proto.batch_size
    extra = {} if labels is None else {"labels": labels.to(video.device)}  # each clip's class
    known = known_row.to(video.device).expand(b, t).clone()
    gen_frames = (~known_row).nonzero().flatten().to(video.device)
    fvd_frames = torch.arange(t, device=video.device) if proto.fvd_include_known else gen_frames
    frame_metrics = [m for m in proto.metrics if m in FRAME_METRICS]
    best = {m: BestOf(FRAME_METRICS[m]) for m in frame_metrics}
    fake_feats, probs = [], None
    checker = RangeCheck()
    with torch.no_grad():
        if nets.i3d is not None and real_in_loop:
            real = i3d_features(nets.i3d, video[:, fvd_frames], proto.i3d_resize, proto.precision)
            shard.setdefault("real_feats", []).append(real.cpu())
        if shown is not None:
            shown.truth(video)
        for s in range(proto.best_of):
            gen = torch.Generator(device=video.device)
            gen.manual_seed(_sample_seed(proto.seed, first_clip, s))
            fill = rollout if isinstance(method, VideoMethod) else _generate
            out = fill(
                method,
                video,
                known,
                steps=proto.steps,
                sampler=proto.sampler,
                temperature=proto.temperature,
                guidance=proto.guidance,
                generator=gen,
                **extra,
            )
            out = checker.update(_check_shape(out, video))
            if nets.i3d is not None and s < proto.fvd_samples:
                fake = i3d_features(nets.i3d, out[:, fvd_frames], proto.i3d_resize, proto.precision)
                fake_feats.append(fake)
            if nets.c3d is not None and s == 0:
                clip16 = rearrange(out[:, :C3D_FRAMES], "b t c h w -> b c t h w")
                probs = nets.c3d(clip16.expand(-1, 3, -1, -1, -1).float())
            if frame_metrics:
                scores = _frame_scores(
                    out[:, gen_frames], video[:, gen_frames], frame_metrics, nets.lpips
                )
                for m in frame_metrics:
                    best[m].update(scores[m])
            if shown is not None:
                shown.sample(s, out)
        checker.check()
        if "bpd" in proto.metrics:
            shard.setdefault("bpd", []).append(method.log_likelihood(video).float().cpu())
    shard.setdefault("index", []).append(torch.arange(first_clip, first_clip + b))
    if fake_feats:
        shard.setdefault("fake_feats", []).append(torch.stack(fake_feats, 1).cpu())
    if probs is not None:
        shard.setdefault("probs", []).append(probs.float().cpu())
    for m in frame_metrics:
        curve = best[m].curve
        assert curve is not None
        shard.setdefault(m, []).append(curve.float().cpu())


def merge_shards(shards: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Concatenate per-process results, order them by clip index and drop duplicate clips."""
    shards = [s for s in shards if s]
    if not shards:
        raise ProtocolError("no process evaluated any clip")
    merged = {k: torch.cat([s[k] for s in shards]) for k in shards[0]}
    index = merged["index"]
    order = torch.argsort(index, stable=True)
    keep = torch.ones_like(order, dtype=torch.bool)
    sorted_index = index[order]
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    rows = order[keep]
    return {k: v[rows] for k, v in merged.items()}


# --------------------------------------------------------------------------- real-feature cache


class _RealCache:
    """I3D features of a real set, keyed by (data spec, weight sha256, protocol)."""

    def __init__(self, path: Path | None, key: dict[str, Any], features: Tensor | None) -> None:
        self.path, self.key, self.features = path, key, features

    @classmethod
    def open(
        cls,
        proto: Protocol,
        i3d: nn.Module,
        known_row: Tensor,
        shape: tuple[int, ...],
        data_spec: Any,
        cache_dir: str | Path | None,
    ) -> _RealCache:
        frames = _fvd_frames(proto, known_row)
        key = {
            "version": CACHE_VERSION,
            "data": data_spec,
            "i3d": {k: v for k, v in i3d.weights_info.items() if k != "path"},
            "resize": proto.i3d_resize,
            "precision": proto.precision,
            "frames": frames,
            "clip_shape": list(shape),
            "num_clips": proto.num_real,
            "seed": proto.seed,
        }
        if data_spec is None:
            return cls(None, key, None)  # nothing names the data: do not cache
        root = Path(cache_dir or os.environ.get("VIDEOGEN_CACHE", "~/.cache/videogen"))
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        path = root.expanduser() / "real_features" / f"i3d-{digest[:24]}.safetensors"
        features = None
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                stored = json.loads((f.metadata() or {}).get("key", "null"))
                if stored == json.loads(json.dumps(key, sort_keys=True, default=str)):
                    features = f.get_tensor("features")
        return cls(path, key, features)

    def save(self, features: Tensor) -> None:
        if self.path is None:
            return
        from safetensors.torch import save_file

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        meta = {"key": json.dumps(self.key, sort_keys=True, default=str)}
        save_file({"features": features.contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, self.path)  # atomic: a reader never sees half a file


def _gen_list(known_row: Tensor) -> list[int]:
    return (~known_row).nonzero().flatten().tolist()


# --------------------------------------------------------------------------- summary and files


def _summarise(
    proto: Protocol,
    merged: dict[str, Tensor],
    nets: _Nets,
    known_row: Tensor,
    shape: tuple[int, ...],
    real: Tensor | None,
    cache: _RealCache | None,
    real_spec: Any,
    data_spec: Any,
    state: PartialState,
    run_name: str,
) -> dict[str, Any]:
    n = int(merged["index"].numel())
    if n != proto.num_clips:
        raise ProtocolError(
            f"evaluated {n} clips; the protocol asks for num_clips={proto.num_clips}"
        )
    t, c, h, w = shape
    gen = _gen_list(known_row)
    common = {"num_clips": n, "seed": proto.seed, "labels": proto.labels}
    result_proto = {
        "run": run_name,
        "data": data_spec,
        **{k: v for k, v in asdict(proto).items() if k not in ("known",)},
        "metrics": list(proto.metrics),
        "known_frames": known_row.nonzero().flatten().tolist(),
        "generated_frames": gen,
        "frames": t,
        "channels": c,
        "resolution": [h, w],
        "num_processes": state.num_processes,
    }
    out: dict[str, Any] = {}
    if nets.i3d is not None and real is not None:
        fake = merged["fake_feats"].flatten(0, 1)
        if real.shape[0] != proto.num_real:
            raise ProtocolError(
                f"the real set has {real.shape[0]} clips, num_real={proto.num_real}"
            )
        fvd_proto = {
            **common,
            "feature_net": "I3D Kinetics-400, 400 logits averaged over time",
            **{f"i3d_{k}": v for k, v in nets.i3d.weights_info.items()},
            "resize": proto.i3d_resize,
            "input_range": "[-1, 1], frames quantized to 8 bits",
            "frames_included": "all" if proto.fvd_include_known else "generated only",
            "frames_used": t if proto.fvd_include_known else len(gen),
            "real_clips": int(real.shape[0]),
            "generated_clips": int(fake.shape[0]),
            "samples_per_clip": proto.fvd_samples,
            "precision": proto.precision,
            "real_split": real_spec,
            "real_cache": str(cache.path) if cache is not None and cache.path else None,
        }
        if "fvd" in proto.metrics:
            fvd = frechet_distance_features(real, fake)
            out["fvd"] = {
                "value": fvd,
                "protocol": {**fvd_proto, "covariance": "unbiased (N - 1)"},
            }
        if "kvd" in proto.metrics:
            kvd = kernel_distance(real, fake)
            out["kvd"] = {
                "value": kvd,
                "protocol": {
                    **fvd_proto,
                    "kernel": "polynomial, degree 3, gamma 1/400, coef0 1; unbiased MMD^2",
                },
            }
    if nets.c3d is not None:
        mean, std = inception_score(merged["probs"], proto.is_splits, proto.is_shuffle_seed)
        out["is"] = {
            "value": mean,
            "std": std,
            "protocol": {
                **common,
                "classifier": "C3D UCF-101",
                **{f"c3d_{k}": v for k, v in nets.c3d.weights_info.items()},
                "frames": f"first {C3D_FRAMES}",
                "splits": proto.is_splits,
                "shuffle_seed": proto.is_shuffle_seed,
                "generated_clips": n,
            },
        }
    for m in (m for m in proto.metrics if m in FRAME_METRICS):
        curves = merged[m]  # (N, T_gen) of the best sample per clip
        per_clip = curves.mean(dim=1)
        entry: dict[str, Any] = {
            "value": float(per_clip.mean()),
            "std": float(per_clip.std()) if n > 1 else 0.0,
            "per_frame": curves.mean(dim=0).tolist(),
            "frames": gen,
            "unit": "dB" if m == "psnr" else "",
            "protocol": {
                **common,
                "best_of": proto.best_of,
                "selection": "per test clip, the sample with the best mean over generated frames",
                "frames": "generated frames only, each frame scored then averaged",
                "input": "float frames in [0, 1], not quantized",
                **_frame_protocol(m, nets),
            },
        }
        out[m] = entry
    if "bpd" in proto.metrics:
        bpd = merged["bpd"]
        out["bpd"] = {
            "value": float(bpd.mean()),
            "std": float(bpd.std()) if n > 1 else 0.0,
            "protocol": {**common, "unit": "bits per dimension, method.log_likelihood"},
        }
    return {"protocol": result_proto, "metrics": out}


def _frame_protocol(metric: str, nets: _Nets) -> dict[str, Any]:
    if metric == "ssim":
        return {"window": "Gaussian 11 taps, sigma 1.5", "k1_k2": [0.01, 0.03], "data_range": 1}
    if metric == "psnr":
        return {"data_range": 1, "mse": "over channels and pixels of each frame"}
    assert nets.lpips is not None
    return {"net": "AlexNet, LPIPS v0.1", **nets.lpips.weights_info}


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def write_outputs(result: dict[str, Any], out_dir: str | Path, gif: bytes | None) -> None:
    """``metrics.json`` and ``report.html`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    safe = _json_safe(result)
    (out / "metrics.json").write_text(json.dumps(safe, indent=2, default=str) + "\n")
    (out / "report.html").write_text(render_report(safe, gif))


# --------------------------------------------------------------------------- command line


def evaluate_path(
    run: str | Path,
    *,
    data: str | None = None,
    root: str | None = None,
    frames: int | None = None,
    real_split: str | None = None,
    device: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``videogen eval``: load a run or export, build its test clips (``data``/``root``/
    ``frames`` override the run's data config) and run ``evaluate_run``."""
    import dataclasses

    from videogen.checkpoint import load_pretrained
    from videogen.data import build_dataset

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    method = load_pretrained(run, device=device)
    cfg = method.cfg.data
    changes = {k: v for k, v in (("name", data), ("root", root), ("frames", frames)) if v}
    if data and not root:
        changes["root"] = None
    cfg = dataclasses.replace(cfg, **changes)
    task_kwargs = dict(kwargs.pop("task_kwargs", None) or {})
    if kwargs.get("task", "predict") in ("predict", "past") and not task_kwargs:
        task_kwargs["known"] = method.context  # the method's own context by default
    seed = kwargs.get("seed", 0)
    clips = build_dataset(cfg, "test", seed=seed, length=kwargs.get("num_clips"))
    spec = {**dataclasses.asdict(cfg), "split": "test", "seed": seed}
    if real_split:
        num_real = kwargs.get("num_real") or kwargs.get("num_clips")
        kwargs["real_clips"] = build_dataset(cfg, real_split, seed=seed, length=num_real)
        kwargs["real_spec"] = {**spec, "split": real_split}
    return evaluate_run(
        method,
        clips,
        data_spec=spec,
        run_name=str(run),
        device=device,
        task_kwargs=task_kwargs,
        **kwargs,
    )


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The protocol flags of ``videogen eval`` (the CLI adds the run and ``--data``)."""
    p = parser.add_argument
    p("--task", default="predict", help="predict, past, infill, interpolate, upsample, ...")
    p("--known-frames", type=int, help="known frames of predict / past (task argument 'known')")
    p("--task-arg", action="append", default=[], metavar="KEY=INT", help="other task arguments")
    p("--known", help="explicit known frame indices, comma separated (overrides --task)")
    p("--metrics", default="fvd,ssim,psnr,lpips", help=f"comma separated: {','.join(METRICS)}")
    p("--best-of", type=int, default=1, help="samples per test clip (SRVP 100, MCVD 10)")
    p("--num-clips", type=int, default=2048, help="test clips (real and generated sets)")
    p("--real-split", help="FVD against clips of this split instead (the CLI builds real_clips)")
    p("--num-real", type=int, help="clips of --real-split (default: --num-clips)")
    p("--batch-size", type=int, default=16)
    p("--seed", type=int, default=0)
    p("--i3d", help="i3d_pretrained_400.pt or i3d_torchscript.pt")
    p("--i3d-resize", choices=RESIZE_MODES, default="resize")
    p("--i3d-bn-eps", type=float, default=1e-5)
    p("--fvd-exclude-known", action="store_true", help="FVD on generated frames only")
    p("--fvd-samples", type=int, default=1, help="samples per clip that enter FVD")
    p("--precision", choices=PRECISIONS, default="fp32", help="I3D precision on the GPU")
    p("--c3d", help="conv3d_deepnetA_ucf.npz or c3d_ucf101.pt (IS)")
    p("--c3d-mean", help="TGAN2's mean2.npz (with the npz C3D)")
    p("--is-splits", type=int, default=10)
    p("--is-shuffle-seed", type=int, help="StyleGAN-V shuffles with 42")
    p("--lpips-alexnet", help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth)")
    p("--lpips-lin", help="LPIPS v0.1 alex.pth")
    p("--steps", type=int)
    p("--sampler")
    p("--temperature", type=float)
    p("--guidance", type=float)
    p("--cache-dir", help="where real-set features are cached")
    p("--out", help="output folder for metrics.json and report.html")


def eval_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``evaluate_run`` from parsed ``add_eval_arguments`` flags."""
    task_kwargs: dict[str, Any] = {}
    for item in args.task_arg:
        key, _, value = item.partition("=")
        task_kwargs[key] = int(value)
    if args.known_frames is not None:
        task_kwargs["known"] = args.known_frames
    return {
        "task": args.task,
        "task_kwargs": task_kwargs,
        "known": [int(i) for i in args.known.split(",")] if args.known else None,
        "metrics": [m.strip() for m in args.metrics.split(",") if m.strip()],
        "best_of": args.best_of,
        "num_clips": args.num_clips,
        "num_real": args.num_real,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "i3d_path": args.i3d,
        "i3d_resize": args.i3d_resize,
        "i3d_bn_eps": args.i3d_bn_eps,
        "fvd_include_known": not args.fvd_exclude_known,
        "fvd_samples": args.fvd_samples,
        "precision": args.precision,
        "c3d_path": args.c3d,
        "c3d_mean_path": args.c3d_mean,
        "is_splits": args.is_splits,
        "is_shuffle_seed": args.is_shuffle_seed,
        "lpips_alexnet_path": args.lpips_alexnet,
        "lpips_lin_path": args.lpips_lin,
        "steps": args.steps,
        "sampler": args.sampler,
        "temperature": args.temperature,
        "guidance": args.guidance,
        "cache_dir": args.cache_dir,
        "out_dir": args.out,
    }
