"""Generation for evaluation: every test batch is sampled ``best_of`` times with seeds fixed
per (seed, clip, sample), checked, and scored as it comes (I3D features, C3D probabilities, the
per-frame scores of the best sample per clip), so nothing but the scores is kept.

Sharding: with several processes each evaluates its own batches into a shard of per-clip rows;
``merge_shards`` orders the gathered rows by clip index and drops duplicates.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from videogen.evaluate.clips import RANGE_TOLERANCE
from videogen.evaluate.protocol import FRAME_METRICS, Protocol, ProtocolError
from videogen.methods.base import VideoMethod
from videogen.metrics import grey_uint8, psnr, ssim
from videogen.metrics.c3d import C3D_FRAMES
from videogen.metrics.i3d import i3d_features
from videogen.rollout import rollout

TEST_LABELS = "test clips' classes"
NULL_LABEL = "null label: the test clips carry no class labels"


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
    """Per-frame scores ``(B, T)`` of generated frames against the truth (for psnr_mcvd, the
    frames' MSE)."""
    out: dict[str, Tensor] = {}
    fake01, real01 = (fake + 1) / 2, (real + 1) / 2
    if "ssim" in names:
        out["ssim"] = ssim(fake01, real01)
    if "psnr" in names:
        out["psnr"] = psnr(fake01, real01)
    if "ssim_mcvd" in names:
        out["ssim_mcvd"] = ssim(grey_uint8(fake01) / 255.0, grey_uint8(real01) / 255.0)
    if "psnr_mcvd" in names:  # each frame's MSE; the report takes the clip's mean
        out["psnr_mcvd"] = (fake01.float() - real01.float()).square().mean(dim=(-3, -2, -1))
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
class Shown:
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
class Nets:
    i3d: nn.Module | None = None
    c3d: nn.Module | None = None
    lpips: nn.Module | None = None


def labels_protocol(method: Any, labelled: bool) -> str | None:
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


def evaluate_batch(
    method: Any,
    video: Tensor,
    labels: Tensor | None,
    b_idx: int,
    proto: Protocol,
    nets: Nets,
    known_row: Tensor,
    real_in_loop: bool,
    shard: dict[str, list[Tensor]],
    shown: Shown | None,
) -> None:
    b, t = video.shape[:2]
    first_clip = b_idx * proto.batch_size
    extra = {} if labels is None else {"labels": labels.to(video.device)}  # each clip's class
    known = known_row.to(video.device).expand(b, t).clone()
    gen_frames = (~known_row).nonzero().flatten().to(video.device)
    fvd_frames = torch.arange(t, device=video.device) if proto.fvd_include_known else gen_frames
    frame_metrics = [m for m in proto.metrics if m in FRAME_METRICS]
    best = {m: BestOf(FRAME_METRICS[m]) for m in frame_metrics}
    fake_feats, probs = [], []
    is_runs = proto.inception.runs
    checker = RangeCheck()
    with torch.no_grad():
        if nets.i3d is not None and real_in_loop:
            real = i3d_features(nets.i3d, video[:, fvd_frames], proto.i3d_resize, proto.precision)
            shard.setdefault("real_feats", []).append(real.cpu())
        if shown is not None:
            shown.truth(video)
        for s in range(proto.draws):
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
            if nets.c3d is not None and s < is_runs:
                clip16 = rearrange(out[:, :C3D_FRAMES], "b t c h w -> b c t h w")
                probs.append(nets.c3d(clip16.expand(-1, 3, -1, -1, -1).float()))
            if frame_metrics and s < proto.best_of:
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
    if probs:
        shard.setdefault("probs", []).append(torch.stack(probs, 1).float().cpu())
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
