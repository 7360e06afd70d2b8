"""I3D (Inception-v1 inflated to 3D, Kinetics-400) for FVD and KVD.

Two weight files are in use across the papers and both load here:

- ``i3d_pretrained_400.pt``: a state dict in the pytorch-i3d key layout (``Conv3d_1a_7x7.conv3d``,
  ``Mixed_3b.b1b.bn`` ..., ``logits.conv3d``), shipped with the FVD code of VideoGPT, TATS, DIGAN
  and PVDM. The network below is written to that layout, TensorFlow "SAME" padding included.
  Two BatchNorm epsilons are in use with it, named by origin in ``I3D_VARIANTS``.
- ``i3d_torchscript.pt``: StyleGAN-V's TorchScript port of the tf.hub I3D, used by MCVD. It
  carries its own code, so it loads only when the caller trusts the file. It is called on
  prepared input as MCVD calls it (``net(x, rescale=False, resize=False,
  return_features=True)``), or on uint8 video with its own rescale and resize as StyleGAN-V
  calls it (resize mode ``"torchscript"``).

Either way the model maps ``(B, 3, T, 224, 224)`` in [-1, 1] to ``(B, 400)``: the logits averaged
over time. ``i3d_inputs`` prepares video the way each reference codebase does (``RESIZE_MODES``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videogen.metrics.resize import half_pixel_bilinear, tf1_bilinear
from videogen.metrics.weights import (
    assign,
    empty,
    is_torchscript,
    load_torchscript,
    read_state,
    require_file,
    sha256_file,
)

# How frames reach 224x224, by the protocol each mode reproduces.
RESIZE_MODES = ("tf1-bilinear", "pytorch-bilinear", "center_crop", "torchscript")
RESIZE_ORIGINS = {
    "tf1-bilinear": (
        "every frame straight to 224x224 with TF1 resize_bilinear (no half-pixel offset), as the "
        "original FVD code (Unterthiner et al., google-research frechet_video_distance)"
    ),
    "pytorch-bilinear": (
        "every frame straight to 224x224 with PyTorch's half-pixel bilinear (align_corners=False)"
    ),
    "center_crop": (
        "shorter side to 224 with PyTorch's half-pixel bilinear, then a centre crop, as the FVD "
        "code of DIGAN, PVDM and MCVD"
    ),
    "torchscript": (
        "uint8 video into StyleGAN-V's i3d_torchscript.pt with rescale=True, resize=True: the "
        "file's own code rescales and resizes, as StyleGAN-V's compute_fvd calls it"
    ),
}
ResizeMode = Literal["tf1-bilinear", "pytorch-bilinear", "center_crop", "torchscript"]
# BatchNorm epsilon of the pytorch-i3d layout, by the code that sets it
I3D_VARIANTS = {
    "videogpt": 1e-5,  # VideoGPT's copy of I3D, used by the FVD code of TATS, DIGAN and PVDM
    "pytorch-i3d": 1e-3,  # piergiaj/pytorch-i3d itself (TensorFlow's value)
}


def i3d_variant(bn_eps: float) -> str:
    """The origin of a BatchNorm epsilon (``I3D_VARIANTS``), or ``"custom"``."""
    return next((k for k, v in I3D_VARIANTS.items() if v == bn_eps), "custom")


I3D_SIZE = 224
I3D_MIN_FRAMES = 9  # the temporal strides (2, 2, 2) must leave 2 steps for the (2, 7, 7) pool


def _same_pads(sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]):
    """TensorFlow "SAME" padding per dimension as (front, back), the odd pixel at the back."""
    pads = []
    for n, k, s in zip(sizes, kernel, stride):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _flat_pad(pads: list[tuple[int, int]]) -> list[int]:
    return [p for pair in reversed(pads) for p in pair]  # F.pad wants the last dim first


class Unit3D(nn.Module):
    """Conv3d with 'SAME' padding, then BatchNorm and ReLU (the logits layer has neither)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        bn_eps: float | None = 1e-5,
        bias: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=bn_eps) if bn_eps is not None else None
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv3d
        pads = _same_pads(tuple(x.shape[2:]), conv.kernel_size, conv.stride)
        if all(a == b for a, b in pads):  # let the conv pad: saves a copy of the activation
            x = F.conv3d(x, conv.weight, conv.bias, conv.stride, [a for a, _ in pads])
        else:
            x = F.conv3d(F.pad(x, _flat_pad(pads)), conv.weight, conv.bias, conv.stride)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Max pooling with 'SAME' padding. pytorch-i3d pads with zeros; every pool here follows a
    ReLU, so zeros and the pool's own -inf padding give the same maximum."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        pads = _same_pads(tuple(x.shape[2:]), self.kernel, self.stride)
        if all(a == b and 2 * a <= k for (a, b), k in zip(pads, self.kernel)):
            return F.max_pool3d(x, self.kernel, self.stride, [a for a, _ in pads])
        return F.max_pool3d(F.pad(x, _flat_pad(pads)), self.kernel, self.stride)


