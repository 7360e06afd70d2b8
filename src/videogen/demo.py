"""``videogen demo``: train a small MCVD on built-in moving digits, then predict, infill and
generate, and compare with the copy-last-known-frame baseline.

On a CPU the model is small and trains for a few minutes; on a GPU it is larger and trains
longer. Everything lands in one folder: the run (checkpoints, logs, export), GIF grids per task
and ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from videogen import tasks
from videogen.baselines import copy_last_known
from videogen.config import (
    Config,
    DataConfig,
    DiffusionConfig,
    SampleConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    to_dict,
)

PAST, CURRENT, FUTURE = 4, 4, 2


def demo_config(
    device: str, steps: int | None, out: Path, overrides: list[str] | None = None
) -> Config:
    """A small MCVD with past and future masking (so one model predicts, infills and
    generates) on 2-digit stochastic moving digits; 32x32 on a CPU, 64x64 on a GPU.
    ``overrides`` are dotted ``key=value`` pairs applied last, as for ``videogen train``
    (``diffusion.prediction=v`` tries another recipe on the same data and test clips)."""
    cfg = _base_config(device, steps, out)
    if not overrides:
        return cfg
    return from_dict(Config, apply_overrides(to_dict(cfg), overrides))


def _base_config(device: str, steps: int | None, out: Path) -> Config:
    gpu = device.startswith("cuda")
    return Config(
        method="mcvd",
        paper="demo: a reduced MCVD (Voleti et al. 2022) on SMMNIST, not a paper table",
        model={
            "ngf": 64 if gpu else 32,
            "ch_mult": [1, 2, 2] if gpu else [1, 2],
            "num_res_blocks": 2 if gpu else 1,
            "attn_resolutions": [16] if gpu else [],
            "past": PAST,
            "current": CURRENT,
            "future": FUTURE,
            "p_mask_past": 0.3,
            "p_mask_future": 0.5,
            "cond": "concat",
        },
        data=DataConfig(
            name="moving-digits", frames=PAST + CURRENT + FUTURE, size=64 if gpu else 32, channels=1
        ),
        # x0 prediction: on a CPU budget of a few hundred steps it gives usable samples where
        # eps prediction (the paper's) still gives noise; the configs/ keep eps. Logit-normal
        # timesteps beat uniform ones on all four best-of-10 figures for two training seeds
        # (BENCHMARKS.md, session 18)
        diffusion=DiffusionConfig(prediction="x0", timestep_sampling="logit_normal"),
        # on a CPU, 1,500 steps at 2e-3 decayed along a cosine put both tasks above copying the
        # last known frame on SSIM and PSNR (500 or 1,000 steps at a constant 1e-3 leave
        # prediction below; BENCHMARKS.md, "The CPU demo")
        train=TrainConfig(
            steps=steps or (6000 if gpu else 1500),
            batch_size=64 if gpu else 16,
            lr=4e-4 if gpu else 2e-3,
            warmup=100,
            lr_schedule="constant" if gpu else "cosine",
            grad_clip=1.0,
            ema_decay=0.995,
            log_every=50,
            sample_every=0,
            ckpt_every=500,
            seed=0,
            out=str(out / "run"),
        ),
        # deterministic DDIM: on two trained demo models (seeds 0 and 1) and 64 test clips it
        # beat DPM-Solver++ at the same 25 steps on all twelve MSE / PSNR / SSIM figures
        # (BENCHMARKS.md, "The demo's sampler")
        sample=SampleConfig(sampler="ddim", steps=25),
    )


def frame_scores(pred: Tensor, target: Tensor, mask: Tensor) -> dict[str, float]:
    """MSE, PSNR and SSIM (in [0, 1] pixel units) over the frames where ``mask`` is True."""
    from videogen.metrics import psnr, ssim

    p = (pred[mask].float() + 1) / 2
    t = (target[mask].float() + 1) / 2
    return {
        "mse": float(((p - t) ** 2).mean()),
        "psnr": float(psnr(p.clamp(0, 1), t).mean()),
        "ssim": float(ssim(p.clamp(0, 1), t).mean()),
    }


def run_demo(
    out: str | Path = "videogen-demo",
    *,
    device: str = "cpu",
    steps: int | None = None,
    clips: int = 16,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """Train, sample three tasks, write GIF grids and ``metrics.json``; return the folder.
    ``overrides`` change the demo's config (``demo_config``)."""
    from videogen.checkpoint import load_pretrained
    from videogen.data import build_dataset, to_model
    from videogen.grids import write_grid
    from videogen.rollout import rollout
    from videogen.train import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(device, steps, out, overrides)
    start = time.perf_counter()
    run = train(cfg, progress=progress)
    train_s = time.perf_counter() - start
    method = load_pretrained(run, device=device)

    test = build_dataset(cfg.data, "test", seed=1, length=clips)
    video = to_model(torch.stack([c for c in test]).to(device))
    window = cfg.data.frames
    patterns = {
        "predict": tasks.predict(window, PAST, clips),
        "infill": tasks.infill(window, PAST, FUTURE, clips),
        "unconditional": tasks.unconditional(window, clips),
    }
    report: dict[str, Any] = {
        "train_steps": cfg.train.steps,
        "train_seconds": round(train_s, 1),
        "device": device,
        "clips": clips,
        "sampler": f"{cfg.sample.sampler} x {cfg.sample.steps}",
    }
    gen = torch.Generator(device=device).manual_seed(0)
    for name, known in patterns.items():
        known = known.to(device)
        sample = rollout(method, video, known, generator=gen)
        rows = [r for i in range(min(clips, 4)) for r in (video[i], sample[i])]
        write_grid(out / f"{name}.gif", rows, known=known[0].cpu())
        if name == "unconditional":
            continue
        baseline = copy_last_known(video, known)
        report[name] = {
            "known": known[0].int().tolist(),
            "model": frame_scores(sample, video, ~known),
            "copy_last_known": frame_scores(baseline, video, ~known),
        }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    if progress:
        summarize(report)
    return out


def summarize(report: dict[str, Any]) -> None:
    print(f"trained {report['train_steps']} steps in {report['train_seconds']} s")
    for task in ("predict", "infill"):
        r = report[task]
        for who in ("model", "copy_last_known"):
            s = r[who]
            print(
                f"{task:8s} {who:16s} mse {s['mse']:.4f}  psnr {s['psnr']:.2f}  "
                f"ssim {s['ssim']:.3f}"
            )
