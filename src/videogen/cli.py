"""The ``videogen`` command. Each subcommand is a thin layer over a function of the package:

train   -> videogen.train.train            sample -> videogen.sampling.sample_task
info    -> videogen.summary.describe       demo   -> videogen.demo.run_demo
data    -> videogen.data.preview / info    eval   -> videogen.evaluate.evaluate_run
pvdm-cache -> videogen.pvdm_cache.write_pvdm_cache
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from videogen.config import ConfigError, load_config

# seconds a finished process of a multi-process launch may take to end (videogen.exit_guard)
EXIT_GRACE = 60.0
TASKS = ("predict", "past", "infill", "interpolate", "upsample", "unconditional")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> None:
    from videogen.train import train

    cfg = load_config(args.config, args.overrides)
    run = train(
        cfg, out=args.out, resume=not args.fresh, progress=not args.quiet, exit_grace=EXIT_GRACE
    )
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:  # once, also under torchrun / accelerate launch
        print(f"run folder: {run}")
        print(f"export: {run / 'export'}")
    if state.num_processes > 1:  # the process group is gone and the run written: nothing is left
        from videogen.exit_guard import end_now

        end_now()


def cmd_info(args: argparse.Namespace) -> None:
    from videogen.summary import describe

    info = describe(load_config(args.config, args.overrides))
    if args.json:
        print(json.dumps(info, indent=2))
        return
    cfg = info["config"]
    print(f"method      {cfg['method']}   ({cfg['paper'] or 'no paper table named'})")
    print(f"params      {info['params'] / 1e6:.2f} M")
    if info["trainable_params"] != info["params"]:
        print(f"trainable   {info['trainable_params'] / 1e6:.2f} M (the rest is frozen)")
    print(f"flops/clip  {info['flops_per_clip'] / 1e9:.2f} GFLOP (training forward, one clip)")
    d = cfg["data"]
    print(f"data        {d['name']}  {d['frames']}x{d['size']}x{d['size']}x{d['channels']}")


def cmd_sample(args: argparse.Namespace) -> None:
    from videogen.checkpoint import load_pretrained
    from videogen.data import to_uint8
    from videogen.grids import write_grid
    from videogen.io import write_video
    from videogen.sampling import sample_task

    method = load_pretrained(args.run, device=args.device)
    result = sample_task(
        method,
        args.task,
        source=args.input,
        frames=args.frames,
        known=args.known,
        every=args.every,
        clips=args.clips,
        samples=args.samples,
        steps=args.steps,
        sampler=args.sampler,
        guidance=args.guidance,
        temperature=args.temperature,
        label=args.label,
        seed=args.seed,
        progress=not args.quiet,
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".gif", ".png"):
        write_grid(out, result.grid_rows(), known=result.known[0].cpu())
    else:
        for i, video in enumerate(to_uint8(result.samples)):
            path = out if len(result.samples) == 1 else out.with_stem(f"{out.stem}-{i}")
            write_video(path, video)
    print(f"wrote {out}")


def cmd_demo(args: argparse.Namespace) -> None:
    from videogen.demo import run_demo

    out = run_demo(
        args.out,
        device=args.device,
        steps=args.steps,
        clips=args.clips,
        overrides=args.overrides,
        progress=not args.quiet,
    )
    print(f"demo folder: {out.resolve()}")


def cmd_eval(args: argparse.Namespace) -> None:
    from videogen.evaluate import eval_kwargs, evaluate_path

    kwargs = eval_kwargs(args)
    kwargs.setdefault("out_dir", str(Path(args.run) / "eval"))
    result = evaluate_path(
        args.run,
        data=args.data,
        root=args.data_root,
        frames=args.frames,
        device=args.device,
        **kwargs,
    )
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:  # once, also sharded under torchrun / accelerate launch
        print(json.dumps(result.get("metrics", result), indent=2, default=str))
        print(f"wrote {kwargs['out_dir']}/metrics.json and report.html")
    if state.num_processes > 1:  # the shards are gathered and written: only teardown is left
        from videogen.exit_guard import end_within

        end_within(EXIT_GRACE, f"rank {state.process_index} of a finished evaluation")


def cmd_data_preview(args: argparse.Namespace) -> None:
    from videogen.data import preview

    out = preview(
        args.source,
        args.output,
        frames=args.frames,
        count=args.count,
        options=_array_options(args),
    )
    print(f"wrote {out}")


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from videogen.data import prepare

    report = prepare(
        args.source, args.target, size=args.size, channels=args.channels, progress=not args.quiet
    )
    print(
        f"prepared {report['prepared']} videos into {args.target} "
        f"({report['existing']} already there, {len(report['unreadable'])} unreadable)"
    )
    for path in report["unreadable"]:
        print(f"  unreadable: {path}")


def cmd_data_info(args: argparse.Namespace) -> None:
    from videogen.data import info

    result = info(args.path, options=_array_options(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    reasons = result.pop("reasons")
    for key, value in result.items():
        print(f"{key:12s}{value}")
    for reason in reasons.values():  # each names its file
        print(f"  unreadable: {reason}")


def _array_options(args: argparse.Namespace) -> dict[str, str]:
    """``--layout`` / ``--key`` as the array options of ``videogen.data.arrays``."""
    return {k: v for k, v in (("layout", args.layout), ("key", args.key)) if v is not None}


def cmd_pvdm_cache(args: argparse.Namespace) -> None:
    from videogen.pvdm_cache import write_pvdm_cache

    out = write_pvdm_cache(
        args.autoencoder,
        args.data,
        args.out,
        root=args.data_root,
        items=args.items,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    print(f"wrote {out}: train PVDM stage 2 with model.cache={out}")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="videogen", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a config (resumes a run folder's last checkpoint)")
    t.add_argument("config", help="YAML config, e.g. configs/mcvd/smmnist.yaml")
    t.add_argument("overrides", nargs="*", help="dotted overrides: train.lr=1e-4 data.root=...")
    t.add_argument("--out", help="run folder (default: train.out of the config)")
    t.add_argument("--fresh", action="store_true", help="ignore checkpoints already in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    i = sub.add_parser("info", help="parameters and FLOPs of a config, without training")
    i.add_argument("config")
    i.add_argument("overrides", nargs="*")
    i.add_argument("--json", action="store_true", help="one JSON object")
    i.set_defaults(func=cmd_info)

    s = sub.add_parser("sample", help="run a trained model on a task")
    s.add_argument("run", help="run folder or export folder")
    s.add_argument("--task", choices=TASKS, default="predict")
    s.add_argument("--input", help="video file or dataset (default: the run's test set)")
    s.add_argument("--frames", type=int, help="frames in the output (default: model window)")
    s.add_argument("--known", type=int, help="predict/past: known frames; infill: at each end")
    s.add_argument("--every", type=int, help="interpolate/upsample: every n-th frame known")
    s.add_argument("--clips", type=int, default=1, help="input clips")
    s.add_argument("--samples", type=int, default=1, help="samples per input clip")
    s.add_argument("--steps", type=int, help="sampler steps (default: config)")
    s.add_argument("--sampler", help="ddpm, ddim, dpm++, dpm++sde, unipc, euler, ...")
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    s.add_argument("--temperature", type=float, help="flows: prior temperature")
    s.add_argument("--label", type=int, help="class index, for class-conditional models")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=default_device())
    s.add_argument("-o", "--output", required=True, help="out.gif / out.png (grid) or out.mp4")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_sample)

    d = sub.add_parser("demo", help="train a small MCVD on moving digits and show what it does")
    d.add_argument("--out", default="videogen-demo", help="folder for GIFs and metrics.json")
    d.add_argument(
        "--steps",
        type=int,
        help="training steps (default 1,500 on a CPU: 6 to 11 min of 2 cores; GPU 6,000)",
    )
    d.add_argument("--clips", type=int, default=16, help="test clips scored (default 16)")
    d.add_argument(
        "overrides", nargs="*", help="dotted overrides of the demo's config: diffusion.prediction=v"
    )
    d.add_argument("--device", default=default_device())
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    e = sub.add_parser("eval", help="FVD, KVD, IS, SSIM, PSNR, LPIPS, bits/dim of a trained run")
    e.add_argument("run", help="run folder or export folder")
    e.add_argument("--data", help="dataset name or path (default: the run's)")
    e.add_argument("--data-root", help="dataset root for a benchmark name")
    e.add_argument("--frames", type=int, help="frames per test clip (default: the run's)")
    e.add_argument("--device", default=default_device())
    from videogen.evaluate import add_eval_arguments

    add_eval_arguments(e)
    e.set_defaults(func=cmd_eval)

    pc = sub.add_parser(
        "pvdm-cache", help="encode training clips once with a PVDM autoencoder (for stage 2)"
    )
    pc.add_argument("autoencoder", help="stage-1 PVDM export or run folder")
    pc.add_argument("data", help="dataset name or path of the training clips")
    pc.add_argument("out", help="cache folder to write (model.cache of stage 2)")
    pc.add_argument("--data-root", help="dataset root for a benchmark name")
    pc.add_argument("--items", type=int, default=10_000, help="training items (two clips each)")
    pc.add_argument("--batch-size", type=int, default=16)
    pc.add_argument("--seed", type=int, default=0)
    pc.add_argument("--device", default=default_device())
    pc.add_argument("--quiet", action="store_true")
    pc.set_defaults(func=cmd_pvdm_cache)

    data = sub.add_parser("data", help="look at datasets and video files")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    dp = dsub.add_parser("preview", help="write a GIF of clips from a dataset or a file")
    dp.add_argument("source", help="built-in name (moving-digits, ...), folder or file")
    dp.add_argument("-o", "--output", required=True)
    dp.add_argument("--frames", type=int, default=16)
    dp.add_argument("--count", type=int, default=4)
    _add_array_arguments(dp)
    dp.set_defaults(func=cmd_data_preview)
    dr = dsub.add_parser("prepare", help="decode a video folder once at the training size")
    dr.add_argument("source", help="folder of video files (searched recursively)")
    dr.add_argument("target", help="output folder: one .npy per video, lists copied")
    dr.add_argument("--size", type=int, default=64)
    dr.add_argument("--channels", type=int, default=3, choices=(1, 3))
    dr.add_argument("--quiet", action="store_true")
    dr.set_defaults(func=cmd_data_prepare)
    di = dsub.add_parser("info", help="frames, size, fps and unreadable files of videos")
    di.add_argument("path")
    di.add_argument("--json", action="store_true")
    _add_array_arguments(di)
    di.set_defaults(func=cmd_data_info)
    return p


def _add_array_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layout", help="axes of an array file (.npy/.npz/.h5), e.g. NTHW, TNHW, NTHWC, THWC"
    )
    p.add_argument("--key", help="the videos' array in an .npz / .h5 file (default: 'videos')")


def _version() -> str:
    from videogen import __version__

    return f"videogen {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from videogen.data import DatasetError
    from videogen.train import TrainingError

    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TrainingError as err:
        print(f"videogen: training stopped: {err}", file=sys.stderr)
        return 1
    except (ConfigError, DatasetError, FileNotFoundError, ValueError) as err:
        print(f"videogen: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
