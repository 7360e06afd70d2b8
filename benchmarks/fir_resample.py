"""MCVD's [1, 3, 3, 1] FIR resampling, forward + backward: the depthwise-conv form that eager
models use against the shifted-slice form that compiled models use (``fir_down`` / ``fir_up``),
alone (inside the U-Net the compiler also fuses it with the neighbouring elementwise work).

    python benchmarks/fir_resample.py --device cuda

Shapes are those of ``configs/mcvd/smmnist.yaml`` at batch 64 (bf16, channels-last): the
downsampling blocks at 64², 32², 16² and the upsampling blocks at 8², 16², 32².
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

from videogen.models.unet_stack2d import Resample, fir_down, fir_up

SHAPES = [  # (direction, channels, size) of the SMMNIST U-Net's resampling blocks
    ("down", 64, 64),
    ("down", 128, 32),
    ("down", 192, 16),
    ("up", 256, 8),
    ("up", 192, 16),
    ("up", 128, 32),
]


def timed(fn: Callable[[Tensor], Tensor], x: Tensor, iters: int) -> float:
    """Milliseconds per forward + backward."""
    for _ in range(3):
        fn(x).sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn(x).sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=50)
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"FIR resampling, fwd+bwd ms, batch {args.batch}, {dtype}, channels-last, {device}")
    print("| block | conv (eager) | slices eager | slices compiled |")
    print("|---|---:|---:|---:|")
    for direction, channels, size in SHAPES:
        x = torch.randn(args.batch, channels, size, size, device=device, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        conv = Resample(channels, direction).to(device)
        slices = fir_down if direction == "down" else fir_up
        row = [
            timed(conv, x, args.iters),
            timed(slices, x, args.iters),
            timed(torch.compile(slices), x, args.iters),
        ]
        cells = " | ".join(f"{v:.3f}" for v in row)
        print(f"| {direction} {channels}x{size}² | {cells} |")


if __name__ == "__main__":
    main()
