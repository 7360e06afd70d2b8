"""What the CLI shows about data: ``preview`` (a GIF of clips) and ``info`` (a folder's videos)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videogen.config import DataConfig
from videogen.data.arrays import ARRAY_SUFFIXES, describe
from videogen.data.build import build_dataset
from videogen.data.errors import DatasetError
from videogen.data.registry import BENCHMARKS
from videogen.grids import tile
from videogen.io import VIDEO_SUFFIXES, VideoError, video_info, write_video


def preview(
    name_or_path: str,
    out: str | Path,
    frames: int = 16,
    count: int = 4,
    size: int = 64,
    channels: int | None = None,
    root: str | None = None,
    split: str = "test",
    seed: int = 0,
    stride: int = 1,
    fps: float = 8.0,
    options: dict[str, Any] | None = None,
) -> Path:
    """Write ``count`` clips of ``frames`` frames of a dataset, tiled in a grid, to ``out``
    (a .gif, or any video suffix ``write_video`` knows). ``channels`` defaults to the
    benchmark's (1 for moving-digits, else 3). Returns the path written."""
    if channels is None:
        benchmark = BENCHMARKS.get("smmnist" if name_or_path == "moving-digits" else name_or_path)
        channels = benchmark.channels if benchmark else 3
    cfg = DataConfig(
        name=name_or_path,
        root=root,
        frames=frames,
        size=size,
        channels=channels,
        stride=stride,
        options=dict(options or {}),
    )
    if split == "test":
        dataset = build_dataset(cfg, "test", seed=seed, length=count)
        clips = [dataset[i].numpy() for i in range(count)]
    else:
        clips = [clip.numpy() for clip in build_dataset(cfg, "train", seed=seed, length=count)]
    return write_video(out, tile(clips), fps=fps)


def _summary(values: list, many: int = 20) -> Any:
    """One value when all agree, the list when few, else {min, max}."""
    distinct = sorted(set(values), key=lambda v: (v is None, v))
    if len(distinct) == 1:
        return distinct[0]
    if len(values) <= many:
        return values
    known = [v for v in values if v is not None]
    return {"min": min(known), "max": max(known)} if known else None


def info(path: str | Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Facts about a video or array file, or a folder of them (searched recursively).

    ``count``: readable videos (an array file of N videos counts N); ``unreadable``: paths that
    failed, and ``reasons``: why each failed; ``frames``: per video, counted from the packets
    (``{min, max}`` when many); ``height``, ``width``, ``fps``: the common value, per video, or
    ``{min, max}``. ``options`` are the array options ``key`` and ``layout`` (see
    ``videogen.data.arrays``). A missing path raises ``FileNotFoundError``.
    """
    path = Path(path)
    options = dict(options or {})
    unknown = sorted(set(options) - {"key", "layout"})
    if unknown:
        raise DatasetError(f"unknown data info option {unknown[0]!r}; known options: key, layout")
    suffixes = VIDEO_SUFFIXES + ARRAY_SUFFIXES
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    facts: list[dict] = []
    reasons: dict[str, str] = {}
    for f in files:
        try:
            facts.extend(_file_facts(f, options))
        except (VideoError, DatasetError, OSError) as err:
            reasons[str(f)] = str(err)
    column = {key: [fact[key] for fact in facts] for key in ("frames", "height", "width", "fps")}
    frames = column["frames"]
    return {
        "count": len(facts),
        "unreadable": list(reasons),
        "reasons": reasons,
        "frames": frames if len(frames) <= 20 else {"min": min(frames), "max": max(frames)},
        "height": _summary(column["height"]),
        "width": _summary(column["width"]),
        "fps": _summary(column["fps"]),
    }


def _file_facts(path: Path, options: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``dict(frames, height, width, fps)`` per video in the file ``path``."""
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        return [video_info(path, count_frames=True)]
    facts = describe(path, options.get("key"), options.get("layout", "auto"))
    one = {"frames": facts["frames"], "height": facts["height"], "width": facts["width"]}
    return [{**one, "fps": None}] * facts["videos"]
