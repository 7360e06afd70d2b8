"""VideoFusion against an equal-size RaMViD 3D U-Net, and a short training demo.

Benchmark (default). The paper's efficiency claim: decomposing the noise lets a 2D base network
run once per clip instead of a 3D network over every frame. VideoFusion is built at the size of
``configs/videofusion/ucf101_64.yaml`` (base 2D U-Net + space-time residual U-Net, 192.5M
parameters); RaMViD's 3D U-Net (``videogen.models.unet3d``) gets the width and depth whose
parameter count is closest. Both train unconditionally on random 16x64x64 clips. Measured per
model: training clips/s (loss, backward, AdamW step), peak training memory, DDIM latency for
batch 1 and 8, peak sampling memory. One table.

    python benchmarks/videofusion.py --device cuda [--compile] [--batch 8]
    python benchmarks/videofusion.py --device cuda --config configs/videofusion/shapes_fast.yaml \
        --batch 32 [--channels-last]                             # the shapes runs' step rate
    python benchmarks/videofusion.py --device cpu --tiny          # a check, seconds

Demo (``--demo STEPS``): trains a small VideoFusion on the built-in moving-digits data through
the shared trainer (``videogen.train``: bf16, EMA, logs, export), prints its loss log, samples
clips and a long video with the paper's fixed base noise from the export, and reports how much
consecutive frames change and correlate in samples and data. GIF and PNG grids go to ``--out``.

    python benchmarks/videofusion.py --device cuda --demo 4000 --out runs/videofusion-demo
    python benchmarks/videofusion.py --device cuda --demo 100000 --minutes 5   # on time
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from videogen.config import Config, from_dict, load_config
from videogen.diffusion import VideoDiffusion
from videogen.methods import build_method
from videogen.methods.videofusion import VideoFusion
from videogen.train import set_memory_format

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "base": {
        "block_out_channels": [16, 32],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "norm_num_groups": 8,
        "attention_head_dim": 8,
    },
    "channels": 16,
    "channel_mult": [1, 2],
    "num_res_blocks": 1,
    "attention_resolutions": [8],
    "heads": 2,
}
DEMO_MODEL = {
    "base": {
        "block_out_channels": [64, 128, 128],
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 32,
    },
    "channels": 64,
    "channel_mult": [1, 2, 2],
    "num_res_blocks": 2,
    "attention_resolutions": [16, 8],
    "head_dim": 32,
    "dropout": 0.0,
}


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# --------------------------------------------------------------------------- the two models


def videofusion_config(args: argparse.Namespace) -> Config:
    if args.tiny:
        return from_dict(
            Config,
            {
                "method": "videofusion",
                "model": TINY_MODEL,
                "data": {"frames": args.frames, "size": args.size, "channels": 3},
            },
        )
    cfg = load_config(args.config)
    cfg.data.frames, cfg.data.size, cfg.data.channels = args.frames, args.size, 3
    return cfg


def ramvid_unet(target: int, args: argparse.Namespace) -> tuple[nn.Module, str] | str:
    """RaMViD's 3D U-Net with about ``target`` parameters, and its shape; or why not."""
    try:
        from videogen.models.unet3d import UNet3D
    except ImportError as err:
        return f"pending: videogen.models.unet3d is not available here ({err})"

    def build(channels: int, blocks: int) -> nn.Module:
        return UNet3D(
            in_channels=3,
            image_size=args.size,
            channels=channels,
            channel_mult=(1, 2) if args.tiny else (1, 2, 3, 4),
            num_res_blocks=blocks,
            attention_resolutions=(8,) if args.tiny else (16, 8),
        )

    # RaMViD's UCF-101 depth (configs/ramvid/ucf101.yaml); the width is set to match the size
    blocks = 1 if args.tiny else 3
    widths = range(8, 65, 4) if args.tiny else range(32, 257, 4)
    with torch.device("meta"):
        _, width = min((abs(params(build(w, blocks)) - target), w) for w in widths)
    return build(width, blocks), f"channels {width}, num_res_blocks {blocks}"


# --------------------------------------------------------------------------- measurements


def time_training(
    loss_fn: Callable[[Tensor], Tensor],
    model: nn.Module,
    video: Tensor,
    args: argparse.Namespace,
) -> tuple[float, float | None]:
    """Clips per second of loss + backward + AdamW step, and the peak memory (GiB)."""
    device = video.device
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    reset_peak(device)

    def step() -> None:
        with autocast(device, args.amp):
            loss = loss_fn(video)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    return args.iters * video.shape[0] / elapsed, peak_gib(device)


