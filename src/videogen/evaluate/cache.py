"""The real set's I3D features, cached on disk per (data, weight file sha256, protocol), so the
real side of FVD / KVD is computed once per protocol."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from videogen.evaluate.protocol import Protocol

CACHE_VERSION = 1


def gen_list(known_row: Tensor) -> list[int]:
    """Indices of the generated (unknown) frames."""
    return (~known_row).nonzero().flatten().tolist()


def fvd_frames(proto: Protocol, known_row: Tensor) -> list[int]:
    """The frames FVD sees: all of them, or the generated ones only."""
    if proto.fvd_include_known:
        return list(range(known_row.numel()))
    return gen_list(known_row)


class RealCache:
    """I3D features of a real set, keyed by (data spec, weight sha256, protocol)."""

    def __init__(self, path: Path | None, key: dict[str, Any], features: Tensor | None) -> None:
        self.path, self.key, self.features = path, key, features

    @classmethod
    def open(
        cls,
        proto: Protocol,
        i3d: nn.Module,
        known_row: Tensor,
        shape: tuple[int, ...],
        data_spec: Any,
        cache_dir: str | Path | None,
    ) -> RealCache:
        frames = fvd_frames(proto, known_row)
        key = {
            "version": CACHE_VERSION,
            "data": data_spec,
            "i3d": {k: v for k, v in i3d.weights_info.items() if k != "path"},
            "resize": proto.i3d_resize,
            "precision": proto.precision,
            "frames": frames,
            "clip_shape": list(shape),
            "num_clips": proto.real_count,
            "seed": proto.seed,
        }
        if data_spec is None:
            return cls(None, key, None)  # nothing names the data: do not cache
        root = Path(cache_dir or os.environ.get("VIDEOGEN_CACHE", "~/.cache/videogen"))
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        path = root.expanduser() / "real_features" / f"i3d-{digest[:24]}.safetensors"
        features = None
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                stored = json.loads((f.metadata() or {}).get("key", "null"))
                if stored == json.loads(json.dumps(key, sort_keys=True, default=str)):
                    features = f.get_tensor("features")
        return cls(path, key, features)

    def save(self, features: Tensor) -> None:
        if self.path is None:
            return
        from safetensors.torch import save_file

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        meta = {"key": json.dumps(self.key, sort_keys=True, default=str)}
        save_file({"features": features.contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, self.path)  # atomic: a reader never sees half a file
