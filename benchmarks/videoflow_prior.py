"""Does a trained VideoFlow predict the next frame with its prior's mean or only with its scale?

For test clips of the run's own data (the first ``cond_frames`` frames known, the next one
scored), prints

- the bits per dimension of that frame given its true history, another clip's history, a black
  history, and when it repeats the last known frame (a model that uses the history scores the
  first far lower than the others);
- per level, how far the true latents ``z_t`` lie from the prior's mean compared with their own
  size, the prior's scales, and the normalised error ``(z - mean) / scale`` (about 1 for a
  calibrated prior). A mean that stays near 0 while the scales grow where the shape moves is
  a prior that explains the motion through its variance: samples near the mean (temperature
  below 1) then lose the moving object.

    python benchmarks/videoflow_prior.py runs/q-videoflow --clips 256 --device cuda
"""

from __future__ import annotations

import argparse

import torch
from einops import rearrange

from videogen.checkpoint import load_pretrained
from videogen.data import build_dataset, to_model
from videogen.methods.videoflow import VideoFlow
from videogen.models.videoflow_layers import to_flow


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a VideoFlow run or export folder")
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args()


def scored_bits(method: VideoFlow, clips: torch.Tensor) -> float:
    """Mean bits per dimension of the last frame of ``clips`` given the frames before it."""
    gen = torch.Generator(clips.device).manual_seed(0)  # the same dequantisation noise each time
    return method.frame_bits(clips, first=clips.shape[1] - 1, generator=gen).mean().item()


@torch.no_grad()
def main() -> None:
    args = parse_args()
    method = load_pretrained(args.run, device=args.device)
    if not isinstance(method, VideoFlow):
        raise SystemExit(f"{args.run} holds a {type(method).__name__} run, not VideoFlow")
    n = method.model_cfg.cond_frames
    test = build_dataset(method.cfg.data, "test", length=args.clips)
    clips = to_model(torch.stack([test[i] for i in range(args.clips)]))[:, : n + 1]
    clips = clips.to(args.device)

    other = clips.clone()
    other[:, :n] = clips.roll(1, 0)[:, :n]
    black = clips.clone()
    black[:, :n] = -1.0
    repeat = clips.clone()
    repeat[:, n] = clips[:, n - 1]
    print(f"{args.run}: bits per dimension of frame {n + 1} given 1..{n}, {args.clips} clips")
    for what, video in [
        ("their true history", clips),
        ("another clip's history", other),
        ("a black history", black),
        ("the last known frame repeated (no motion)", repeat),
    ]:
        print(f"  {what}: {scored_bits(method, video):.4f}")

    x = to_flow(clips, method.model_cfg.n_bits)
    latents, contexts, _ = method.glow.encode(rearrange(x, "b t c h w -> (b t) c h w"))
    b = clips.shape[0]
    print("| level | shape | rms z | rms (z - mean) | scale median | scale max | rms eps |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for level, prior in enumerate(method.priors):
        z = rearrange(latents[level], "(b t) c h w -> b t c h w", b=b)
        context = None
        if level < len(contexts):
            context = rearrange(contexts[level], "(b t) c h w -> b t c h w", b=b)[:, n]
        mean, log_scale = prior(z[:, :n], context, b)
        error = z[:, n] - mean
        scale = log_scale.exp()
        rms = [t.pow(2).mean().sqrt().item() for t in (z[:, n], error, error / scale)]
        print(
            f"| {level} | {tuple(z.shape[2:])} | {rms[0]:.3f} | {rms[1]:.3f} | "
            f"{scale.median().item():.3f} | {scale.max().item():.1f} | {rms[2]:.3f} |"
        )


if __name__ == "__main__":
    main()
