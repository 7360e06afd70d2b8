"""Golden numbers from before the method/trainer/process refactor (issue 14): the same seeds
must give the same training losses and the same samples for every paper method.

Each case trains a tiny model three Adam steps on one fixed batch, then samples its default
task; the pins are the three losses and the sum of the generated values that did not clip to
±1 (most of an untrained sample clips, so the count of unclipped values is pinned as well).
"""

from __future__ import annotations

import pytest
import torch
from method_zoo import tiny_config

from videogen.methods import build_method

# method, config sections, generate keyword arguments -> losses, unclipped count, their sum
PINS = [
    (
        "mcvd",
        {},
        {},
        [63.800384521484375, 63.667327880859375, 51.497798919677734],
        463,
        -1.51286457,
    ),
    (
        "ramvid",
        {},
        {},
        [0.9639606475830078, 0.7463467717170715, 0.47451457381248474],
        585,
        24.5528859,
    ),
    (
        "videofusion",
        {},
        {},
        [1.0140265226364136, 0.7413270473480225, 0.5224258899688721],
        584,
        -3.32591618,
    ),
    (
        "videoflow",
        {},
        {},
        [8.84205150604248, 8.687500953674316, 8.566529273986816],
        633,
        -5.2309621,
    ),
    (
        "ramvid",
        {"sample": {"sampler": "ddpm"}},
        {"guidance": 2.0},
        [0.9639606475830078, 0.7463467717170715, 0.47451457381248474],
        673,
        56.0212672,
    ),
    (
        "videofusion",
        {"sample": {"sampler": "ddpm"}},
        {"guidance": 2.0},
        [1.0140265226364136, 0.7413270473480225, 0.5224258899688721],
        705,
        -10.6284459,
    ),
    (
        "videofusion",
        {"model": {"num_classes": 3}},
        {"labels": [0, 1, 2], "guidance": 1.5, "train_labels": [2, 1, 0]},
        [0.9698026776313782, 0.6972732543945312, 1.0275083780288696],
        546,
        0.94328777,
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
        760,
        3.15326052,
    ),
    (
        "videoflow",
        {"sample": {"temperature": 0.5}},
        {},
        [8.84205150604248, 8.687500953674316, 8.566529273986816],
        700,
        12.1455105,
    ),
]


def run(name: str, sections: dict, kwargs: dict) -> tuple[list[float], int, float]:
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
    out = method.generate(video, method.default_known(3), generator=gen, **kwargs)
    inner = out[out.abs() < 1]
    return losses, inner.numel(), inner.double().sum().item()


@pytest.mark.parametrize(("name", "sections", "kwargs", "losses", "count", "total"), PINS)
def test_same_seed_same_losses_and_samples(name, sections, kwargs, losses, count, total):
    kwargs = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    got_losses, got_count, got_total = run(name, sections, kwargs)
    assert got_losses == pytest.approx(losses, rel=1e-5)
    assert got_count == count
    assert got_total == pytest.approx(total, rel=1e-5, abs=1e-5)


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
