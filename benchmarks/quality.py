"""Best-of-k SSIM/PSNR of a trained run on its test set, next to the copy baselines.

    python benchmarks/quality.py RUN --frames 15 --task predict:known=5 --best-of 10 \
        --clips 256 --sampler dpm++ --steps 25 --out DIR

Each ``--task NAME:key=value,...`` is scored through ``videogen.evaluate.evaluate_run`` (the
sample with the best mean over the generated frames is kept per test clip, per metric), and
so are the copy-last-known and copy-nearest-known baselines. Prints one table; writes each
evaluation's ``metrics.json`` / ``report.html`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from videogen.baselines import CopyBaseline
from videogen.checkpoint import load_pretrained
from videogen.data import build_dataset
from videogen.evaluate import evaluate_run


def parse_task(text: str) -> tuple[str, dict[str, int]]:
    name, _, args = text.partition(":")
    kwargs = {k: int(v) for k, v in (a.split("=") for a in args.split(",") if a)}
    return name, kwargs


def ssim_psnr(method, data, args, task: str, kwargs: dict[str, int], best_of: int, out_dir, name):
    """Best-of-``best_of`` SSIM and PSNR of ``method`` on ``args.clips`` seeded test clips of
    ``data`` (``evaluate_run``, bf16 autocast on CUDA); ``args`` holds ``clips``,
    ``batch_size``, ``seed``, ``sampler``, ``steps``, ``device`` and optionally ``temperature``."""
    clips = build_dataset(data, "test", seed=args.seed, length=args.clips)
    with torch.autocast("cuda", torch.bfloat16, enabled=args.device.startswith("cuda")):
        result = evaluate_run(
            method,
            clips,
            task=task,
            task_kwargs=kwargs,
            metrics=["ssim", "psnr"],
            best_of=best_of,
            num_clips=args.clips,
            batch_size=args.batch_size,
            seed=args.seed,
            sampler=args.sampler,
            steps=args.steps,
            temperature=getattr(args, "temperature", None),
            device=args.device,
            out_dir=out_dir,
            run_name=name,
        )
    m = result["metrics"]
    return {"ssim": m["ssim"]["value"], "psnr": m["psnr"]["value"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--task", action="append", required=True, help="NAME:key=value,...")
    p.add_argument("--frames", type=int, help="test clip length (default: the run's window)")
    p.add_argument("--best-of", type=int, default=10)
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sampler")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="quality")
    args = p.parse_args()

    method = load_pretrained(args.run, device=args.device)
    data = dataclasses.replace(method.cfg.data, frames=args.frames or method.cfg.data.frames)
    rows = []
    for text in args.task:
        task, kwargs = parse_task(text)
        for who, model, k in (
            (method.name, method, args.best_of),
            ("copy last known", CopyBaseline(nearest=False), 1),
            ("copy nearest known", CopyBaseline(nearest=True), 1),
        ):
            out_dir = Path(args.out) / task / who.replace(" ", "_")
            m = ssim_psnr(model, data, args, task, kwargs, k, out_dir, f"{args.run} ({who})")
            rows.append((text, who, k, m["ssim"], m["psnr"]))
    print(
        f"run {args.run}: {args.clips} test clips of {data.frames} frames, "
        f"sampler {args.sampler or method.cfg.sample.sampler} x "
        f"{args.steps or method.cfg.sample.steps}"
    )
    print("| task | who | best of | SSIM | PSNR (dB) |")
    print("|---|---|---|---|---|")
    for task, who, k, s, p_ in rows:
        print(f"| {task} | {who} | {k} | {s:.4f} | {p_:.2f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "quality.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
