"""A cache of encoded training clips for a latent method (PVDM's stage 2): encode once, train on
the latents every epoch.

A cache is a folder with ``latents.safetensors`` (one float32 tensor ``latents``
``(N, clips, C, L)``: N training items, each ``clips`` consecutive clips of packed latent
planes) and ``cache.json``: the sha256 of the autoencoder export's weight file that wrote it,
the latent shape and the data it was drawn from. ``LatentCache.open`` refuses a cache written by
another autoencoder (another sha256) or of another shape, with the command that rebuilds it.
Items are ``{"latents": (clips, C, L)}`` dicts: the trainer passes them to the method's loss as
``latents=`` (batches without video).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset

from videogen.data.errors import DatasetError

CACHE_FILE = "latents.safetensors"
INFO_FILE = "cache.json"


class LatentCacheError(DatasetError):
    """A latent cache is missing, or belongs to another autoencoder or shape."""


def write_latent_cache(
    out: str | Path,
    encode: Callable[[Tensor], Tensor],
    batches: Iterable[Tensor],
    info: dict[str, Any],
) -> Path:
    """Encode every batch (``encode(batch) -> (B, clips, C, L)``) and write the cache folder
    ``out``: the latents and ``info`` (which must hold ``autoencoder_sha256``) with the item
    count and latent shape added. Written to temporary names and renamed, so an interrupted
    run leaves no cache that looks complete."""
    if "autoencoder_sha256" not in info:
        raise ValueError("a latent cache records its autoencoder: info needs autoencoder_sha256")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [encode(batch).float().cpu() for batch in batches]
    if not parts:
        raise LatentCacheError(f"no clips to encode into {out}")
    latents = torch.cat(parts).contiguous()
    record = {**info, "items": latents.shape[0], "shape": list(latents.shape[1:])}
    tmp = out / f".{CACHE_FILE}.tmp"
    save_file({"latents": latents}, str(tmp))
    os.replace(tmp, out / CACHE_FILE)
    tmp_info = out / f".{INFO_FILE}.tmp"
    tmp_info.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp_info, out / INFO_FILE)
    return out


def read_cache_info(path: str | Path) -> dict[str, Any]:
    """The ``cache.json`` of a cache folder (an error naming the folder if there is none)."""
    info = Path(path) / INFO_FILE
    if not info.is_file() or not (Path(path) / CACHE_FILE).is_file():
        raise LatentCacheError(
            f"{path} is not a latent cache (no {INFO_FILE} + {CACHE_FILE}); write one with "
            "`videogen pvdm-cache AUTOENCODER DATA OUT`"
        )
    return json.loads(info.read_text())


class LatentCache(Dataset):
    """The items of a cache folder: ``{"latents": (clips, C, L)}`` float32."""

    def __init__(self, path: str | Path, latents: Tensor, info: dict[str, Any]) -> None:
        self.path = Path(path)
        self.latents = latents
        self.info = info

    @classmethod
    def open(
        cls, path: str | Path, *, autoencoder_sha256: str | None, shape: tuple[int, ...]
    ) -> LatentCache:
        """Open ``path`` if it was written by the autoencoder whose export weight file has
        ``autoencoder_sha256`` and holds latents of ``shape`` ``(clips, C, L)``; else raise
        ``LatentCacheError`` saying how to rebuild it."""
        info = read_cache_info(path)
        rebuild = (
            f"rebuild it with `videogen pvdm-cache <this run's stage-1 export> DATA {path}` "
            "or drop model.cache to encode every step"
        )
        if autoencoder_sha256 is None:
            raise LatentCacheError(
                f"{path} cannot be checked: this run's autoencoder was not loaded from an "
                "export (model.autoencoder.path), so it has no sha256 to compare; give "
                "model.autoencoder.path or drop model.cache"
            )
        if info.get("autoencoder_sha256") != autoencoder_sha256:
            raise LatentCacheError(
                f"{path} was written by another autoencoder (sha256 "
                f"{str(info.get('autoencoder_sha256'))[:12]}..., this run's is "
                f"{autoencoder_sha256[:12]}... from {info.get('autoencoder', '?')}): {rebuild}"
            )
        if tuple(info.get("shape", ())) != tuple(shape):
            raise LatentCacheError(
                f"{path} holds latents of shape {info.get('shape')} per item; this run needs "
                f"{list(shape)}: {rebuild}"
            )
        latents = load_file(str(Path(path) / CACHE_FILE))["latents"]
        if tuple(latents.shape[1:]) != tuple(shape) or latents.shape[0] != info["items"]:
            raise LatentCacheError(f"{path}/{CACHE_FILE} does not match its {INFO_FILE}: {rebuild}")
        return cls(path, latents, info)

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"latents": self.latents[index]}
