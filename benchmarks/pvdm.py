"""PVDM speed and memory: the autoencoder's training step at 256²x16 and the latent U-Net's from
cached (random) latents or encoding every step; clips/s, model FLOP rate and peak memory.

GPU (the numbers to compare with the official code; bf16 autocast):

    python benchmarks/pvdm.py --device cuda --ae-batch 4 --unet-batch 32 --compile

The official code on one H100 (issue 15): autoencoder 256²x16, batch 1, fp16, no GAN: 5.7
clips/s at 22.2 GiB; latent U-Net (528M, batch 8): 25.1 clips/s at 17.6 GiB from random
latents, 14.6 clips/s encoding with the autoencoder every step.

CPU smoke run (tiny models, seconds):

    python benchmarks/pvdm.py --device cpu --tiny

Each step is what ``videogen train`` does for that stage: the method's loss (stage 1:
reconstruction, L1 and, with ``--gan``, the discriminators' adversarial and feature-matching
terms and then the discriminators' own phase; stage 2: the joint objective's pairs, noising,
U-Net forward), backward, AdamW, and for stage 2 the EMA update. FLOPs are counted with
``FlopCounterMode`` on one forward of one clip (the autoencoder's encode + decode; one U-Net
call); a step costs about three forwards, which gives the model FLOP rate and its fraction of
the bf16 dense peak (989 TFLOP/s: H100 SXM and H200 alike).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from videogen.compile_options import known_to_inductor
from videogen.config import load_config
from videogen.methods import build_method
from videogen.methods.pvdm import PVDM

BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM / H200
WIDTH = 49  # the table's first column: its longest key
OPTIONS = known_to_inductor(PVDM.inductor_config)  # what `videogen train` compiles with

TINY_AE = [
    "model.clip=4",
    "data.frames=4",
    "data.size=32",
    "model.width=32",
    "model.depth=1",
    "model.heads=2",
    "model.head_dim=16",
    "model.proj_depth=1",
    "model.proj_heads=2",
    "model.proj_head_dim=16",
    "model.proj_mlp=32",
    "model.disc_ndf=8",
    "model.disc_layers=2",
]
TINY_UNET = [
    *(o for o in TINY_AE if not o.startswith(("data.frames", "model.disc"))),
    "data.frames=8",
    "model.model_channels=16",
    "model.channel_mult=[1,2]",
    "model.attention_resolutions=[2]",
    "model.unet_heads=2",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ae-config", default="configs/pvdm/ucf101_autoencoder.yaml")
    p.add_argument("--unet-config", default="configs/pvdm/ucf101_diffusion.yaml")
    p.add_argument("--part", choices=["ae", "unet", "all"], default="all")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ae-batch", type=int, default=1)
    p.add_argument("--unet-batch", type=int, default=8)
    p.add_argument("--gan", action="store_true", help="stage 1 with the GAN on (both phases)")
    p.add_argument(
        "--encode", action="store_true", help="stage 2 also timed encoding clips every step"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast (GPU)")
    p.add_argument("--iters", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    p.add_argument("--sample-steps", type=int, default=100, help="DDIM steps timed; 0: none")
    p.add_argument("--tiny", action="store_true", help="tiny models for a CPU check")
    p.add_argument("--ae-set", nargs="*", default=[], help="stage-1 config overrides")
    p.add_argument("--unet-set", nargs="*", default=[], help="stage-2 config overrides")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_of(fn: Callable[[], object]) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def timed(step: Callable[[], None], warmup: int, iters: int, device: torch.device):
    """(seconds per step, peak allocated GiB or None) over ``iters`` steps after ``warmup``."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    per_step = (time.perf_counter() - start) / iters
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return per_step, peak


def rate_rows(name: str, batch: int, per_step: float, flops: int, peak: float | None):
    clips_per_s = batch / per_step
    achieved = 3 * flops * clips_per_s
    return [
        (f"{name}: batch", str(batch)),
        (f"{name}: step", f"{per_step * 1e3:.1f} ms"),
        (f"{name}: clips/s", f"{clips_per_s:.2f}"),
        (f"{name}: model FLOP/s (3x fwd)", f"{achieved / 1e12:.1f} TFLOP/s"),
        (f"{name}: fraction of bf16 peak", f"{achieved / BF16_PEAK:.1%}"),
        (f"{name}: peak memory", f"{peak:.2f} GiB" if peak is not None else "n/a"),
    ]


def adamw(params: list[torch.nn.Parameter], cfg, device: torch.device) -> torch.optim.Optimizer:
    t = cfg.train
    return torch.optim.AdamW(
        params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, fused=device.type == "cuda"
    )


