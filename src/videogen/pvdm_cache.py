"""The stage-1 files PVDM's stage 2 reads: the autoencoder export's weight file, and
``videogen pvdm-cache``, which encodes training clips once into a latent cache
(``videogen.data.latent_cache``) that stage 2 trains on every epoch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from videogen.checkpoint import WEIGHTS_NAME, load_pretrained
from videogen.config import ConfigError


def export_weights_file(path: str | Path) -> Path:
    """The weight file of a stage-1 export or run folder (its ``export/``)."""
    path = Path(path)
    for candidate in (path / WEIGHTS_NAME, path / "export" / WEIGHTS_NAME):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"model.autoencoder.path: {path} holds no {WEIGHTS_NAME} (nor export/{WEIGHTS_NAME}); "
        "finish stage 1 (its export) first"
    )


@torch.no_grad()
def write_pvdm_cache(
    autoencoder: str | Path,
    data: str,
    out: str | Path,
    *,
    root: str | None = None,
    items: int = 10_000,
    batch_size: int = 16,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Path:
    """``videogen pvdm-cache``: encode ``items`` random training items of ``data`` (a dataset
    name or path; ``root`` for a benchmark) with the stage-1 export ``autoencoder`` and write a
    latent cache folder ``out`` for stage 2 (``model.cache=out``). Each item is two
    consecutive clips at the autoencoder's resolution; the cache records the export's sha256."""
    from tqdm.auto import tqdm

    from videogen.data import build_dataset, to_model
    from videogen.data.latent_cache import write_latent_cache
    from videogen.metrics.weights import sha256_file

    weights = export_weights_file(autoencoder)
    method = load_pretrained(weights.parent, device=device)
    if method.name != "pvdm":
        raise ConfigError(f"{autoencoder} holds a {method.name} model, not a PVDM autoencoder")
    clip = method.model_cfg.clip
    cfg = dataclasses.replace(method.cfg.data, name=data, root=root, frames=2 * clip)
    clips = build_dataset(cfg, "train", seed=seed, length=items)
    loader = torch.utils.data.DataLoader(clips, batch_size=batch_size, num_workers=cfg.num_workers)
    batches = tqdm(loader, disable=not progress, desc="encoding", total=-(-items // batch_size))
    info = {
        "autoencoder": str(autoencoder),
        "autoencoder_sha256": sha256_file(weights),
        "data": {**dataclasses.asdict(cfg), "split": "train", "seed": seed},
        "clip": clip,
        "plane_shape": dataclasses.asdict(method.plane_shape),
    }
    device = torch.device(device)
    return write_latent_cache(
        out,
        lambda batch: method.encode_items(to_model(batch.to(device))),
        (b if torch.is_tensor(b) else b[0] for b in batches),
        info,
    )