@torch.no_grad()
def time_sampling(
    sample_fn: Callable[[Tensor, int], Tensor], video: Tensor, args: argparse.Namespace
) -> float:
    """Seconds for one DDIM run of ``args.sample_steps`` steps on ``video``'s batch."""
    device = video.device
    with autocast(device, args.amp):
        sample_fn(video, 2)  # warm-up: kernels, autotuning, compilation
        sync(device)
        start = time.perf_counter()
        sample_fn(video, args.sample_steps)
        sync(device)
    return time.perf_counter() - start


def measure(
    name: str,
    model: nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    sample_fn: Callable[[Tensor, int], Tensor],
    args: argparse.Namespace,
    device: torch.device,
) -> dict:
    g = torch.Generator(device).manual_seed(0)
    shape = (args.batch, args.frames, 3, args.size, args.size)
    video = torch.rand(shape, generator=g, device=device) * 2 - 1
    clips_per_s, train_peak = time_training(loss_fn, model, video, args)
    model.eval()
    latency = {}
    reset_peak(device)
    for b in args.sample_batches:
        latency[b] = time_sampling(sample_fn, video[:1].expand(b, -1, -1, -1, -1), args)
    return {
        "model": name,
        "params": params(model),
        "clips_per_s": clips_per_s,
        "train_peak": train_peak,
        "latency": latency,
        "sample_peak": peak_gib(device),
    }


def benchmark(args: argparse.Namespace, device: torch.device) -> None:
    torch.manual_seed(0)
    method = build_method(videofusion_config(args)).to(device)
    assert isinstance(method, VideoFusion)
    if args.channels_last:  # the weights' layout that train.channels_last sets
        set_memory_format(method)
    if args.compile:
        method.net = torch.compile(method.net)
    nothing = torch.zeros(1, args.frames, dtype=torch.bool, device=device)

    def vf_loss(video: Tensor) -> Tensor:
        return method.loss(video)["loss"]

    def vf_sample(video: Tensor, steps: int) -> Tensor:
        known = nothing.expand(video.shape[0], -1)
        return method.generate(video, known, sampler="ddim", steps=steps)

    rows = [measure("VideoFusion (2D base + residual)", method, vf_loss, vf_sample, args, device)]
    shapes = {rows[0]["model"]: Path(args.config).name if not args.tiny else "tiny"}

    built = ramvid_unet(params(method), args)
    if isinstance(built, str):
        rows.append({"model": "RaMViD 3D U-Net", "pending": built})
    else:
        unet, shape = built
        unet = unet.to(device)
        if args.channels_last:
            set_memory_format(unet)
        net = torch.compile(unet) if args.compile else unet
        diffusion = VideoDiffusion(method.cfg.diffusion, known_in_input=True)
        diffusion.alphas_cumprod = diffusion.alphas_cumprod.to(device)

        def denoise(x_t: Tensor, t: Tensor, cond: Tensor, known: Tensor) -> Tensor:
            return net(x_t, t)

        def rv_loss(video: Tensor) -> Tensor:
            known = nothing.expand(video.shape[0], -1)
            return diffusion.loss(denoise, video, known)["loss"]

        def rv_sample(video: Tensor, steps: int) -> Tensor:
            known = nothing.expand(video.shape[0], -1)
            return diffusion.sample(denoise, video, known, sampler="ddim", steps=steps)

        rows.append(measure("RaMViD 3D U-Net", unet, rv_loss, rv_sample, args, device))
        shapes[rows[-1]["model"]] = shape
    print_table(rows, shapes, args, device)


def print_table(rows: list[dict], shapes: dict, args: argparse.Namespace, device) -> None:
    def gib(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"\n{args.frames}x{args.size}x{args.size} clips, training batch {args.batch}, "
        f"DDIM {args.sample_steps} steps, bf16 autocast {'on' if args.amp else 'off'}, "
        f"compile {'on' if args.compile else 'off'}, {name}\n"
    )
    lat = " | ".join(f"sample B={b} (s)" for b in args.sample_batches)
    print(f"| model | params | train clips/s | train peak GiB | {lat} | sample peak GiB | shape |")
    print("|" + "---|" * (6 + len(args.sample_batches)))
    for r in rows:
        if "pending" in r:
            print(f"| {r['model']} | {r['pending']} |")
            continue
        lat = " | ".join(f"{r['latency'][b]:.2f}" for b in args.sample_batches)
        print(
            f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['clips_per_s']:.2f} | "
            f"{gib(r['train_peak'])} | {lat} | {gib(r['sample_peak'])} | "
            f"{shapes.get(r['model'], '')} |"
        )


# --------------------------------------------------------------------------- training demo


def frame_stats(video: Tensor) -> tuple[float, float]:
    """Mean absolute change between consecutive frames, and their mean correlation (pixels
    clamped to [-1, 1] as they would be shown)."""
    video = video.float().clamp(-1, 1)
    a, b = video[:, :-1].flatten(2), video[:, 1:].flatten(2)
    change = (b - a).abs().mean().item()
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    corr = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)
    return change, corr.mean().item()


