"""Every fast recipe (configs/<method>/*_fast.yaml) builds, and a tiny version of it trains on
the CPU and lowers its loss through the real trainer and data."""

import json
from pathlib import Path

import pytest

from videogen.config import load_config
from videogen.train import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# a tiny network of each method's family, so the recipe (prediction, weighting, EMA, optimiser)
# is what the test runs
TINY = {
    "mcvd": [
        "model.ngf=8",
        "model.ch_mult=[1,2]",
        "model.attn_resolutions=[8]",
        "model.head_channels=8",
        "model.dropout=0.0",
        "data.size=16",
    ],
    "ramvid": [
        "model.channels=8",
        "model.channel_mult=[1,2]",
        "model.attention_resolutions=[8]",
        "model.heads=2",
        "data.size=16",
    ],
    "videofusion": [
        "model.base.block_out_channels=[32,32]",
        "model.base.down_block_types=[DownBlock2D,AttnDownBlock2D]",
        "model.base.up_block_types=[AttnUpBlock2D,UpBlock2D]",
        "model.base.attention_head_dim=32",
        "model.base.layers_per_block=1",
        "model.channels=32",
        "model.head_dim=32",
        "model.channel_mult=[1,2]",
        "model.attention_resolutions=[8]",
        "model.num_res_blocks=1",
        "model.dropout=0.0",
        "data.size=16",
        "data.frames=4",
    ],
    "videoflow": [
        "model.levels=2",
        "model.steps_per_level=2",
        "model.coupling_width=16",
        "model.prior_width=16",
        "model.prior_depth=1",
        "data.size=16",
    ],
}

# what each fast recipe claims to change (the configs' comments and BENCHMARKS.md say why)
CLAIMS = {
    "mcvd": lambda c: c.diffusion.prediction == "x0" and c.diffusion.loss_weighting == "none",
    "ramvid": lambda c: (
        c.diffusion.prediction == "v"
        and c.diffusion.loss_weighting == "min_snr"
        and c.train.batch_size == 64
    ),
    "videofusion": lambda c: c.diffusion.loss_weighting == "min_snr" and c.train.ema_warmup,
    "videoflow": lambda c: c.model["prior_scale_per_channel"] is True,
}

FAST = sorted(CONFIGS.glob("*/*_fast.yaml"))


def test_there_are_fast_recipes():
    assert {p.parent.name for p in FAST} == set(TINY) == set(CLAIMS)


@pytest.mark.parametrize("path", FAST, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fast_recipe_trains_a_tiny_version_and_lowers_its_loss(path, tmp_path):
    method = path.parent.name
    assert CLAIMS[method](load_config(path))
    cfg = load_config(
        path,
        [
            *TINY[method],
            "train.steps=60",
            "train.batch_size=8",
            # the rate and its schedule suit the tiny network's 60 steps (a cosine over them
            # ends near 0), as the recipe's suit its own network's thousands
            "train.lr=2e-3",
            "train.lr_schedule=constant",
            "train.warmup=0",
            "train.log_every=10",
            "train.ckpt_every=0",
            "train.sample_every=0",
            "train.seed=0",
            f"train.out={tmp_path / 'run'}",
        ],
    )
    run = train(cfg, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert len(losses) == 6
    # bits per dimension of a flow start near 6-8 and fall in smaller steps than a diffusion
    # loss
    assert losses[-1] < (0.9 if method == "videoflow" else 0.7) * losses[0], losses
