"""The layers of VideoFlow's flows (Kumar et al., ICLR 2020), shared by the per-frame Glow
(``videoflow_glow``) and the latent prior (``videoflow_prior``).

Pixels to flow input and back (``to_flow`` / ``from_flow``, n-bit bins), squeezing, actnorm
with data-dependent initialisation (``data_init``), LU-parametrised invertible 1x1
convolutions, and the edge-bias convolutions and stacks the coupling and prior networks are
built of; as the official tensor2tensor ``glow_ops``.

Without gradients (sampling, evaluation) the layers run a *folded* form with fewer kernels:
``Folded`` caches tensors derived from the parameters and recomputes them in place when a
parameter changes (``refresh_folds``), so CUDA graphs captured over them stay valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

LOGSCALE_FACTOR = 3.0  # actnorm and zero-conv log-scales are stored divided by this
INIT_STD = 0.05  # normal init of convolution weights in the official code

Activation = Literal["relu", "gated"]


# --------------------------------------------------------------------------- pixels <-> flow


def quantize(video: Tensor, n_bits: int) -> Tensor:
    """A ``[-1, 1]`` video -> its bins ``0 .. 2**n_bits - 1`` (as floats), from 8-bit pixels."""
    pixels = ((video.float() + 1.0) * 127.5).round().clamp(0, 255)
    return torch.floor(pixels / 2 ** (8 - n_bits))


def to_flow(video: Tensor, n_bits: int, noise: Tensor | None = None) -> Tensor:
    """A ``[-1, 1]`` video -> flow input in ``[-0.5, 0.5]``: ``bin / 2**n_bits - 0.5``.

    ``noise`` (same shape, uniform in ``[0, 1)``) dequantises: the value is spread over its bin,
    which makes the flow's density a bound on the discrete likelihood. Without noise the value
    sits at the centre of its bin (deterministic conditioning at sampling time).
    """
    offset = 0.5 if noise is None else noise
    return (quantize(video, n_bits) + offset) / 2**n_bits - 0.5


def from_flow(x: Tensor, n_bits: int) -> Tensor:
    """Flow output -> a ``[-1, 1]`` video on the ``n_bits`` grid (the bin each value falls in)."""
    n_bins = 2**n_bits
    x = torch.nan_to_num(x.float(), nan=0.0, posinf=0.5, neginf=-0.5)
    bins = torch.floor((x + 0.5) * n_bins).clamp(0, n_bins - 1)
    return bins * 2 ** (8 - n_bits) / 127.5 - 1.0


def squeeze2d(x: Tensor) -> Tensor:
    """``(N, C, H, W)`` -> ``(N, 4C, H/2, W/2)``: each 2x2 block becomes channels."""
    return rearrange(x, "n c (h a) (w b) -> n (c a b) h w", a=2, b=2)


def unsqueeze2d(x: Tensor) -> Tensor:
    return rearrange(x, "n (c a b) h w -> n c (h a) (w b)", a=2, b=2)


def wide(x: Tensor) -> Tensor:
    """``x`` in float32, or wider if it already is (float64 in tests)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


@contextmanager
def full_precision(x: Tensor) -> Iterator[None]:
    """Invertible arithmetic in float32 under bf16 autocast: a rounded inverse is no inverse."""
    with torch.autocast(x.device.type, enabled=False):
        yield


# --------------------------------------------------------------------------- folded forms


