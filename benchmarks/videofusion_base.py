"""How well does a VideoFusion run's base generator denoise and draw key frames?

    python benchmarks/videofusion_base.py RUN [RUN ...] --images 256 --samples 64

For each run (folder or export of a VideoFusion model, ``key_lambda`` 1 so that the base
generator is an image denoiser), on ``--images`` held-out frames of its test set:

* the base generator's **unweighted** noise error ``E |eps_hat - eps|^2`` at fixed timesteps,
  and the same error carried to the image, ``sqrt((1 - a_t) / a_t)^2`` times it (the error of
  the clean image the sampler's last steps read off the prediction), whatever loss weighting
  the run trained with;
* ``--samples`` key frames drawn by the base generator alone (DDIM, ``--steps``), scored
  against as many real frames: background noise (RMS of the pixels darker than ``--dark`` in
  the brightest channel, in [0, 1]) and high-frequency energy (mean absolute difference from a
  3 x 3 box blur), plus the fraction of frames whose brightest channel is mostly dark (a black
  canvas, as every stochastic-shapes frame has).

Prints one markdown table per measure, a row per run, the real frames last.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor

from videogen.checkpoint import load_pretrained, read_config
from videogen.data import build_dataset, to_model
from videogen.diffusion.decomposed import key_frame
from videogen.diffusion.schedulers import make_scheduler

TIMESTEPS = (2, 10, 25, 50, 100, 200, 400, 700, 950)


def test_frames(run: str, n: int, seed: int = 0) -> Tensor:
    """``n`` frames ``(n, C, H, W)`` in [-1, 1]: the key frame of ``n`` test clips."""
    cfg = read_config(run)
    clips = build_dataset(cfg.data, "test", seed=seed, length=n)
    video = to_model(torch.stack(list(clips)))
    return video[:, key_frame(video.shape[1])]


@torch.no_grad()
def noise_errors(method, images: Tensor, seed: int = 0) -> dict[int, tuple[float, float]]:
    """Per timestep: the unweighted mean squared error of the base generator's noise estimate,
    and that error carried to the clean image, times ``(1 - a_t) / a_t``."""
    abar = method.diffusion.schedule(images.device)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t in TIMESTEPS:
        eps = torch.randn(images.shape, generator=gen)
        a = abar[t]
        x_t = a.sqrt() * images + (1 - a).sqrt() * eps
        tt = torch.full((images.shape[0],), t, dtype=torch.long)
        err = float((method.net.base_noise(x_t, tt, None) - eps).pow(2).mean())
        out[t] = (err, err * float((1 - a) / a))
    return out


@torch.no_grad()
def draw_key_frames(method, n: int, shape: tuple[int, ...], steps: int, seed: int) -> Tensor:
    """``n`` images ``(n, C, H, W)`` in [-1, 1] from the base generator alone, DDIM (eta 0)."""
    sched = make_scheduler("ddim", method.cfg.diffusion)
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=gen)
    for t in sched.timesteps:
        tt = torch.full((n,), int(t), dtype=torch.long)
        x = sched.step(method.net.base_noise(x, tt, None), t, x).prev_sample
    return x.clamp(-1, 1)


def image_stats(images: Tensor, dark: float) -> dict[str, float]:
    """Background RMS, high-frequency energy and black-canvas fraction of ``images`` in [-1, 1]."""
    x = (images + 1) / 2
    peak = x.amax(dim=1)  # brightest channel (N, H, W)
    bg = peak < dark
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return {
        "background RMS": float(peak[bg].pow(2).mean().sqrt()) if bg.any() else float("nan"),
        "high-frequency": float((x - blur).abs().mean()),
        "black canvas": float((bg.float().mean(dim=(1, 2)) > 0.5).float().mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--images", type=int, default=256, help="held-out frames for the noise error")
    p.add_argument("--samples", type=int, default=64, help="key frames drawn per run")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of the drawn frames")
    p.add_argument("--dark", type=float, default=0.25, help="background: brightest channel below")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    real = test_frames(args.runs[0], max(args.images, args.samples), args.seed)
    errors, stats = {}, {}
    for run in args.runs:
        method = load_pretrained(run)
        if float(method.noise.lambdas(method.window)[key_frame(method.window)]) != 1.0:
            raise SystemExit(f"{run}: the key frame's λ is not 1, so its base is no image model")
        errors[run] = noise_errors(method, real[: args.images], args.seed)
        drawn = draw_key_frames(method, args.samples, tuple(real.shape[1:]), args.steps, args.seed)
        stats[run] = image_stats(drawn, args.dark)
    stats["real frames"] = image_stats(real[: args.samples], args.dark)
    print("| noise error at t | " + " | ".join(str(t) for t in TIMESTEPS) + " |")
    print("|---|" + "---:|" * len(TIMESTEPS))
    for run, e in errors.items():
        print(f"| {run} (eps) | " + " | ".join(f"{e[t][0]:.4f}" for t in TIMESTEPS) + " |")
        print(f"| {run} (image) | " + " | ".join(f"{e[t][1]:.2e}" for t in TIMESTEPS) + " |")
    names = list(next(iter(stats.values())))
    print("\n| key frames | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for run, s in stats.items():
        print(f"| {run} | " + " | ".join(f"{s[k]:.4f}" for k in names) + " |")


if __name__ == "__main__":
    main()
