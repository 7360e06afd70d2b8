"""VideoFlow speed: sampling a 64x64 clip of 20 frames (3 known -> 17 generated) at batch 1,
batched sampling throughput, and a training step; parameters and peak memory.

The paper reports under 3.5 s for 64x64x20 frames on a P100; the target on an H100 is under
0.2 s at batch 1. Weights are random after actnorm initialisation on a random batch (speed does
not depend on the values).

GPU (BAIR config)::

    python benchmarks/videoflow.py --device cuda
    python benchmarks/videoflow.py --device cuda --compile reduce-overhead
    python benchmarks/videoflow.py --device cuda --compile reduce-overhead --bf16
    python benchmarks/videoflow.py --device cuda --compile cuda-graphs --bf16

CPU smoke run (a tiny model, seconds)::

    python benchmarks/videoflow.py --device cpu --tiny

``--compile`` compiles the per-frame sampling function (``VideoFlow.compile_sampler``; the
known frames are encoded eagerly); ``reduce-overhead`` adds CUDA graphs, which is what batch-1
sampling needs: eager sampling of a 24-step, 3-level Glow launches thousands of small kernels
per frame. ``cuda-graphs`` captures the eager steps in CUDA graphs without compiling
(``VideoFlow.graph_sampler``, what ``generate`` does on CUDA by default); ``none`` samples
eagerly. ``--bf16`` runs the coupling and prior networks under bf16 autocast; the invertible
arithmetic stays float32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from videogen.config import load_config
from videogen.methods import build_method
from videogen.methods.videoflow import VideoFlow
from videogen.tasks import predict

TINY = [
    "model.levels=2",
    "model.steps_per_level=2",
    "model.coupling_width=32",
    "model.prior_depth=1",
    "model.prior_width=32",
    "data.size=32",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/videoflow/bair.yaml")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--frames", type=int, default=20, help="clip length to sample")
    p.add_argument("--known", type=int, default=3, help="known frames at the start")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 8 32")
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument(
        "--compile",
        default="none",
        choices=["none", "default", "reduce-overhead", "max-autotune", "cuda-graphs"],
        help="torch.compile mode for the per-frame sampler, or cuda-graphs (no compiling)",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the networks")
    p.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="let cuDNN time its algorithms for each convolution shape first",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per setting")
    p.add_argument("--train-batch", type=int, default=None, help="0 skips (default: config)")
    p.add_argument("--tiny", action="store_true", help="a tiny model for a CPU check")
    p.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile one clip at the first batch size: the 25 kernels (CPU ops "
        "on a CPU) with the most self time (kernels replayed from CUDA graphs are not listed: "
        "profile with --compile none)",
    )
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_gib(device: torch.device) -> str:
    if device.type != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"


def print_profile(fn: Callable[[], object], device: torch.device) -> None:
    """The 25 kernels (CPU ops on a CPU) with the most self time in one call of ``fn``."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    cfg = load_config(args.config, (TINY if args.tiny else []) + args.set)
    method = build_method(cfg).to(device)
    assert isinstance(method, VideoFlow)
    params = sum(p.numel() for p in method.parameters())
    c, s = cfg.data.channels, cfg.data.size
    train_frames = method.model_cfg.train_frames or cfg.data.frames
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    # actnorm initialisation on a random batch, as the first training step does
    with torch.no_grad():
        method.loss(torch.rand(4, train_frames, c, s, s, device=device) * 2 - 1)

    rows: list[tuple[str, int, float, str, str]] = []
    train_batch = cfg.train.batch_size if args.train_batch is None else args.train_batch
    if args.tiny and args.train_batch is None:
        train_batch = 2
    if train_batch:
        method.train()
        opt = torch.optim.Adam(method.parameters(), lr=1e-5)
        clips = torch.rand(train_batch, train_frames, c, s, s, device=device) * 2 - 1

        def train_step() -> None:
            with autocast:
                loss = method.loss(clips)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(train_step, device, warmup=2, repeats=args.repeats)
        rows.append(
            (
                "train step",
                train_batch,
                seconds,
                f"{train_batch / seconds:.1f} clips/s",
                peak_gib(device),
            )
        )
        del opt

    method.eval()
    if args.compile == "cuda-graphs":
        method.graph_sampler()
    elif args.compile == "none":
        method.eager_sampler()  # on CUDA generate would replay CUDA graphs by default
    else:
        method.compile_sampler(mode=args.compile)
    generated = args.frames - args.known
    batches = args.batches or ([1, 4] if args.tiny else [1, 8, 32])
    for batch in batches:
        video = torch.rand(batch, args.frames, c, s, s, device=device) * 2 - 1
        known = predict(args.frames, args.known, batch).to(device)

        def sample(video: torch.Tensor = video, known: torch.Tensor = known) -> None:
            with autocast:
                method.generate(video, known, temperature=args.temperature)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        warmup = 3 if args.compile != "none" else 1
        seconds = timed(sample, device, warmup=warmup, repeats=args.repeats)
        rate = f"{batch * generated / seconds:.1f} frames/s"
        rows.append(
            (f"sample {args.frames}f ({args.known} known)", batch, seconds, rate, peak_gib(device))
        )
        if args.profile and batch == batches[0]:
            print_profile(sample, device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"VideoFlow {args.config}{' (tiny)' if args.tiny else ''} | {s}x{s}x{c} | "
        f"params {params / 1e6:.2f}M | {name} | compile={args.compile} | bf16={args.bf16} | "
        f"cudnn.benchmark={args.cudnn_benchmark}"
    )
    print("| what | batch | seconds (median) | throughput | peak GiB |")
    print("|---|---|---|---|---|")
    for what, batch, seconds, rate, memory in rows:
        print(f"| {what} | {batch} | {seconds:.4f} | {rate} | {memory} |")


if __name__ == "__main__":
    main()
