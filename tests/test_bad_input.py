"""Issue 18: each bad input gets one message naming the file, key or value, never silently wrong
data and never a traceback. One test per failure the issue reports."""

from __future__ import annotations

import itertools
import shutil
import struct
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from test_io import faststart_copy

from videogen.cli import main
from videogen.config import ConfigError, DataConfig, load_config
from videogen.data import (
    DatasetError,
    SkippedVideoWarning,
    build_dataset,
    info,
    preview,
    video_files,
)
from videogen.io import VideoError, read_video, video_info

SMMNIST = str(Path(__file__).resolve().parents[1] / "configs" / "mcvd" / "smmnist.yaml")
TINY_MCVD = """
method: mcvd
model: {ngf: 16, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [8], head_channels: 16,
        past: 2, current: 2, future: 1}
data: {name: moving-digits, frames: 5, size: 16, channels: 1}
train: {steps: 3, batch_size: 2}
sample: {sampler: ddim, steps: 2}
"""


def data_cfg(name: Path, **kw) -> DataConfig:
    return DataConfig(**{"name": str(name), "frames": 4, "size": 16, "channels": 3, **kw})


@pytest.fixture
def no_codec(tmp_path: Path, small_mp4: Path) -> Path:
    """carphone with its codec tag renamed: PyAV opens it with ``codec_context`` None."""
    path = tmp_path / "nocodec.mp4"
    path.write_bytes(small_mp4.read_bytes().replace(b"avc1", b"zzzz"))
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context is None
    return path


# --------------------------------------------------------------------------- video files


def test_a_file_without_a_decoder_is_named_not_a_traceback(no_codec: Path, small_mp4: Path):
    folder = no_codec.parent
    shutil.copy(small_mp4, folder / "good.mp4")
    for call in (video_info, read_video):
        with pytest.raises(VideoError, match=r"nocodec\.mp4.*no decoder"):
            call(no_codec)
    report = info(folder)
    assert report["count"] == 1 and report["unreadable"] == [str(no_codec)]
    assert "nocodec.mp4" in report["reasons"][str(no_codec)]
    with pytest.warns(SkippedVideoWarning, match="nocodec.mp4"):
        train = build_dataset(data_cfg(folder), "train", seed=0)
        assert next(iter(train)).shape == (4, 16, 16, 3)
    with pytest.warns(SkippedVideoWarning, match="nocodec.mp4"):
        out = preview(str(folder), folder / "p.gif", frames=3, count=2, size=16)
    assert out.is_file()


def test_no_frame_counts_for_files_where_no_frame_decodes(tmp_path: Path, small_mp4: Path):
    fast = faststart_copy(small_mp4, tmp_path / "index_first.mp4")
    cut = tmp_path / "cut.mp4"  # the header still announces 120 frames
    cut.write_bytes(fast.read_bytes()[:20_000])
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == 120
    with pytest.raises(VideoError, match=r"cut\.mp4.*first frame does not decode"):
        video_info(cut)
    assert info(cut)["unreadable"] == [str(cut)]
    # a longer cut decodes: info counts the frames that are there, not the header's 120
    part = tmp_path / "part.mp4"
    part.write_bytes(fast.read_bytes()[:200_000])
    assert 10 < info(part)["frames"][0] < 120


def test_an_absurd_header_frame_count_is_not_believed(tmp_path: Path, small_mp4: Path):
    data = bytearray(faststart_copy(small_mp4, tmp_path / "index_first.mp4").read_bytes())
    stts = data.index(b"stts")  # time-to-sample: (entries, count, delta); patch the count
    data[stts + 12 : stts + 16] = struct.pack(">I", 2_259_965_561)
    path = tmp_path / "absurd.mp4"
    path.write_bytes(bytes(data))
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 2_259_965_561
    assert video_info(path)["frames"] == 120  # counted from the packets
    assert info(path)["frames"] == [120]


def test_a_long_video_is_never_decoded_whole(tmp_path: Path, monkeypatch):
    path = tmp_path / "long.avi"
    ramp = (np.arange(300) % 256).astype(np.uint8)
    from videogen.io import write_video

    write_video(path, np.broadcast_to(ramp[:, None, None, None], (300, 16, 16, 3)).copy())
    calls: list[int | None] = []

    def counting_read(*args, **kwargs):
        calls.append(kwargs.get("frames"))
        return read_video(*args, **kwargs)

    monkeypatch.setattr(video_files, "read_video", counting_read)
    long_ = build_dataset(data_cfg(path, options={"cache_frames": 100}), "train", seed=0)
    clips = list(itertools.islice(long_, 3))
    assert len(clips) == 3 and calls == [4, 4, 4]  # clip by clip
    calls.clear()
    normal = build_dataset(data_cfg(path), "train", seed=0)  # 300 frames fit the cache
    clips = list(itertools.islice(normal, 3))
    assert len(clips) == 3 and calls == [300]  # decoded once, whole, then sliced


