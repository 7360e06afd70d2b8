"""Benchmark of the evaluation hot paths; prints one table.

1. I3D features (FVD) for ``--clips`` uint8 clips of 16x64x64x3, end to end: host -> device,
   8-bit -> [-1, 1], resize to 224, I3D forward. Random-weight I3D: the same compute as the
   real weight file. Timed in bf16 and fp32 (TF32 convolutions where the GPU has them).
   Target: 2048 clips in bf16 under 20 s on one GPU.
2. SSIM + PSNR, best of ``--best-of`` samples per test video, over ``--test-videos`` videos,
   through ``evaluate_run`` with a stand-in method (truth plus noise on the generated frames),
   so protocol overhead is included and the model's cost is not. Target: best-of-100 over 256
   videos under a minute.

GPU:  python benchmarks/metrics.py --device cuda
CPU:  python benchmarks/metrics.py --device cpu --clips 8
"""

from __future__ import annotations

import argparse
import time

import torch

from videogen.evaluate import evaluate_run
from videogen.metrics import InceptionI3d
from videogen.metrics.i3d import i3d_features


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_i3d(device: torch.device, clips: int, batch: int, precision: str) -> float:
    g = torch.Generator().manual_seed(0)
    videos = torch.randint(0, 256, (clips, 16, 64, 64, 3), dtype=torch.uint8, generator=g)
    if device.type == "cuda":
        videos = videos.pin_memory()
    model = InceptionI3d().eval().requires_grad_(False).to(device)

    def run(part: torch.Tensor) -> torch.Tensor:
        x = part.to(device, non_blocking=True).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
        return i3d_features(model, x, "tf1-bilinear", precision)

    run(videos[:batch])  # warm-up: cuDNN picks its algorithms
    sync(device)
    start = time.perf_counter()
    feats = torch.cat([run(part) for part in videos.split(batch)]).cpu()
    elapsed = time.perf_counter() - start
    assert feats.shape == (clips, 400) and torch.isfinite(feats).all()
    return elapsed


class NoisyTruth:
    """Stand-in method: the truth plus seeded noise on the frames to generate."""

    def generate(self, video, known, *, generator=None, **_):
        noise = torch.randn(video.shape, generator=generator, device=video.device) * 0.1
        return torch.where(known[:, :, None, None, None], video, (video + noise).clamp(-1, 1))


def time_best_of(
    device: torch.device, videos: int, best_of: int, frames: int, known: int, batch: int
) -> float:
    g = torch.Generator().manual_seed(1)
    clips = torch.randint(0, 256, (videos, frames, 64, 64, 3), dtype=torch.uint8, generator=g)
    settings = dict(
        task="predict",
        task_kwargs={"known": known},
        metrics=("ssim", "psnr"),
        num_clips=videos,
        batch_size=batch,
        device=device,
    )
    evaluate_run(NoisyTruth(), clips[:batch], **{**settings, "num_clips": batch, "best_of": 2})
    sync(device)
    start = time.perf_counter()
    result = evaluate_run(NoisyTruth(), clips, best_of=best_of, **settings)
    sync(device)
    elapsed = time.perf_counter() - start
    assert len(result["metrics"]["ssim"]["per_frame"]) == frames - known
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--clips", type=int, default=2048, help="clips for the I3D timing")
    p.add_argument("--i3d-batch", type=int, default=64)
    p.add_argument("--test-videos", type=int, help="default 256 on cuda, 4 on cpu")
    p.add_argument("--best-of", type=int, help="default 100 on cuda, 3 on cpu")
    p.add_argument("--frames", type=int, default=25, help="frames per test video")
    p.add_argument("--known", type=int, default=5, help="known (conditioning) frames")
    p.add_argument("--eval-batch", type=int, default=64, help="test videos per generate call")
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    videos = args.test_videos or (256 if cuda else 4)
    best_of = args.best_of or (100 if cuda else 3)
    batch = min(args.i3d_batch, args.clips)

    rows = []
    for precision in ("bf16", "fp32") if cuda else ("fp32",):
        seconds = time_i3d(device, args.clips, batch, precision)
        target = "< 20 s for 2048" if precision == "bf16" else ""
        rows.append((f"I3D features {precision}", f"{args.clips} clips 16x64x64", seconds, target))
    seconds = time_best_of(
        device, videos, best_of, args.frames, args.known, min(args.eval_batch, videos)
    )
    setting = f"{videos} videos x {best_of} samples x {args.frames - args.known} frames 64x64x3"
    rows.append(("SSIM+PSNR best-of-k", setting, seconds, "< 60 s for 256 x 100"))

    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    print(f"| {'what':<22} | {'setting':<44} | {'seconds':>8} | {'target':<20} |")
    print(f"|{'-' * 24}|{'-' * 46}|{'-' * 10}|{'-' * 22}|")
    for what, setting, secs, target in rows:
        print(f"| {what:<22} | {setting:<44} | {secs:8.2f} | {target:<20} |")


if __name__ == "__main__":
    main()
