"""PVDM's autoencoder on its test clips, next to the baselines it must beat, and a GIF.

    python benchmarks/pvdm_quality.py RUN --clips 256 --gif recon.gif --out DIR

Scores the stage-1 run's reconstructions exactly as ``videogen eval RUN --task reconstruct
--metrics psnr,ssim`` does (``videogen.evaluate.evaluate_run``; per frame against the input,
bf16 autocast on CUDA), and on the same clips two reconstructions that know nothing: every frame
black (what an L1-trained autoencoder of sparse digits first learns) and every frame the
clip's mean frame (no motion). Prints one markdown table; ``--gif`` writes inputs (top)
over reconstructions (bottom) for the first ``--gif-clips`` test clips; ``--out`` keeps each
evaluation's ``metrics.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from videogen.checkpoint import load_pretrained
from videogen.data import build_dataset, to_model
from videogen.evaluate import evaluate_run
from videogen.grids import write_grid


class Black:
    """Every frame black (-1)."""

    def reconstruct(self, video: Tensor) -> Tensor:
        return torch.full_like(video, -1.0)


class MeanFrame:
    """Every frame the clip's mean frame: the best static copy under squared error (a copy of
    one of the clip's frames would score that frame as infinitely good)."""

    def reconstruct(self, video: Tensor) -> Tensor:
        return video.mean(dim=1, keepdim=True).expand_as(video).clone()


def score(method, clips, args, name: str) -> dict[str, float]:
    """PSNR / SSIM of ``method.reconstruct`` on ``clips`` (the reconstruct protocol)."""
    out_dir = Path(args.out) / name.replace(" ", "-") if args.out else None
    with torch.autocast("cuda", torch.bfloat16, enabled=args.device.startswith("cuda")):
        result = evaluate_run(
            method,
            clips,
            task="reconstruct",
            metrics=["psnr", "ssim"],
            num_clips=args.clips,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            out_dir=out_dir,
            run_name=name,
        )
    m = result["metrics"]
    return {"psnr": m["psnr"]["value"], "ssim": m["ssim"]["value"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="stage-1 PVDM run or export folder")
    p.add_argument("--clips", type=int, default=256, help="test clips")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of the test clips")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--gif", help="write inputs over reconstructions here")
    p.add_argument("--gif-clips", type=int, default=4)
    p.add_argument("--out", help="folder for each evaluation's metrics.json")
    args = p.parse_args()

    method = load_pretrained(args.run, device=args.device).eval()
    data = method.cfg.data
    clips = build_dataset(data, "test", seed=args.seed, length=args.clips)
    rows = [
        (name, score(m, clips, args, name))
        for name, m in (
            ("autoencoder", method),
            ("all black", Black()),
            ("clip mean frame", MeanFrame()),
        )
    ]
    print(f"| {args.clips} test clips of {data.name}, {data.frames}x{data.size}² | PSNR | SSIM |")
    print("|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} |")
    if args.gif:
        loader = torch.utils.data.DataLoader(clips, batch_size=args.gif_clips)
        batch = next(iter(loader))
        video = to_model((batch if torch.is_tensor(batch) else batch[0]).to(args.device))
        with torch.no_grad():
            recon = method.reconstruct(video).float().clamp(-1, 1)
        write_grid(args.gif, [video, recon])
        print(f"wrote {args.gif}: {args.gif_clips} test clips (top) over their reconstructions")


if __name__ == "__main__":
    main()