# --------------------------------------------------------------------------- arrays


def test_a_batch_npy_is_not_read_as_one_video(tmp_path: Path):
    path = tmp_path / "clips.npy"
    np.save(path, np.zeros((6, 20, 32, 32), np.uint8))  # (N, T, H, W)
    for call in (video_info, read_video):
        with pytest.raises(VideoError, match=r"clips\.npy.*\(6, 20, 32, 32\).*layout"):
            call(path)


def test_tnhw_not_named_mnist_test_seq_asks_for_the_layout(tmp_path: Path):
    seq = np.random.default_rng(0).integers(0, 255, (20, 12, 16, 16), dtype=np.uint8)
    path = tmp_path / "digits.npy"
    np.save(path, seq)
    with pytest.raises(DatasetError) as caught:
        build_dataset(data_cfg(path, channels=1))
    message = str(caught.value)
    for part in ("digits.npy", "(20, 12, 16, 16)", "data.options.layout", "NTHW = 20 videos of"):
        assert part in message
    assert "TNHW = 12 videos of 20 frames" in message
    options = {"layout": "TNHW", "test_start": "first"}
    test = build_dataset(data_cfg(path, frames=20, channels=1, options=options), "test")
    assert len(test) == 12
    np.testing.assert_array_equal(test[5].numpy()[..., 0], seq[:, 5])
    with pytest.raises(DatasetError, match=r"layout='NTHWC' does not name the 4 axes"):
        build_dataset(data_cfg(path, options={"layout": "NTHWC"}))


@pytest.mark.parametrize(
    ("layout", "shape", "to_thwc"),
    [
        ("TCHW", (6, 3, 8, 8), lambda a, i: a.transpose(0, 2, 3, 1)),
        ("thw", (6, 8, 8), lambda a, i: a[..., None]),
        ("TNHWC", (6, 2, 8, 8, 3), lambda a, i: a[:, i]),
        ("NTCHW", (2, 6, 3, 8, 8), lambda a, i: a[i].transpose(0, 2, 3, 1)),
    ],
)
def test_any_named_layout_reads_the_right_pixels(tmp_path, layout, shape, to_thwc):
    array = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    np.save(tmp_path / "a.npy", array)
    channels = 1 if len(shape) == 3 else 3
    options = {"layout": layout, "test_start": "first"}
    test = build_dataset(
        data_cfg(tmp_path / "a.npy", size=8, channels=channels, options=options), "test"
    )
    assert len(test) == (2 if "N" in layout else 1)
    last = len(test) - 1
    np.testing.assert_array_equal(test[last].numpy(), to_thwc(array, last)[:4])


def test_valid_npz_and_h5_are_readable_in_info(tmp_path: Path):
    videos = np.zeros((3, 8, 16, 16, 3), np.uint8)
    np.savez(tmp_path / "a.npz", videos=videos)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["videos"] = videos[:2]
    report = info(tmp_path, options={"layout": "NTHWC"})
    assert report["count"] == 5 and report["unreadable"] == []
    assert report["frames"] == [8] * 5 and report["height"] == 16
    # without the layout, each file is named with the shape and the option to set
    report = info(tmp_path)
    assert report["count"] == 0 and len(report["unreadable"]) == 2
    assert all("data.options.layout" in r for r in report["reasons"].values())


def test_npz_with_several_keys_uses_videos_or_asks(tmp_path: Path):
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 255, (2, 6, 16, 16, 3), dtype=np.uint8)
    flow = rng.integers(0, 255, (2, 6, 16, 16, 2), dtype=np.uint8)
    np.savez(tmp_path / "two.npz", flow=flow, videos=videos)
    options = {"layout": "NTHWC", "test_start": "first"}
    clip = build_dataset(data_cfg(tmp_path / "two.npz", options=options), "test")[1]
    np.testing.assert_array_equal(clip.numpy(), videos[1, :4])
    np.savez(tmp_path / "other.npz", a=videos, b=videos[:1])
    with pytest.raises(
        DatasetError, match=r"other\.npz.*a \(2, 6, 16, 16, 3\), b .*data\.options\.key"
    ):
        build_dataset(data_cfg(tmp_path / "other.npz", options=options))
    keyed = build_dataset(data_cfg(tmp_path / "other.npz", options={**options, "key": "b"}), "test")
    assert len(keyed) == 1
    with pytest.raises(DatasetError, match=r"no array 'c'.*holds a"):
        build_dataset(data_cfg(tmp_path / "other.npz", options={**options, "key": "c"}))
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["x"], f["y"] = videos, videos
    with pytest.raises(DatasetError, match=r"two\.h5.*x \(2, 6, 16, 16, 3\), y"):
        build_dataset(data_cfg(tmp_path / "two.h5", options=options))


