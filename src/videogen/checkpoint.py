"""Checkpoints that resume exactly, and exports that load anywhere.

A checkpoint is a folder ``ckpt/step-NNNNNNN/`` with the raw and EMA weights (safetensors), the
state of every optimizer and LR scheduler (one per parameter group the method declares, by
name), every rank's RNG state and the step. It is written into a
hidden temporary folder and renamed into place, and ``ckpt/latest`` is replaced atomically after
that, so a kill or a full disk mid-write never leaves a corrupt latest checkpoint.

An export (``save_pretrained``) is a folder with ``config.json`` (the whole run config) and
``model.safetensors`` (EMA weights when there are any): what ``load_pretrained`` reads.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from videogen.config import Config, ConfigError, from_dict, load_config, to_dict
from videogen.registry import build_method

if TYPE_CHECKING:
    from videogen.methods.base import VideoMethod

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def plain_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict safetensors can write: contiguous CPU tensors, no shared storage."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- checkpoints


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    *,
    model: torch.nn.Module,
    ema: dict[str, torch.Tensor] | None,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    rank_rng: list[dict[str, Any]],
    batch_size: int | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically and drop all but the newest ``keep``.

    ``rank_rng`` holds one RNG state per process; ``state.json`` records the step, the number
    of processes and the per-process ``batch_size`` (what a resume on another number of
    processes compares with)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step-{step:07d}"
    tmp = ckpt_dir / f".tmp-step-{step:07d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(plain_state(model.state_dict()), str(tmp / WEIGHTS_NAME))
    if ema is not None:
        save_file(plain_state(ema), str(tmp / "ema.safetensors"))
    torch.save(
        {
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
            "schedulers": {k: sched.state_dict() for k, sched in schedulers.items()},
        },
        tmp / "optim.pt",
    )
    torch.save(rank_rng, tmp / "rng.pt")
    info = {"step": step, "processes": len(rank_rng), "batch_size": batch_size}
    (tmp / "state.json").write_text(json.dumps(info))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _atomic_write_text(ckpt_dir / "latest", final.name)
    old = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir())[:-keep]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    ckpt_dir = Path(run_dir) / "ckpt"
    pointer = ckpt_dir / "latest"
    if pointer.is_file():
        path = ckpt_dir / pointer.read_text().strip()
        if (path / "state.json").is_file():
            return path
    complete = sorted(p for p in ckpt_dir.glob("step-*") if (p / "state.json").is_file())
    return complete[-1] if complete else None


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a safetensors state dict, or say plainly that it is damaged or belongs to another
    model."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path}: not a readable safetensors file ({err}); it is truncated or damaged: "
            "export the run again, or load its checkpoint (a run folder)"
        ) from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        name = getattr(model, "name", type(model).__name__)
        first = str(err).split("\n")[1].strip() if "\n" in str(err) else str(err)
        raise ValueError(
            f"{path} does not hold weights of this {name} model (config.json beside it "
            f"describes another method or size): {first}"
        ) from err


def load_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    schedulers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load weights (and the named optimizers / schedulers when given) in place; return step,
    ema, rng (one state per process that wrote it) and batch_size (per process; None in
    checkpoints written before it was recorded). A checkpoint of another set of parameter
    groups is refused by name."""
    load_weights(model, path / WEIGHTS_NAME)
    ema_path = path / "ema.safetensors"
    ema = load_file(str(ema_path)) if ema_path.is_file() else None
    if optimizers:
        saved = torch.load(path / "optim.pt", map_location="cpu", weights_only=True)
        if "optimizer" in saved:  # written before methods declared groups: one, "model"
            saved = {
                "optimizers": {"model": saved["optimizer"]},
                "schedulers": {"model": saved["scheduler"]},
            }
        if set(saved["optimizers"]) != set(optimizers):
            raise ValueError(
                f"{path} holds optimizers {sorted(saved['optimizers'])} but the method trains "
                f"{sorted(optimizers)}; resume with the config that wrote it, or train --fresh"
            )
        for name, opt in optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        for name, sched in (schedulers or {}).items():
            sched.load_state_dict(saved["schedulers"][name])
    rng = torch.load(path / "rng.pt", weights_only=True)
    info = json.loads((path / "state.json").read_text())
    return {"step": info["step"], "ema": ema, "rng": rng, "batch_size": info.get("batch_size")}


# --------------------------------------------------------------------------- exports


def save_pretrained(
    method: VideoMethod, path: str | Path, ema: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (the EMA weights when given)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(path / CONFIG_NAME, json.dumps(to_dict(method.cfg), indent=2))
    tmp = path / f".{WEIGHTS_NAME}.tmp"
    state = method.state_dict()
    if ema is not None:
        state.update({k: v for k, v in ema.items() if k in state})
    save_file(plain_state(state), str(tmp))
    os.replace(tmp, path / WEIGHTS_NAME)
    return path


def read_config(path: str | Path) -> Config:
    """The run config of an export folder, a run folder or a config file."""
    path = Path(path)
    for candidate in (path / CONFIG_NAME, path / "export" / CONFIG_NAME):
        if candidate.is_file():
            try:
                return from_dict(Config, json.loads(candidate.read_text(encoding="utf-8")))
            except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, ConfigError
                raise ConfigError(
                    f"{candidate}: not a valid run config ({err}); restore it from the run "
                    "folder's config.yaml or export the run again"
                ) from err
    if (path / "config.yaml").is_file():
        return load_config(path / "config.yaml")
    raise ConfigError(
        f"{path} is neither an export folder (config.json + {WEIGHTS_NAME}) nor a run folder "
        "(config.yaml + ckpt/)"
    )


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> VideoMethod:
    """Load a method from an export folder, or from a run folder (its export, else its latest
    checkpoint's EMA weights). The method is returned in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected an export or a run folder)")
    cfg = read_config(path)
    method = build_method(cfg)
    export = path if (path / WEIGHTS_NAME).is_file() else path / "export"
    if (export / WEIGHTS_NAME).is_file():
        load_weights(method, export / WEIGHTS_NAME)
    else:
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise FileNotFoundError(f"{path} holds no weights: no {WEIGHTS_NAME} and no checkpoint")
        state = load_checkpoint(ckpt, model=method)
        if state["ema"] is not None:
            method.load_state_dict(state["ema"], strict=False)
    return method.to(device).eval()
