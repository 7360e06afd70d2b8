"""The feature networks against small reference computations written here from the published
layer definitions (nothing from ``videogen.metrics`` but the loaders under test), on seeded
weights: I3D (pytorch-i3d's InceptionI3d), C3D (TGANv2's C3DVersion1UCF101), LPIPS v0.1
(AlexNet taps, channel-normalised, weighted by the real linear layers of the ``lpips`` wheel),
and the resizes of the FVD protocols."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videogen.metrics import i3d_inputs, load_c3d, load_i3d, load_lpips
from videogen.metrics.i3d import I3D_VARIANTS, i3d_features
from videogen.metrics.resize import tf1_bilinear

# ----------------------------------------------------------------------------- I3D

MIXED = {  # name: (in, b0, b1a, b1b, b2a, b2b, b3)
    "Mixed_3b": (192, 64, 96, 128, 16, 32, 32),
    "Mixed_3c": (256, 128, 128, 192, 32, 96, 64),
    "Mixed_4b": (480, 192, 96, 208, 16, 48, 64),
    "Mixed_4c": (512, 160, 112, 224, 24, 64, 64),
    "Mixed_4d": (512, 128, 128, 256, 24, 64, 64),
    "Mixed_4e": (512, 112, 144, 288, 32, 64, 64),
    "Mixed_4f": (528, 256, 160, 320, 32, 128, 128),
    "Mixed_5b": (832, 256, 160, 320, 32, 128, 128),
    "Mixed_5c": (832, 384, 192, 384, 48, 128, 128),
}


def i3d_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A pytorch-i3d state dict with He-scaled random weights and BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    units = [("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1)]
    units.append(("Conv3d_2c_3x3", 64, 192, 3))
    for name, (cin, w0, w1a, w1b, w2a, w2b, w3) in MIXED.items():
        units += [(f"{name}.b0", cin, w0, 1), (f"{name}.b1a", cin, w1a, 1)]
        units += [(f"{name}.b1b", w1a, w1b, 3), (f"{name}.b2a", cin, w2a, 1)]
        units += [(f"{name}.b2b", w2a, w2b, 3), (f"{name}.b3b", cin, w3, 1)]
    state = {}
    for prefix, cin, cout, k in units:
        fan_in = cin * k**3
        state[f"{prefix}.conv3d.weight"] = torch.randn(cout, cin, k, k, k, generator=g) * (
            math.sqrt(2 / fan_in)
        )
        state[f"{prefix}.bn.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        state[f"{prefix}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{prefix}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{prefix}.bn.running_var"] = 0.5 + torch.rand(cout, generator=g)
        state[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    state["logits.conv3d.weight"] = torch.randn(400, 1024, 1, 1, 1, generator=g) / 32
    state["logits.conv3d.bias"] = 0.1 * torch.randn(400, generator=g)
    return state


def tf_same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, T, H, W) as TensorFlow's "SAME": out = ceil(n / s), total padding
    (out - 1) s + k - n, the smaller half in front."""
    pads = []
    for n, k, s in zip(x.shape[2:], kernel, stride):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    flat = [p for pair in reversed(pads) for p in pair]
    return F.pad(x, flat, value=value)


def ref_unit(x, state, prefix, k, s=1, eps=1e-5):
    w = state[f"{prefix}.conv3d.weight"].to(x.dtype)
    x = F.conv3d(tf_same(x, (k,) * 3, (s,) * 3), w, stride=s)
    mean, var = state[f"{prefix}.bn.running_mean"], state[f"{prefix}.bn.running_var"]
    scale, shift = state[f"{prefix}.bn.weight"], state[f"{prefix}.bn.bias"]
    shape = (1, -1, 1, 1, 1)
    x = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps) * scale.view(shape)
    return torch.relu(x + shift.view(shape))


def ref_pool(x, kernel, stride):  # pytorch-i3d pads its max pools with zeros
    return F.max_pool3d(tf_same(x, kernel, stride), kernel, stride)