def bench_autoencoder(args, device: torch.device, amp: bool) -> list[tuple[str, str]]:
    cfg = load_config(args.ae_config, (TINY_AE if args.tiny else []) + args.ae_set)
    method = build_method(cfg).to(device).train()
    assert isinstance(method, PVDM)
    b, d = args.ae_batch, cfg.data
    video = torch.rand(b, d.frames, d.channels, d.size, d.size, device=device) * 2 - 1
    params = sum(p.numel() for p in method.autoencoder.parameters())
    flops = flops_of(lambda: method.autoencoder(video[:1]))
    if args.compile:
        method.autoencoder = torch.compile(method.autoencoder, options=OPTIONS)
        method.discriminators = torch.compile(method.discriminators, options=OPTIONS)
    groups = method.param_groups()
    opts = {k: adamw(g.params, cfg, device) for k, g in groups.items()}
    phases = method.training_phases(method.model_cfg.disc_start if args.gan else 0)

    def step() -> None:
        for phase in phases:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = method.phase_loss(phase, video)["loss"]
            loss.backward()
            clip = groups[phase].grad_clip
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(groups[phase].params, clip, foreach=True)
            opts[phase].step()
            for opt in opts.values():
                opt.zero_grad(set_to_none=True)

    per_step, peak = timed(step, args.warmup, args.iters, device)
    s = method.plane_shape
    return [
        ("autoencoder config", args.ae_config + (" (tiny)" if args.tiny else "")),
        ("autoencoder clip", f"{d.frames} x {d.channels} x {d.size} x {d.size}"),
        (
            "autoencoder planes",
            f"{method.latent_shape[0]} x ({s.height}x{s.width}, 2 x {s.frames}x{s.width})",
        ),
        ("autoencoder parameters", f"{params / 1e6:.2f} M"),
        ("autoencoder forward FLOPs / clip", f"{flops / 1e9:.2f} GFLOP"),
        ("autoencoder phases", " + ".join(phases)),
        *rate_rows("autoencoder step", b, per_step, flops, peak),
    ]


def bench_unet(args, device: torch.device, amp: bool) -> list[tuple[str, str]]:
    cfg = load_config(args.unet_config, (TINY_UNET if args.tiny else []) + args.unet_set)
    method = build_method(cfg).to(device).train()
    assert isinstance(method, PVDM)
    b, (c, length) = args.unet_batch, method.latent_shape
    latents = torch.rand(b, 2, c, length, device=device) * 2 - 1
    params = sum(p.numel() for p in method.unet.parameters())
    t = torch.full((1,), 500.0, device=device)
    flops = flops_of(lambda: method.unet(latents[:1, 1], t, latents[:1, 0]))
    if args.compile:
        method.unet = torch.compile(method.unet, options=OPTIONS)
        method.autoencoder = torch.compile(method.autoencoder, options=OPTIONS)
    trainable = list(method.unet.parameters())
    opt = adamw(trainable, cfg, device)
    ema = [p.detach().clone() for p in trainable]
    decay = cfg.train.ema_decay or 0.9999

    def step_on(video, cached) -> Callable[[], None]:
        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = method.loss(video, latents=cached)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in trainable], 1 - decay)

        return step

    per_step, peak = timed(step_on(None, latents), args.warmup, args.iters, device)
    rows = [
        ("U-Net config", args.unet_config + (" (tiny)" if args.tiny else "")),
        ("U-Net parameters", f"{params / 1e6:.2f} M"),
        ("U-Net latent", f"{c} x {length} packed plane tokens"),
        ("U-Net forward FLOPs / clip", f"{flops / 1e9:.2f} GFLOP"),
        *rate_rows("U-Net step, cached latents", b, per_step, flops, peak),
    ]
    if args.encode:
        d = cfg.data
        video = torch.rand(b, d.frames, d.channels, d.size, d.size, device=device) * 2 - 1
        per_step, peak = timed(step_on(video, None), args.warmup, args.iters, device)
        rows += rate_rows("U-Net step, encoding every step", b, per_step, flops, peak)
    if args.sample_steps:
        method.eval()
        d = cfg.data
        video = torch.rand(b, d.frames, d.channels, d.size, d.size, device=device) * 2 - 1
        known = method.default_known(b)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            method.generate(video, known, sampler="ddim", steps=2)  # warm-up
            sync(device)
            start = time.perf_counter()
            method.generate(video, known, sampler="ddim", steps=args.sample_steps)
            sync(device)
        took = time.perf_counter() - start
        rows.append(
            (
                f"continue {b} clips, DDIM {args.sample_steps} steps",
                f"{took:.2f} s ({took / args.sample_steps * 1e3:.1f} ms / step)",
            )
        )
    return rows


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.tiny:
        args.iters, args.warmup = min(args.iters, 3), min(args.warmup, 1)
        args.sample_steps = min(args.sample_steps, 3)
    amp = device.type == "cuda" and not args.no_amp  # bf16 autocast on CPU is slow, not faster
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    rows = [
        ("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
        ("settings", f"bf16={amp} compile={args.compile} gan={args.gan}"),
    ]
    # each part's rows are printed as soon as it is done: a later part that fails (session 10:
    # inductor on the compiled U-Net's backward) does not take the earlier numbers with it
    print(f"| {'PVDM benchmark':<{WIDTH}} | value |")
    print(f"|{'-' * (WIDTH + 2)}|-------|")
    parts = [("ae", bench_autoencoder), ("unet", bench_unet)]
    for name, bench in parts:
        if args.part in (name, "all"):
            rows += bench(args, device, amp)
        for key, value in rows:
            print(f"| {key:<{WIDTH}} | {value} |", flush=True)
        rows = []


if __name__ == "__main__":
    main()
