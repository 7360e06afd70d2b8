"""A few minutes of a tiny VideoFlow on stochastic shapes (CPU), then what its prior learnt.

Trains the shapes config at 32 px (2 levels; the model flags after the options override it)
with Adam, linear warm-up and gradient clipping, in this process; then prints the bits of the
scored frame given its true history and given a repeat of the known frame, per level rms z,
rms (z - prior mean), rms (z - previous latent) and the prior's scales, and the
``shapes_motion`` checks of 5-frame predictions from 1 known frame at temperatures 0, 0.6, 1:

    OMP_NUM_THREADS=1 python benchmarks/videoflow_shapes_quick.py --minutes 3.5 \
        'data.options.directions=[[1,0]]' model.prior_scale_per_channel=true
"""

import argparse
import time

import torch
from einops import rearrange

from videogen.config import load_config
from videogen.data import build_dataset, to_model
from videogen.data.shapes import UNITS
from videogen.grids import write_grid
from videogen.methods import build_method
from videogen.metrics.shapes_motion import shapes_motion
from videogen.models.videoflow_layers import to_flow
from videogen.tasks import predict

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=1500)
p.add_argument("--minutes", type=float, default=4.0)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--warmup", type=int, default=100)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--eval-clips", type=int, default=64)
p.add_argument("--gif", default=None, help="write 8 test clips over their T=0.6 samples here")
p.add_argument("overrides", nargs="*")
args = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(args.seed)

base = [
    "data.size=32",
    "model.levels=2",
    "model.steps_per_level=4",
    "model.coupling_width=64",
    "model.prior_depth=2",
    "model.prior_width=64",
    "data.num_workers=0",
]
cfg = load_config("configs/videoflow/stochastic_shapes.yaml", base + args.overrides)
method = build_method(cfg)
print("params", sum(p.numel() for p in method.parameters()), args.overrides, flush=True)
train = build_dataset(cfg.data, "train", length=10**7)
opt = torch.optim.Adam(method.parameters(), lr=args.lr)
start = time.time()
step = 0
it = iter(torch.utils.data.DataLoader(train, batch_size=args.batch))
hist = []
while step < args.steps and time.time() - start < args.minutes * 60:
    video = to_model(next(it))
    for g in opt.param_groups:
        g["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
    out = method.loss(video)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    if args.clip:
        torch.nn.utils.clip_grad_norm_(method.parameters(), args.clip)
    opt.step()
    hist.append(out["bpd"].item())
    step += 1
    if step % 50 == 0:
        print(
            f"step {step} bpd {sum(hist[-50:]) / 50:.3f} t {time.time() - start:.0f}s", flush=True
        )
print(f"trained {step} steps in {time.time() - start:.0f}s", flush=True)

method.eval()
n = args.eval_clips
with torch.no_grad():
    test = build_dataset(cfg.data, "test", length=n)
    clips = to_model(torch.stack([test[i] for i in range(n)]))
    k = method.model_cfg.cond_frames
    two = clips[:, : k + 1]
    g = torch.Generator().manual_seed(0)
    print("bits true", method.frame_bits(two, first=k, generator=g).mean().item())
    rep = two.clone()
    rep[:, k] = two[:, k - 1]
    g = torch.Generator().manual_seed(0)
    print("bits repeat", method.frame_bits(rep, first=k, generator=g).mean().item())
    x = to_flow(two, method.model_cfg.n_bits)
    latents, contexts, _ = method.glow.encode(rearrange(x, "b t c h w -> (b t) c h w"))
    for level, prior in enumerate(method.priors):
        z = rearrange(latents[level], "(b t) c h w -> b t c h w", b=n)
        ctx = None
        if level < len(contexts):
            ctx = rearrange(contexts[level], "(b t) c h w -> b t c h w", b=n)[:, k]
        mean, log_scale = prior(z[:, :k], ctx, n)
        if mean.dim() == 5:  # a mixture: each clip's closest component
            best = (z[:, k, None] - mean).square().flatten(2).sum(2).argmin(1)
            mean, log_scale = mean[torch.arange(n), best], log_scale[torch.arange(n), best]
        err = z[:, k] - mean
        s = log_scale.exp()
        r = lambda t: t.pow(2).mean().sqrt().item()  # noqa: E731
        print(
            f"level {level} rms z {r(z[:, k]):.3f} rms(z-mean) {r(err):.3f} "
            f"rms(z-prev) {r(z[:, k] - z[:, k - 1]):.3f} scale med {s.median().item():.3f} "
            f"max {s.max().item():.1f} rms eps {r(err / s):.3f}"
        )
    speed_px = cfg.data.size / UNITS
    frames = 5
    import dataclasses

    data5 = dataclasses.replace(cfg.data, frames=frames)
    t5 = build_dataset(data5, "test", length=n)
    real = to_model(torch.stack([t5[i] for i in range(n)]))
    known = predict(frames, 1, n)
    for temp in (0.0, 0.6, 1.0):
        gen = torch.Generator().manual_seed(0)
        vid = torch.where(known[:, :, None, None, None], real, -1.0)
        fake = method.generate(vid, known, temperature=temp, generator=gen)
        s = shapes_motion(fake, known, speed_px=speed_px).summary()
        if args.gif and temp == 0.6:
            rows = [v for pair in zip(real[:8], fake[:8]) for v in pair]
            write_grid(args.gif, rows, known=known[0])
        print(
            f"T={temp}: "
            + " ".join(
                f"{c} {s[c]:.3f}"
                for c in ("motion", "direction", "colour", "area", "presence", "all", "steps")
            )
        )