class Mixed(nn.Module):
    """An Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | pool -> 1x1, concatenated."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int], bn_eps: float):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        k3 = (3, 3, 3)
        self.b0 = Unit3D(cin, w0, bn_eps=bn_eps)
        self.b1a = Unit3D(cin, w1a, bn_eps=bn_eps)
        self.b1b = Unit3D(w1a, w1b, k3, bn_eps=bn_eps)
        self.b2a = Unit3D(cin, w2a, bn_eps=bn_eps)
        self.b2b = Unit3D(w2a, w2b, k3, bn_eps=bn_eps)
        self.b3a = MaxPoolSame(k3, (1, 1, 1))
        self.b3b = Unit3D(cin, w3, bn_eps=bn_eps)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1
        )


# (name, widths) of the Inception blocks in order; MaxPool stages are listed where they occur.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class InceptionI3d(nn.Module):
    """I3D with the module names of pytorch-i3d, so its state dicts load key for key.

    ``bn_eps`` defaults to 1e-5, the value in the FVD code of VideoGPT / TATS / DIGAN / PVDM that
    loads ``i3d_pretrained_400.pt`` (pytorch-i3d itself uses 1e-3, TensorFlow's value).
    """

    def __init__(self, num_classes: int = 400, bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.order: list[str] = []

        def add(name: str, module: nn.Module) -> None:
            self.add_module(name, module)
            self.order.append(name)

        add("Conv3d_1a_7x7", Unit3D(3, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps))
        add("MaxPool3d_2a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2)))
        add("Conv3d_2b_1x1", Unit3D(64, 64, bn_eps=bn_eps))
        add("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps))
        add("MaxPool3d_3a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2)))
        channels = 192
        for name, widths in _MIXED.items():
            if name == "Mixed_4b":
                add("MaxPool3d_4a_3x3", MaxPoolSame((3, 3, 3), (2, 2, 2)))
            if name == "Mixed_5b":
                add("MaxPool3d_5a_2x2", MaxPoolSame((2, 2, 2), (2, 2, 2)))
            block = Mixed(channels, widths, bn_eps)
            add(name, block)
            channels = block.out_channels
        self.logits = Unit3D(channels, num_classes, bn_eps=None, bias=True, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, T, 224, 224)`` in [-1, 1] -> ``(B, num_classes)`` logits averaged over time."""
        check_i3d_input(x)
        for name in self.order:
            x = getattr(self, name)(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # dropout before the logits is off in eval
        return self.logits(x).mean(dim=(2, 3, 4))


def check_i3d_input(x: Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (I3D_SIZE, I3D_SIZE):
        raise ValueError(
            f"I3D takes (B, 3, T, {I3D_SIZE}, {I3D_SIZE}) in [-1, 1], got {tuple(x.shape)}; "
            "prepare video with videogen.metrics.i3d_inputs(video, resize=...)"
        )
    if x.shape[2] < I3D_MIN_FRAMES:
        raise ValueError(
            f"I3D needs at least {I3D_MIN_FRAMES} frames per clip, got {x.shape[2]}; FVD on "
            "shorter clips is undefined for this network (include the known frames or evaluate "
            "longer clips)"
        )


class TorchScriptI3D(nn.Module):
    """StyleGAN-V's TorchScript I3D, fed prepared input as MCVD does (``forward``) or uint8
    video as StyleGAN-V does (``native``)."""

    def __init__(self, net: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        check_i3d_input(x)
        return self.net(x, rescale=False, resize=False, return_features=True)

    def native(self, video: Tensor) -> Tensor:
        """uint8 ``(B, 3, T, H, W)`` -> ``(B, 400)``: the file rescales and resizes itself."""
        if video.dtype != torch.uint8 or video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"native I3D input is uint8 (B, 3, T, H, W), got {video.dtype}")
        return self.net(video, rescale=True, resize=True, return_features=True)


def load_i3d(
    path: str | Path,
    *,
    bn_eps: float = 1e-5,
    device: torch.device | str = "cpu",
    trust_torchscript: bool = False,
) -> nn.Module:
    """Load I3D from ``i3d_pretrained_400.pt`` (state dict) or ``i3d_torchscript.pt``.

    Returns an eval-mode module mapping ``(B, 3, T, 224, 224)`` in [-1, 1] to ``(B, 400)``. Its
    ``weights_info`` dict (path, sha256, format, bn_eps) goes into every metric's protocol. A
    TorchScript file runs its own code, so it loads only with ``trust_torchscript=True``.
    """
    p = require_file(path, "i3d")
    info: dict[str, object] = {"path": str(p), "sha256": sha256_file(p)}
    if is_torchscript(p):
        net = load_torchscript(p, "i3d", trusted=trust_torchscript, device=device)
        model: nn.Module = TorchScriptI3D(net)
        info["format"] = "torchscript (StyleGAN-V)"
    else:
        model = empty(InceptionI3d, bn_eps=bn_eps)
        assign(model, read_state(p), path=p)
        info.update(
            format="state_dict (pytorch-i3d layout)", bn_eps=bn_eps, variant=i3d_variant(bn_eps)
        )
    model.weights_info = info
    return model.eval().requires_grad_(False).to(device)


def i3d_inputs(
    video: Tensor, resize: ResizeMode = "tf1-bilinear", *, quantize: bool = True
) -> Tensor:
    """Prepare a float video ``(B, T, C, H, W)`` in [-1, 1] for I3D: ``(B, 3, T, 224, 224)``.

    ``resize`` is one of ``RESIZE_MODES`` but ``"torchscript"`` (which leaves resizing to the
    network, ``i3d_features``); ``RESIZE_ORIGINS`` says which codebase each reproduces.
    ``quantize`` rounds to 8-bit levels first: every reference feeds uint8 video. One channel is
    repeated to three. Returns float32 in [-1, 1].
    """
    if resize not in RESIZE_MODES or resize == "torchscript":
        modes = [m for m in RESIZE_MODES if m != "torchscript"]
        raise ValueError(
            f"unknown I3D resize mode {resize!r} for i3d_inputs; choose one of {modes}"
        )
    b = video.shape[0]
    frames = rearrange(video.float(), "b t c h w -> (b t) c h w")
    frames = (frames.clamp(-1, 1) + 1) / 2
    if quantize:
        frames = torch.round(frames * 255) / 255
    if frames.shape[1] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    elif frames.shape[1] != 3:
        raise ValueError(f"I3D takes 1 or 3 channels, got {frames.shape[1]}")
    h, w = frames.shape[-2:]
    if resize == "tf1-bilinear":
        frames = tf1_bilinear(frames, (I3D_SIZE, I3D_SIZE))
    elif resize == "pytorch-bilinear":
        frames = half_pixel_bilinear(frames, (I3D_SIZE, I3D_SIZE))
    else:
        scale = I3D_SIZE / min(h, w)
        size = (I3D_SIZE, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), I3D_SIZE)
        frames = half_pixel_bilinear(frames, size)
        top, left = (size[0] - I3D_SIZE) // 2, (size[1] - I3D_SIZE) // 2
        frames = frames[..., top : top + I3D_SIZE, left : left + I3D_SIZE]
    return rearrange(frames * 2 - 1, "(b t) c h w -> b c t h w", b=b).contiguous()


def to_uint8_video(video: Tensor) -> Tensor:
    """Float ``(B, T, C, H, W)`` in [-1, 1] -> uint8 ``(B, 3, T, H, W)`` the way StyleGAN-V
    quantises its generator's frames (``x * 127.5 + 128``, clamped, truncated)."""
    x = (video.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    if x.shape[2] == 1:
        x = x.expand(-1, -1, 3, -1, -1)
    return rearrange(x, "b t c h w -> b c t h w").contiguous()


PRECISIONS = ("fp32", "bf16")


@torch.no_grad()
def i3d_features(
    model: nn.Module, video: Tensor, resize: ResizeMode = "tf1-bilinear", precision: str = "fp32"
) -> Tensor:
    """Features ``(B, 400)`` float32 of a float video ``(B, T, C, H, W)`` in [-1, 1].

    Preparation runs in float32; ``precision="bf16"`` runs the network under bf16 autocast on a
    GPU (on the CPU it is ignored: CPU bf16 convolutions are slow). ``resize="torchscript"``
    hands uint8 video to StyleGAN-V's TorchScript file, which resizes it itself.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if resize == "torchscript":
        if not isinstance(model, TorchScriptI3D):
            raise ValueError(
                "resize mode 'torchscript' lets StyleGAN-V's i3d_torchscript.pt resize the "
                "frames itself; this I3D is a state dict: choose another resize mode"
            )
        x = to_uint8_video(video)
        run = model.native
    else:
        x, run = i3d_inputs(video, resize), model
    bf16 = precision == "bf16" and x.device.type == "cuda"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        return run(x).float()
