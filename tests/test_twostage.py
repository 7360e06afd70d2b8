"""The two-stage test method through `videogen train/sample/eval`: an autoencoder trained with
an alternating adversarial loss (two optimizers, one averaged), then a latent diffusion over its
frozen codes with the autoencoder given by path; checkpoints, exact resume, self-contained
exports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videogen.checkpoint import latest_checkpoint, load_pretrained
from videogen.cli import main
from videogen.methods import build_method
from videogen.tasks import predict

COMMON = [
    "method=twostage",
    "data.name=moving-digits",
    "data.frames=4",
    "data.size=16",
    "data.channels=1",
    "train.batch_size=2",
    "train.log_every=1",
    "train.ckpt_every=2",
    "train.sample_every=2",
    "train.ema_decay=0.9",
    "train.lr=1e-3",
    "sample.sampler=ddim",
    "sample.steps=3",
]


def videogen_train(folder: Path, out: Path, steps: int, *overrides: str) -> Path:
    config = folder / "empty.yaml"
    config.write_text("{}\n")
    args = ["train", str(config), *COMMON, f"train.steps={steps}", f"train.out={out}"]
    assert main([*args, *overrides, "--quiet"]) == 0
    return out


def log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Stage 1 trained 4 steps straight, stage 1 trained 2 + resumed to 4, stage 2 on top."""
    folder = tmp_path_factory.mktemp("twostage")
    ae = videogen_train(folder, folder / "ae", 4, "model.stage=autoencoder")
    videogen_train(folder, folder / "ae-resumed", 2, "model.stage=autoencoder")
    videogen_train(folder, folder / "ae-resumed", 4, "model.stage=autoencoder")
    ldm = videogen_train(
        folder,
        folder / "ldm",
        4,
        "model.stage=diffusion",
        f"model.autoencoder.path={ae / 'export'}",
    )
    return ae, folder / "ae-resumed", ldm


def test_stage_one_alternates_two_optimizers_and_averages_the_autoencoder_only(stages):
    ae, _, _ = stages
    rows = log(ae)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert {"autoencoder/loss", "autoencoder/recon", "discriminator/loss"} <= set(rows[0])
    ckpt = latest_checkpoint(ae)
    optim = torch.load(ckpt / "optim.pt", weights_only=True)
    assert set(optim["optimizers"]) == set(optim["schedulers"]) == {"autoencoder", "discriminator"}
    ema = load_file(str(ckpt / "ema.safetensors"))
    assert ema and all(k.startswith("autoencoder.") for k in ema)
    raw = load_file(str(ckpt / "model.safetensors"))
    assert any(k.startswith("discriminator.") for k in raw)
    assert (ae / "samples" / "step-0000002.gif").is_file()  # reconstructions


def test_the_discriminator_phase_sees_no_gradient_of_the_autoencoder_phase(tmp_path):
    """The autoencoder phase's adversarial term also reaches the discriminator's parameters;
    those gradients are cleared before the discriminator phase. With the autoencoder frozen by
    lr 0 the discriminator sees the same reconstructions whatever ``adv_weight`` is, so its
    update must not depend on it."""
    weights = []
    for adv in (0.0, 5.0):
        run = videogen_train(
            tmp_path,
            tmp_path / f"adv{adv}",
            1,
            "model.stage=autoencoder",
            "train.lr=0.0",
            "model.disc_lr=1e-2",
            f"model.adv_weight={adv}",
        )
        weights.append(load_file(str(latest_checkpoint(run) / "model.safetensors")))
    cfg = load_pretrained(tmp_path / "adv0.0").cfg
    torch.manual_seed(0)  # the trainer's seed: the initial weights
    start = build_method(cfg).state_dict()
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
        moved = not torch.equal(value, start[key])
        assert moved == key.startswith("discriminator."), key


