"""The `videogen` command end to end: every subcommand through `main`, on tiny models."""

import json
from pathlib import Path

import pytest
from PIL import Image

from videogen.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY_MCVD = """
method: mcvd
model: {ngf: 16, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [8], head_channels: 16,
        past: 2, current: 2, future: 1, p_mask_past: 0.5, p_mask_future: 0.5}
data: {name: moving-digits, frames: 5, size: 16, channels: 1}
train: {steps: 3, batch_size: 4, log_every: 1, sample_every: 3, ckpt_every: 100}
sample: {sampler: ddim, steps: 3}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "tiny.yaml"
    config.write_text(TINY_MCVD)
    assert main(["train", str(config), f"train.out={folder / 'run'}", "--quiet"]) == 0
    return folder / "run"


def gif_frames(path: Path) -> int:
    with Image.open(path) as im:
        return im.n_frames


def test_info_reports_the_paper_sized_models(capsys):
    assert main(["info", str(CONFIGS / "mcvd" / "smmnist.yaml"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["params"] - 27.9e6) / 27.9e6 < 0.10
    assert info["flops_per_clip"] > 1e9 and info["config"]["method"] == "mcvd"
    assert main(["info", str(CONFIGS / "ramvid" / "bair.yaml"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["params"] - 235e6) / 235e6 < 0.10


def test_a_bad_override_fails_before_any_work_naming_the_key(capsys, tmp_path):
    config = str(CONFIGS / "mcvd" / "smmnist.yaml")
    assert main(["train", config, "train.lrate=1", f"train.out={tmp_path}"]) == 2
    assert "train.lrate" in capsys.readouterr().err
    assert main(["info", config, "model.ngf=wide"]) == 2
    assert "model.ngf" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_train_writes_a_run_folder(run):
    assert (run / "export" / "config.json").is_file()
    assert (run / "samples" / "step-0000003.gif").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "task, extra",
    [
        ("predict", ["--known", "2", "--frames", "7"]),
        ("past", ["--known", "2", "--frames", "7"]),
        ("infill", ["--known", "2", "--frames", "6"]),
        ("interpolate", ["--every", "3", "--frames", "7"]),
        ("upsample", ["--every", "2", "--frames", "7"]),
        ("unconditional", ["--frames", "6"]),
    ],
)
def test_sample_every_task_to_a_gif_grid(run, tmp_path, task, extra):
    out = tmp_path / f"{task}.gif"
    args = [
        "sample",
        str(run),
        "--task",
        task,
        *extra,
        "--clips",
        "2",
        "--samples",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    frames = int(extra[extra.index("--frames") + 1])
    assert gif_frames(out) == frames
    # rows of 16 px + 2 x 2 px border: each of the 2 clips over its 2 samples; unconditional
    # samples alone (an unrelated data clip is not shown)
    rows = 4 if task == "unconditional" else 6
    assert Image.open(out).size == (20, rows * 20)


def test_sample_from_a_real_video_file_to_mp4(run, tmp_path, small_mp4):
    out = tmp_path / "pred.mp4"
    args = [
        "sample",
        str(run / "export"),
        "--task",
        "predict",
        "--known",
        "2",
        "--frames",
        "6",
        "--input",
        str(small_mp4),
        "--device",
        "cpu",
        "--quiet",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    from videogen.io import read_video

    assert read_video(out).shape[:3] == (6, 16, 16)


def test_sample_says_plainly_when_the_input_is_too_short(run, tmp_path, capsys, small_mp4):
    args = [
        "sample",
        str(run),
        "--task",
        "predict",
        "--known",
        "2",
        "--frames",
        "500",
        "--input",
        str(small_mp4),
        "--device",
        "cpu",
        "-o",
        str(tmp_path / "x.gif"),
    ]
    assert main(args) == 2
    assert "needed 500" in capsys.readouterr().err


def test_sample_of_a_missing_run_names_it(capsys, tmp_path):
    assert main(["sample", str(tmp_path / "nope"), "-o", str(tmp_path / "x.gif")]) == 2
    assert "nope" in capsys.readouterr().err


def test_eval_writes_metrics_and_report(run, tmp_path):
    out = tmp_path / "eval"
    args = [
        "eval",
        str(run),
        "--frames",
        "6",
        "--known-frames",
        "2",
        "--metrics",
        "ssim,psnr",
        "--num-clips",
        "4",
        "--batch-size",
        "4",
        "--best-of",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert 0 <= result["metrics"]["ssim"]["value"] <= 1
    assert result["metrics"]["ssim"]["protocol"]["best_of"] == 2
    assert "<html" in (out / "report.html").read_text().lower()


def test_data_preview_and_info(tmp_path, capsys, sample_videos):
    out = tmp_path / "digits.gif"
    assert main(["data", "preview", "moving-digits", "--frames", "8", "-o", str(out)]) == 0
    assert gif_frames(out) == 8
    capsys.readouterr()
    assert main(["data", "info", str(sample_videos), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] >= 1 and isinstance(info["unreadable"], list)


def test_demo_writes_metrics_for_each_task(tmp_path):
    from videogen.demo import run_demo

    out = run_demo(tmp_path / "demo", device="cpu", steps=2, clips=2, progress=False)
    report = json.loads((out / "metrics.json").read_text())
    for task in ("predict", "infill"):
        for who in ("model", "copy_last_known"):
            assert set(report[task][who]) == {"mse", "psnr", "ssim"}
    assert all((out / f"{t}.gif").is_file() for t in ("predict", "infill", "unconditional"))


def test_demo_overrides_change_its_config_and_bad_ones_are_named(tmp_path):
    from videogen.config import ConfigError, load_config
    from videogen.demo import demo_config

    cfg = demo_config("cpu", None, tmp_path, ["diffusion.prediction=v", "train.lr=5e-4"])
    assert (cfg.diffusion.prediction, cfg.train.lr) == ("v", 5e-4)
    assert cfg.train.steps == 1500 and cfg.model["ngf"] == 32  # the rest stays the demo's
    main(
        [
            "demo",
            "--out",
            str(tmp_path / "d"),
            "--steps",
            "1",
            "--clips",
            "1",
            "--quiet",
            "diffusion.loss_weighting=min_snr",
        ]
    )
    saved = load_config(tmp_path / "d" / "run" / "config.yaml")
    assert saved.diffusion.loss_weighting == "min_snr"
    with pytest.raises(ConfigError, match="train.lr"):
        demo_config("cpu", None, tmp_path, ["train.lr=-1"])
    with pytest.raises(ConfigError, match="diffusion.prediction"):
        demo_config("cpu", None, tmp_path, ["diffusion.prediction=noise"])


def test_videoflow_trains_samples_and_reports_bits_per_pixel_through_the_same_commands(tmp_path):
    config = tmp_path / "flow.yaml"
    config.write_text(
        "method: videoflow\n"
        "model: {levels: 2, steps_per_level: 1, coupling_width: 8, prior_depth: 1,\n"
        "        prior_width: 8, cond_frames: 1, context_frames: 1}\n"
        "data: {name: stochastic-shapes, frames: 3, size: 16, channels: 3}\n"
        "train: {steps: 2, batch_size: 2, log_every: 1, sample_every: 0, ema_decay: null}\n"
    )
    run = tmp_path / "run"
    assert main(["train", str(config), f"train.out={run}", "--quiet"]) == 0
    gif = tmp_path / "flow.gif"
    assert (
        main(
            [
                "sample",
                str(run),
                "--task",
                "predict",
                "--known",
                "1",
                "--frames",
                "5",
                "--temperature",
                "0.6",
                "--device",
                "cpu",
                "--quiet",
                "-o",
                str(gif),
            ]
        )
        == 0
    )
    assert gif_frames(gif) == 5
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                str(run),
                "--metrics",
                "bpd,ssim,psnr",
                "--num-clips",
                "4",
                "--batch-size",
                "4",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert 0 < metrics["bpd"]["value"] < 16 and 0 <= metrics["ssim"]["value"] <= 1


def test_weights_of_another_model_are_refused_plainly(run, tmp_path, capsys):
    import shutil

    export = tmp_path / "export"
    shutil.copytree(run / "export", export)
    config = json.loads((export / "config.json").read_text())
    config["model"]["ngf"] = 32  # the weights were trained with ngf 16
    (export / "config.json").write_text(json.dumps(config))
    assert main(["sample", str(export), "--device", "cpu", "-o", str(tmp_path / "x.gif")]) == 2
    assert "does not hold weights of this mcvd model" in capsys.readouterr().err
