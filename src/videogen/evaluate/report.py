"""The ``metrics.json`` dict of a run (every value with its protocol) and the files written."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from torch import Tensor

from videogen.evaluate.cache import RealCache, gen_list
from videogen.evaluate.generation import Nets
from videogen.evaluate.protocol import (
    FRAME_METRICS,
    IS_PRESETS,
    InceptionProtocol,
    Protocol,
    ProtocolError,
)
from videogen.metrics import frechet_distance_features, inception_score, kernel_distance
from videogen.metrics.c3d import C3D_FRAMES
from videogen.metrics.i3d import RESIZE_ORIGINS
from videogen.metrics.report import render_report

SELECTION = (
    "per test clip, the sample with the best mean over the generated frames, chosen for this "
    "metric alone: different metrics may keep different samples of the same clip"
)
PER_FRAME_MEAN = "generated frames only, each frame scored, then the mean over frames"


def summarise(
    proto: Protocol,
    merged: dict[str, Tensor],
    nets: Nets,
    known_row: Tensor,
    shape: tuple[int, ...],
    real: Tensor | None,
    cache: RealCache | None,
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
    gen = gen_list(known_row)
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
        "samples_drawn_per_clip": proto.draws,
        "best_of_selection": SELECTION,
    }
    out: dict[str, Any] = {}
    if nets.i3d is not None and real is not None:
        fake = merged["fake_feats"].flatten(0, 1)
        if real.shape[0] != proto.real_count:
            raise ProtocolError(
                f"the real set has {real.shape[0]} clips, num_real={proto.real_count}"
            )
        fvd_proto = {
            **common,
            "feature_net": "I3D Kinetics-400, 400 logits averaged over time",
            **{f"i3d_{k}": v for k, v in nets.i3d.weights_info.items()},
            "resize": proto.i3d_resize,
            "resize_origin": RESIZE_ORIGINS[proto.i3d_resize],
            "input_range": (
                "uint8, x * 127.5 + 128 truncated (StyleGAN-V)"
                if proto.i3d_resize == "torchscript"
                else "[-1, 1], frames rounded to 8 bits"
            ),
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
        ip = proto.inception
        mean, std, per_run = inception_score_runs(merged["probs"], ip)
        out["is"] = {
            "value": mean,
            "std": std,
            "per_run": per_run,
            "protocol": {
                **common,
                "classifier": "C3D UCF-101",
                **{f"c3d_{k}": v for k, v in nets.c3d.weights_info.items()},
                "frames": f"first {C3D_FRAMES}",
                "preset": proto.is_preset,
                "preset_overridden": ip != IS_PRESETS[proto.is_preset],
                "reproduces": ip.reproduces,
                "splits": ip.splits,
                "shuffle_seed": ip.shuffle_seed,
                "runs": ip.runs,
                "eps": ip.eps,
                "std_over": "runs" if ip.runs > 1 else "splits",
                "generated_clips_per_run": n,
            },
        }
    for m in (m for m in proto.metrics if m in FRAME_METRICS):
        curves = merged[m]  # (N, T_gen) of the best sample per clip
        if m == "psnr_mcvd":  # the clip's mean MSE, then its PSNR
            per_clip = 10 * torch.log10(1 / curves.double().mean(dim=1))
            per_frame = (10 * torch.log10(1 / curves.double())).mean(dim=0)
        else:
            per_clip, per_frame = curves.mean(dim=1), curves.mean(dim=0)
        out[m] = {
            "value": float(per_clip.mean()),
            "std": float(per_clip.std()) if n > 1 else 0.0,
            "per_frame": per_frame.tolist(),
            "frames": gen,
            "unit": "dB" if m.startswith("psnr") else "",
            "protocol": {
                **common,
                "best_of": proto.best_of,
                "selection": SELECTION,
                "input": "float frames in [0, 1], not quantized",
                **_frame_protocol(m, nets),
            },
        }
    if "bpd" in proto.metrics:
        bpd = merged["bpd"]
        out["bpd"] = {
            "value": float(bpd.mean()),
            "std": float(bpd.std()) if n > 1 else 0.0,
            "protocol": {**common, "unit": "bits per dimension, method.log_likelihood"},
        }
    return {"protocol": result_proto, "metrics": out}


def inception_score_runs(probs: Tensor, ip: InceptionProtocol) -> tuple[float, float, list[float]]:
    """IS of C3D probabilities ``(N, runs, K)`` (sample r of every clip is run r) under ``ip``:
    with one run, the mean and std over its splits; with several, the mean and std (numpy's,
    over N) of the runs' scores, as TGANv2 reports them. Also returns each run's score."""
    per_run = [
        inception_score(probs[:, r], ip.splits, ip.shuffle_seed, ip.eps) for r in range(ip.runs)
    ]
    if ip.runs == 1:
        mean, std = per_run[0]
        return mean, std, [mean]
    scores = np.array([m for m, _ in per_run])
    return float(scores.mean()), float(scores.std()), scores.tolist()


def _frame_protocol(metric: str, nets: Nets) -> dict[str, Any]:
    window = {"window": "Gaussian 11 taps, sigma 1.5", "k1_k2": [0.01, 0.03]}
    if metric == "ssim":
        return {**window, "data_range": 1, "frames": PER_FRAME_MEAN}
    if metric == "psnr":
        return {
            "data_range": 1,
            "mse": "over channels and pixels of each frame",
            "formula": "mean over generated frames of 10 log10(1 / MSE of the frame)",
            "frames": PER_FRAME_MEAN,
        }
    if metric == "ssim_mcvd":
        return {
            **window,
            "data_range": 255,
            "input": "MCVD's: 8-bit grey frames, x * 255 truncated (torchvision ToPILImage), "
            "then PIL convert('L') (ITU-R 601-2 luma)",
            "frames": PER_FRAME_MEAN,
            "origin": "MCVD (Voleti et al., NeurIPS 2022), runners/ncsn_runner.py",
        }
    if metric == "psnr_mcvd":
        return {
            "data_range": 1,
            "formula": "10 log10(1 / mean over generated frames of each frame's MSE)",
            "frames": "generated frames only, MSE averaged over the clip, then one PSNR",
            "per_frame": "mean over clips of 10 log10(1 / MSE) of each frame of the kept sample",
            "origin": "MCVD (Voleti et al., NeurIPS 2022), runners/ncsn_runner.py",
        }
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
