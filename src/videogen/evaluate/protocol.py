"""Every setting of an evaluation, declared once.

``Protocol`` holds the settings that change a number (written next to every value in
``metrics.json``); ``Resources`` holds where things are (weight files, cache, output folder).
Each field carries its help text and, where the command line has it, its flag: ``evaluate_run``
takes the field names as keywords and ``videogen eval`` builds its flags from the same fields
(``videogen.evaluate.cli``), so a default or a help text is written in one place only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from videogen.metrics.i3d import I3D_VARIANTS, PRECISIONS, RESIZE_MODES, RESIZE_ORIGINS

METRICS = ("fvd", "kvd", "is", "ssim", "psnr", "lpips", "ssim_mcvd", "psnr_mcvd", "bpd")
# Per-frame metrics and the sign of the per-frame curve each keeps: +1 higher is better, -1
# lower (used to pick the best of k samples). psnr_mcvd keeps each frame's MSE: MCVD's PSNR is
# 10 log10(1 / the clip's mean MSE), best where the mean MSE is least.
FRAME_METRICS = {"ssim": 1, "psnr": 1, "lpips": -1, "ssim_mcvd": 1, "psnr_mcvd": -1}


class ProtocolError(ValueError):
    """Inputs do not fit the evaluation protocol; the message names the setting."""


@dataclass(frozen=True)
class InceptionProtocol:
    """How the Inception Score of a set of C3D probabilities is formed: ``runs`` independent
    sample sets (sample r of every clip forms run r), each shuffled with ``shuffle_seed``
    (numpy ``RandomState``; None: in clip order) and cut into ``splits`` parts; ``eps`` is
    added to every probability. ``samples``: the set size the paper uses (None: any)."""

    splits: int
    shuffle_seed: int | None
    runs: int
    eps: float
    samples: int | None
    reproduces: str


IS_PRESETS = {
    "single-split": InceptionProtocol(
        1,
        None,
        1,
        0.0,
        None,
        "no paper's protocol: one split over every sample, so the score does not depend on the "
        "order of the samples (the default)",
    ),
    "tgan2": InceptionProtocol(
        1,
        None,
        10,
        1e-20,
        2048,
        "TGANv2 (Saito et al., IJCV 2020), scripts/compute_inception_score.py: 10 runs of "
        "2,048 samples, one split each, eps 1e-20; mean and std over the runs",
    ),
    "stylegan-v": InceptionProtocol(
        10,
        42,
        1,
        0.0,
        2048,
        "StyleGAN-V (Skorokhodov et al., CVPR 2022), isv2048_ucf: 2,048 samples shuffled with "
        "numpy RandomState(42), 10 splits; mean and std over the splits",
    ),
}


def setting(
    default: Any = None,
    help: str = "",
    *,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    factory: Callable[[], Any] | None = None,
    internal: bool = False,
    **argparse_kwargs: Any,
) -> Any:
    """A dataclass field with its help text and, if ``flag`` is given, its command-line flag:
    ``parse`` converts the flag's text (``int``, a list parser...); other keywords go to
    ``argparse`` as they are (``action``, ``choices``). ``internal`` fields are set by the run,
    not by the caller."""
    meta = {
        "help": help,
        "flag": flag,
        "parse": parse,
        "internal": internal,
        "argparse": argparse_kwargs,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _bn_eps(value: float | str) -> float:
    if isinstance(value, str) and value in I3D_VARIANTS:
        return I3D_VARIANTS[value]
    try:
        return float(value)
    except ValueError:
        raise ProtocolError(
            f"i3d_bn_eps={value!r}: give a number or one of {', '.join(I3D_VARIANTS)}"
        ) from None


def _int_list(text: str) -> list[int]:
    return [int(i) for i in text.split(",") if i.strip()]


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


@dataclass
class Protocol:
    """Every setting that changes a number. Written next to every value in ``metrics.json``."""

    task: str = setting(
        "predict",
        "predict, past, infill, interpolate, upsample, ...; reconstruct: an autoencoder's "
        "reconstructions against their inputs (PSNR/SSIM, and FVD = R-FVD)",
        flag="--task",
    )
    # the task's arguments; the command line sets them with --known-frames and --task-arg
    task_kwargs: dict[str, Any] = setting(factory=dict, help="arguments of the task")
    known: list[int] | None = setting(
        None,
        "explicit known frame indices, comma separated (overrides --task)",
        flag="--known",
        parse=_int_list,
    )
    metrics: tuple[str, ...] = setting(
        ("fvd", "ssim", "psnr", "lpips"),
        f"comma separated: {','.join(METRICS)}",
        flag="--metrics",
        parse=_name_list,
    )
    best_of: int = setting(
        1, "samples per test clip (SRVP 100, MCVD 10)", flag="--best-of", parse=int
    )
    num_clips: int = setting(
        2048, "test clips (real and generated sets)", flag="--num-clips", parse=int
    )
    # real clips in FVD / KVD: num_clips unless a separate real set is given
    num_real: int | None = setting(
        None, "clips of --real-split (default: --num-clips)", flag="--num-real", parse=int
    )
    batch_size: int = setting(16, "clips per batch", flag="--batch-size", parse=int)
    seed: int = setting(0, "seed of the test clips and of every sample", flag="--seed", parse=int)
    fvd_include_known: bool = setting(
        True,
        "FVD on generated frames only",
        flag="--fvd-exclude-known",
        action="store_false",
    )
    fvd_samples: int = setting(
        1, "samples per clip that enter FVD", flag="--fvd-samples", parse=int
    )
    i3d_resize: str = setting(
        "tf1-bilinear",
        "how frames reach 224x224: " + "; ".join(f"{k}: {v}" for k, v in RESIZE_ORIGINS.items()),
        flag="--i3d-resize",
        choices=RESIZE_MODES,
    )
    i3d_bn_eps: float = setting(
        I3D_VARIANTS["videogpt"],
        "BatchNorm epsilon of the state-dict I3D, a number or its origin: "
        + ", ".join(f"{k} ({v:g})" for k, v in I3D_VARIANTS.items()),
        flag="--i3d-bn-eps",
        parse=lambda text: _bn_eps(text),
    )
    precision: str = setting(
        "fp32", "I3D precision on the GPU", flag="--precision", choices=PRECISIONS
    )
    is_preset: str = setting(
        "single-split",
        "Inception Score protocol: "
        + "; ".join(f"{k}: {v.reproduces}" for k, v in IS_PRESETS.items()),
        flag="--is-preset",
        choices=tuple(IS_PRESETS),
    )
    is_splits: int | None = setting(
        None, "IS splits (default: the preset's)", flag="--is-splits", parse=int
    )
    is_shuffle_seed: int | None = setting(
        None,
        "IS shuffle seed before splitting (default: the preset's)",
        flag="--is-shuffle-seed",
        parse=int,
    )
    is_runs: int | None = setting(
        None,
        "IS runs: independent sample sets (default: the preset's)",
        flag="--is-runs",
        parse=int,
    )
    steps: int | None = setting(None, "sampling steps", flag="--steps", parse=int)
    sampler: str | None = setting(None, "sampler name", flag="--sampler")
    temperature: float | None = setting(
        None, "sampling temperature", flag="--temperature", parse=float
    )
    guidance: float | None = setting(
        None, "classifier-free guidance scale", flag="--guidance", parse=float
    )
    # the class labels a class-conditional method samples with (TEST_LABELS or NULL_LABEL);
    # None for a method that takes no labels. Set from the first test batch.
    labels: str | None = setting(None, "class labels the method samples with", internal=True)

    def __post_init__(self) -> None:
        self.i3d_bn_eps = _bn_eps(self.i3d_bn_eps)  # an origin's name stands for its epsilon

    def check(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ProtocolError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
        if self.best_of < 1:
            raise ProtocolError(f"best_of must be >= 1, got {self.best_of}")
        if not 1 <= self.fvd_samples <= self.best_of:
            raise ProtocolError(
                f"fvd_samples={self.fvd_samples} must be between 1 and best_of={self.best_of}"
            )
        if self.is_preset not in IS_PRESETS:
            raise ProtocolError(
                f"is_preset={self.is_preset!r}; choose one of {', '.join(IS_PRESETS)}"
            )
        inception = self.inception
        if inception.splits < 1 or inception.runs < 1:
            raise ProtocolError("is_splits and is_runs must be positive")
        preset = IS_PRESETS[self.is_preset]
        if "is" in self.metrics and preset.samples and self.num_clips != preset.samples:
            raise ProtocolError(
                f"is_preset={self.is_preset!r} scores {preset.samples} samples per run "
                f"({preset.reproduces}); num_clips={self.num_clips}. Use --num-clips "
                f"{preset.samples}, or is_preset='single-split' for another count"
            )
        if self.num_clips < 1 or (self.num_real or 1) < 1 or self.batch_size < 1:
            raise ProtocolError("num_clips, num_real and batch_size must be positive")
        if self.steps is not None and self.steps < 1:
            raise ProtocolError(f"steps={self.steps} (--steps): sampling needs at least 1 step")
        if self.i3d_resize not in RESIZE_MODES:
            raise ProtocolError(f"i3d_resize={self.i3d_resize!r}; choose one of {RESIZE_MODES}")
        if self.precision not in PRECISIONS:
            raise ProtocolError(f"precision={self.precision!r}; choose one of {PRECISIONS}")

    @property
    def inception(self) -> InceptionProtocol:
        """The IS protocol: the preset's, with ``is_splits`` / ``is_shuffle_seed`` /
        ``is_runs`` where they are given."""
        given = {
            k: v
            for k, v in (
                ("splits", self.is_splits),
                ("shuffle_seed", self.is_shuffle_seed),
                ("runs", self.is_runs),
            )
            if v is not None
        }
        return dataclasses.replace(IS_PRESETS[self.is_preset], **given)

    @property
    def draws(self) -> int:
        """Samples drawn per test clip: enough for best-of-k, FVD and every IS run."""
        runs = self.inception.runs if "is" in self.metrics else 1
        return max(self.best_of, self.fvd_samples, runs)

    @property
    def real_count(self) -> int:
        """Clips of the real set: ``num_real``, or the test clips themselves."""
        return self.num_real or self.num_clips


@dataclass
class Resources:
    """Where the weight files are, and where results go: nothing here changes a number
    (each weight file's sha256 is written with the values it gives)."""

    i3d_path: str | Path | None = setting(
        None, "i3d_pretrained_400.pt or i3d_torchscript.pt", flag="--i3d"
    )
    c3d_path: str | Path | None = setting(
        None, "conv3d_deepnetA_ucf.npz or c3d_ucf101.pt (IS)", flag="--c3d"
    )
    c3d_mean_path: str | Path | None = setting(
        None, "TGAN2's mean2.npz (with the npz C3D)", flag="--c3d-mean"
    )
    lpips_alexnet_path: str | Path | None = setting(
        None, "torchvision AlexNet weights (alexnet-owt-7be5be79.pth)", flag="--lpips-alexnet"
    )
    lpips_lin_path: str | Path | None = setting(None, "LPIPS v0.1 alex.pth", flag="--lpips-lin")
    trust_torchscript: bool = setting(
        False,
        "load TorchScript I3D/C3D files (StyleGAN-V's): they run their own code, so only for "
        "files you trust; state-dict files need no trust",
        flag="--trust-torchscript",
        action="store_true",
    )
    cache_dir: str | Path | None = setting(
        None, "where real-set features are cached", flag="--cache-dir"
    )
    out_dir: str | Path | None = setting(
        None, "output folder for metrics.json and report.html", flag="--out"
    )


SETTINGS: tuple[dataclasses.Field, ...] = (
    *dataclasses.fields(Protocol),
    *dataclasses.fields(Resources),
)


def split_settings(settings: dict[str, Any]) -> tuple[Protocol, Resources]:
    """``Protocol`` and ``Resources`` from keyword settings (field names); an unknown or
    internal name raises a ``TypeError`` that lists the valid ones."""
    names = {f.name: f for f in SETTINGS if not f.metadata.get("internal")}
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise TypeError(f"unknown evaluation settings {unknown}; valid: {', '.join(sorted(names))}")
    proto_names = {f.name for f in dataclasses.fields(Protocol)}
    proto_kw = {k: v for k, v in settings.items() if k in proto_names}
    known = proto_kw.get("known")
    if known is not None:
        proto_kw["known"] = known_list(known)
        proto_kw["task"] = "indices"
    if "task_kwargs" in proto_kw:
        proto_kw["task_kwargs"] = dict(proto_kw["task_kwargs"] or {})
    if "metrics" in proto_kw:
        proto_kw["metrics"] = tuple(proto_kw["metrics"])
    res_kw = {k: v for k, v in settings.items() if k not in proto_names}
    proto = Protocol(**proto_kw)
    proto.check()
    return proto, Resources(**res_kw)


def known_list(known: Sequence[int] | Tensor) -> list[int]:
    """Known frame indices from indices or a ``(T,)`` bool mask."""
    if isinstance(known, Tensor) and known.dtype == torch.bool:
        return known.reshape(-1).nonzero().flatten().tolist()
    return [int(i) for i in known]
