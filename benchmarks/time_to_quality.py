"""Time to quality: train a config for M minutes, evaluate snapshots along the way, draw curves.

    # train (videogen's trainer: compile, data loading, EMA included) and evaluate
    python benchmarks/time_to_quality.py run configs/mcvd/smmnist_fast.yaml --minutes 12 \
        --points 1,2,4,8 --out ttq/mcvd-fast --measure predict:known=5 --frames 15 \
        train.compile=true
    # evaluate a run that trained elsewhere (train.snapshot_minutes=[...], train.max_minutes=M)
    python benchmarks/time_to_quality.py eval ttq/mcvd-fast --measure predict:known=5 --frames 15
    # one PNG and one table over several runs (paper recipe against fast recipe)
    python benchmarks/time_to_quality.py plot ttq/mcvd-paper ttq/mcvd-fast -o ttq/mcvd.png

Every snapshot (``<run>/snapshots/<M>min``, the EMA weights after M minutes of training) and the
final export are scored on the same fixed test clips (seeded) under one protocol (``--clips``,
``--best-of``, ``--sampler``, ``--steps``). Measures (``--measure``, repeatable):

- ``TASK[:key=value,...]`` (``predict:known=5``, ``infill:known=2``...): best-of-k SSIM and
  PSNR over the generated frames through ``videogen.evaluate.evaluate_run``, next to the
  copy-last-known and copy-nearest-known baselines;
- ``shapes[:known=1]``: stochastic-shapes prediction scored by ``shapes_motion`` (fraction of
  clips whose generated frames keep one direction, the speed, the colour and the size: ``all``
  over the clips with a shape in the reference frame, ``every clip`` over all of them);
- ``shapes-uncond``: unconditional stochastic-shapes clips, scored the same way with the first
  generated frame as the reference.

Writes ``<run>/ttq.json`` and ``<run>/ttq.md``; ``plot`` writes the PNG and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
from curves import Panel, draw_curves
from quality import parse_task, ssim_psnr

from videogen.baselines import CopyBaseline
from videogen.checkpoint import load_pretrained
from videogen.config import load_config
from videogen.data import build_dataset, to_model
from videogen.data.shapes import UNITS
from videogen.metrics.shapes_motion import shapes_motion
from videogen.tasks import predict, unconditional


def parse_measure(text: str) -> tuple[str, dict[str, int]]:
    try:
        return parse_task(text)
    except ValueError:
        raise SystemExit(f"--measure {text!r}: expected NAME or NAME:key=int,...") from None


def points(run: Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """(label, export folder, {"minutes", "step"}) of every snapshot and the final export,
    in training order."""
    out = []
    snaps = run / "snapshots"
    for d in snaps.iterdir() if snaps.is_dir() else []:
        info = json.loads((d / "snapshot.json").read_text())
        out.append((d.name, d, {"minutes": info["minutes"], "step": info["step"]}))
    out.sort(key=lambda p: p[2]["minutes"])
    log = run / "metrics.jsonl"
    if (run / "export").is_dir() and log.is_file():
        last = json.loads(log.read_text().splitlines()[-1])
        out.append(("final", run / "export", {"minutes": last["minutes"], "step": last["step"]}))
    if not out:
        raise SystemExit(f"{run} has no snapshots/ and no export/: train it first")
    return out


@torch.no_grad()
def shapes_score(method, data, args, kwargs: dict[str, int], uncond: bool) -> dict[str, float]:
    """The ``shapes_motion`` summary of the method's stochastic-shapes clips."""
    if data.name != "stochastic-shapes":
        raise SystemExit(f"the shapes measures need stochastic-shapes data, not {data.name!r}")
    clips = build_dataset(data, "test", seed=args.seed, length=args.clips)
    real = to_model(torch.stack([clips[i] for i in range(len(clips))]))
    n_known = 0 if uncond else kwargs.get("known", 1)
    known = (
        predict(data.frames, n_known, len(real))
        if n_known
        else unconditional(data.frames, len(real))
    )
    gen = torch.Generator(args.device).manual_seed(args.seed)
    fake = []
    for i in range(0, len(real), args.batch_size):
        video = real[i : i + args.batch_size].to(args.device)
        k = known[: len(video)].to(args.device)
        video = torch.where(k[:, :, None, None, None], video, -1.0)
        out = method.generate(
            video,
            k,
            steps=args.steps,
            sampler=args.sampler,
            temperature=args.temperature,
            generator=gen,
        )
        fake.append(out.float().cpu())
    fake = torch.cat(fake)
    # unconditional: the first generated frame is the reference the others must follow
    ref = predict(data.frames, max(n_known, 1), len(real))
    speed_px = float(data.options.get("speed", 1.0)) * data.size / UNITS
    return shapes_motion(fake, ref, speed_px=speed_px).summary()