def ref_i3d(x: torch.Tensor, state, eps: float) -> torch.Tensor:
    """InceptionI3d up to the logits, averaged over time (the FVD feature)."""
    x = ref_unit(x, state, "Conv3d_1a_7x7", 7, 2, eps)
    x = ref_pool(x, (1, 3, 3), (1, 2, 2))
    x = ref_unit(x, state, "Conv3d_2b_1x1", 1, 1, eps)
    x = ref_unit(x, state, "Conv3d_2c_3x3", 3, 1, eps)
    x = ref_pool(x, (1, 3, 3), (1, 2, 2))
    for name in MIXED:
        if name == "Mixed_4b":
            x = ref_pool(x, (3, 3, 3), (2, 2, 2))
        if name == "Mixed_5b":
            x = ref_pool(x, (2, 2, 2), (2, 2, 2))
        b0 = ref_unit(x, state, f"{name}.b0", 1, 1, eps)
        b1 = ref_unit(ref_unit(x, state, f"{name}.b1a", 1, 1, eps), state, f"{name}.b1b", 3, 1, eps)
        b2 = ref_unit(ref_unit(x, state, f"{name}.b2a", 1, 1, eps), state, f"{name}.b2b", 3, 1, eps)
        b3 = ref_unit(ref_pool(x, (3, 3, 3), (1, 1, 1)), state, f"{name}.b3b", 1, 1, eps)
        x = torch.cat([b0, b1, b2, b3], 1)
    x = F.avg_pool3d(x, (2, 7, 7), stride=1)
    w, b = state["logits.conv3d.weight"].to(x.dtype), state["logits.conv3d.bias"].to(x.dtype)
    return F.conv3d(x, w, b).mean(dim=(2, 3, 4))


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / "i3d_pretrained_400.pt"
    torch.save(i3d_state(), path)
    return path


def test_i3d_matches_the_reference_layers(i3d_file):
    for variant, eps in I3D_VARIANTS.items():
        info = load_i3d(i3d_file, bn_eps=eps).weights_info
        assert info["variant"] == variant and info["bn_eps"] == eps
    eps = I3D_VARIANTS["pytorch-i3d"]  # not the default: the epsilon reaches every BatchNorm
    model = load_i3d(i3d_file, bn_eps=eps)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 9, 224, 224, generator=g) * 2 - 1
    ours = model(x)
    ref = ref_i3d(x, torch.load(i3d_file, weights_only=True), eps)
    assert ref.std() > 0.1  # a live network, not one that ReLUs everything to zero
    assert (ours - ref).abs().max() <= 1e-5 * ref.abs().max()


# ----------------------------------------------------------------------------- C3D

C3D_CONVS = [
    ("conv1a", 3, 64),
    ("conv2a", 64, 128),
    ("conv3a", 128, 256),
    ("conv3b", 256, 256),
    ("conv4a", 256, 512),
    ("conv4b", 512, 512),
    ("conv5a", 512, 512),
    ("conv5b", 512, 512),
]
C3D_POOLS = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2)}
C3D_POOLS["conv5b"] = (2, 2, 2)


def chainer_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """chainer's ``resize_images``: bilinear with the corners aligned, source y = i (in - 1)
    / (out - 1), on (N, C, H, W)."""
    for dim in (-2, -1):
        n = x.shape[dim]
        src = torch.arange(size, dtype=torch.float64) * (n - 1) / (size - 1)
        lo = src.floor().long().clamp(max=n - 2)
        frac = (src - lo).to(x.dtype)  # coordinates in float64, as chainer computes them
        shape = [1] * x.ndim
        shape[dim] = size
        a, b = x.index_select(dim, lo), x.index_select(dim, lo + 1)
        x = a + (b - a) * frac.view(shape)
    return x


