"""Golden numbers from before the method/trainer/process refactor (issue 14): the same seeds
must give the same training losses and the same samples for every paper method.

Each case trains a tiny model three Adam steps on one fixed batch, then samples its default
task; the pins are the three losses (from before the refactor) and the sum and the sum of
squares of the sample (pinned on 2026-12-02, after it). Float32 kernels differ between CPUs:
on a machine with AVX-512 FP16 / AMX against the one that pinned them, losses moved by up to
7e-5 relative and sample sums by a few tenths of 768 values, hence the tolerances; a change of
behaviour moves them by far more.
"""

from __future__ import annotations

import pytest
import torch
from method_zoo import tiny_config

from videogen.methods import build_method

# method, config sections, generate keyword arguments -> losses, sample sum, sum of squares
PINS = [
    (
        "mcvd",
        {},
        {},
        [63.800384521484375, 63.667327880859375, 51.497798919677734],
        11.48713,
        463.61425,
    ),
    (
        "ramvid",
        {},
        {},
        [0.9639606475830078, 0.7463467717170715, 0.47451457381248474],
        77.68542,
        416.26918,
    ),
    (
        "videofusion",
        {},
        {},
        [1.0140265226364136, 0.7413270473480225, 0.5224258899688721],
        -13.32561,
        414.98687,
    ),
    (
        "videoflow",
        {},
        {},
        [8.84205150604248, 8.687500953674316, 8.566529273986816],
        15.88668,
        329.28933,
    ),
    (
        "ramvid",
        {"sample": {"sampler": "ddpm"}},
        {"guidance": 2.0},
        [0.9639606475830078, 0.7463467717170715, 0.47451457381248474],
        93.14507,
        368.41978,
    ),
    (
        "videofusion",
        {"sample": {"sampler": "ddpm"}},
        {"guidance": 2.0},
        [1.0140265226364136, 0.7413270473480225, 0.5224258899688721],
        -25.62887,
        355.20204,
    ),
    (
        "videofusion",
        {"model": {"num_classes": 3}},
        {"labels": [0, 1, 2], "guidance": 1.5, "train_labels": [2, 1, 0]},
        [0.9698026776313782, 0.6972732543945312, 1.0275083780288696],
        22.94453,
        447.91172,
    ),
    (
        "mcvd",
        {
            "model": {"past": 1, "current": 2, "future": 1},
            "diffusion": {"prediction": "v"},
            "sample": {"sampler": "dpm++"},
        },
        {},
        [23.41526222229004, 55.1805534362793, 33.86909103393555],
        1.15327,
        199.55044,
    ),
    (
        "videoflow",
        {"sample": {"temperature": 0.5}},
        {},
        [8.84205150604248, 8.687500953674316, 8.566529273986816],
        17.85531,
        263.92149,
    ),
]


def run(name: str, sections: dict, kwargs: dict) -> tuple[list[float], float, float]:
    torch.manual_seed(0)
    method = build_method(tiny_config(name, **sections))
    g = torch.Generator().manual_seed(1)
    video = torch.rand(3, method.window, 1, 8, 8, generator=g) * 2 - 1
    labels = kwargs.pop("train_labels", None)
    extra = {} if labels is None else {"labels": labels}
    torch.manual_seed(2)
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = method.loss(video, **extra)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    method.eval()
    gen = torch.Generator().manual_seed(5)
    out = method.generate(video, method.default_known(3), generator=gen, **kwargs).double()
    return losses, out.sum().item(), out.square().sum().item()


@pytest.mark.parametrize(("name", "sections", "kwargs", "losses", "total", "squares"), PINS)
def test_same_seed_same_losses_and_samples(name, sections, kwargs, losses, total, squares):
    kwargs = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    got_losses, got_total, got_squares = run(name, sections, kwargs)
    assert got_losses == pytest.approx(losses, rel=2e-4)
    assert got_total == pytest.approx(total, abs=1.0)  # 768 values in [-1, 1]
    assert got_squares == pytest.approx(squares, rel=2e-3)


TRAINER_LOSSES = [58.14726257324219, 61.88764953613281, 59.03209686279297, 60.420867919921875]
TRAINER_WEIGHTS = 45.29729341744758


def trainer_run(tmp_path) -> tuple[list[float], float]:
    """Four trainer steps of tiny MCVD on moving digits: accumulation, warm-up, clipping, EMA."""
    import json

    from videogen.checkpoint import load_pretrained
    from videogen.train import train

    cfg = tiny_config(
        "mcvd",
        data={"name": "moving-digits"},
        train={
            "steps": 4,
            "batch_size": 2,
            "grad_accum": 2,
            "warmup": 2,
            "grad_clip": 0.5,
            "ema_decay": 0.9,
            "log_every": 1,
            "ckpt_every": 2,
            "sample_every": 0,
            "seed": 4,
            "out": str(tmp_path / "run"),
        },
    )
    run_dir = train(cfg, progress=False)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    exported = load_pretrained(run_dir / "export")
    return [r["loss"] for r in rows], sum(p.double().sum().item() for p in exported.parameters())


def test_trainer_gives_the_same_losses_and_export(tmp_path):
    losses, weights = trainer_run(tmp_path)
    assert losses == pytest.approx(TRAINER_LOSSES, rel=1e-5)
    assert weights == pytest.approx(TRAINER_WEIGHTS, rel=1e-6)
