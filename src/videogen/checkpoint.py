"""Checkpoints that resume exactly, and exports that load anywhere.

A checkpoint is a folder ``ckpt/step-NNNNNNN/`` with the raw and EMA weights (safetensors), the
state of every optimizer and LR scheduler (one per parameter group the method declares, by
name), every rank's RNG state and data-stream position, and the step. It is staged in a hidden
folder, every file fsynced, and renamed into place; ``ckpt/latest`` is replaced atomically
after that, so a kill or a full disk mid-write never leaves a corrupt latest checkpoint.

Nothing non-finite is written: weights, EMA and optimizer state are checked first, and a
checkpoint that does not read back (truncated, corrupt, non-finite) is named in a
``CheckpointError`` so the trainer can fall back to the one before.

An export (``save_pretrained``) is a folder with ``config.json`` (the whole run config) and
``model.safetensors`` (EMA weights when there are any): what ``load_pretrained`` reads.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from videogen.atomic import replace_file, staged_folder, write_bytes
from videogen.config import Config, ConfigError, from_dict, load_config, to_dict
from videogen.registry import build_method

if TYPE_CHECKING:
    from videogen.methods.base import VideoMethod

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
IMPLEMENTATION_FLAGS = ("fused", "foreach")  # optimizer settings a checkpoint does not carry over
UNREADABLE_PREFIX = "unreadable-"  # a checkpoint set aside: ``unreadable-step-0000100``


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or holds unusable values; the message names it."""


class NonFiniteError(ValueError):
    """Weights, EMA or optimizer state hold NaN or inf; ``names`` lists which tensors."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        super().__init__(f"non-finite values in {shown}")


def plain_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict safetensors can write: contiguous CPU tensors, no shared storage."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def non_finite(named: Iterable[tuple[str, Any]]) -> list[str]:
    """The names of the floating-point tensors among ``named`` that hold NaN or inf."""
    bad = []
    for name, value in named:
        floating = torch.is_tensor(value) and value.is_floating_point()
        if floating and not bool(torch.isfinite(value).all()):
            bad.append(name)
    return bad


def optimizer_tensors(optimizers: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every state tensor of every optimizer (Adam's moments: where a non-finite gradient
    stays), named ``optimizer 'group' state[i].key``; ``optimizers`` maps names to
    optimizers or to their state dicts."""
    out = []
    for group, opt in optimizers.items():
        state = opt if isinstance(opt, dict) else opt.state_dict()
        for index, values in state.get("state", {}).items():
            for key, value in values.items():
                out.append((f"optimizer {group!r} state[{index}].{key}", value))
    return out


def torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


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
    """Write checkpoint ``step`` and keep it and the ``keep - 1`` newest before it.

    ``rank_rng`` holds one RNG state per process; ``state.json`` records the step, the number
    of processes and the per-process ``batch_size`` (what a resume on another number of
    processes compares with). Raises ``NonFiniteError`` (writing nothing) when weights, EMA or
    optimizer state hold NaN or inf, and ``videogen.atomic.WriteError`` when the disk refuses
    (the checkpoints already there stay as they were).
    """
    weights = plain_state(model.state_dict())
    optim = {
        "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
        "schedulers": {k: sched.state_dict() for k, sched in schedulers.items()},
    }
    named = [(f"weights {k}", v) for k, v in weights.items()]
    named += [(f"ema {k}", v) for k, v in (ema or {}).items()]
    bad = non_finite(named + optimizer_tensors(optim["optimizers"]))
    if bad:
        raise NonFiniteError(bad)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step-{step:07d}"
    if not (final / "state.json").is_file():
        # a complete folder of this step is this run's own, written before it stopped again
        # where it resumed: the same state, and replacing it would leave a moment without it
        _write_checkpoint(final, weights, ema, optim, rank_rng, step, batch_size)
    replace_file(ckpt_dir / "latest", final.name.encode())
    older = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir() and p.name < final.name)
    for path in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def _write_checkpoint(
    final: Path,
    weights: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
    optim: dict[str, Any],
    rank_rng: list[dict[str, Any]],
    step: int,
    batch_size: int | None,
) -> None:
    info = {"step": step, "processes": len(rank_rng), "batch_size": batch_size}
    with staged_folder(final) as tmp:
        write_bytes(tmp / WEIGHTS_NAME, safetensors_bytes(weights))
        if ema is not None:
            write_bytes(tmp / "ema.safetensors", safetensors_bytes(plain_state(ema)))
        write_bytes(tmp / "optim.pt", torch_bytes(optim))
        write_bytes(tmp / "rng.pt", torch_bytes(rank_rng))
        write_bytes(tmp / "state.json", json.dumps(info).encode())


def checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run, newest (highest step) first.

    ``ckpt/`` only ever holds one run's checkpoints (``--fresh`` sets an earlier run's aside,
    unreadable ones are renamed), so the highest step is the newest, also when a kill came
    between a checkpoint's rename and the update of ``ckpt/latest`` (which names it for
    people and tools)."""
    ckpt_dir = Path(run_dir) / "ckpt"
    return sorted(
        (p for p in ckpt_dir.glob("step-*") if (p / "state.json").is_file()), reverse=True
    )


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = checkpoints(run_dir)
    return found[0] if found else None


def good_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of ``run_dir`` that reads back with finite values, or None."""
    for path in checkpoints(run_dir):
        try:
            read_checkpoint(path)
        except CheckpointError:
            continue
        return path
    return None


def kept_checkpoint(run_dir: Path) -> str:
    """What a stopped run leaves to resume from, in words (checked, so it is true)."""
    good = good_checkpoint(run_dir)
    if good is None:
        return f"No good checkpoint exists in {run_dir / 'ckpt'}: running again starts at step 0."
    return f"The last good checkpoint is {good}: running again resumes from it."


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _read(path: Path, reader: Callable[[Path], Any]) -> Any:
    """``reader(path)``, or a ``CheckpointError`` naming ``path`` whatever went wrong in it
    (truncated zip, broken pickle, refused pickle, bad header, missing file)."""
    try:
        return reader(path)
    except Exception as err:  # noqa: BLE001 - any failure to read this file means it is unusable
        raise CheckpointError(f"{path} is unreadable ({_first_line(err)})") from err


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    state = _read(path, lambda p: load_file(str(p)))
    bad = non_finite(state.items())
    if bad:
        raise CheckpointError(f"{path} holds non-finite values ({', '.join(bad[:3])})")
    return state


def _torch_load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _is_rng(state: Any) -> bool:
    return isinstance(state, dict) and torch.is_tensor(state.get("torch"))


def read_checkpoint(path: Path, *, optimizers: bool = True) -> dict[str, Any]:
    """Every file of checkpoint ``path`` read and checked, nothing applied yet: ``weights``,
    ``ema`` (or None), ``optim`` (``{"optimizers", "schedulers"}``, or None when not asked),
    ``rng`` (one dict per rank, each with ``"stream"`` when written by this version) and
    ``step``. Raises ``CheckpointError`` naming the first file that is not usable."""
    weights = _read_tensors(path / WEIGHTS_NAME)
    ema_path = path / "ema.safetensors"
    ema = _read_tensors(ema_path) if ema_path.is_file() else None
    optim = None
    if optimizers:
        optim = _read(path / "optim.pt", _torch_load)
        if isinstance(optim, dict) and "optimizer" in optim:
            # written before methods declared groups: one, "model"
            optim = {
                "optimizers": {"model": optim["optimizer"]},
                "schedulers": {"model": optim["scheduler"]},
            }
        if not (isinstance(optim, dict) and {"optimizers", "schedulers"} <= set(optim)):
            raise CheckpointError(f"{path / 'optim.pt'} does not hold optimizer states")
        bad = non_finite(optimizer_tensors(optim["optimizers"]))
        if bad:
            raise CheckpointError(f"{path / 'optim.pt'} holds non-finite values ({bad[0]})")
    rng = _read(path / "rng.pt", _torch_load)
    if not (isinstance(rng, list) and rng and all(_is_rng(r) for r in rng)):
        raise CheckpointError(f"{path / 'rng.pt'} does not hold per-rank RNG states")
    state = _read(path / "state.json", lambda p: json.loads(p.read_text()))
    if not (isinstance(state, dict) and isinstance(state.get("step"), int)):
        raise CheckpointError(f"{path / 'state.json'} does not hold the step")
    return {
        "weights": weights,
        "ema": ema,
        "optim": optim,
        "rng": rng,
        "step": state["step"],
        "batch_size": state.get("batch_size"),
    }


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a safetensors state dict, or say plainly that it is damaged, holds non-finite
    values or belongs to another model."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path}: not a readable safetensors file ({err}); it is truncated or damaged: "
            "export the run again, or load its checkpoint (a run folder)"
        ) from err
    bad = non_finite(state.items())
    if bad:
        raise ValueError(
            f"{path} holds non-finite values ({', '.join(bad[:3])}): these weights cannot be "
            "used; export again from a good checkpoint (`load_pretrained` of the run folder "
            "reads its latest one) or retrain"
        )
    _apply_weights(model, state, path)


