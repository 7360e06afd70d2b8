"""One typed config for a run: method, model, data, diffusion, train, sample.

Loaded from YAML, overridden with dotted ``key=value`` pairs from the command line, checked
before any work starts (an unknown key or a wrong type names the key), and saved with the run.
The ``model`` section is method-specific: each method declares its own dataclass for it
(``VideoMethod.ModelConfig``) and it is checked against that when the method is built
(``videogen.registry.build_method``, before a run writes anything). This module knows nothing
of methods.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A config value or key is wrong; the message names it."""


@dataclass
class DataConfig:
    """Where clips come from and their shape. ``frames`` is the clip length the method trains on."""

    name: str = "moving-digits"  # built-in dataset, benchmark name or a path
    root: str | None = None  # dataset folder / file for file-backed data
    frames: int = 10
    size: int = 64
    channels: int = 1
    stride: int = 1  # temporal subsampling of the source video
    split: str = "train"
    num_workers: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific (num_digits, ...)


@dataclass
class DiffusionConfig:
    """The Gaussian process: training schedule and prediction target."""

    schedule: Literal["linear", "cosine", "scaled_linear"] = "linear"
    timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    prediction: Literal["eps", "v", "x0"] = "eps"
    # per-timestep weight of the denoising loss: "none" is every paper's plain loss of its
    # prediction; "min_snr" is min-SNR-γ (Hang et al., ICCV 2023): the x0-equivalent weight
    # clipped at SNR = γ, which stops the low-noise steps from dominating training
    loss_weighting: Literal["none", "min_snr"] = "none"
    min_snr_gamma: float = 5.0
    # rescale the betas so the last step is pure noise (Lin et al., WACV 2024): the sampler then
    # starts where training saw no signal at all; needs prediction v (eps is undefined there)
    zero_terminal_snr: bool = False
    # how training draws its timesteps: "uniform" over 0..timesteps-1 (every paper's), or
    # "logit_normal": t = floor(timesteps * sigmoid(n)), n ~ N(timestep_mean, timestep_std²)
    # (Esser et al., ICML 2024), which spends fewer steps at the two ends of the schedule, where
    # the clean clip is nearly given (low t) or every step asks the same question (high t)
    timestep_sampling: Literal["uniform", "logit_normal"] = "uniform"
    timestep_mean: float = 0.0
    timestep_std: float = 1.0


