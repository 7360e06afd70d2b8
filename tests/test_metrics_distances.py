"""Fréchet distance, KVD, Inception Score, streamed statistics and bits per dim against
reference computations."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from videogen.metrics import (
    FeatureStats,
    bits_per_dim,
    frechet_distance,
    frechet_distance_features,
    frechet_distance_gram,
    fvd_from_stats,
    inception_score,
    kernel_distance,
)


def _random_gaussian(rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.standard_normal((d, 2 * d))
    return rng.standard_normal(d), a @ a.T / (2 * d)


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root.real))


def test_frechet_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    for d in (3, 20, 64):
        (mu1, s1), (mu2, s2) = _random_gaussian(rng, d), _random_gaussian(rng, d)
        ours = frechet_distance(torch.from_numpy(mu1), s1, mu2, torch.from_numpy(s2))
        assert ours == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-8, abs=1e-9)


def test_frechet_closed_form_for_diagonal_gaussians():
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 0.0, 2.0])
    expected = 1 + 4 + ((a.sqrt() - b.sqrt()) ** 2).sum().item()
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected)


def test_frechet_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="different widths"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))


def test_streaming_stats_equal_one_shot():
    rng = np.random.default_rng(1)
    feats = torch.from_numpy(rng.standard_normal((257, 12)) * 3 + 5)
    streamed = FeatureStats()
    for chunk in feats.split([1, 100, 56, 100]):
        streamed.update(chunk)
    mu, cov = streamed.mean_cov()
    assert torch.allclose(mu, feats.mean(0), atol=1e-12)
    assert np.allclose(cov.numpy(), np.cov(feats.numpy(), rowvar=False), atol=1e-10)
    assert torch.equal(streamed.features, feats.float())
    one_shot = FeatureStats.from_features(feats)
    other = FeatureStats.from_features(feats.flip(0) + 0.5)
    assert fvd_from_stats(streamed, other) == pytest.approx(fvd_from_stats(one_shot, other))


def test_identical_sets_give_fvd_zero():
    feats = torch.randn(300, 40, generator=torch.Generator().manual_seed(2))
    stats = FeatureStats.from_features(feats)
    assert abs(fvd_from_stats(stats, FeatureStats.from_features(feats.clone()))) < 1e-8
    assert fvd_from_stats(stats, FeatureStats.from_features(feats + 0.1)) > 0.01


def test_sample_space_frechet_equals_covariance_route():
    g = torch.Generator().manual_seed(7)
    # full rank, then singular covariances: there the D x D route keeps the square roots of
    # rounding noise (~1e-8 each; zeroing them would bias full-rank sets), the gram route is exact
    for n1, n2, d, rel in [(50, 60, 8, 1e-9), (6, 9, 30, 1e-7), (3, 3, 5, 1e-7)]:
        x, y = torch.randn(n1, d, generator=g) * 2 + 1, torch.randn(n2, d, generator=g)
        via_cov = fvd_from_stats(FeatureStats.from_features(x), FeatureStats.from_features(y))
        assert frechet_distance_gram(x, y) == pytest.approx(via_cov, rel=rel, abs=1e-9)
        assert frechet_distance_features(x, y) == frechet_distance_gram(x, y) or n1 * n2 > d * d
    few = torch.randn(8, 400, generator=g)
    assert abs(frechet_distance_features(few, few.clone())) < 1e-9


def test_stats_reject_too_few_rows_and_nan():
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.from_features(torch.zeros(1, 4)).mean_cov()
    with pytest.raises(ValueError, match="NaN"):
        FeatureStats.from_features(torch.tensor([[0.0, float("nan")]]))


def test_kvd_matches_direct_computation():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 5)), rng.standard_normal((9, 5)) + 0.3

    def k(a, b):
        return (a @ b / 5 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(9)) / (7 * 9)
    ours = kernel_distance(torch.from_numpy(x), torch.from_numpy(y))
    assert ours == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kvd_of_one_set_with_itself_is_about_zero():
    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(4))
    y = torch.randn(400, 16, generator=torch.Generator().manual_seed(5))
    assert abs(kernel_distance(x, y)) < 0.02
    assert kernel_distance(x, y + 1) > 0.1


def test_inception_score_extremes_and_splits():
    uniform = torch.full((20, 10), 0.1)
    assert inception_score(uniform, splits=2) == pytest.approx((1.0, 0.0))
    confident = torch.eye(10).repeat(2, 1)  # every class twice, one-hot
    mean, std = inception_score(confident, splits=2)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0)
    # uneven classes: each split against the formula, rows in order
    skewed = torch.eye(10)[[0, 0, 1, 1, 2, 2, 3, 4, 5, 6]]
    m2, _ = inception_score(skewed, splits=2)
    parts = [skewed[:5].numpy(), skewed[5:].numpy()]
    ref = []
    for p in parts:
        py = p.mean(0)
        kl = sum(
            p[i, j] * math.log(p[i, j] / py[j]) for i in range(5) for j in range(10) if p[i, j]
        )
        ref.append(math.exp(kl / 5))
    assert m2 == pytest.approx(np.mean(ref))


def test_inception_score_shuffles_like_numpy_randomstate():
    probs = torch.softmax(torch.randn(30, 6, generator=torch.Generator().manual_seed(6)), 1)
    shuffled = probs.numpy().astype(np.float64).copy()
    np.random.RandomState(42).shuffle(shuffled)
    ours = inception_score(probs, splits=3, shuffle_seed=42)
    assert ours == pytest.approx(inception_score(torch.from_numpy(shuffled), splits=3))
    assert ours != pytest.approx(inception_score(probs, splits=3))


def test_bits_per_dim_of_uniform_density_is_eight():
    dims = 3 * 4 * 8 * 8
    log_density = torch.tensor([-dims * math.log(2.0)])  # uniform on [-1, 1]^dims
    assert bits_per_dim(log_density, dims).item() == pytest.approx(8.0)


# --------------------------------------------------------------- high precision and golden values


def _psd_with_small_half(rs: np.random.RandomState, d: int, small: float) -> np.ndarray:
    """A covariance with half its spectrum at 1 and half at ``small``, in a random basis."""
    q, _ = np.linalg.qr(rs.standard_normal((d, d)))
    return (q * np.array([1.0] * (d // 2) + [small] * (d - d // 2))) @ q.T


@pytest.mark.parametrize("d, small, rel", [(16, 5e-8, 3e-8), (400, 1e-7, 1e-6)])
def test_frechet_keeps_small_eigenvalues(d, small, rel):
    """Regression: eigenvalues under max * D * eps were zeroed before their square roots,
    which biased FVD upward (6e-7 relative at D=16, 4e-5 at the protocol's D=400).

    Both Gaussians share one positive-definite covariance S, so tr(S + S - 2 (S S)^½) = 0
    exactly and the exact FVD is |mu1 - mu2|^2, summed here in 40-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    rs = np.random.RandomState(0)
    s = _psd_with_small_half(rs, d, small)
    mu1 = rs.standard_normal(d)
    mu2 = mu1 + rs.standard_normal(d) / np.sqrt(d)
    mpmath.mp.dps = 40
    exact = float(sum((mpmath.mpf(a) - mpmath.mpf(b)) ** 2 for a, b in zip(mu1, mu2)))
    ours = frechet_distance(torch.from_numpy(mu1), s, torch.from_numpy(mu2), s.copy())
    assert ours == pytest.approx(exact, rel=rel)


def _mp_frechet(mu1, s1, mu2, s2, mpmath) -> float:
    """The Fréchet distance in 40-digit arithmetic (mpmath), eigen-decompositions included."""
    mpmath.mp.dps = 40
    a, b = mpmath.matrix(s1.tolist()), mpmath.matrix(s2.tolist())
    vals, vecs = mpmath.eigsy(a)
    root = vecs * mpmath.diag([mpmath.sqrt(v) for v in vals]) * vecs.T
    middle = root * b * root
    trace_sqrt = sum(mpmath.sqrt(v) for v in mpmath.eigsy((middle + middle.T) / 2)[0])
    d = len(mu1)
    mean_term = sum((mpmath.mpf(p) - mpmath.mpf(q)) ** 2 for p, q in zip(mu1, mu2))
    return float(mean_term + sum(a[i, i] + b[i, i] for i in range(d)) - 2 * trace_sqrt)


def test_frechet_matches_a_high_precision_reference_on_a_wide_spectrum():
    mpmath = pytest.importorskip("mpmath")
    rs = np.random.RandomState(1)
    d = 10
    s1, s2 = (
        (q * np.logspace(0, -10, d)) @ q.T
        for q in (np.linalg.qr(rs.standard_normal((d, d)))[0] for _ in range(2))
    )
    mu1, mu2 = rs.standard_normal(d) * 1e-2, rs.standard_normal(d) * 1e-2
    exact = _mp_frechet(mu1, s1, mu2, s2, mpmath)
    ours = frechet_distance(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
    assert ours == pytest.approx(exact, rel=5e-9)


def _golden_sets() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed features (64 and 48 rows of 8) and class probabilities (40 x 6) from numpy's
    RandomState, whose streams are frozen."""
    rs = np.random.RandomState(2026)
    x = rs.standard_normal((64, 8))
    y = rs.standard_normal((48, 8)) * 1.2 + 0.3
    logits = rs.standard_normal((40, 6)) * 2
    p = np.exp(logits)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(p / p.sum(1, keepdims=True))


# Computed once in 40-digit mpmath from the sets above (means, unbiased covariances and their
# eigen-decompositions; the kernel sums; each split's KL; numpy's RandomState(42) permutation).
GOLDEN_FVD = 2.9482423216789775
GOLDEN_KVD = 1.313871918416859
GOLDEN_IS = {  # (splits, shuffle seed): (mean, std)
    (1, None): (2.5164252966008428, 0.0),
    (10, None): (1.6764115285539438, 0.36013124911998053),
    (10, 42): (2.007698035893796, 0.43860294419294626),
}


def test_golden_fvd_kvd_and_inception_score():
    x, y, probs = _golden_sets()
    assert frechet_distance_features(x, y) == pytest.approx(GOLDEN_FVD, rel=1e-12)
    assert fvd_from_stats(FeatureStats.from_features(x), FeatureStats.from_features(y)) == (
        pytest.approx(GOLDEN_FVD, rel=1e-12)
    )
    assert kernel_distance(x, y) == pytest.approx(GOLDEN_KVD, rel=1e-12)
    for (splits, seed), expected in GOLDEN_IS.items():
        assert inception_score(probs, splits, seed) == pytest.approx(expected, rel=1e-12)
    # TGANv2's eps = 1e-20 changes nothing measurable on these probabilities
    assert inception_score(probs, 1, eps=1e-20)[0] == pytest.approx(GOLDEN_IS[1, None][0])