def _apply_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
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
    checkpoints written before it was recorded). Every file is read and checked before
    anything is loaded: an unusable file is a ``CheckpointError`` naming it, with the model
    untouched. A checkpoint of another set of parameter groups is refused by name (a
    ``ValueError``)."""
    found = read_checkpoint(path, optimizers=bool(optimizers))
    if optimizers:
        saved = found["optim"]
        if set(saved["optimizers"]) != set(optimizers):
            raise ValueError(
                f"{path} holds optimizers {sorted(saved['optimizers'])} but the method trains "
                f"{sorted(optimizers)}; resume with the config that wrote it, or train --fresh"
            )
    _apply_weights(model, found["weights"], path / WEIGHTS_NAME)
    if optimizers:
        for name, opt in optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
            # how the optimizer runs is this process's choice, not the checkpoint's: a state
            # saved by a foreach Adam (the CPU's before Adam was fused everywhere) would
            # otherwise switch the fused one back, which cannot skip a non-finite update
            for group in opt.param_groups:
                for key in IMPLEMENTATION_FLAGS:
                    if key in opt.defaults:
                        group[key] = opt.defaults[key]
        for name, sched in (schedulers or {}).items():
            sched.load_state_dict(saved["schedulers"][name])
    return {
        "step": found["step"],
        "ema": found["ema"],
        "rng": found["rng"],
        "batch_size": found["batch_size"],
    }


def load_latest(
    run_dir: Path,
    report: Callable[[str], None],
    *,
    set_aside: bool,
    **targets: Any,
) -> tuple[Path, dict[str, Any]] | None:
    """Load the newest checkpoint of ``run_dir`` that reads back (``load_checkpoint`` with
    ``targets``); None when the run has none. An unusable one is reported, renamed to
    ``ckpt/unreadable-step-N`` when ``set_aside`` (one process does that), and the one
    before it is tried. Raises ``CheckpointError`` when checkpoints exist but none reads."""
    found = checkpoints(run_dir)
    errors = []
    for i, path in enumerate(found):
        try:
            state = load_checkpoint(path, **targets)
        except CheckpointError as err:
            errors.append(str(err))
            aside = path.with_name(UNREADABLE_PREFIX + path.name)
            if set_aside:
                shutil.rmtree(aside, ignore_errors=True)
                path.rename(aside)
            kept = f"set aside as {aside}" if set_aside else "skipped"
            after = f"resuming from {found[i + 1]} instead" if i + 1 < len(found) else ""
            report(f"checkpoint {err}; {kept}" + (f"; {after}" if after else ""))
            continue
        if errors and set_aside:  # `latest` names a checkpoint that exists again
            replace_file(path.parent / "latest", path.name.encode())
        return path, state
    if errors:
        raise CheckpointError(
            f"no checkpoint of {run_dir / 'ckpt'} reads back ({'; '.join(errors)}); "
            "restore the files, or train --fresh to start over (it sets them aside)"
        )
    return None


# --------------------------------------------------------------------------- exports


def save_pretrained(
    method: VideoMethod, path: str | Path, ema: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (the EMA weights when given), each
    atomically. Raises ``NonFiniteError`` (writing nothing) for NaN/inf weights."""
    path = Path(path)
    state = method.state_dict()
    if ema is not None:
        state.update({k: v for k, v in ema.items() if k in state})
    state = plain_state(state)
    bad = non_finite(state.items())
    if bad:
        raise NonFiniteError(bad)
    path.mkdir(parents=True, exist_ok=True)
    replace_file(path / CONFIG_NAME, json.dumps(to_dict(method.cfg), indent=2).encode())
    replace_file(path / WEIGHTS_NAME, safetensors_bytes(state))
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