class Folded:
    """Tensors derived from a module's parameters, cached per key and recomputed in place.

    ``get(key, compute)`` returns ``compute()``'s tensors, computed once per key and again only
    when one of ``params`` changed (its version counter or storage). Recomputing copies into the
    tensors handed out before, so anything holding them (a captured CUDA graph) sees the new
    values. The tensors are plain (never inference-mode) tensors without gradient.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[tuple, Callable[[], list[Tensor]], list[Tensor]]] = {}

    @staticmethod
    def _stamp(params: list[Tensor]) -> tuple:
        return tuple((p._version, p.data_ptr()) for p in params)

    def get(
        self, key: tuple, params: list[Tensor], compute: Callable[[], list[Tensor]]
    ) -> list[Tensor]:
        entry = self._entries.get(key)
        if entry is not None and torch.compiler.is_compiling():
            # compiled code reads the tensors prepared eagerly, kept current by refresh_folds: a
            # storage comparison cannot be traced, and tensors made inside a CUDA-graphed region
            # would be overwritten by its next replay
            return entry[2]
        stamp = self._stamp(params)
        if entry is None:
            with torch.inference_mode(False), torch.no_grad():
                self._entries[key] = (stamp, compute, compute())
        elif entry[0] != stamp:
            self._refresh(key, params)
        return self._entries[key][2]

    def _refresh(self, key: tuple, params: list[Tensor]) -> None:
        _, compute, tensors = self._entries[key]
        with torch.inference_mode(False), torch.no_grad():
            for old, new in zip(tensors, compute()):
                old.copy_(new)
        self._entries[key] = (self._stamp(params), compute, tensors)

    def refresh(self, params: list[Tensor]) -> None:
        """Recompute every stale entry in place."""
        stamp = self._stamp(params)
        for key, (old_stamp, _, _) in list(self._entries.items()):
            if old_stamp != stamp:
                self._refresh(key, params)


def folding(module_ready: bool = True) -> bool:
    """Run the folded form: no gradients wanted, and no actnorm about to initialise itself."""
    return not torch.is_grad_enabled() and not (_data_init and not module_ready)


def _compute_dtype(x: Tensor, default: torch.dtype) -> torch.dtype:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else default


def refresh_folds(module: nn.Module) -> None:
    """Bring every folded form under ``module`` up to date with its parameters, in place.

    Needed before replaying CUDA graphs captured over the folded tensors (a replay runs no
    Python, so no layer can notice that training changed its parameters); eager calls check
    for themselves."""
    for m in module.modules():
        if isinstance(getattr(m, "folds", None), Folded):
            m.folds.refresh(m.fold_params())


# --------------------------------------------------------------------------- actnorm

_data_init = False


@contextmanager
def data_init() -> Iterator[None]:
    """Inside this context every ``ActNorm`` that is not initialised yet initialises itself from
    the batch it sees (zero mean, unit variance per channel), then stays as it is.

    Under ``torch.distributed`` the statistics are averaged over processes, so every rank ends up
    with the same parameters (each rank contributes its own batch; batches of equal size).
    """
    global _data_init
    previous, _data_init = _data_init, True
    try:
        yield
    finally:
        _data_init = previous


def _mean_over_processes(x: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        x = x / dist.get_world_size()
    return x


class ActNorm(nn.Module):
    """Per-channel affine map ``y = (x + b) * exp(3 s)``, for 4-D ``(N, C, H, W)`` input, or 5-D
    ``(N, C, T, H, W)`` with ``dims=3`` (one ``b, s`` per channel and time step when
    ``time_steps`` is given, as the official ``actnorm_3d``).

    Data-dependent initialisation happens on the first batch seen inside ``data_init()``. The
    ``initialized`` buffer is part of the state dict, so a resumed or exported model never
    initialises again; its host-side mirror is read once (no per-step device sync).
    """

    def __init__(self, channels: int, *, dims: int = 2, time_steps: int | None = None) -> None:
        super().__init__()
        if dims == 2:
            shape: tuple[int, ...] = (1, channels, 1, 1)
        else:
            shape = (1, channels, time_steps or 1, 1, 1)
        self.bias = nn.Parameter(torch.zeros(shape))
        self.logs = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready: bool | None = None

    @property
    def ready(self) -> bool:
        if self._ready is None:
            self._ready = bool(self.initialized)
        return self._ready

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._ready = None

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        keep = {i for i, n in enumerate(self.bias.shape) if n > 1} | {1}
        dims = [d for d in range(x.dim()) if d not in keep]
        x = x.float()
        mean = _mean_over_processes(x.mean(dims, keepdim=True))
        var = _mean_over_processes((x - mean).square().mean(dims, keepdim=True))
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(var.sqrt() + 1e-6) / LOGSCALE_FACTOR)
        self.initialized.fill_(True)
        self._ready = True

    def forward(self, x: Tensor) -> Tensor:
        if _data_init and not self.ready:
            self._initialize(x)
        return (x + self.bias) * torch.exp(self.logs * LOGSCALE_FACTOR)

    def reverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.logs * LOGSCALE_FACTOR) - self.bias

    def logdet(self, x: Tensor) -> Tensor:
        """``log|det|`` per example of a 4-D input: ``H * W * sum(3 s)`` (a float32 scalar)."""
        return wide(self.logs).sum() * LOGSCALE_FACTOR * (x.shape[-2] * x.shape[-1])


# --------------------------------------------------------------------------- 1x1 convolution


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution ``W = P L (U + diag(sign(s) exp(log|s|)))`` (Glow's LU form).

    ``P`` and ``sign(s)`` are fixed buffers; the unit lower ``L``, strict upper ``U`` and
    ``log|s|`` are learned, started from the LU decomposition of a random rotation.
    ``log|det W| = sum(log|s|)`` per pixel. Applied as a matmul (not cuDNN) in float32.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
        perm, lower, upper = torch.linalg.lu(rotation)
        s = torch.diagonal(upper)
        self.register_buffer("perm", perm.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def weight(self) -> Tensor:
        eye = torch.eye(self.log_s.shape[0], device=self.log_s.device, dtype=self.log_s.dtype)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def inverse_weight(self) -> Tensor:
        with full_precision(self.log_s):
            weight = self.weight()
            return torch.linalg.inv(weight.double()).to(weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        with full_precision(x):
            weight = self.weight()
            return torch.einsum("oc,nchw->nohw", weight, x.to(weight.dtype))

    def reverse(self, y: Tensor) -> Tensor:
        with full_precision(y):
            w_inv = self.inverse_weight()
            return torch.einsum("oc,nchw->nohw", w_inv, y.to(w_inv.dtype))

    def logdet(self, x: Tensor) -> Tensor:
        return wide(self.log_s).sum() * (x.shape[-2] * x.shape[-1])


# --------------------------------------------------------------------------- convolution nets


class ConvLayer(nn.Module):
    """A 2-D, or causal 3-D, convolution with the official code's padding and normalisation.

    Zero padding is flagged by an extra input channel that is one on the padded border (the
    "edge bias"): the network can tell the border from dark pixels. That channel is constant, so
    its contribution is computed once per call on a ``(1, 1, ...)`` mask and broadcast. In 3-D,
    ``(N, C, T, H, W)``, time is padded on the left only: the output at step t sees steps <= t.

    The output goes through a data-initialised ``ActNorm``; or, with ``zero=True``, the weights
    start at zero and a bias and a log-scale (x3) follow, so the layer starts as the zero map.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, ...],
        *,
        dilation: int = 1,
        zero: bool = False,
        time_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.dims = len(kernel)
        self.dilation = dilation
        self.pad = (kernel[-1] - 1) // 2 * dilation
        self.time_pad = kernel[0] - 1 if self.dims == 3 else 0
        self.edge = self.pad > 0 or self.time_pad > 0
        shape = (out_channels, in_channels + int(self.edge), *kernel)
        weight = torch.zeros(shape) if zero else torch.randn(shape) * INIT_STD
        self.weight = nn.Parameter(weight)
        norm_shape = (1, out_channels) + (1,) * self.dims
        if zero:
            self.norm = None
            self.bias = nn.Parameter(torch.zeros(norm_shape))
            self.logs = nn.Parameter(torch.zeros(norm_shape))
        else:
            self.norm = ActNorm(out_channels, dims=self.dims, time_steps=time_steps)
        self.folds = Folded()

    def fold_params(self) -> list[Tensor]:
        if self.norm is None:
            return [self.weight, self.bias, self.logs]
        return [self.weight, self.norm.bias, self.norm.logs]

    def _fold(self, padded_shape: tuple[int, ...], dtype: torch.dtype) -> list[Tensor]:
        """``[weight, scale, offset]`` with ``forward(x) == offset + conv(x, weight) * scale``:
        ``(conv + edge + b) * s`` with the edge-bias term for inputs of ``padded_shape``
        (spatial, after time padding). The weight is in the compute dtype."""
        bias, logs = self.fold_params()[1:]
        in_channels = self.weight.shape[1] - int(self.edge)
        weight = self.weight[:, :in_channels].to(dtype, copy=True).contiguous()
        scale = torch.exp(logs * LOGSCALE_FACTOR)
        offset = bias * scale
        if self.edge:
            mask = self._edge_mask(self.weight.new_zeros((1, 1, *padded_shape)))
            offset = offset + self._conv(mask, self.weight[:, in_channels:], 0) * scale
        return [weight, scale, offset]

    def _conv(self, x: Tensor, weight: Tensor, padding: int) -> Tensor:
        if self.dims == 2:
            return F.conv2d(x, weight, padding=padding, dilation=self.dilation)
        d = self.dilation
        return F.conv3d(x, weight, padding=(0, padding, padding), dilation=(1, d, d))

    def _edge_mask(self, x: Tensor) -> Tensor:
        mask = x.new_zeros((1, 1, *x.shape[2:]))
        if self.time_pad:
            mask[:, :, : self.time_pad] = 1.0
        p = self.pad
        return F.pad(mask, (p, p, p, p), value=1.0)

    def forward(self, x: Tensor) -> Tensor:
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0))
        if folding(self.norm is None or self.norm.ready):
            shape, dtype = tuple(x.shape[2:]), _compute_dtype(x, self.weight.dtype)
            key = (shape, dtype, x.device)
            weight, scale, offset = self.folds.get(
                key, self.fold_params(), lambda: self._fold(shape, dtype)
            )
            return torch.addcmul(offset, self._conv(x, weight, self.pad), scale)
        in_channels = x.shape[1]
        y = self._conv(x, self.weight[:, :in_channels], self.pad)
        if self.edge:
            y = y + self._conv(self._edge_mask(x), self.weight[:, in_channels:], 0)
        if self.norm is not None:
            return self.norm(y)
        return (y + self.bias) * torch.exp(self.logs * LOGSCALE_FACTOR)


