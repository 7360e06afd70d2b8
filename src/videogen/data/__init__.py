"""Datasets of ``uint8 (T, H, W, C)`` clips: generated, file-backed, and the papers' benchmarks.

``build_dataset(cfg, split, seed, length)`` is the entry point; ``to_model`` / ``to_uint8``
convert between clips and the models' float ``(B, T, C, H, W)`` in [-1, 1].
"""

from videogen.data.build import DATASETS, build_dataset, build_source
from videogen.data.clips import ClipShape, TestClips, TrainClips
from videogen.data.errors import DatasetError, SkippedVideoWarning
from videogen.data.inspection import info, preview
from videogen.data.prepare import prepare
from videogen.data.registry import BENCHMARKS, Benchmark, Protocol
from videogen.data.transforms import to_model, to_uint8

__all__ = [
    "BENCHMARKS",
    "DATASETS",
    "Benchmark",
    "ClipShape",
    "DatasetError",
    "Protocol",
    "SkippedVideoWarning",
    "TestClips",
    "TrainClips",
    "build_dataset",
    "build_source",
    "info",
    "prepare",
    "preview",
    "to_model",
    "to_uint8",
]
