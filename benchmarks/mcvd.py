"""MCVD speed and memory: parameters, FLOPs per clip, training clips/s, peak memory, sampling time.

GPU (the numbers to compare with the official code, H100, bf16 autocast):

    python benchmarks/mcvd.py --device cuda --config configs/mcvd/smmnist.yaml --batch 64 \\
        --compile --channels-last
    python benchmarks/mcvd.py --device cuda --config configs/mcvd/bair_ngf192.yaml --batch 32 \\
        --compile --channels-last

CPU smoke run (a tiny model, seconds):

    python benchmarks/mcvd.py --device cpu --tiny

Training throughput times the whole step: the method's loss (mask sampling, noising, U-Net
forward), backward, gradient clipping, Adam and the EMA update. FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` on one forward of one clip; a training step costs
about three forwards, which gives the model FLOP rate and its fraction of the bf16 dense peak.
Sampling generates one current block (past known) at ``--sample-batch`` clips for each
``SAMPLER:STEPS`` in ``--samplers``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from videogen.compile_options import inductor_options, uses_cuda_graphs
from videogen.config import load_config
from videogen.methods import build_method
from videogen.methods.mcvd import MCVD
from videogen.tasks import from_indices

H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM

TINY = [
    "model.ngf=16",
    "model.ch_mult=[1,2]",
    "model.attn_resolutions=[8]",
    "model.head_channels=16",
    "data.size=16",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/mcvd/smmnist.yaml")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="training batch (default: config)")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    p.add_argument(
        "--compile-mode",
        default="default",
        help="torch.compile mode; reduce-overhead replays the U-Net's passes from CUDA graphs",
    )
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--layout",
        choices=["force", "auto"],
        default="force",
        help="compiled channels-last: force inductor's layout optimisation in every graph, or "
        "leave it to inductor's per-graph choice (off in backward graphs)",
    )
    p.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast (GPU)")
    p.add_argument("--iters", type=int, default=30, help="timed training steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed training steps first")
    p.add_argument(
        "--samplers",
        default=None,
        help="SAMPLER:STEPS,... or none (default ddpm:100,ddim:20,dpm++:20)",
    )
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--profile", type=int, default=0, help="profile this many steps; top kernels")
    p.add_argument("--tiny", action="store_true", help="a tiny model for a CPU check")
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_flops(method: MCVD, video: torch.Tensor, known: torch.Tensor) -> int:
    """FLOPs of one U-Net forward on one clip."""
    t = torch.full((1,), 500.0, device=video.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        method.denoise(video[:1], t, video[:1], known[:1])
    return counter.get_total_flops()


def print_profile(step: Callable[[], None], steps: int, device: torch.device) -> None:
    """The 25 kernels (or CPU ops) with the most self time over ``steps`` training steps."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    overrides = list(args.set)
    if args.tiny:
        overrides = TINY + overrides
        args.iters, args.warmup = min(args.iters, 3), min(args.warmup, 1)
        args.sample_batch = min(args.sample_batch, 2)
    samplers = args.samplers or ("ddpm:3,ddim:3" if args.tiny else "ddpm:100,ddim:20,dpm++:20")
    cfg = load_config(args.config, overrides)
    batch = args.batch or (4 if args.tiny else cfg.train.batch_size)
    amp = device.type == "cuda" and not args.no_amp  # bf16 autocast on CPU is slow, not faster
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(0)
    method = build_method(cfg).to(device)
    assert isinstance(method, MCVD)
    m = method.model_cfg
    frames, c, s = cfg.data.frames, cfg.data.channels, cfg.data.size
    video = torch.rand(batch, frames, c, s, s, device=device) * 2 - 1
    known = from_indices(frames, range(m.past), batch=batch).to(device)
    params = sum(p.numel() for p in method.net.parameters())
    flops = forward_flops(method, video, known)

    if args.channels_last:
        method = method.to(memory_format=torch.channels_last)
    graphed = False
    if args.compile:
        channels_last = args.channels_last and args.layout == "force"
        options = inductor_options(args.compile_mode, channels_last=channels_last)
        graphed = uses_cuda_graphs(options)
        method.net = torch.compile(method.net, options=options)
    method.train()
    trainable = [p for p in method.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in trainable]
    opt = torch.optim.Adam(
        trainable,
        lr=cfg.train.lr,
        betas=cfg.train.betas,
        eps=cfg.train.eps,
        fused=device.type == "cuda",
    )
    decay = cfg.train.ema_decay or 0.999

    def train_step() -> None:
        if graphed:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are done
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = method.loss(video)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.train.grad_clip, foreach=True)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in trainable], 1 - decay)

    for _ in range(args.warmup):
        train_step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        train_step()
    sync(device)
    elapsed = time.perf_counter() - start
    clips_per_s = args.iters * batch / elapsed
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    # everything the process ever held, compile warm-up and CUDA-graph pools included
    reserved = torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None
    achieved = 3 * flops * clips_per_s

    rows = [
        ("config", args.config + (" (tiny)" if args.tiny else "")),
        ("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
        ("conditioning", f"{m.cond}, {m.past} past + {m.current} current + {m.future} future"),
        ("frame size", f"{c} x {s} x {s}"),
        (
            "settings",
            f"bf16={amp} compile={args.compile and args.compile_mode} "
            f"channels_last={args.channels_last} layout={args.layout}",
        ),
        ("parameters", f"{params / 1e6:.2f} M"),
        ("forward FLOPs / clip", f"{flops / 1e9:.2f} GFLOP"),
        ("train batch", str(batch)),
        ("train step", f"{elapsed / args.iters * 1e3:.1f} ms"),
        ("train clips/s", f"{clips_per_s:.1f}"),
        ("model FLOP/s (3x fwd)", f"{achieved / 1e12:.1f} TFLOP/s"),
        ("fraction of H100 bf16 peak", f"{achieved / H100_BF16_PEAK:.1%}"),
        ("peak memory (train)", f"{peak:.2f} GiB" if peak is not None else "n/a"),
        ("peak reserved (whole run)", f"{reserved:.2f} GiB" if reserved is not None else "n/a"),
    ]

    if args.profile:
        print_profile(train_step, args.profile, device)

    method.eval()
    sb = args.sample_batch
    sample_video = video[:1].expand(sb, -1, -1, -1, -1).contiguous()
    sample_known = from_indices(frames, range(m.past), batch=sb).to(device)
    generate = method.generate
    for spec in [] if samplers == "none" else samplers.split(","):
        name, steps = spec.split(":")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            generate(sample_video, sample_known, sampler=name, steps=2)  # warm-up
            sync(device)
            start = time.perf_counter()
            generate(sample_video, sample_known, sampler=name, steps=int(steps))
            sync(device)
        took = time.perf_counter() - start
        rows.append(
            (
                f"sample {m.current} frames x {sb}, {name} {steps} steps",
                f"{took:.2f} s ({took / int(steps) * 1e3:.1f} ms / step)",
            )
        )

    width = max(len(k) for k, _ in rows)
    print(f"| {'MCVD benchmark':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for key, value in rows:
        print(f"| {key:<{width}} | {value} |")


if __name__ == "__main__":
    main()
