"""Do a run's predicted stochastic-shapes frames move like the data: motion, colour, size?

    python benchmarks/shapes_motion.py RUN --clips 256 --known 1 --frames 5 --temperature 0.6

RUN is a run folder or an export of a model trained on ``stochastic-shapes`` (e.g. with
configs/videoflow/stochastic_shapes.yaml). Its test clips (``--clips`` of ``--frames`` frames,
the run's size and options) are predicted from the first ``--known`` frames with the method's
``generate`` (``--temperature`` matters to flows only; diffusion methods ignore it),
and ``videogen.metrics.shapes_motion`` checks the generated frames: each step one unit along
one of the 8 directions, the direction the known frames show (with 1 known frame: the same
one throughout), the known frame's palette colour, its area within 25%, and the shape present
until it can have left the canvas (frames after it has left are excluded, not failed). Prints
one markdown table: the fraction of clips passing each check, for the model and for the real
clips (the reference: they pass everything at 32 and 64 px). ``--json`` also writes the
summaries.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from videogen.checkpoint import load_pretrained
from videogen.data import build_dataset, to_model
from videogen.data.shapes import UNITS
from videogen.metrics.shapes_motion import CHECKS, shapes_motion
from videogen.tasks import predict

COLUMNS = (*CHECKS, "all", "steps", "excluded_frames")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", help="run folder or export folder (videogen.checkpoint.load_pretrained)")
    p.add_argument("--clips", type=int, default=256, help="test clips (default 256)")
    p.add_argument("--known", type=int, default=1, help="known frames at the start (default 1)")
    p.add_argument("--frames", type=int, default=5, help="clip length (default 5, as t2t's)")
    p.add_argument("--temperature", type=float, default=0.6, help="flows' prior temperature")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="test-set seed and sampling seed")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path, help="also write the summaries here")
    return p.parse_args()


@torch.no_grad()
def predict_clips(method, real: torch.Tensor, known: torch.Tensor, args) -> torch.Tensor:
    """The method's frames for every clip of ``real`` ``(N, T, C, H, W)`` (CPU, [-1, 1])."""
    # every method's generate takes both (VideoMethod's interface); only flows use temperature
    kwargs = {
        "temperature": args.temperature,
        "generator": torch.Generator(args.device).manual_seed(args.seed),
    }
    out = []
    for i in range(0, len(real), args.batch_size):
        video = real[i : i + args.batch_size].to(args.device)
        k = known[: len(video)].to(args.device)
        # black out the frames to predict: nothing of them can reach a method's output
        video = torch.where(k[:, :, None, None, None], video, -1.0)
        out.append(method.generate(video, k, **kwargs).float().cpu())
    return torch.cat(out)


def main() -> None:
    args = parse_args()
    method = load_pretrained(args.run, device=args.device)
    cfg = method.cfg.data
    if cfg.name != "stochastic-shapes":
        raise SystemExit(f"{args.run} was trained on {cfg.name!r}, not stochastic-shapes")
    data = dataclasses.replace(cfg, frames=args.frames)
    clips = build_dataset(data, "test", seed=args.seed, length=args.clips)
    real = to_model(torch.stack([clips[i] for i in range(len(clips))]))
    known = predict(args.frames, args.known, len(real))
    reason = method.supported_known(known[:1].to(args.device))
    if reason is not None:
        raise SystemExit(
            f"{method.name} cannot predict {args.frames} frames from {args.known}: {reason}"
        )
    # the generator's step: `speed` units (default 1) per frame, 10 units across the canvas
    speed_px = float(data.options.get("speed", 1.0)) * data.size / UNITS

    start = time.perf_counter()
    fake = predict_clips(method, real, known, args)
    seconds = time.perf_counter() - start
    label = f"{method.name} (temperature {args.temperature})"
    rows = {
        label: shapes_motion(fake, known, speed_px=speed_px).summary(),
        "real clips": shapes_motion(real, known, speed_px=speed_px).summary(),
    }

    print(
        f"run {args.run}: {args.clips} test clips of {args.frames} frames at {data.size} px, "
        f"{args.known} known; generated in {seconds:.1f} s on {args.device}"
    )
    print(
        "fraction of checkable clips passing each check; steps: of single steps; "
        "excluded: generated frames after the shape left the canvas"
    )
    print("| who | checkable | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for who, s in rows.items():
        # n/a: no clip had anything for that check (e.g. no step with the shape inside)
        values = " | ".join("n/a" if math.isnan(s[c]) else f"{s[c]:.3f}" for c in COLUMNS)
        print(f"| {who} | {int(s['checkable'])}/{int(s['clips'])} | {values} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "summary": rows}, indent=1
            )
        )


if __name__ == "__main__":
    main()