def test_stage_one_resume_equals_an_uninterrupted_run(stages):
    ae, resumed, _ = stages
    a, b = log(ae), log(resumed)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a[2:], b[2:]):
        for key in ("autoencoder/loss", "discriminator/loss"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5), key
    wa = load_file(str(latest_checkpoint(ae) / "model.safetensors"))
    wb = load_file(str(latest_checkpoint(resumed) / "model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_stage_two_records_the_autoencoder_keeps_it_frozen_and_exports_it(stages, tmp_path):
    ae, _, ldm = stages
    saved = (ldm / "config.yaml").read_text()
    assert "loaded_from: " + str(ae / "export") in saved and "path: null" in saved
    ckpt = latest_checkpoint(ldm)
    assert set(torch.load(ckpt / "optim.pt", weights_only=True)["optimizers"]) == {"model"}
    ema = load_file(str(ckpt / "ema.safetensors"))
    assert ema and all(k.startswith("denoiser.") for k in ema)
    stage1 = load_file(str(ae / "export" / "model.safetensors"))
    export = tmp_path / "moved"
    shutil.copytree(ldm / "export", export)
    shutil.move(ae / "export", tmp_path / "stage1")  # the export must not need it
    try:
        method = load_pretrained(export)
        weights = method.state_dict()
        for key, value in stage1.items():
            if key.startswith("autoencoder."):
                assert torch.equal(weights[key], value), key
        assert not any(p.requires_grad for p in method.autoencoder.parameters())
        video = torch.rand(2, 4, 1, 16, 16) * 2 - 1
        known = predict(4, 2, 2)
        out = method.generate(video, known, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[known], video[known])
        assert not torch.equal(out[~known], video[~known])
        assert out.min() >= -1 and out.max() <= 1
    finally:
        shutil.move(tmp_path / "stage1", ae / "export")


def test_stage_two_samples_and_evaluates_through_the_cli(stages, tmp_path):
    _, _, ldm = stages
    gif = tmp_path / "predict.gif"
    args = ["sample", str(ldm), "--known", "2", "--frames", "6", "--device", "cpu"]
    assert main([*args, "-o", str(gif), "--quiet"]) == 0
    assert gif.is_file()
    out = tmp_path / "eval"
    args = ["eval", str(ldm), "--known-frames", "2", "--metrics", "ssim,psnr"]
    args += ["--num-clips", "2", "--batch-size", "2", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert -1 <= result["metrics"]["ssim"]["value"] <= 1  # SSIM of an untrained model
    assert result["metrics"]["psnr"]["value"] > 0


def test_stage_one_cannot_generate_and_says_what_to_do(stages):
    ae, _, _ = stages
    method = load_pretrained(ae)
    with pytest.raises(ValueError, match="model.stage=diffusion"):
        method.generate(torch.zeros(1, 4, 1, 16, 16), predict(4, 2, 1))


def test_a_wrong_autoencoder_path_is_named(stages, tmp_path, capsys):
    _, _, ldm = stages
    args = ["model.stage=diffusion", f"model.autoencoder.path={ldm / 'export'}"]
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    code = main(["train", str(config), *COMMON, *args, f"train.out={tmp_path / 'x'}"])
    assert code == 2
    assert "not a stage-1 TwoStage autoencoder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_stage_one_trains_its_two_optimizers_under_two_processes(tmp_path):
    """`torchrun` with two CPU processes (gloo): the alternating phases (one optimizer each, the
    other group without gradients) run under DistributedDataParallel; rank 0 alone writes the
    log and a checkpoint holding both optimizers."""
    import os
    import subprocess
    import sys

    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    run = tmp_path / "ae"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["-m", "videogen", "train", "--quiet", str(config), *COMMON]
    cmd += ["model.stage=autoencoder", "train.steps=4", "train.sample_every=0", f"train.out={run}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("run folder:") == 1
    assert [row["step"] for row in log(run)] == [1, 2, 3, 4]
    optim = torch.load(latest_checkpoint(run) / "optim.pt", weights_only=True)
    assert {"autoencoder", "discriminator"} <= set(optim["optimizers"])
