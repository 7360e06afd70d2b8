"""The benchmark registry: protocols, one clear error per bad root, and each layout read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videogen.config import DataConfig
from videogen.data import BENCHMARKS, DATASETS, DatasetError, build_dataset
from videogen.io import write_video

FILE_BENCHMARKS = [name for name, b in BENCHMARKS.items() if b.builtin is None]


def test_registry_lists_the_papers_benchmarks() -> None:
    expected = {"smmnist", "kth", "bair", "cityscapes", "ucf101", "kinetics600", "sky", "taichi"}
    assert expected | {"stochastic-shapes"} <= set(BENCHMARKS)
    assert {"moving-digits", "stochastic-shapes"} <= set(DATASETS) and expected <= set(DATASETS)
    for bench in BENCHMARKS.values():
        assert bench.channels in (1, 3) and bench.size in (64, 128) and bench.protocols
        for p in bench.protocols:
            assert p.paper in {"RaMViD", "MCVD", "VideoFusion", "PVDM", "VideoFlow"}
            assert p.cond >= 0 and p.pred > 0
    assert (BENCHMARKS["bair"].protocols[0].cond, BENCHMARKS["bair"].protocols[0].pred) == (1, 15)
    assert BENCHMARKS["cityscapes"].size == 128 and BENCHMARKS["kth"].channels == 1


@pytest.mark.parametrize("name", FILE_BENCHMARKS)
def test_missing_or_empty_root_is_one_error_with_the_layout(name: str, tmp_path: Path) -> None:
    layout = BENCHMARKS[name].layout
    for root in (None, tmp_path / "absent", tmp_path):
        cfg = DataConfig(name=name, root=None if root is None else str(root), channels=3)
        with pytest.raises(DatasetError) as caught:
            build_dataset(cfg, "train")
        message = str(caught.value)
        assert message.startswith(f"{name}: ")
        assert "data.root is not set" in message if root is None else str(root) in message
        assert layout in message


def test_malformed_roots_name_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "softmotion30_44k" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no \*\.tfrecords in .*softmotion30_44k/test"):
        build_dataset(DataConfig(name="bair", root=str(tmp_path)), "test")
    (tmp_path / "clip.avi").write_bytes(b"")
    with pytest.raises(DatasetError, match="kth: .*no personNN_"):
        build_dataset(DataConfig(name="kth", root=str(tmp_path)), "train")
    with pytest.raises(DatasetError, match="unknown data option 'flod' for ucf101"):
        build_dataset(DataConfig(name="ucf101", root=str(tmp_path), options={"flod": 2}))
    with pytest.raises(DatasetError, match="unknown split 'valid'"):
        build_dataset(DataConfig(name="moving-digits"), "valid")


def grey_video(path: Path, value: int, frames: int = 6) -> None:
    write_video(path, np.full((frames, 24, 32, 3), value, np.uint8), fps=5)


def test_kth_splits_by_person(tmp_path: Path) -> None:
    for person, value in ((3, 40), (22, 200)):
        grey_video(tmp_path / "boxing" / f"person{person:02d}_boxing_d1_uncomp.avi", value)
    cfg = DataConfig(name="kth", root=str(tmp_path), frames=4, size=16, channels=1)
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert len(test) == 1 and abs(float(test[0].float().mean()) - 200) < 4
    clip = next(iter(train))
    assert clip.shape == (4, 16, 16, 1) and abs(float(clip.float().mean()) - 40) < 4


def test_kth_frame_folders(tmp_path: Path) -> None:
    for person in (1, 25):
        folder = tmp_path / "processed" / "walking" / f"person{person:02d}_walking_d2"
        folder.mkdir(parents=True)
        for t in range(5):
            Image.new("L", (20, 20), 10 * person).save(folder / f"image-{t:03d}.png")
    cfg = DataConfig(name="kth", root=str(tmp_path), frames=5, size=20, channels=1)
    assert int(build_dataset(cfg, "test")[0][0, 0, 0, 0]) == 250


@pytest.mark.parametrize("layout", ["videos", "frames"])
def test_taichi_sky_and_kinetics_layouts(tmp_path: Path, layout: str) -> None:
    if layout == "videos":
        grey_video(tmp_path / "taichi" / "test" / "a.mp4", 90)
        grey_video(tmp_path / "k600" / "val" / "dancing" / "b.mp4", 120)
        grey_video(tmp_path / "k600" / "train" / "dancing" / "c.mp4", 60)
        cases = [("taichi", "taichi", 90), ("kinetics600", "k600", 120)]
    else:
        for root, sub, value in (("taichi", "test/a.mp4", 70), ("sky", "sky_test/v1/v1_1", 150)):
            folder = tmp_path / root / sub
            folder.mkdir(parents=True)
            for t in range(6):
                Image.new("RGB", (24, 24), (value,) * 3).save(folder / f"{t}.png")
        cases = [("taichi", "taichi", 70), ("sky", "sky", 150)]
    for name, root, value in cases:
        cfg = DataConfig(name=name, root=str(tmp_path / root), frames=4, size=16, channels=3)
        clip = build_dataset(cfg, "test")[0]
        assert clip.shape == (4, 16, 16, 3) and abs(float(clip.float().mean()) - value) < 4
