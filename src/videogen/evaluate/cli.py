"""``videogen eval``: its flags come from the settings' declarations (``protocol.SETTINGS``);
``evaluate_path`` loads a run or export, builds its test clips and calls ``evaluate_run``."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from videogen.evaluate.protocol import SETTINGS, Protocol
from videogen.evaluate.run import evaluate_run


def _default(name: str) -> Any:
    f = next(f for f in dataclasses.fields(Protocol) if f.name == name)
    return f.default


def evaluate_path(
    run: str | Path,
    *,
    data: str | None = None,
    root: str | None = None,
    frames: int | None = None,
    real_split: str | None = None,
    device: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``videogen eval``: load a run or export, build its test clips (``data``/``root``/
    ``frames`` override the run's data config; ``real_split`` names a separate real set for
    FVD) and run ``evaluate_run`` with the other keyword settings."""
    from videogen.checkpoint import load_pretrained
    from videogen.data import build_dataset

    device = process_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    method = load_pretrained(run, device=device)
    cfg = method.cfg.data
    if frames is not None and frames < 1:
        raise ValueError(f"frames={frames} (--frames): a test clip needs at least 1 frame")
    changes = {k: v for k, v in (("name", data), ("root", root), ("frames", frames)) if v}
    if data and not root:
        changes["root"] = None
    cfg = dataclasses.replace(cfg, **changes)
    task_kwargs = dict(kwargs.pop("task_kwargs", None) or {})
    if kwargs.get("task", _default("task")) in ("predict", "past") and not task_kwargs:
        task_kwargs["known"] = method.context  # the method's own context by default
    seed = kwargs.get("seed", _default("seed"))
    num_clips = kwargs.get("num_clips", _default("num_clips"))
    clips = build_dataset(cfg, "test", seed=seed, length=num_clips)
    spec = {**dataclasses.asdict(cfg), "split": "test", "seed": seed}
    if real_split:
        num_real = kwargs.get("num_real") or num_clips
        kwargs["real_clips"] = build_dataset(cfg, real_split, seed=seed, length=num_real)
        kwargs["real_spec"] = {**spec, "split": real_split}
    return evaluate_run(
        method,
        clips,
        data_spec=spec,
        run_name=str(run),
        device=device,
        task_kwargs=task_kwargs,
        **kwargs,
    )


def process_device(device: str) -> str:
    """The device this process evaluates on. A bare ``cuda`` under ``torchrun`` or
    ``accelerate launch`` (``LOCAL_RANK`` set) is the process's own GPU, ``cuda:LOCAL_RANK``:
    otherwise every shard would run on GPU 0. An explicit index or another device is kept."""
    local_rank = os.environ.get("LOCAL_RANK")
    if device == "cuda" and local_rank is not None:
        return f"cuda:{int(local_rank)}"
    return device


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The protocol flags of ``videogen eval`` (the CLI adds the run and ``--data``): one per
    setting that declares a flag, plus the task arguments and ``--real-split``. A flag left out
    leaves its setting at the declared default."""
    p = parser.add_argument
    for f in SETTINGS:
        meta = f.metadata
        if not meta.get("flag"):
            continue
        kwargs: dict[str, Any] = {"help": meta["help"], **meta["argparse"]}
        if meta["parse"] is not None:
            kwargs["type"] = meta["parse"]
        if "action" not in kwargs and f.default not in (dataclasses.MISSING, None):
            kwargs["help"] += f" (default: {_show(f.default)})"
        p(meta["flag"], dest=f.name, default=argparse.SUPPRESS, **kwargs)
    p("--known-frames", type=int, help="known frames of predict / past (task argument 'known')")
    p("--task-arg", action="append", default=[], metavar="KEY=INT", help="other task arguments")
    p("--real-split", help="FVD against clips of this split instead (the CLI builds real_clips)")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def eval_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``evaluate_path`` from parsed ``add_eval_arguments`` flags: every
    setting given on the command line, the task arguments and ``real_split``."""
    kwargs = {f.name: getattr(args, f.name) for f in SETTINGS if hasattr(args, f.name)}
    task_kwargs: dict[str, Any] = {}
    for item in args.task_arg:
        key, _, value = item.partition("=")
        task_kwargs[key] = int(value)
    if args.known_frames is not None:
        task_kwargs["known"] = args.known_frames
    if task_kwargs:
        kwargs["task_kwargs"] = task_kwargs
    if args.real_split:
        kwargs["real_split"] = args.real_split
    return kwargs
