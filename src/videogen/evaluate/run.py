"""``evaluate_run``: one protocol over a method and its test clips, sharded over processes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from torch import Tensor, nn

from videogen.evaluate.cache import RealCache, fvd_frames
from videogen.evaluate.clips import iter_batches, iter_labelled_batches, shape_text, to_float
from videogen.evaluate.generation import (
    TEST_LABELS,
    Nets,
    Shown,
    evaluate_batch,
    labels_protocol,
    merge_shards,
)
from videogen.evaluate.protocol import FRAME_METRICS, Protocol, ProtocolError, split_settings
from videogen.evaluate.reconstruction import TASK as RECONSTRUCT
from videogen.evaluate.reconstruction import Reconstruction
from videogen.evaluate.report import summarise, write_outputs
from videogen.methods.base import VideoMethod
from videogen.metrics import load_c3d, load_i3d, load_lpips
from videogen.metrics.c3d import C3D_FRAMES
from videogen.metrics.i3d import I3D_MIN_FRAMES, InceptionI3d, i3d_features
from videogen.metrics.report import gif_grid
from videogen.tasks import make_known


def evaluate_run(
    method: Any,
    clips: Iterable[Any],
    *,
    data_spec: Any = None,
    real_clips: Iterable[Any] | None = None,
    real_spec: Any = None,
    run_name: str = "",
    device: torch.device | str | None = None,
    gif_videos: int = 6,
    gif_samples: int = 3,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate ``method`` on ``clips`` under one protocol; returns the ``metrics.json`` dict.

    ``settings`` are the fields of ``Protocol`` (task, metrics, best_of, num_clips, FVD and IS
    options, sampling options...) and of ``Resources`` (weight files, ``cache_dir``,
    ``out_dir``), by name; their help texts are those of ``videogen eval --help``.

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
    proto, res = split_settings(settings)
    num_clips, num_real = proto.num_clips, proto.num_real
    if real_clips is None and num_real not in (None, num_clips):
        raise ProtocolError(
            f"num_real={num_real} needs a separate real set (real_clips); without one the real "
            f"set is the num_clips={num_clips} test clips"
        )
    proto.num_real = proto.real_count
    # without CUDA, processes started by accelerate/torchrun shard over gloo on the CPU
    state = PartialState(cpu=not torch.cuda.is_available())
    dev = torch.device(device) if device is not None else state.device
    if isinstance(method, nn.Module):
        method.to(dev).eval()
    if proto.task == RECONSTRUCT and proto.known is None:
        method = Reconstruction(method)  # every frame is "generated": its reconstruction
    if "bpd" in proto.metrics and not callable(getattr(method, "log_likelihood", None)):
        raise ProtocolError(
            f"metric bpd needs a likelihood model; {type(method).__name__} has no log_likelihood"
        )
    wants_feats = any(m in proto.metrics for m in ("fvd", "kvd"))
    # load every network first: a missing weight file fails before any sampling
    trust = res.trust_torchscript
    nets = Nets(
        i3d=(
            load_i3d(res.i3d_path, bn_eps=proto.i3d_bn_eps, device=dev, trust_torchscript=trust)
            if wants_feats
            else None
        ),
        c3d=(
            load_c3d(res.c3d_path, res.c3d_mean_path, device=dev, trust_torchscript=trust)
            if "is" in proto.metrics
            else None
        ),
        lpips=(
            load_lpips(res.lpips_alexnet_path, res.lpips_lin_path, device=dev)
            if "lpips" in proto.metrics
            else None
        ),
    )
    if proto.i3d_resize == "torchscript" and isinstance(nets.i3d, InceptionI3d):
        raise ProtocolError(
            "i3d_resize='torchscript' hands uint8 video to StyleGAN-V's i3d_torchscript.pt, "
            f"which resizes it itself; {res.i3d_path} is a state dict: choose another mode"
        )
    n_batches = math.ceil(num_clips / proto.batch_size)
    with state.split_between_processes(list(range(n_batches))) as mine:
        my_batches = set(mine)

    shard: dict[str, list[Tensor]] = {}
    shown = Shown(gif_videos, gif_samples)
    known_row: Tensor | None = None
    shape: tuple[int, ...] | None = None
    cache: RealCache | None = None
    real_spec = real_spec if real_clips is not None else data_spec
    for b_idx, (video, labels) in enumerate(
        iter_labelled_batches(clips, proto.batch_size, num_clips)
    ):
        if known_row is None:
            shape = tuple(video.shape[1:])
            known_row = _known_row(proto, video.shape[1])
            _check_task(proto, known_row, shape)
            _check_method(method, known_row, len(video))
            proto.labels = labels_protocol(method, labelled=labels is not None)
            if nets.i3d is not None and real_clips is None:
                cache = RealCache.open(proto, nets.i3d, known_row, shape, real_spec, res.cache_dir)
        if b_idx not in my_batches:
            continue
        keep = shown if state.is_main_process else None
        in_loop = cache is not None and cache.features is None  # real features on the way
        batch = to_float(video.to(dev, non_blocking=True))
        labels = labels if proto.labels == TEST_LABELS else None  # only for class-conditional
        evaluate_batch(method, batch, labels, b_idx, proto, nets, known_row, in_loop, shard, keep)

    assert known_row is not None and shape is not None
    merged = merge_shards(gather_object([{k: torch.cat(v) for k, v in shard.items()}]))
    real = None
    if nets.i3d is not None:
        if cache is None:  # a separate real set: its own pass, or its cache
            cache = RealCache.open(proto, nets.i3d, known_row, shape, real_spec, res.cache_dir)
        real = cache.features
        if real is None:
            if real_clips is None:
                real = merged["real_feats"]
            else:
                real = _real_features(real_clips, proto, nets.i3d, known_row, shape, state, dev)
            if state.is_main_process:
                cache.save(real)
    result = summarise(
        proto, merged, nets, known_row, shape, real, cache, real_spec, data_spec, state, run_name
    )
    if res.out_dir is not None and state.is_main_process:
        write_outputs(result, res.out_dir, gif_grid(shown.rows, known_row) if shown.rows else None)
    return result


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
    frames = fvd_frames(proto, known_row)
    n_batches = math.ceil(proto.real_count / proto.batch_size)
    with state.split_between_processes(list(range(n_batches))) as mine:
        my_batches = set(mine)
    shard: dict[str, list[Tensor]] = {"index": [], "real_feats": []}
    for b_idx, video in enumerate(iter_batches(real_clips, proto.batch_size, proto.real_count)):
        if tuple(video.shape[1:]) != shape:
            raise ProtocolError(
                f"real clips are {shape_text(video.shape[1:])} but the generated clips are "
                f"{shape_text(shape)}; FVD compares sets of one frame count and resolution "
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


def _known_row(proto: Protocol, frames: int) -> Tensor:
    if proto.known is not None:
        return make_known("indices", frames, 1, indices=proto.known)[0]
    if proto.task == RECONSTRUCT:
        return make_known("unconditional", frames, 1)[0]
    return make_known(proto.task, frames, 1, **proto.task_kwargs)[0]


def _check_task(proto: Protocol, known_row: Tensor, shape: tuple[int, ...]) -> None:
    frames = shape[0]
    n_known = int(known_row.sum())
    frame_metrics = [m for m in proto.metrics if m in FRAME_METRICS]
    if frame_metrics and n_known == 0 and proto.task != RECONSTRUCT:
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
    splits = proto.inception.splits
    if "is" in proto.metrics and proto.num_clips < splits:
        raise ProtocolError(
            f"IS with {splits} splits needs at least that many clips (num_clips={proto.num_clips})"
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