def ref_c3d(x: torch.Tensor, w: dict[str, np.ndarray], mean: np.ndarray) -> torch.Tensor:
    """TGANv2's C3DVersion1UCF101 on RGB (B, 3, 16, H, W) in [-1, 1] (float32; the code is
    written from the definition, not taken from ours): BGR on the caffe
    scale, resized to 112 (corners aligned), plus 128 - mean[:, :, 8:120, 8:120], eight 3x3x3
    convolutions with cover_all max pooling, three linear layers, softmax."""
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    b = x.shape[0]
    x = x[:, [2, 1, 0]] * 128
    frames = x.permute(0, 2, 1, 3, 4).reshape(-1, 3, *x.shape[-2:])
    frames = chainer_resize(frames, 112)
    x = frames.reshape(b, 16, 3, 112, 112).permute(0, 2, 1, 3, 4)
    x = x + (128 - torch.from_numpy(mean[:, :, 8:120, 8:120]))
    for name, _, _ in C3D_CONVS:
        x = torch.relu(F.conv3d(x, t[f"{name}/W"], t[f"{name}/b"], padding=1))
        if name in C3D_POOLS:
            k = C3D_POOLS[name]
            # cover_all: windows may run past the end; pad with -inf up to a whole window
            pads = []
            for n, kk in zip(x.shape[2:], k):
                pads = [0, (-n) % kk, *pads]
            x = F.max_pool3d(F.pad(x, pads, value=-math.inf), k, k)
    x = torch.relu(x.flatten(1) @ t["fc6/W"].T + t["fc6/b"])
    x = torch.relu(x @ t["fc7/W"].T + t["fc7/b"])
    return torch.softmax(x @ t["fc8/W"].T + t["fc8/b"], dim=1)


