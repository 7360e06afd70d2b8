"""File-backed datasets: video folders (real and damaged files), frame folders, arrays, BAIR
TFRecords, split lists, and ``info`` / ``preview``."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from videogen.config import DataConfig
from videogen.data import DatasetError, SkippedVideoWarning, build_dataset, info, preview
from videogen.data.tfrecord import (
    crc32c,
    encode_example,
    index_records,
    iter_records,
    parse_example,
    write_records,
)
from videogen.io import read_video, write_video


def ramp_video(frames: int, h: int = 48, w: int = 64, offset: int = 0) -> np.ndarray:
    """Frame t is flat grey 8 * t + offset: which frames a clip holds shows in its means."""
    values = (np.arange(frames) * 8 + offset).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (frames, h, w, 3)).copy()


def frame_values(clip) -> np.ndarray:
    return np.asarray(clip, dtype=np.float64).mean(axis=(1, 2, 3))


def cfg(name: str | Path, **kw) -> DataConfig:
    return DataConfig(**{"name": str(name), "frames": 4, "size": 32, "channels": 3, **kw})


def first(dataset, n: int = 1) -> list[np.ndarray]:
    return [clip.numpy() for clip, _ in zip(dataset, range(n))]


# --------------------------------------------------------------------------- video folders


@pytest.fixture
def video_folder(tmp_path: Path, sample_videos: Path) -> Path:
    """Two real mp4s, one written ramp, and four damaged files."""
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(sample_videos / "carphone_pristine.mp4", folder / "carphone.mp4")
    shutil.copy(sample_videos / "carphone_distorted.mp4", folder / "sub" / "distorted.mp4")
    write_video(folder / "ramp.avi", ramp_video(24), fps=10)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.webm").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "cut.mp4").write_bytes((sample_videos / "bikes.mp4").read_bytes()[:100_000])
    write_video(folder / "short.mp4", ramp_video(2))
    return folder


def test_video_folder_skips_damaged_files_and_goes_on(video_folder: Path) -> None:
    with pytest.warns(SkippedVideoWarning) as caught:
        dataset = build_dataset(cfg(video_folder), seed=0)
    messages = " ".join(str(w.message) for w in caught)
    for name in ("empty.mp4", "noise.webm", "cut.mp4", "short.mp4"):
        assert name in messages
    assert dataset.skipped.count == 4
    assert "2 frames, a clip needs 4" in dataset.skipped.reasons[str(video_folder / "short.mp4")]
    clips = first(dataset, 30)  # an epoch's worth goes on over the readable videos
    assert all(c.shape == (4, 32, 32, 3) for c in clips)
    assert len({frame_values(c).round().tobytes() for c in clips}) > 10


def test_a_video_that_fails_while_reading_is_skipped(video_folder: Path, small_mp4: Path) -> None:
    # a cut file whose index comes first opens fine and fails only when decoded
    import av

    fast = video_folder / "fast.mp4"
    with (
        av.open(str(small_mp4)) as inp,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as out,
    ):
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    fast.write_bytes(fast.read_bytes()[:150_000])
    for name in ("empty.mp4", "noise.webm", "cut.mp4", "short.mp4"):
        (video_folder / name).unlink()
    for cache in (0, 1024):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedVideoWarning)
            dataset = build_dataset(cfg(video_folder, options={"cache_mb": cache}), seed=1)
            clips = first(dataset, 40)
        assert len(clips) == 40
        assert str(fast) in dataset.skipped.paths and dataset.skipped.count == 1


def test_clip_sampling_frames_and_stride(tmp_path: Path) -> None:
    write_video(tmp_path / "ramp.mp4", ramp_video(30), fps=10)
    for cache in (0, 1024):
        options = {"cache_mb": cache}
        train = build_dataset(cfg(tmp_path, frames=5, stride=3, options=options), seed=0)
        for clip in first(train, 20):
            values = frame_values(clip) / 8
            start = round(values[0])
            np.testing.assert_allclose(values, start + 3 * np.arange(5), atol=0.5)
            assert 0 <= start <= 30 - 13
        test = build_dataset(
            cfg(tmp_path, frames=5, options={**options, "test_start": "first"}), "test"
        )
        assert len(test) == 1
        np.testing.assert_allclose(frame_values(test[0]) / 8, np.arange(5), atol=0.5)


def test_test_set_is_fixed_and_workers_differ(video_folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedVideoWarning)
        test = build_dataset(cfg(video_folder), "test", seed=0, length=6)
        again = build_dataset(cfg(video_folder), "test", seed=0, length=6)
        train = build_dataset(cfg(video_folder), seed=0, length=6)
    assert all(np.array_equal(test[i].numpy(), again[i].numpy()) for i in range(6))
    loaded = [c.numpy() for batch in DataLoader(train, batch_size=3, num_workers=2) for c in batch]
    assert len(loaded) == 6 and all(c.shape == (4, 32, 32, 3) for c in loaded)


def test_split_lists_pick_the_videos(tmp_path: Path) -> None:
    for klass, n in (("Walk", 2), ("Jump", 1)):
        (tmp_path / "UCF-101" / klass).mkdir(parents=True)
        for g in range(n):
            write_video(
                tmp_path / "UCF-101" / klass / f"v_{klass}_g0{g}_c01.avi",
                ramp_video(6, offset=100 * (klass == "Jump") + 10 * g),
                fps=5,
            )
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "trainlist01.txt").write_text("Walk/v_Walk_g00_c01.avi 1\nJump/v_Jump_g00_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("Walk/v_Walk_g01_c01.avi\n")
    for name, root in ((str(tmp_path), None), ("ucf101", str(tmp_path))):
        test = build_dataset(cfg(name, root=root, options={"test_start": "first"}), "test")
        assert len(test) == 1 and frame_values(test[0])[0] == pytest.approx(10, abs=3)
        train = build_dataset(cfg(name, root=root), seed=0)
        starts = {round(frame_values(c)[0] / 50) for c in first(train, 20)}
        assert starts == {0, 2}  # Walk g00 (0..) and Jump g00 (100..), never Walk g01


def test_gif_and_grey_video(tmp_path: Path) -> None:
    write_video(tmp_path / "a.gif", ramp_video(8, 20, 30), fps=5)
    clip = build_dataset(cfg(tmp_path / "a.gif", channels=1, size=16), "test")[0]
    assert clip.shape == (4, 16, 16, 1)


# --------------------------------------------------------------------------- frame folders


def test_frame_folders_natural_order_grouping_and_bad_frames(tmp_path: Path) -> None:
    root = tmp_path / "sky"
    for video in ("a/clip1", "b"):
        (root / video).mkdir(parents=True)
        for t in range(12):
            value = 8 * t + (100 if video == "b" else 0)
            Image.new("RGB", (40, 30), (value,) * 3).save(root / video / f"f{t}.jpg", quality=95)
    (root / "b" / "f5.jpg").write_bytes(b"not a jpeg")  # b is unreadable from frame 5
    test = build_dataset(cfg(root, frames=10, options={"test_start": "first"}), "test")
    assert len(test) == 2
    np.testing.assert_allclose(frame_values(test[0]) / 8, np.arange(10), atol=0.3)  # f10 after f9
    with pytest.warns(SkippedVideoWarning, match="sky/b"):
        test[1]  # b fails: its slot goes to the next video, deterministically
    assert np.array_equal(test[1].numpy(), test[0].numpy()) and test.skipped.count == 1
    # one folder holding several sequences, Cityscapes-style
    city = tmp_path / "city" / "test" / "aachen"
    city.mkdir(parents=True)
    for seq in range(2):
        for t in range(5):
            Image.new("L", (8, 6), 40 * seq + 5 * t).save(
                city / f"aachen_{seq:06d}_{t:06d}_leftImg8bit.png"
            )
    cityscapes = build_dataset(
        cfg("cityscapes", root=str(tmp_path / "city"), frames=5, size=6, channels=1), "test"
    )
    assert len(cityscapes) == 2
    np.testing.assert_allclose(frame_values(cityscapes[1]), 40 + 5 * np.arange(5), atol=1)


# --------------------------------------------------------------------------- arrays


def test_array_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nthw = rng.integers(0, 255, (3, 10, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "nthw.npy", nthw)
    options = {"test_start": "first", "layout": "NTHW"}  # (N, T, H, W) and (T, N, ...) alike
    clip = build_dataset(cfg(tmp_path / "nthw.npy", size=16, channels=1, options=options), "test")[
        2
    ]
    np.testing.assert_array_equal(clip.numpy()[..., 0], nthw[2, :4])
    # the same file read as (T, N, H, W): 10 videos of 3 frames
    tnhw = build_dataset(
        cfg(tmp_path / "nthw.npy", frames=3, size=16, channels=1, options={"layout": "TNHW"}),
        "test",
    )
    assert len(tnhw) == 10
    # Srivastava's mnist_test_seq.npy is (T, N, 64, 64)
    seq = rng.integers(0, 255, (20, 5, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", seq)
    test = build_dataset(
        cfg(tmp_path / "mnist_test_seq.npy", frames=20, size=64, channels=1), "test"
    )
    assert len(test) == 5
    np.testing.assert_array_equal(test[3].numpy()[..., 0], seq[:, 3])
    # (N, T, C, H, W) in an .npz, resized on the way out
    ntchw = rng.integers(0, 255, (2, 6, 3, 24, 32), dtype=np.uint8)
    np.savez(tmp_path / "v.npz", videos=ntchw)
    first_clips = {"test_start": "first", "layout": "NTCHW"}
    clip = build_dataset(cfg(tmp_path / "v.npz", size=24, options=first_clips), "test")[1]
    assert clip.shape == (4, 24, 24, 3)
    np.testing.assert_array_equal(clip.numpy(), ntchw[1, :4, :, :, 4:28].transpose(0, 2, 3, 1))
    # h5 with its own key, split files in a folder
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f["group/videos"] = rng.integers(0, 255, (4, 8, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "test.npy", nthw)
    folder = tmp_path
    (folder / "nthw.npy").unlink()
    (folder / "mnist_test_seq.npy").unlink()
    (folder / "v.npz").unlink()
    train = build_dataset(cfg(folder, size=16, options={"layout": "NTHWC"}), seed=0)
    # the h5 file opens inside each worker: nothing is pickled but its path
    clips = [
        c.numpy()
        for batch, _ in zip(DataLoader(train, batch_size=2, num_workers=2), range(2))
        for c in batch
    ]
    assert len(clips) == 4 and clips[0].shape == (4, 16, 16, 3)
    test = build_dataset(cfg(folder, size=16, channels=1, options={"layout": "NTHW"}), "test")
    assert len(test) == 3  # test.npy


def test_bad_arrays_fail_early_naming_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "float.npy", np.zeros((2, 5, 8, 8), np.float32))
    with pytest.raises(DatasetError, match=r"float\.npy.*uint8"):
        build_dataset(cfg(tmp_path / "float.npy", options={"layout": "NTHW"}))
    np.save(tmp_path / "flat.npy", np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"flat\.npy.*shape \(5, 8, 8\)"):
        build_dataset(cfg(tmp_path / "flat.npy"))
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(DatasetError, match=r"junk\.h5"):
        build_dataset(cfg(tmp_path / "junk.h5"))
    np.save(tmp_path / "short.npy", np.zeros((2, 3, 8, 8), np.uint8))
    with (
        pytest.raises(DatasetError, match=r"short\.npy.*no video with at least 4"),
        pytest.warns(SkippedVideoWarning),
    ):
        build_dataset(cfg(tmp_path / "short.npy", options={"layout": "NTHW"}))


# --------------------------------------------------------------------------- TFRecords / BAIR


def bair_file(path: Path, videos: list[np.ndarray]) -> Path:
    """A softmotion30-style file: frame i of each video under i/image_aux1/encoded."""
    records = []
    for video in videos:
        features: dict = {}
        for i, frame in enumerate(video):
            features[f"{i}/image_aux1/encoded"] = frame.tobytes()
            features[f"{i}/image_main/encoded"] = frame[::-1].tobytes()
            features[f"{i}/action"] = [0.5, -1.0, 0.0, 2.0]
            features[f"{i}/endeffector_pos"] = [0.1, 0.2, 0.3]
        records.append(encode_example(features))
    write_records(path, records)
    return path


def test_tfrecord_framing_and_example_round_trip(tmp_path: Path) -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    example = {"img": b"\x00\x01\xff", "f": [1.5, -2.0], "i": [3, -4, 2**40], "s": [b"a", b"b"]}
    parsed = parse_example(encode_example(example))
    assert parsed["img"] == [b"\x00\x01\xff"] and parsed["s"] == [b"a", b"b"]
    assert parsed["f"].tolist() == [1.5, -2.0] and parsed["i"] == [3, -4, 2**40]
    path = tmp_path / "x.tfrecords"
    write_records(path, [b"one", b"", b"three" * 100])
    assert list(iter_records(path, verify=True)) == [b"one", b"", b"three" * 100]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip a bit of the last record's data checksum
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match="crc"):
        list(iter_records(path, verify=True))
    path.write_bytes(bytes(data[:-10]))
    records, problem = index_records(path)
    assert len(records) == 2 and "truncated" in problem


def test_tfrecords_agree_with_protobuf_and_tensorboard(tmp_path: Path) -> None:
    """Cross-check against independent implementations: protobuf's own parser for the
    Example message and TensorBoard's event-file writer for the framing."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="ex.proto", package="t", syntax="proto3")
    lists = {"BytesList": 12, "FloatList": 2, "Int64List": 3}
    for name, kind in lists.items():
        msg = file.message_type.add(name=name)
        field = msg.field.add(name="value", number=1, type=kind, label=3)
        if kind != 12:
            field.options.packed = True
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(lists, 1):
        feature.field.add(
            name=name.lower(),
            number=number,
            type=11,
            type_name=f".t.{name}",
            label=1,
            oneof_index=0,
        )
    features = file.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=9, label=1)
    entry.field.add(name="value", number=2, type=11, type_name=".t.Feature", label=1)
    features.field.add(
        name="feature", number=1, type=11, type_name=".t.Features.FeatureEntry", label=3
    )
    example = file.message_type.add(name="Example")
    example.field.add(name="features", number=1, type=11, type_name=".t.Features", label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    Example = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Example"))

    ours = encode_example({"0/image": b"\x01\x02", "a": [0.25, 4.0], "n": [-7, 9]})
    theirs = Example()
    theirs.ParseFromString(ours)
    feats = theirs.features.feature
    assert feats["0/image"].byteslist.value == [b"\x01\x02"]
    assert list(feats["a"].floatlist.value) == [0.25, 4.0]
    assert list(feats["n"].int64list.value) == [-7, 9]
    parsed = parse_example(theirs.SerializeToString())
    assert parsed["0/image"] == [b"\x01\x02"] and parsed["n"] == [-7, 9]

    record_writer = pytest.importorskip("tensorboard.summary.writer.record_writer")
    path = tmp_path / "events.tfrecord"
    with open(path, "wb") as f:
        writer = record_writer.RecordWriter(f)
        for payload in (b"first", b"x" * 300):
            writer.write(payload)
        writer.flush()
    assert list(iter_records(path, verify=True)) == [b"first", b"x" * 300]


def test_bair_tfrecords(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train_dir = tmp_path / "softmotion30_44k" / "train"
    test_dir = tmp_path / "softmotion30_44k" / "test"
    train_dir.mkdir(parents=True)
    test_dir.mkdir()
    videos = [rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8) for _ in range(3)]
    bair_file(test_dir / "traj_0_to_2.tfrecords", videos)
    bair_file(train_dir / "traj_a.tfrecords", videos[:2])
    bair_file(train_dir / "traj_b.tfrecords", videos[2:])
    whole = (train_dir / "traj_b.tfrecords").read_bytes()
    (train_dir / "traj_c.tfrecords").write_bytes(whole + whole[:500])  # a cut second record
    config = DataConfig(name="bair", root=str(tmp_path), frames=5, size=64, channels=3)
    test = build_dataset(config, "test")
    assert len(test) == 3
    for i in range(3):
        np.testing.assert_array_equal(test[i].numpy(), videos[i][:5])  # from frame 0
    with pytest.warns(SkippedVideoWarning, match="traj_c.*truncated"):
        train = build_dataset(config, "train", seed=0)
    assert train.skipped.count == 1
    seen = {c.tobytes()[:64] for c in first(train, 30)}
    starts = {v[s].tobytes()[:64] for v in videos for s in (0, 1)}
    assert seen <= starts and len(seen) >= 4
    # any file or folder of tfrecords works as a path too; grey and resized on the way out
    clip = build_dataset(cfg(test_dir / "traj_0_to_2.tfrecords", channels=1), "test")[0]
    assert clip.shape == (4, 32, 32, 1)
    with pytest.raises(DatasetError, match="image_key"):
        build_dataset(cfg(test_dir, options={"image_key": "image"}))
    bad = tmp_path / "bad"
    bad.mkdir()
    write_records(bad / "x.tfrecords", [encode_example({"0/image_aux1/encoded": b"\x00" * 10})])
    write_records(
        bad / "y.tfrecords",
        [encode_example({f"{i}/image_aux1/encoded": bytes(64 * 64 * 3) for i in range(4)})],
    )
    with pytest.warns(SkippedVideoWarning, match=r"x\.tfrecords#0"):
        clip = build_dataset(cfg(bad, frames=1), "test")[0]
    assert clip.shape == (1, 32, 32, 3)


# --------------------------------------------------------------------------- info / preview


def test_info_of_a_folder_and_a_file(video_folder: Path) -> None:
    report = info(video_folder)
    assert report["count"] == 4  # carphone, distorted, ramp, short
    assert sorted(Path(p).name for p in report["unreadable"]) == [
        "cut.mp4",
        "empty.mp4",
        "noise.webm",
    ]
    assert sorted(report["frames"]) == [2, 24, 120, 120]
    assert sorted(report["height"]) == [48, 48, 144, 144]
    assert all(name in reason for name, reason in report["reasons"].items())
    single = info(video_folder / "carphone.mp4")
    assert single == {
        "count": 1,
        "unreadable": [],
        "reasons": {},
        "frames": [120],
        "height": 144,
        "width": 176,
        "fps": pytest.approx(29.97, abs=0.01),
    }
    with pytest.raises(FileNotFoundError):
        info(video_folder / "nope")


def test_preview_writes_a_gif_grid(tmp_path: Path, small_mp4: Path) -> None:
    out = preview("moving-digits", tmp_path / "digits.gif", frames=6, count=4, size=32)
    video = read_video(out)
    assert video.shape == (6, 2 * 32 + 2, 2 * 32 + 2, 3)
    out = preview(str(small_mp4), tmp_path / "car.gif", frames=5, count=3, size=24)
    car = read_video(out)  # one video, three clips from three starts, tiled 2 x 2
    assert car.shape == (5, 50, 50, 3)
    assert not np.array_equal(car[:, :24, :24], car[:, :24, 26:50])
    out = preview("stochastic-shapes", tmp_path / "s.gif", frames=4, count=2, split="train")
    assert read_video(out).shape == (4, 64, 2 * 64 + 2, 3)


def test_prepare_decodes_once_and_training_reads_the_arrays(tmp_path, small_mp4):
    """`videogen data prepare`: one .npy per video at the training size, split lists kept,
    broken files named; the prepared folder gives the clips decoding would give."""
    import shutil

    import numpy as np

    from videogen.config import DataConfig
    from videogen.data import build_dataset, prepare
    from videogen.io import read_video

    source = tmp_path / "videos" / "ClassA"
    source.mkdir(parents=True)
    shutil.copy(small_mp4, source / "v_ClassA_g01_c01.mp4")
    shutil.copy(small_mp4, source / "v_ClassA_g02_c01.mp4")
    (source / "v_ClassA_g03_c01.mp4").write_bytes(b"not a video")
    (tmp_path / "videos" / "trainlist01.txt").write_text("ClassA/v_ClassA_g01_c01.avi 1\n")
    target = tmp_path / "prepared"
    with pytest.warns(UserWarning, match="v_ClassA_g03_c01"):
        report = prepare(tmp_path / "videos", target, size=16, progress=False)
    assert report["prepared"] == 2 and len(report["unreadable"]) == 1
    assert (target / "trainlist01.txt").is_file()
    with pytest.warns(UserWarning, match="v_ClassA_g03_c01"):
        again = prepare(tmp_path / "videos", target, size=16, progress=False)
    assert again["existing"] == 2 and again["prepared"] == 0

    array = np.load(target / "ClassA" / "v_ClassA_g01_c01.npy")
    assert array.shape[1:] == (16, 16, 3) and array.dtype == np.uint8
    np.testing.assert_array_equal(array, read_video(small_mp4, size=16, channels=3))
    cfg = DataConfig(name=str(target), frames=8, size=16, channels=3)
    train = build_dataset(cfg, "train", seed=0)
    assert next(iter(train)).shape == (8, 16, 16, 3)
    assert len(train.source.videos) == 1  # the split list names only g01