def score(method, data, args, out_dir: Path, name: str) -> dict[str, dict[str, float]]:
    scores = {}
    for text in args.measure:
        measure, kwargs = parse_measure(text)
        if measure in ("shapes", "shapes-uncond"):
            if isinstance(method, CopyBaseline):
                continue
            s = shapes_score(method, data, args, kwargs, uncond=measure == "shapes-uncond")
            # "all" is over the checkable clips (a shape in the reference frame); a clip whose
            # reference frame shows no shape fails "every clip"
            every = s["all"] * s["checkable"] / s["clips"] if s["checkable"] else 0.0
            scores[text] = {
                "all": s["all"],
                "every clip": every,
                **{k: s[k] for k in ("motion", "colour", "area")},
            }
        else:
            best_of = 1 if isinstance(method, CopyBaseline) else args.best_of
            scores[text] = ssim_psnr(
                method, data, args, measure, kwargs, best_of, out_dir / text, name
            )
    return scores


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    run = Path(args.run)
    rows = []
    data = None
    for label, folder, info in points(run):
        method = load_pretrained(folder, device=args.device)
        method.eval()
        data = dataclasses.replace(method.cfg.data, frames=args.frames or method.cfg.data.frames)
        scores = score(method, data, args, run / "ttq" / label, f"{run.name} {label}")
        rows.append({"label": label, **info, "scores": scores})
        print(f"{run.name} {label}: {info['minutes']:.2f} min, step {info['step']}: {scores}")
        del method
    baselines = {
        who: score(CopyBaseline(nearest=nearest), data, args, run / "ttq" / who, who)
        for who, nearest in (("copy last known", False), ("copy nearest known", True))
    }
    report = {
        "run": str(run),
        "config": json.loads((run / "export" / "config.json").read_text())
        if (run / "export" / "config.json").is_file()
        else None,
        "protocol": {
            "clips": args.clips,
            "best_of": args.best_of,
            "sampler": args.sampler,
            "steps": args.steps,
            "temperature": args.temperature,
            "frames": data.frames,
            "seed": args.seed,
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        },
        "points": rows,
        "baselines": baselines,
    }
    (run / "ttq.json").write_text(json.dumps(report, indent=1))
    (run / "ttq.md").write_text(table([report]))
    print(table([report]))
    return report


def table(reports: list[dict[str, Any]]) -> str:
    """One markdown table: a row per run and point, a column per measure and value."""
    cols = [(m, k) for m, vals in reports[0]["points"][0]["scores"].items() for k in vals]
    head = "| run | point | minutes | step | " + " | ".join(f"{m} {k}" for m, k in cols) + " |"
    lines = [head, "|---|---|---|---|" + "---|" * len(cols)]
    for rep in reports:
        name = Path(rep["run"]).name
        for p in rep["points"]:
            vals = " | ".join(_fmt(p["scores"].get(m, {}).get(k)) for m, k in cols)
            lines.append(f"| {name} | {p['label']} | {p['minutes']:.1f} | {p['step']} | {vals} |")
        for who, scores in rep["baselines"].items():
            vals = " | ".join(_fmt(scores.get(m, {}).get(k)) for m, k in cols)
            lines.append(f"| {who} | | | | {vals} |")
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3f}"


def plot(args: argparse.Namespace) -> None:
    reports = []
    for run in args.runs:
        report = json.loads((Path(run) / "ttq.json").read_text())
        report["run"] = run  # named by the folder given here, wherever it was evaluated
        reports.append(report)
    first = reports[0]
    panels = []
    for measure, vals in first["points"][0]["scores"].items():
        for key in vals:
            series = {
                Path(r["run"]).name: [
                    (p["minutes"], p["scores"][measure][key])
                    for p in r["points"]
                    if measure in p["scores"] and not math.isnan(p["scores"][measure][key])
                ]
                for r in reports
            }
            refs = {
                who: s[measure][key]
                for who, s in first["baselines"].items()
                if measure in s and key in s[measure]
            }
            panels.append(Panel(f"{measure}: {key}", series, refs))
    draw_curves(args.o, panels)
    print(table(reports))
    print(f"wrote {args.o}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "eval"):
        s = sub.add_parser(name)
        if name == "run":
            s.add_argument("config")
            s.add_argument("--minutes", type=float, required=True, help="training time")
            s.add_argument("--points", default="", help="snapshot minutes, e.g. 1,2,4,8")
            s.add_argument("--out", required=True, help="run folder")
        else:
            s.add_argument("run")
        s.add_argument("--measure", action="append", required=True)
        if name == "run":
            s.epilog = "Further arguments key=value override the config (train.lr=1e-4)."
        s.add_argument("--frames", type=int, help="test clip length (default: the window)")
        s.add_argument("--clips", type=int, default=256)
        s.add_argument("--best-of", type=int, default=10)
        s.add_argument("--batch-size", type=int, default=64)
        s.add_argument("--sampler")
        s.add_argument("--steps", type=int)
        s.add_argument("--temperature", type=float)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    s = sub.add_parser("plot")
    s.add_argument("runs", nargs="+")
    s.add_argument("-o", required=True, help="PNG path")
    # dotted key=value config overrides may stand anywhere after `run CONFIG`
    args, rest = p.parse_known_args()
    args.overrides = [r for r in rest if "=" in r and not r.startswith("-")]
    if args.cmd != "run" and args.overrides or len(args.overrides) != len(rest):
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.cmd == "plot":
        plot(args)
        return
    if args.cmd == "run":
        from videogen.train import train

        snaps = [float(m) for m in args.points.split(",") if m]
        cfg = load_config(
            args.config,
            [
                *args.overrides,
                f"train.out={args.out}",
                f"train.max_minutes={args.minutes}",
                f"train.snapshot_minutes={json.dumps(snaps)}",
            ],
        )
        train(cfg, progress=sys.stderr.isatty())
        args.run = args.out
    evaluate(args)


if __name__ == "__main__":
    main()
