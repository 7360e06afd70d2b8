"""C3D fine-tuned on UCF-101, the classifier behind the video Inception Score.

Two weight files are in use and both load here:

- TGAN2's ``conv3d_deepnetA_ucf.npz`` (chainer keys ``conv1a/W`` ... ``fc8/b``) with its mean
  file ``mean2.npz``. The network reproduces TGAN2's ``C3DVersion1UCF101``: RGB -> BGR scaled by
  128, frames resized to 112x112 (chainer's bilinear ``resize_images``, corners aligned), plus
  ``128 - mean`` (the mean cropped at [8:120, 8:120]), eight 3x3x3 convolutions, chainer's
  ``cover_all`` max pooling (ceil mode here) and three linear layers.
- StyleGAN-V's TorchScript ``c3d_ucf101.pt``, which takes uint8 video and returns probabilities.

Either way the model maps ``(B, 3, 16, H, W)`` in [-1, 1] to ``(B, 101)`` class probabilities.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videogen.metrics.weights import (
    WeightFileError,
    assign,
    empty,
    is_torchscript,
    load_torchscript,
    read_state,
    require_file,
    sha256_file,
)

C3D_FRAMES = 16
C3D_SIZE = 112
MEAN_CROP = 8  # TGAN2 takes mean[:, :, 8:120, 8:120] whatever the mean's size
_CONVS = {
    "conv1a": (3, 64),
    "conv2a": (64, 128),
    "conv3a": (128, 256),
    "conv3b": (256, 256),
    "conv4a": (256, 512),
    "conv4b": (512, 512),
    "conv5a": (512, 512),
    "conv5b": (512, 512),
}
_POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": 2, "conv3b": 2, "conv4b": 2, "conv5b": 2}


class C3D(nn.Module):
    """TGAN2's C3D (version 1, UCF-101). ``mean``: the ``(3, 16, 112, 112)`` BGR mean crop."""

    def __init__(self, num_classes: int = 101) -> None:
        super().__init__()
        for name, (cin, cout) in _CONVS.items():
            self.add_module(name, nn.Conv3d(cin, cout, 3, padding=1))
        self.fc6 = nn.Linear(512 * 4 * 4, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.register_buffer("mean", torch.zeros(3, C3D_FRAMES, C3D_SIZE, C3D_SIZE))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, 16, H, W)`` RGB in [-1, 1] -> ``(B, num_classes)`` probabilities."""
        check_c3d_input(x)
        b = x.shape[0]
        x = x.flip(1) * 128  # RGB -> BGR on the caffe scale
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        frames = F.interpolate(frames, (C3D_SIZE, C3D_SIZE), mode="bilinear", align_corners=True)
        x = rearrange(frames, "(b t) c h w -> b c t h w", b=b) + (128 - self.mean)
        for name in _CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in _POOL_AFTER:
                k = _POOL_AFTER[name]
                x = F.max_pool3d(x, k, k, ceil_mode=True)  # chainer's cover_all=True
        x = F.relu(self.fc6(x.flatten(1)))  # dropout layers are off in eval
        x = F.relu(self.fc7(x))
        return self.fc8(x).softmax(dim=1)


def check_c3d_input(x: Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != 3 or x.shape[2] != C3D_FRAMES:
        raise ValueError(
            f"C3D takes (B, 3, {C3D_FRAMES}, H, W) in [-1, 1], got {tuple(x.shape)}; the "
            f"Inception Score protocol scores {C3D_FRAMES}-frame clips"
        )


class TorchScriptC3D(nn.Module):
    """StyleGAN-V's TorchScript C3D: fed uint8 ``(B, 3, T, H, W)`` as StyleGAN-V feeds it."""

    def __init__(self, net: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        check_c3d_input(x)
        return self.net((x * 127.5 + 128).clamp(0, 255).to(torch.uint8))


def _chainer_key(name: str) -> str:
    layer, kind = name.rsplit(".", 1)
    return f"{layer}/{'W' if kind == 'weight' else 'b'}"


def load_c3d(
    path: str | Path,
    mean_path: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    trust_torchscript: bool = False,
) -> nn.Module:
    """Load C3D from TGAN2's ``conv3d_deepnetA_ucf.npz`` (needs ``mean_path``, TGAN2's
    ``mean2.npz``) or StyleGAN-V's ``c3d_ucf101.pt`` (TorchScript: it runs its own code, so it
    loads only with ``trust_torchscript=True``). Returns an eval-mode module mapping
    ``(B, 3, 16, H, W)`` in [-1, 1] to ``(B, 101)`` probabilities, with ``weights_info``."""
    p = require_file(path, "c3d")
    info: dict[str, object] = {"path": str(p), "sha256": sha256_file(p)}
    if is_torchscript(p):
        net = load_torchscript(p, "c3d", trusted=trust_torchscript, device=device)
        model: nn.Module = TorchScriptC3D(net)
        info["format"] = "torchscript (StyleGAN-V)"
    else:
        state = read_state(p)
        # chainer's save_npz may prefix every key (e.g. "predictor/"); strip what precedes conv1a
        prefix = next((k[: -len("conv1a/W")] for k in state if k.endswith("conv1a/W")), "")
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model = empty(C3D)
        mp = require_file(mean_path, "c3d_mean")
        mean = read_state(mp).get("mean")
        if mean is None or mean.ndim != 4 or tuple(mean.shape[:2]) != (3, C3D_FRAMES):
            raise WeightFileError(f"{mp} must hold 'mean' of shape (3, 16, H, W) (TGAN2 mean2.npz)")
        end = MEAN_CROP + C3D_SIZE
        if min(mean.shape[2:]) < end:
            raise WeightFileError(
                f"{mp}: the mean is {tuple(mean.shape)}, smaller than {end}x{end}"
            )
        state["mean"] = mean[:, :, MEAN_CROP:end, MEAN_CROP:end]  # TGAN2's crop, as it is
        assign(model, state, source_key=lambda k: k if k == "mean" else _chainer_key(k), path=p)
        info.update(format="chainer npz (TGAN2)", mean_path=str(mp), mean_sha256=sha256_file(mp))
    model.weights_info = info
    return model.eval().requires_grad_(False).to(device)
