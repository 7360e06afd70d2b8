"""Score one trained ``videogen demo`` model with several samplers on the demo's test clips.

    OMP_NUM_THREADS=1 videogen demo --clips 64 --out DEMO      # trains DEMO/run
    python benchmarks/demo_samplers.py DEMO/run --clips 64 dpm++:25 ddim:25 ddim:10

The clips, tasks (predict 4 -> 6, infill 4 + 2 -> 4), seeds and scores are the demo's own
(``videogen.demo``), so the ``dpm++:25`` row repeats what the demo printed with that sampler;
the model is trained once and only the sampler changes. Prints MSE / PSNR / SSIM per task and
sampler, copy-last-known first.
"""

from __future__ import annotations

import argparse

import torch

from videogen import tasks
from videogen.baselines import copy_last_known
from videogen.checkpoint import load_pretrained, read_config
from videogen.data import build_dataset, to_model
from videogen.demo import FUTURE, PAST, frame_scores
from videogen.rollout import rollout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="the demo's run folder (DEMO/run)")
    p.add_argument("samplers", nargs="+", help="SAMPLER:STEPS, e.g. ddim:25")
    p.add_argument("--clips", type=int, default=16, help="test clips (the demo's --clips)")
    args = p.parse_args()
    cfg = read_config(args.run)
    method = load_pretrained(args.run)
    test = build_dataset(cfg.data, "test", seed=1, length=args.clips)
    video = to_model(torch.stack(list(test)))
    window = cfg.data.frames
    patterns = {
        "predict": tasks.predict(window, PAST, args.clips),
        "infill": tasks.infill(window, PAST, FUTURE, args.clips),
    }

    def row(name: str, scores: list[dict[str, float]]) -> None:
        cells = [f"{s['mse']:.4f} / {s['psnr']:.2f} / {s['ssim']:.3f}" for s in scores]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    print("| sampler | " + " | ".join(f"{t} MSE / PSNR / SSIM" for t in patterns) + " |")
    print("|---|" + "---|" * len(patterns))
    row(
        "copy last known",
        [frame_scores(copy_last_known(video, k), video, ~k) for k in patterns.values()],
    )
    for spec in args.samplers:
        sampler, _, steps = spec.partition(":")
        # one generator through both tasks, as the demo draws them
        gen = torch.Generator().manual_seed(0)
        scores = []
        for known in patterns.values():
            sample = rollout(method, video, known, generator=gen, sampler=sampler, steps=int(steps))
            scores.append(frame_scores(sample, video, ~known))
        row(spec, scores)


if __name__ == "__main__":
    main()