@dataclass
class TrainConfig:
    steps: int = 100_000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    optimizer: Literal["adam", "adamw"] = "adam"
    warmup: int = 0
    # after warm-up: "constant" (the papers') or "cosine", half a cosine down to 0 at
    # train.steps (a run that train.max_minutes ends sooner stops part way down)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float | None = 1.0
    # an update whose gradients are not finite is skipped (weights, Adam's moments and EMA keep
    # their values; the log row says "skipped"); this many steps in a row stop the run, as one
    # does with 0
    skip_nonfinite: int = 20
    ema_decay: float | None = 0.999
    # decay min(ema_decay, (1 + n) / (10 + n)) at update n, so short runs average recent
    # weights; false = the papers' constant decay from the first step
    ema_warmup: bool = True
    grad_accum: int = 1
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    seed: int = 0
    log_every: int = 50
    sample_every: int = 5000
    ckpt_every: int = 5000
    # stop after this many minutes and finish as at ``steps``: checkpoint and export; running
    # again resumes. One process checks the clock every step; several check it at log steps, so
    # that every rank stops at the same step
    max_minutes: float | None = None
    compile: bool = False
    # torch.compile mode of the training step: "reduce-overhead" replays the forward and
    # backward passes from CUDA graphs (on a GPU; the win where kernel launches bound the step)
    compile_mode: Literal[
        "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ] = "default"
    channels_last: bool = False
    out: str = "runs/run"
    # export the EMA weights to <out>/snapshots/<M>min/ when the run has trained M minutes
    # (checked as max_minutes is): the points of a quality-against-minutes curve
    snapshot_minutes: list[float] = field(default_factory=list)


@dataclass
class SampleConfig:
    sampler: str = "ddpm"
    steps: int = 100
    guidance: float = 1.0  # classifier-free guidance scale; 1 = off
    temperature: float = 1.0  # flows: scale of the prior's standard deviation
    # frame-by-frame samplers (VideoFlow) on CUDA replay each frame's step from CUDA graphs:
    # the same samples bit for bit, several times faster at small batches; false runs eagerly
    cuda_graphs: bool = True


@dataclass
class Config:
    method: str = "mcvd"
    paper: str = ""  # which paper table this config targets
    model: dict[str, Any] = field(default_factory=dict)  # checked by the method's ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        check_values(self)


# --------------------------------------------------------------------------- value ranges


def _at_least(low: float) -> tuple[Any, str]:
    return (lambda v: v >= low), f">= {low}"


def _above(low: float) -> tuple[Any, str]:
    return (lambda v: v > low), f"> {low}"


def _unit_interval(v: float) -> bool:
    return 0 <= v < 1


# Every bounded value: its dotted key, the test it must pass and what that means. None (where
# the type allows it) always passes: it switches the feature off.
BOUNDS: dict[str, tuple[Any, str]] = {
    "data.frames": _at_least(1),
    "data.size": _at_least(1),
    "data.channels": ((lambda v: v in (1, 3)), "1 (grey) or 3 (RGB)"),
    "data.stride": _at_least(1),
    "data.num_workers": _at_least(0),
    "diffusion.timesteps": _at_least(1),
    "diffusion.beta_start": ((lambda v: 0 < v < 1), "in (0, 1)"),
    "diffusion.beta_end": ((lambda v: 0 < v < 1), "in (0, 1)"),
    "train.steps": _at_least(1),
    "train.batch_size": _at_least(1),
    "train.lr": _at_least(0),
    "train.weight_decay": _at_least(0),
    "train.betas": ((lambda v: all(_unit_interval(b) for b in v)), "two values in [0, 1)"),
    "train.eps": _above(0),
    "train.warmup": _at_least(0),
    "train.grad_clip": _above(0),
    "train.skip_nonfinite": (
        (lambda v: v >= 0),
        ">= 0 (0 = the first non-finite step stops the run)",
    ),
    "train.ema_decay": (_unit_interval, "in [0, 1) (or null for no EMA)"),
    "train.grad_accum": _at_least(1),
    "train.log_every": _at_least(1),
    "train.sample_every": ((lambda v: v >= 0), ">= 0 (0 = never)"),
    "train.ckpt_every": ((lambda v: v >= 0), ">= 0 (0 = only at the end)"),
    "train.max_minutes": _at_least(0),
    "train.snapshot_minutes": ((lambda v: all(m >= 0 for m in v)), "a list of minutes >= 0"),
    "sample.steps": _at_least(1),
    "sample.temperature": _at_least(0),
}


def check_values(cfg: Config) -> None:
    """Refuse a value outside its range (``BOUNDS``) with a ``ConfigError`` naming key and value."""
    for key, (test, what) in BOUNDS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is None:
            continue
        try:
            ok = bool(test(value)) and (not isinstance(value, float) or math.isfinite(value))
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"{key}={value!r} is out of range: it must be {what}")


# --------------------------------------------------------------------------- typed loading


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where lossless."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} is not a {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(
                _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))
            )
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # PyYAML reads 3e-4 (no dot) as a string; take it as the number it spells
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (known keys: {known})")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a config dataclass (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> (["train", "lr"], 1e-4); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    if raw == "":
        return key.split("."), ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        if isinstance(err, yaml.reader.ReaderError):  # a byte that is not UTF-8 text, say
            fix = f"it holds a character YAML cannot read ({err.reason}); give UTF-8 text"
        else:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            fix = f"{problem}; quote strings and close lists, e.g. train.betas=[0.9,0.99]"
        raise ConfigError(f"override {text!r}: the value {raw!r} is not valid YAML: {fix}") from err
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted overrides to a nested dict (in place) and return it."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, check every section but
    ``model``, which the method checks (``videogen.registry.model_config``)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    apply_overrides(data, overrides or [])
    return from_dict(Config, data)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
