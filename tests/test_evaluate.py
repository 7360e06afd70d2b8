"""The evaluation protocols end to end on tiny data, with weight files made here."""

import argparse
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from videogen.evaluate import (
    SETTINGS,
    BestOf,
    ProtocolError,
    add_eval_arguments,
    eval_kwargs,
    evaluate_run,
    iter_batches,
    iter_labelled_batches,
    merge_shards,
    to_float,
)
from videogen.metrics import WeightFileError

FRAMES, SIZE = 10, 16


class ScriptedI3D(torch.nn.Module):
    """A small stand-in with the call signature of StyleGAN-V's i3d_torchscript.pt."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(3 * 4 * 4 * 4, 400, generator=g))

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = True,
        resize: bool = True,
        return_features: bool = False,
    ) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (4, 4, 4)).flatten(1)
        return pooled @ self.proj


class ScriptedC3D(torch.nn.Module):
    """A small stand-in for StyleGAN-V's c3d_ucf101.pt (uint8 video in, probabilities out)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.proj = torch.nn.Parameter(torch.randn(3 * 2 * 2 * 2, 101, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool3d(x.float() / 255, (2, 2, 2)).flatten(1)
        return (pooled @ self.proj * 5).softmax(dim=1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    torch.jit.save(torch.jit.script(ScriptedI3D()), str(root / "i3d_torchscript.pt"))
    torch.jit.save(torch.jit.script(ScriptedC3D()), str(root / "c3d_ucf101.pt"))
    return root


def make_clips(n: int, frames: int = FRAMES, size: int = SIZE, seed: int = 0) -> list[torch.Tensor]:
    """Smooth moving blobs as uint8 (T, H, W, C) clips, so neighbouring frames correlate."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    clips = []
    for _ in range(n):
        start, vel, color = (
            torch.rand(2, generator=g) * size,
            torch.randn(2, generator=g),
            torch.rand(3, generator=g),
        )
        frames_ = []
        for t in range(frames):
            cy, cx = (start + vel * t) % size
            blob = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 8.0)
            frames_.append(blob[..., None] * color * 255)
        clips.append(torch.stack(frames_).round().to(torch.uint8))
    return clips


class NoisyOracle:
    """Returns the truth plus seeded noise on unknown frames: a method with known quality."""

    def __init__(self, sigma: float = 0.2, bad_range: bool = False, bad_shape: bool = False):
        self.sigma, self.bad_range, self.bad_shape = sigma, bad_range, bad_shape
        self.calls = 0

    def generate(
        self,
        video,
        known,
        *,
        steps=None,
        sampler=None,
        temperature=None,
        guidance=None,
        generator=None,
    ):
        self.calls += 1
        noise = torch.randn(video.shape, generator=generator, device=video.device) * self.sigma
        out = torch.where(known[:, :, None, None, None], video, (video + noise).clamp(-1, 1))
        if self.bad_range:
            out = out * 3
        if self.bad_shape:
            out = out[..., :-1]
        return out


def run(weights, tmp_path, method=None, clips=None, **kw):
    settings = dict(
        task="predict",
        task_kwargs={"known": 4},
        metrics=("fvd", "kvd", "ssim", "psnr"),
        best_of=3,
        num_clips=8,
        batch_size=3,
        i3d_path=weights / "i3d_torchscript.pt",
        c3d_path=weights / "c3d_ucf101.pt",
        trust_torchscript=True,  # the stand-ins are written by this test
        is_splits=2,
        data_spec={"name": "blobs", "split": "test"},
        cache_dir=tmp_path / "cache",
        out_dir=tmp_path / "out",
    )
    settings.update(kw)
    return evaluate_run(
        method or NoisyOracle(), clips if clips is not None else make_clips(8), **settings
    )


def test_run_writes_metrics_with_protocol_and_report(weights, tmp_path):
    clips = make_clips(8, frames=16)
    result = run(weights, tmp_path, clips=clips, metrics=("fvd", "kvd", "is", "ssim", "psnr"))
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["metrics"]["fvd"]["value"] == pytest.approx(result["metrics"]["fvd"]["value"])
    fvd = saved["metrics"]["fvd"]
    digest = hashlib.sha256((weights / "i3d_torchscript.pt").read_bytes()).hexdigest()
    assert fvd["protocol"]["i3d_sha256"] == digest
    assert fvd["protocol"]["resize"] == "tf1-bilinear"
    assert fvd["protocol"]["real_clips"] == fvd["protocol"]["generated_clips"] == 8
    assert fvd["protocol"]["frames_included"] == "all"
    assert fvd["value"] > 0 and saved["metrics"]["kvd"]["value"] > 0
    assert saved["protocol"]["known_frames"] == [0, 1, 2, 3]
    assert saved["protocol"]["seed"] == 0 and saved["protocol"]["best_of"] == 3
    for m in ("ssim", "psnr"):
        assert len(saved["metrics"][m]["per_frame"]) == 12
        assert saved["metrics"][m]["frames"] == list(range(4, 16))
        assert saved["metrics"][m]["protocol"]["best_of"] == 3
    assert 1 <= saved["metrics"]["is"]["value"] <= 101
    report = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/gif;base64," in report and "<svg" in report and "FVD" in report


def _is_settings(weights, **kw):
    settings = dict(
        task="predict",
        task_kwargs={"known": 4},
        metrics=("is",),
        best_of=1,
        batch_size=256,
        c3d_path=weights / "c3d_ucf101.pt",
        trust_torchscript=True,
    )
    return {**settings, **kw}


def test_inception_score_does_not_depend_on_clip_order_by_default(weights):
    """Regression: with 10 splits in clip order, class-sorted samples scored lower than the
    same samples shuffled. The default now takes one split over all samples."""
    clips = make_clips(20, frames=16)
    by_brightness = sorted(clips, key=lambda c: float(c.float().mean()))
    truth = NoisyOracle(sigma=0.0)  # samples equal the clips: only their order changes
    settings = _is_settings(weights, num_clips=20, batch_size=5)
    shuffled = evaluate_run(truth, clips, **settings)["metrics"]["is"]
    ordered = evaluate_run(truth, by_brightness, **settings)["metrics"]["is"]
    assert ordered["value"] == pytest.approx(shuffled["value"], rel=1e-6)
    assert shuffled["protocol"]["preset"] == "single-split"
    assert shuffled["protocol"]["splits"] == 1 and shuffled["protocol"]["shuffle_seed"] is None
    # 10 splits in clip order (the former default) gives another value for the same samples
    split10 = {**settings, "is_splits": 10}
    a = evaluate_run(truth, clips, **split10)["metrics"]["is"]
    b = evaluate_run(truth, by_brightness, **split10)["metrics"]["is"]
    assert a["value"] != pytest.approx(b["value"], rel=1e-3)
    assert a["protocol"]["preset_overridden"] is True


def test_inception_score_presets_of_tgan2_and_stylegan_v(weights):
    import numpy as np

    from videogen.metrics import inception_score, load_c3d

    clips = torch.stack(make_clips(2048, frames=16, size=8))
    c3d = load_c3d(weights / "c3d_ucf101.pt", trust_torchscript=True)
    video = to_float(clips.permute(0, 1, 4, 2, 3))
    probs = c3d(video[:, :16].permute(0, 2, 1, 3, 4))  # (2048, 101), the truth's classes
    truth = NoisyOracle(sigma=0.0)
    sgv = evaluate_run(
        truth, clips, **_is_settings(weights, num_clips=2048, is_preset="stylegan-v")
    )
    sgv = sgv["metrics"]["is"]
    assert (sgv["value"], sgv["std"]) == pytest.approx(inception_score(probs, 10, 42), rel=1e-6)
    assert sgv["protocol"]["splits"] == 10 and sgv["protocol"]["shuffle_seed"] == 42
    assert "StyleGAN-V" in sgv["protocol"]["reproduces"]
    # TGANv2: 10 independent runs (sample r of every clip), one split each, mean/std over runs
    noisy = NoisyOracle(sigma=0.3)
    tgan = evaluate_run(noisy, clips, **_is_settings(weights, num_clips=2048, is_preset="tgan2"))
    tgan = tgan["metrics"]["is"]
    runs = tgan["per_run"]
    assert len(runs) == 10 and len(set(runs)) == 10 and noisy.calls == 8 * 10
    assert tgan["value"] == pytest.approx(np.mean(runs)) and tgan["std"] == pytest.approx(
        np.std(runs)
    )
    assert tgan["protocol"]["runs"] == 10 and tgan["protocol"]["eps"] == 1e-20
    assert tgan["protocol"]["std_over"] == "runs"
    with pytest.raises(ProtocolError, match="tgan2.*2048 samples"):
        evaluate_run(noisy, clips[:8], **_is_settings(weights, num_clips=8, is_preset="tgan2"))


def test_mcvd_psnr_and_ssim_beside_the_per_frame_means(weights, tmp_path):
    import numpy as np
    from PIL import Image
    from skimage.metrics import structural_similarity

    clips = make_clips(3, size=16)
    result = run(
        weights,
        tmp_path,
        clips=clips,
        metrics=("psnr", "psnr_mcvd", "ssim_mcvd"),
        num_clips=3,
        best_of=1,
        out_dir=None,
    )["metrics"]
    # the same samples again (one batch of 3: first clip 0), scored with MCVD's formulas here
    from videogen.evaluate.generation import _sample_seed

    video = to_float(torch.stack(clips).permute(0, 1, 4, 2, 3))
    known = torch.zeros(3, FRAMES, dtype=torch.bool)
    known[:, :4] = True
    out = NoisyOracle().generate(
        video, known, generator=torch.Generator().manual_seed(_sample_seed(0, 0, 0))
    )
    fake, real = ((out[:, 4:] + 1) / 2).double(), ((video[:, 4:] + 1) / 2).double()
    mse = (fake - real).square().mean(dim=(2, 3, 4))  # (clips, frames)
    mcvd_psnr = 10 * torch.log10(1 / mse.mean(1))  # one PSNR of the clip's mean MSE
    mean_psnr = (10 * torch.log10(1 / mse)).mean(1)  # the mean of per-frame PSNR

    def grey(x):  # torchvision's ToPILImage (x * 255 truncated), then PIL's convert("L")
        img = (x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        return np.asarray(Image.fromarray(img, "RGB").convert("L"))

    mcvd_ssim = [
        np.mean(
            [
                structural_similarity(
                    grey(fake[c, t].float()),
                    grey(real[c, t].float()),
                    data_range=255,
                    gaussian_weights=True,
                    use_sample_covariance=False,
                )
                for t in range(FRAMES - 4)
            ]
        )
        for c in range(3)
    ]
    assert result["psnr_mcvd"]["value"] == pytest.approx(float(mcvd_psnr.mean()), rel=1e-5)
    assert result["psnr"]["value"] == pytest.approx(float(mean_psnr.mean()), rel=1e-5)
    assert result["psnr_mcvd"]["value"] != pytest.approx(result["psnr"]["value"], rel=1e-4)
    assert result["ssim_mcvd"]["value"] == pytest.approx(np.mean(mcvd_ssim), abs=1e-5)
    assert "1 / mean over generated frames" in result["psnr_mcvd"]["protocol"]["formula"]
    assert "grey" in result["ssim_mcvd"]["protocol"]["input"]
    assert "different samples" in result["psnr"]["protocol"]["selection"]


def test_best_of_k_is_never_worse_and_sample_zero_is_shared(weights, tmp_path):
    one = run(weights, tmp_path, best_of=1, metrics=("ssim", "psnr"), out_dir=None)
    three = run(weights, tmp_path, best_of=3, metrics=("ssim", "psnr"), out_dir=None)
    for m in ("ssim", "psnr"):
        assert three["metrics"][m]["value"] > one["metrics"][m]["value"]


def test_lpips_best_of_k_takes_the_lowest(weights, tmp_path):
    g = torch.Generator().manual_seed(3)
    alex = {}
    for i, cin, cout, k in [(0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3)]:
        alex[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.05
        alex[f"features.{i}.bias"] = torch.zeros(cout)
    for i, cin in [(8, 384), (10, 256)]:
        alex[f"features.{i}.weight"] = torch.randn(256, cin, 3, 3, generator=g) * 0.05
        alex[f"features.{i}.bias"] = torch.zeros(256)
    widths = [64, 192, 384, 256, 256]
    lin = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate(widths)
    }
    torch.save(alex, tmp_path / "alexnet.pth")
    torch.save(lin, tmp_path / "alex.pth")
    paths = dict(lpips_alexnet_path=tmp_path / "alexnet.pth", lpips_lin_path=tmp_path / "alex.pth")
    clips = make_clips(4, size=32)
    settings = dict(clips=clips, metrics=("lpips",), num_clips=4, out_dir=None, **paths)
    one = run(weights, tmp_path, best_of=1, **settings)["metrics"]["lpips"]
    three = run(weights, tmp_path, best_of=3, **settings)["metrics"]["lpips"]
    assert len(three["per_frame"]) == FRAMES - 4 and three["protocol"]["lin_sha256"]
    assert 0 < three["value"] < one["value"]


def test_identical_sets_give_fvd_zero_and_real_features_are_cached(weights, tmp_path):
    oracle = NoisyOracle(sigma=0.0)
    first = run(weights, tmp_path, method=oracle, metrics=("fvd", "ssim"), best_of=1)
    assert first["metrics"]["ssim"]["value"] == pytest.approx(1.0)
    cache_file = first["metrics"]["fvd"]["protocol"]["real_cache"]
    assert cache_file and (tmp_path / "cache").exists()
    noisy = run(weights, tmp_path, metrics=("fvd",), best_of=1)
    uncached = run(weights, tmp_path, metrics=("fvd",), best_of=1, data_spec=None)
    assert noisy["metrics"]["fvd"]["protocol"]["real_cache"] == cache_file
    assert noisy["metrics"]["fvd"]["value"] == pytest.approx(uncached["metrics"]["fvd"]["value"])
    assert uncached["metrics"]["fvd"]["protocol"]["real_cache"] is None
    # identical sets: zero up to float error of the eigen-decomposition
    assert abs(first["metrics"]["fvd"]["value"]) < 1e-6 * noisy["metrics"]["fvd"]["value"]


def test_fvd_on_generated_frames_only(weights, tmp_path):
    only = dict(metrics=("fvd",), fvd_include_known=False, best_of=1)
    result = run(weights, tmp_path, task_kwargs={"known": 1}, **only)
    proto = result["metrics"]["fvd"]["protocol"]
    assert proto["frames_included"] == "generated only" and proto["frames_used"] == FRAMES - 1
    with pytest.raises(ProtocolError, match="uses 6 frames per clip; I3D needs at least 9"):
        run(weights, tmp_path, task_kwargs={"known": 4}, **only)


def test_separate_real_set(weights, tmp_path):
    real = make_clips(10, seed=1)
    spec = {"name": "blobs", "split": "train"}
    result = run(weights, tmp_path, real_clips=real, num_real=10, real_spec=spec, best_of=1)
    proto = result["metrics"]["fvd"]["protocol"]
    assert proto["real_clips"] == 10 and proto["generated_clips"] == 8
    assert proto["real_split"] == spec and "i3d-" in proto["real_cache"]
    with pytest.raises(ProtocolError, match="real clips are 10 frames x 3 channels x 20x20"):
        run(weights, tmp_path, real_clips=make_clips(8, size=20), metrics=("fvd",), best_of=1)
    with pytest.raises(ProtocolError, match="num_real=10 needs a separate real set"):
        run(weights, tmp_path, num_real=10)


def test_protocol_errors_name_the_setting(weights, tmp_path):
    with pytest.raises(ProtocolError, match="num_clips=20"):
        run(weights, tmp_path, num_clips=20)
    with pytest.raises(ProtocolError, match=r"\[-1, 1\]"):
        run(weights, tmp_path, method=NoisyOracle(bad_range=True))
    with pytest.raises(ProtocolError, match="same frames and resolution"):
        run(weights, tmp_path, method=NoisyOracle(bad_shape=True))
    mixed = make_clips(6) + make_clips(6, size=SIZE + 4)
    with pytest.raises(ProtocolError, match="one frame count and resolution"):
        run(weights, tmp_path, clips=mixed)
    with pytest.raises(ProtocolError, match="no known frames"):
        run(weights, tmp_path, task="unconditional", task_kwargs={})
    with pytest.raises(ProtocolError, match="log_likelihood"):
        run(weights, tmp_path, metrics=("bpd",))

    class PredictOnly(NoisyOracle):
        def supported_known(self, known):
            return None if bool(known[:, 0].all()) else "only conditions on leading frames"

    with pytest.raises(ProtocolError, match="only conditions on leading frames"):
        run(weights, tmp_path, method=PredictOnly(), task="past", task_kwargs={"known": 2})
    with pytest.raises(WeightFileError, match="nope.pt"):
        run(weights, tmp_path, i3d_path=tmp_path / "nope.pt")
    with pytest.raises(WeightFileError, match="i3d_torchscript.pt is a TorchScript archive"):
        run(weights, tmp_path, trust_torchscript=False)


def test_unconditional_generation_and_bits_per_dim(weights, tmp_path):
    class Flow(NoisyOracle):
        def log_likelihood(self, video):
            return video.float().flatten(1).mean(1) + 3.0

    result = run(
        weights,
        tmp_path,
        method=Flow(),
        task="unconditional",
        task_kwargs={},
        metrics=("fvd", "bpd"),
        best_of=1,
    )
    assert result["protocol"]["known_frames"] == []
    assert result["metrics"]["bpd"]["value"] > 0


def test_float_batches_are_accepted_and_checked():
    clips = make_clips(5)
    floats = torch.stack(clips).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    batches = list(iter_batches([floats[:3], floats[3:]], batch_size=2, num_clips=5))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert torch.allclose(torch.cat(batches), floats)
    as_uint8 = torch.cat(list(iter_batches(clips, batch_size=2, num_clips=5)))
    assert as_uint8.dtype == torch.uint8 and torch.allclose(to_float(as_uint8), floats)
    mixed = torch.cat(list(iter_batches([clips[0], floats[1]], batch_size=2, num_clips=2)))
    assert torch.allclose(mixed, floats[:2])
    with pytest.raises(ProtocolError, match=r"\[-1, 1\]"):
        list(iter_batches([floats * 2], batch_size=2, num_clips=5))


def test_class_labels_are_batched_with_their_clips():
    clips = make_clips(5)
    pairs = [(clip, torch.tensor(i % 3)) for i, clip in enumerate(clips)]
    batches = list(iter_labelled_batches(pairs, batch_size=2, num_clips=5))
    assert [labels.tolist() for _, labels in batches] == [[0, 1], [2, 0], [1]]
    assert torch.equal(
        torch.cat([v for v, _ in batches]), torch.stack(clips).permute(0, 1, 4, 2, 3)
    )
    # (clips, labels) batches and dicts as a DataLoader gives them
    stacked = [
        (torch.stack(clips[:3]), torch.tensor([0, 1, 2])),
        {"video": torch.stack(clips[3:]), "labels": torch.tensor([0, 1])},
    ]
    assert [y.tolist() for _, y in iter_labelled_batches(stacked, 2, 5)] == [[0, 1], [2, 0], [1]]
    assert all(y is None for _, y in iter_labelled_batches(clips, 2, 5))
    with pytest.raises(ProtocolError, match="test clip 1 has no class label but clip 0 has one"):
        list(iter_labelled_batches([pairs[0], clips[1]], 2, 2))
    with pytest.raises(ProtocolError, match="3 clips but 2 labels"):
        list(iter_labelled_batches([(torch.stack(clips[:3]), torch.tensor([0, 1]))], 2, 3))


def test_a_method_without_classes_ignores_the_labels(weights, tmp_path):
    """NoisyOracle.generate takes no ``labels``: passing them would fail."""
    pairs = [(clip, torch.tensor(1)) for clip in make_clips(8)]
    labelled = run(weights, tmp_path, clips=pairs, metrics=("ssim",), out_dir=None)
    plain = run(weights, tmp_path, metrics=("ssim",), out_dir=None)
    assert labelled["protocol"]["labels"] is None
    assert labelled["metrics"]["ssim"]["protocol"]["labels"] is None
    assert labelled["metrics"]["ssim"]["value"] == plain["metrics"]["ssim"]["value"]


def test_best_of_picks_each_metric_per_video():
    curves = torch.tensor(
        [
            [[0.1, 0.9], [0.5, 0.5]],  # sample 0: video 0 mean 0.5, video 1 mean 0.5
            [[0.6, 0.6], [0.2, 0.2]],  # sample 1: video 0 mean 0.6, video 1 mean 0.2
        ]
    )
    high, low = BestOf(1), BestOf(-1)
    for sample in curves:
        high.update(sample)
        low.update(sample)
    assert torch.equal(high.curve, torch.tensor([[0.6, 0.6], [0.5, 0.5]]))
    assert torch.equal(low.curve, torch.tensor([[0.1, 0.9], [0.2, 0.2]]))


def test_merge_shards_orders_and_drops_duplicates():
    a = {"index": torch.tensor([4, 5, 0]), "x": torch.tensor([40.0, 50.0, 0.0])}
    b = {"index": torch.tensor([1, 5, 2, 3]), "x": torch.tensor([10.0, 50.0, 20.0, 30.0])}
    merged = merge_shards([a, b, {}])
    assert merged["index"].tolist() == [0, 1, 2, 3, 4, 5]
    assert merged["x"].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]


def test_cli_flags_map_to_evaluate_run_arguments():
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    flags = "--task predict --known-frames 5 --metrics fvd,ssim --best-of 10 --i3d w.pt"
    flags += " --i3d-resize center_crop --fvd-exclude-known --out res"
    args = parser.parse_args(flags.split(" "))
    kw = eval_kwargs(args)
    assert kw["task_kwargs"] == {"known": 5} and kw["metrics"] == ("fvd", "ssim")
    assert kw["best_of"] == 10 and kw["i3d_path"] == "w.pt" and kw["out_dir"] == "res"
    assert kw["i3d_resize"] == "center_crop" and kw["fvd_include_known"] is False
    # flags not given stay out: the declared defaults apply, written in one place
    assert "seed" not in kw and "num_clips" not in kw
    assert set(kw) <= {f.name for f in SETTINGS}


def test_a_bare_cuda_device_is_each_processes_own_gpu_under_torchrun(monkeypatch):
    from videogen.evaluate.cli import process_device

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert process_device("cuda") == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_device("cuda") == "cuda:1"
    assert process_device("cuda:0") == "cuda:0"  # an explicit GPU is kept
    assert process_device("cpu") == "cpu"


def test_unknown_settings_are_refused_with_the_valid_names(weights, tmp_path):
    with pytest.raises(TypeError, match="unknown evaluation settings.*best_off.*valid: .*best_of"):
        run(weights, tmp_path, best_off=3)
    with pytest.raises(TypeError, match="labels"):
        run(weights, tmp_path, labels="mine")  # set by the run, not by the caller


WORKER = """
import json, sys
import torch
from videogen.evaluate import evaluate_run

class Noisy:
    def generate(self, video, known, *, generator=None, **_):
        noise = torch.randn(video.shape, generator=generator) * 0.2
        return torch.where(known[:, :, None, None, None], video, (video + noise).clamp(-1, 1))

g = torch.Generator().manual_seed(0)
clips = [(torch.rand(10, 16, 16, 3, generator=g) * 255).to(torch.uint8) for _ in range(7)]
result = evaluate_run(
    Noisy(), clips, task="predict", task_kwargs={"known": 1}, metrics=("fvd", "ssim", "psnr"),
    best_of=2, num_clips=7, batch_size=2, i3d_path=sys.argv[2], out_dir=sys.argv[1],
    trust_torchscript=True,
)
"""


@pytest.mark.slow
def test_two_processes_gather_every_clip_once(weights, tmp_path):
    """Sharded over two CPU processes (torchrun, gloo): the same numbers as one process."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    i3d = str(weights / "i3d_torchscript.pt")
    single = [sys.executable, str(script), str(tmp_path / "one"), i3d]
    port = str(29500 + os.getpid() % 1000)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    double = [*launch, "--master_port", port, str(script), str(tmp_path / "two"), i3d]
    for cmd in (single, double):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["protocol"]["num_processes"] == 1 and two["protocol"]["num_processes"] == 2
    assert two["metrics"]["fvd"]["protocol"]["generated_clips"] == 7
    assert two["metrics"]["fvd"]["value"] == pytest.approx(one["metrics"]["fvd"]["value"])
    for m in ("ssim", "psnr"):
        assert two["metrics"][m]["per_frame"] == pytest.approx(one["metrics"][m]["per_frame"])