@pytest.mark.parametrize(
    ("values", "found", "advice"),
    [
        (np.array([0.0, 17.0, 255.0]), "in [0, 255]", "already 0-255: x.round()"),
        (np.array([0.0, 0.5, 1.0]), "in [0, 1]", "(x * 255)"),
        (np.array([-1.0, 0.0, 1.0]), "in [-1, 1]", "((x + 1) * 127.5)"),
        (np.array([0.0, 300.0]), "in [0, 300]", "rescale the range [0, 300]"),
    ],
)
def test_float_arrays_get_advice_for_the_range_found(tmp_path, values, found, advice):
    array = np.resize(values, (2, 5, 8, 8)).astype(np.float64)
    np.save(tmp_path / "f.npy", array)
    with pytest.raises(DatasetError) as caught:
        build_dataset(data_cfg(tmp_path / "f.npy", options={"layout": "NTHW"}))
    message = str(caught.value)
    assert "f.npy" in message and f"float64 {found}" in message and advice in message
    if "0-255" in advice:
        assert "* 255" not in message


# --------------------------------------------------------------------------- config and CLI


@pytest.mark.parametrize(
    "override",
    [
        "train.log_every=0",
        "train.grad_accum=0",
        "diffusion.timesteps=0",
        "data.size=0",
        "train.steps=0",
        "train.steps=-4",
        "train.warmup=-1",
        "train.ema_decay=2.0",
        "train.ema_decay=1.0",
    ],
)
def test_out_of_range_values_name_key_and_value(override: str, capsys):
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=rf"{key}={value}.*must be"):
        load_config(None, [override])
    assert main(["info", SMMNIST, override]) == 2
    assert f"{key}={value}" in capsys.readouterr().err


@pytest.mark.parametrize("override", ["data.name=ab\udcffcd", "train.lr=[1,"])
def test_unparseable_overrides_give_one_message(override: str, capsys):
    assert main(["info", SMMNIST, override]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and repr(override) in err and "Traceback" not in err


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    from videogen.checkpoint import save_pretrained
    from videogen.registry import build_method

    folder = tmp_path_factory.mktemp("bad") / "export"
    config = folder.parent / "tiny.yaml"
    config.write_text(TINY_MCVD)
    save_pretrained(build_method(load_config(config)), folder)
    return folder


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--samples", "0"),
        ("--frames", "0"),
        ("--every", "0"),
        ("--steps", "0"),
        ("--steps", "-5"),
        ("--clips", "0"),
    ],
)
def test_sample_counts_below_one_are_refused(export, tmp_path, capsys, flag, value):
    task = ["--task", "interpolate"] if flag == "--every" else []
    out = tmp_path / "x.gif"
    argv = ["sample", str(export), *task, flag, value, "--device", "cpu", "-o", str(out)]
    assert main(argv) == 2
    assert f"{flag.lstrip('-')}={value}" in capsys.readouterr().err
    assert not out.exists()


def test_damaged_export_files_are_named(export, tmp_path, capsys):
    weights = tmp_path / "w"
    shutil.copytree(export, weights)
    data = (weights / "model.safetensors").read_bytes()
    (weights / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["sample", str(weights), "--device", "cpu", "-o", str(tmp_path / "a.gif")]) == 2
    assert "model.safetensors: not a readable safetensors file" in capsys.readouterr().err
    config = tmp_path / "c"
    shutil.copytree(export, config)
    (config / "config.json").write_text('{"method": "mcvd", "data": ')
    assert main(["sample", str(config), "--device", "cpu", "-o", str(tmp_path / "b.gif")]) == 2
    assert "config.json: not a valid run config" in capsys.readouterr().err
    good = ["sample", str(export), "--known", "2", "--device", "cpu", "-o", str(tmp_path / "c.gif")]
    assert main(good) == 0  # the intact export still samples


def test_sample_input_without_a_decoder(export, no_codec, small_mp4, tmp_path, capsys):
    out = str(tmp_path / "out" / "s.gif")  # not in the input folder
    base = ["sample", str(export), "--known", "2", "--device", "cpu", "--quiet", "-o", out]
    assert main([*base, "--input", str(no_codec)]) == 2
    assert "nocodec.mp4: no decoder" in capsys.readouterr().err
    shutil.copy(small_mp4, no_codec.parent / "good.mp4")  # a folder: the bad file is skipped
    with pytest.warns(SkippedVideoWarning, match="nocodec.mp4"):
        assert main([*base, "--input", str(no_codec.parent)]) == 0
