"""The ``metrics.json`` dict of a run (every value with its protocol) and the files written."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelerate import PartialState
from torch import Tensor

from videogen.evaluate.cache import RealCache, gen_list
from videogen.evaluate.generation import Nets
from videogen.evaluate.protocol import FRAME_METRICS, Protocol, ProtocolError
from videogen.metrics import frechet_distance_features, inception_score, kernel_distance
from videogen.metrics.c3d import C3D_FRAMES
from videogen.metrics.report import render_report


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


def _frame_protocol(metric: str, nets: Nets) -> dict[str, Any]:
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