class ConvStack(nn.Module):
    """conv 3x3 -> ReLU -> conv 1x1 -> ReLU or tanh * sigmoid -> zero-initialised conv 3x3.

    The coupling network of Glow (``dims=2``) and the residual branch of the causal 3-D prior
    (``dims=3``: kernels ``[time_kernel, 3, 3]``, spatial dilation, per-step actnorm).
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        *,
        activation: Activation = "relu",
        dims: int = 2,
        time_kernel: int = 2,
        dilation: int = 1,
        time_steps: int | None = None,
    ) -> None:
        super().__init__()
        kernel = (3, 3) if dims == 2 else (time_kernel, 3, 3)
        pointwise = (1,) * dims
        self.gated = activation == "gated"
        hidden = 2 * width if self.gated else width  # one conv for both halves of the gate
        kw = {"time_steps": time_steps}
        self.first = ConvLayer(in_channels, width, kernel, dilation=dilation, **kw)
        self.hidden = ConvLayer(width, hidden, pointwise, **kw)
        self.out = ConvLayer(width, out_channels, kernel, dilation=dilation, zero=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.hidden(F.relu(self.first(x)))
        if self.gated:
            a, b = h.chunk(2, dim=1)
            h = torch.tanh(a) * torch.sigmoid(b)
        else:
            h = F.relu(h)
        return self.out(h)
