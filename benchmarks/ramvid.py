"""RaMViD training and sampling speed: one table.

Times full training steps (RaMViD loss with its random masks, backward, gradient clipping,
AdamW, EMA update) on random clips already on the device, under bf16 autocast on GPU, for each
variant (eager / ``torch.compile``, channels-last-3d, activation checkpointing) and batch size;
then the latency of sampling one clip. FLOPs are counted once on the ``meta`` device with
``FlopCounterMode`` (one forward of one clip); a training step is taken as 3x the forward, so
recomputation under checkpointing is not counted as useful work.

GPU (the issue's comparison: official code, H100, fp32, BAIR, batch 4 -> 8.8 clips/s, 18.5 GiB):
    python benchmarks/ramvid.py --device cuda --config configs/ramvid/bair.yaml --compare
CPU smoke run:
    python benchmarks/ramvid.py --device cpu --config configs/ramvid/tiny.yaml --steps 2
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from videogen import tasks
from videogen.config import Config, load_config
from videogen.methods import build_method
from videogen.methods.base import VideoMethod

GIB = 2**30


@dataclass(frozen=True)
class Variant:
    compile: bool = False
    channels_last: bool = False
    checkpointing: bool = False

    @property
    def label(self) -> str:
        parts = ["compile" if self.compile else "eager"]
        parts += ["cl3d"] * self.channels_last + ["ckpt"] * self.checkpointing
        return "+".join(parts)


def build(cfg: Config, variant: Variant, device: torch.device, mode: str) -> VideoMethod:
    cfg.train.channels_last = variant.channels_last
    cfg.model["activation_checkpointing"] = variant.checkpointing
    torch.manual_seed(0)
    method = build_method(cfg).to(device)
    if variant.compile:
        # one specialised graph per batch size: training batches and the sampling batch of 1
        method.unet = torch.compile(method.unet, mode=mode, dynamic=False)
    return method


def forward_flops(cfg: Config) -> int:
    """FLOPs of one forward pass on one clip, counted without allocating (meta device)."""
    with torch.device("meta"):
        method = build_method(cfg)
        video = torch.zeros(1, cfg.data.frames, cfg.data.channels, cfg.data.size, cfg.data.size)
        with FlopCounterMode(display=False) as counter:
            method.unet(video, torch.zeros(1))
    return counter.get_total_flops()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """The work of one training step, as the real trainer does it."""

    def __init__(self, method: VideoMethod, cfg: Config, device: torch.device, bf16: bool):
        self.method = method
        self.params = [p for p in method.parameters() if p.requires_grad]
        fused = {"fused": True} if device.type == "cuda" else {}
        self.opt = torch.optim.AdamW(
            self.params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, **fused
        )
        self.ema = [p.detach().clone() for p in self.params]
        self.ema_decay = cfg.train.ema_decay or 0.9999
        self.grad_clip = cfg.train.grad_clip
        self.device = device
        self.bf16 = bf16

    def step(self, video: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.method.loss(video)["loss"]
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, self.params, 1.0 - self.ema_decay)
        return loss.detach()


def host_syncs(trainer: Trainer, video: torch.Tensor) -> int:
    """Synchronising CUDA calls in one training step (``torch.cuda.set_sync_debug_mode``)."""
    if video.device.type != "cuda":
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.step(video)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def time_training(
    method: VideoMethod, cfg: Config, batch: int, args, device: torch.device, bf16: bool
) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    shape = (batch, cfg.data.frames, cfg.data.channels, cfg.data.size, cfg.data.size)
    video = torch.rand(shape, generator=g, device=device) * 2 - 1
    method.train()
    trainer = Trainer(method, cfg, device, bf16)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        trainer.step(video)
    syncs = host_syncs(trainer, video)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = trainer.step(video)
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    if not torch.isfinite(loss).all():
        raise RuntimeError(f"non-finite training loss {loss} at batch {batch}")
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else float("nan")
    del trainer
    return {"ms": 1e3 * seconds, "clips_s": batch / seconds, "peak": peak, "syncs": syncs}


def time_sampling(method: VideoMethod, cfg: Config, args, device: torch.device, bf16: bool):
    method.eval()
    frames = cfg.data.frames
    video = torch.zeros(1, frames, cfg.data.channels, cfg.data.size, cfg.data.size, device=device)
    known = tasks.predict(frames, 1).to(device)

    def run() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            method.generate(video, known, sampler=args.sampler, steps=args.sample_steps)

    run()  # warm-up (and compilation)
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ramvid/bair.yaml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", help="default: paper batch and 4x")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", choices=["bf16", "fp32"], help="default: bf16 on GPU")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default="default")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="eager and compiled, each with and without channels-last, plus checkpointing",
    )
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--sample-steps", type=int, help="default: 50 on GPU, 5 on CPU")
    parser.add_argument("--peak-flops", type=float, default=989e12, help="H100 SXM dense bf16")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.frames=16")
    args = parser.parse_args()

    device = torch.device(args.device)
    cfg = load_config(args.config, args.overrides)
    args.sample_steps = args.sample_steps or (50 if device.type == "cuda" else 5)
    bf16 = (args.precision or ("bf16" if device.type == "cuda" else "fp32")) == "bf16"
    batches = args.batches or (
        [cfg.train.batch_size, 4 * cfg.train.batch_size] if device.type == "cuda" else [2]
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.compare:
        variants = [
            Variant(),
            Variant(channels_last=True),
            Variant(compile=True),
            Variant(compile=True, channels_last=True),
            Variant(compile=True, channels_last=True, checkpointing=True),
        ]
    else:
        variants = [Variant(args.compile, args.channels_last, args.checkpointing)]

    with torch.device("meta"):
        params = sum(p.numel() for p in build_method(cfg).parameters())
    flops = forward_flops(cfg)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    clip = f"{cfg.data.frames}x{cfg.data.channels}x{cfg.data.size}x{cfg.data.size}"
    print(f"RaMViD {args.config}: {params / 1e6:.2f}M params, clip {clip}")
    print(f"forward {flops / 1e12:.3f} TFLOP per clip; training step counted as 3x")
    print(f"device {name}, torch {torch.__version__}, {'bf16 autocast' if bf16 else 'fp32'}")
    header = (
        f"{'variant':<22}{'batch':>6}{'ms/step':>10}{'clips/s':>9}{'peak GiB':>10}"
        f"{'% peak':>8}{'syncs':>7}"
    )
    print(header)
    print("-" * len(header))
    samples = []
    for variant in variants:
        method = build(cfg, variant, device, args.compile_mode)
        for batch in batches:
            try:
                r = time_training(method, cfg, batch, args, device, bf16)
            except torch.OutOfMemoryError:
                print(f"{variant.label:<22}{batch:>6}  out of memory")
                gc.collect()
                torch.cuda.empty_cache()
                continue
            mfu = 100 * 3 * flops * r["clips_s"] / args.peak_flops
            print(
                f"{variant.label:<22}{batch:>6}{r['ms']:>10.1f}{r['clips_s']:>9.2f}"
                f"{r['peak']:>10.2f}{mfu:>8.1f}{r['syncs']:>7}",
                flush=True,
            )
        samples.append((variant.label, time_sampling(method, cfg, args, device, bf16)))
        del method
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\nsampling one clip ({args.sampler}, {args.sample_steps} steps, 1 known frame):")
    for label, seconds in samples:
        print(f"{label:<22}{seconds:>8.2f} s  ({1e3 * seconds / args.sample_steps:.1f} ms/step)")


if __name__ == "__main__":
    main()
