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
}

FAST = sorted(CONFIGS.glob("*/*_fast.yaml"))


def test_there_are_fast_recipes():
    assert {p.parent.name for p in FAST} >= {"mcvd", "ramvid"}


@pytest.mark.parametrize("path", FAST, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fast_recipe_trains_a_tiny_version_and_lowers_its_loss(path, tmp_path):
    method = path.parent.name
    cfg = load_config(
        path,
        [
            *TINY[method],
            "train.steps=60",
            "train.batch_size=8",
            "train.lr=2e-3",
            "train.warmup=0",
            "train.log_every=10",
            "train.ckpt_every=0",
            "train.sample_every=0",
            "train.seed=0",
            f"train.out={tmp_path / 'run'}",
        ],
    )
    assert cfg.diffusion.prediction == "v" and cfg.diffusion.loss_weighting == "min_snr"
    run = train(cfg, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[0], losses
