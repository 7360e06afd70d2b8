"""LPIPS v0.1 with AlexNet features, written here so it needs no torchvision.

Loads torchvision's AlexNet state dict (``features.0.weight`` ...; the ImageNet head
``classifier.*`` is not used) and the LPIPS linear layers ``alex.pth`` (``lin0.model.1.weight``
... ``lin4.model.1.weight``). As in richzhang/PerceptualSimilarity: inputs in [-1, 1] are shifted
and scaled, the five ReLU outputs are unit-normalised over channels, their squared differences
weighted by the 1x1 linear layers, averaged over space and summed.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videogen.metrics.weights import assign, read_state, require_file, sha256_file

LPIPS_MIN_SIZE = 31  # smaller frames vanish in AlexNet's second max pool

# (index in torchvision's `features`, in, out, kernel, stride, padding, max-pool before it)
_ALEX_CONVS = (
    (0, 3, 64, 11, 4, 2, False),
    (3, 64, 192, 5, 1, 2, True),
    (6, 192, 384, 3, 1, 1, True),
    (8, 384, 256, 3, 1, 1, False),
    (10, 256, 256, 3, 1, 1, False),
)


class AlexNetFeatures(nn.Module):
    """The convolutional part of torchvision's AlexNet; returns the five ReLU outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.ModuleDict(
            {str(i): nn.Conv2d(cin, cout, k, s, p) for i, cin, cout, k, s, p, _ in _ALEX_CONVS}
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for i, *_, pool in _ALEX_CONVS:
            if pool:
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(self.features[str(i)](x))
            taps.append(x)
        return taps


class LPIPS(nn.Module):
    """LPIPS distance between images ``(N, C, H, W)`` in [-1, 1] (C = 1 or 3) -> ``(N,)``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        widths = [cout for _, _, cout, *_ in _ALEX_CONVS]
        self.lins = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in widths)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4:
            raise ValueError(
                f"LPIPS compares two (N, C, H, W) batches, got {x.shape} and {y.shape}"
            )
        if min(x.shape[-2:]) < LPIPS_MIN_SIZE:
            raise ValueError(
                f"LPIPS (AlexNet) needs frames of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE}, got "
                f"{tuple(x.shape[-2:])}"
            )
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        n = x.shape[0]
        feats = self.net((torch.cat([x, y]) - self.shift) / self.scale)
        total = x.new_zeros(n)
        for f, lin in zip(feats, self.lins):
            f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((f[:n] - f[n:]) ** 2).mean(dim=(1, 2, 3))
        return total


def _lin_key(name: str) -> str:
    i, kind = name.split(".")  # "3.weight" -> "lin3.model.1.weight" (after LPIPS's dropout)
    return f"lin{i}.model.1.{kind}"


def load_lpips(
    alexnet_path: str | Path, lin_path: str | Path, *, device: torch.device | str = "cpu"
) -> LPIPS:
    """LPIPS from torchvision's AlexNet weights and the LPIPS v0.1 ``alex.pth`` linear layers."""
    alex, lin = require_file(alexnet_path, "alexnet"), require_file(lin_path, "lpips")
    model = LPIPS()
    assign(model.net, read_state(alex), ignore=("classifier.",), path=alex)
    assign(model.lins, read_state(lin), source_key=_lin_key, path=lin)
    model.weights_info = {
        "alexnet_path": str(alex),
        "alexnet_sha256": sha256_file(alex),
        "lin_path": str(lin),
        "lin_sha256": sha256_file(lin),
        "version": "LPIPS v0.1, AlexNet",
    }
    return model.eval().requires_grad_(False).to(device)