def test_c3d_matches_the_reference_layers(tmp_path):
    rng = np.random.default_rng(0)
    weights = {}
    for name, cin, cout in C3D_CONVS:
        scale = math.sqrt(2 / (cin * 27))
        weights[f"{name}/W"] = rng.standard_normal((cout, cin, 3, 3, 3), np.float32) * scale
        weights[f"{name}/b"] = rng.standard_normal(cout, np.float32) * 0.1
    for name, cin, cout in [("fc6", 8192, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 101)]:
        scale = math.sqrt(2 / cin) if name != "fc8" else 0.006 / math.sqrt(cin)
        weights[f"{name}/W"] = rng.standard_normal((cout, cin), np.float32) * scale
        weights[f"{name}/b"] = rng.standard_normal(cout, np.float32) * 0.1
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    mean = rng.uniform(80, 120, (3, 16, 128, 128)).astype(np.float32)
    np.savez(tmp_path / "conv3d_deepnetA_ucf.npz", **weights)
    np.savez(tmp_path / "mean2.npz", mean=mean)
    model = load_c3d(tmp_path / "conv3d_deepnetA_ucf.npz", tmp_path / "mean2.npz")
    x = torch.rand(1, 3, 16, 48, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    x[:, 0] *= 0.3  # colour channels that differ, so RGB and BGR give other classes
    ours, ref = model(x), ref_c3d(x, weights, mean)
    assert ref.max() / ref.min() > 3 and ref.max() < 0.9  # neither uniform nor one-hot
    assert (ours - ref).abs().max() <= 1e-5 * ref.max()


# ----------------------------------------------------------------------------- LPIPS

ALEX = [  # torchvision's AlexNet features: (index, in, out, kernel, stride, padding)
    (0, 3, 64, 11, 4, 2),
    (3, 64, 192, 5, 1, 2),
    (6, 192, 384, 3, 1, 1),
    (8, 384, 256, 3, 1, 1),
    (10, 256, 256, 3, 1, 1),
]


def ref_lpips(x, y, alex, lin) -> torch.Tensor:
    """LPIPS v0.1 (Zhang et al. 2018), float64: inputs in [-1, 1] shifted by (-.030, -.088,
    -.188) and scaled by (.458, .448, .450); AlexNet's five ReLU outputs (max pools before the
    second and third convolutions), each unit-normalised over channels (+1e-10), squared
    differences weighted per channel by the linear layer, averaged over space, summed."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def taps(v):
        v = (v.double() - shift) / scale
        out = []
        for i, _, _, _, s, p in ALEX:
            if i in (3, 6):
                v = F.max_pool2d(v, 3, 2)
            w, b = alex[f"features.{i}.weight"].double(), alex[f"features.{i}.bias"].double()
            v = torch.relu(F.conv2d(v, w, b, stride=s, padding=p))
            out.append(v)
        return out

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for layer, (fx, fy) in enumerate(zip(taps(x), taps(y))):
        nx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
        w = lin[f"lin{layer}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((nx - ny).square() * w).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_with_the_real_linear_weights_matches_the_formula(lpips_lin, tmp_path):
    g = torch.Generator().manual_seed(3)
    alex = {}
    for i, cin, cout, k, _, _ in ALEX:
        alex[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(
            2 / (cin * k * k)
        )
        alex[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.1
    torch.save(alex, tmp_path / "alexnet-owt-7be5be79.pth")
    model = load_lpips(tmp_path / "alexnet-owt-7be5be79.pth", lpips_lin)
    lin = torch.load(lpips_lin, map_location="cpu", weights_only=True)
    base = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    other = (base + 0.3 * torch.randn(4, 3, 64, 64, generator=g)).clamp(-1, 1)
    ours, ref = model(base, other), ref_lpips(base, other, alex, lin)
    assert ref.min() > 0.01
    assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=0)


# ----------------------------------------------------------------------------- FVD resizes


def ref_tf1_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ``resize_bilinear`` (align_corners=False, half_pixel_centers=False), pixel by
    pixel: source y = i * in_h / out_h, neighbours floor(y) and min(floor(y) + 1, in - 1)."""
    in_h, in_w = img.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        y = i * np.float32(in_h / out_h)
        y0 = min(int(np.floor(y)), in_h - 1)
        y1, fy = min(y0 + 1, in_h - 1), y - y0
        for j in range(out_w):
            x = j * np.float32(in_w / out_w)
            x0 = min(int(np.floor(x)), in_w - 1)
            x1, fx = min(x0 + 1, in_w - 1), x - x0
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * fx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * fx
            out[i, j] = top + (bottom - top) * fy
    return out


@pytest.mark.parametrize("size_in, size_out", [((5, 7), (11, 13)), ((9, 8), (4, 3))])
def test_tf1_bilinear_matches_the_tensorflow_definition(size_in, size_out):
    img = np.random.default_rng(4).uniform(0, 255, size_in)
    ours = tf1_bilinear(torch.from_numpy(img)[None, None], size_out)[0, 0].numpy()
    assert np.allclose(ours, ref_tf1_resize(img, *size_out), atol=1e-9)


def test_fvd_resize_modes_differ_and_i3d_inputs_use_them(small_frame):
    video = small_frame  # (1, 9, 3, 64, 64) in [-1, 1]
    tf1, torch_style = i3d_inputs(video, "tf1-bilinear"), i3d_inputs(video, "pytorch-bilinear")
    q = torch.round((video[0, 0] + 1) / 2 * 255)  # 8-bit levels of the first frame
    expected = ref_tf1_resize(q[0].double().numpy(), 224, 224) / 255 * 2 - 1
    assert np.allclose(tf1[0, 0, 0].double().numpy(), expected, atol=1e-5)
    # the half-pixel offset moves a real frame by a visible amount (in [0, 255] units)
    assert (tf1 - torch_style).abs().max() * 127.5 > 10


@pytest.fixture
def small_frame(small_mp4):
    av = pytest.importorskip("av")
    with av.open(str(small_mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(9), container.decode(video=0))]
    clip = torch.from_numpy(np.stack(frames))[:, :64, :64]  # a real 64x64 crop, 9 frames
    return clip.permute(0, 3, 1, 2)[None].float() / 127.5 - 1


class _Native(torch.nn.Module):
    """Stands in for i3d_torchscript.pt: reports what it was given and how it was called."""

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        flags = float(rescale) + 2 * float(resize) + 4 * float(return_features)
        is_uint8 = float(x.dtype == torch.uint8)
        head = x.flatten(1)[:, :3].float()
        extra = torch.tensor([[flags, is_uint8]]).expand(x.shape[0], 2)
        return torch.cat([head, extra, torch.zeros(x.shape[0], 395)], 1)


def test_torchscript_resize_mode_hands_uint8_video_to_the_file(tmp_path, i3d_file):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(_Native()), str(path))
    net = load_i3d(path, trust_torchscript=True)
    video = torch.tensor([-1.0, 0.0, 0.999, 1.0]).view(1, 1, 1, 1, 4).expand(1, 9, 3, 4, 4)
    feats = i3d_features(net, video, "torchscript")
    assert feats[0, 3:5].tolist() == [7.0, 1.0]  # rescale, resize, return_features; uint8
    assert feats[0, :3].tolist() == [0.0, 128.0, 255.0]  # x * 127.5 + 128, clamped, truncated
    with pytest.raises(ValueError, match="state dict"):
        i3d_features(load_i3d(i3d_file), video, "torchscript")