def demo(args: argparse.Namespace, device: torch.device) -> None:
    """Train through the shared trainer, then sample from the export (EMA weights)."""
    import json

    from videogen.checkpoint import load_pretrained
    from videogen.data import build_dataset, to_model
    from videogen.grids import write_grid
    from videogen.train import train

    frames, size = (8, 16) if args.tiny else (16, 32)
    out = Path(args.out)
    cfg = from_dict(
        Config,
        {
            "method": "videofusion",
            "paper": "demo: a short run on moving digits",
            "model": {
                **(TINY_MODEL if args.tiny else DEMO_MODEL),
                "key_lambda": None if args.key_lambda == "none" else float(args.key_lambda),
            },
            "data": {
                "name": "moving-digits",
                "frames": frames,
                "size": size,
                "channels": 1,
                "options": {"num_digits": 1, "digit_size": size // 2},
                "num_workers": 2,
            },
            "train": {
                "steps": args.demo,
                "batch_size": args.batch,
                "lr": args.lr,
                "optimizer": "adamw",
                "ema_decay": args.ema,
                "log_every": max(1, min(args.demo // 20, 100)),
                "sample_every": 0,
                "ckpt_every": args.demo,
                "max_minutes": args.minutes,
                "mixed_precision": "bf16" if args.amp else "no",
                "out": str(out / "run"),
            },
            "sample": {"sampler": "ddim", "steps": 50},
        },
    )
    start = time.perf_counter()
    run = train(cfg, resume=False, progress=False)
    train_s = time.perf_counter() - start
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        print(f"step {r['step']:6d}  loss {r['loss']:.4f}")

    method = load_pretrained(run / "export", device)
    g = torch.Generator(device).manual_seed(1)
    n = 8
    blank = torch.zeros(n, frames, 1, size, size, device=device)
    with autocast(device, args.amp):
        samples = method.generate(blank, method.default_known(n), generator=g)
        long = method.generate_long(4 * frames, batch=2, generator=g)
    test = build_dataset(cfg.data, "test", seed=0, length=n)
    data = to_model(torch.stack([test[i] for i in range(n)])).to(device)
    for name, video in (("samples", samples), ("long", long), ("data", data)):
        write_grid(out / f"{name}.gif", [video.float()])
        write_grid(out / f"{name}.png", [video.float()])
    stats = {name: frame_stats(v) for name, v in (("data", data), ("samples", samples))}
    stats[f"long video ({4 * frames} frames, fixed base noise)"] = frame_stats(long)
    print(
        f"\n{rows[-1]['step']} steps of batch {args.batch} in {train_s:.0f}s (trainer, "
        f"{'bf16' if args.amp else 'fp32'}); loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}"
        "\n| clips | mean abs change between consecutive frames | consecutive-frame correlation |"
        "\n|---|---|---|"
    )
    for name, (change, corr) in stats.items():
        print(f"| {name} | {change:.4f} | {corr:.3f} |")
    print(f"grids: {out}/{{samples,long,data}}.{{gif,png}}; run: {run}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny models and clips (a CPU check)")
    p.add_argument(
        "--config",
        default=str(ROOT / "configs" / "videofusion" / "ucf101_64.yaml"),
        help="the VideoFusion config whose networks are timed (16x64x64 RGB clips)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument(
        "--channels-last", action="store_true", help="channels-last weights (train.channels_last)"
    )
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast")
    p.add_argument("--batch", type=int, default=None, help="training batch (8; demo 32)")
    p.add_argument("--iters", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--sample-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--demo", type=int, default=0, help="train a demo model this many steps")
    p.add_argument("--minutes", type=float, default=None, help="demo: stop training after this")
    p.add_argument("--lr", type=float, default=2e-4, help="demo learning rate")
    p.add_argument("--ema", type=float, default=0.999, help="demo EMA decay")
    p.add_argument("--out", default="runs/videofusion-demo", help="demo output folder")
    p.add_argument(
        "--key-lambda",
        default="1",
        help="demo: λ of the key frame (1: the base generator alone makes it; none: λ as the "
        "other frames, so the residual generator refines it too)",
    )
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        args.amp = False  # bf16 on CPU measures nothing useful
        if args.tiny:
            torch.set_num_threads(1)  # tiny models only lose time to thread hand-offs
    if args.tiny:
        args.frames, args.size = 8, 16
        args.iters, args.warmup, args.sample_steps = 2, 1, 3
        args.sample_batches = [1, 2]
        args.batch = args.batch or 2
    else:
        args.frames, args.size = 16, 64
    if args.demo:
        args.batch = args.batch or 32
        demo(args, device)
    else:
        args.batch = args.batch or 8
        benchmark(args, device)


if __name__ == "__main__":
    main()
