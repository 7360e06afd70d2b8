"""Distances between feature sets: Fréchet (FVD), polynomial-kernel MMD (KVD), Inception Score.

Features are accumulated batch by batch in ``FeatureStats`` (float64 sums for the Gaussian and,
when a kernel distance is wanted, the rows themselves), so a set is streamed once and its
statistics can be cached and reused.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


class FeatureStats:
    """Streaming mean and covariance of feature rows ``(N, D)``; keeps the rows if ``keep``."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.n = 0
        self.total: Tensor | None = None
        self.outer: Tensor | None = None
        self.rows: list[Tensor] = []

    def update(self, feats: Tensor) -> None:
        if feats.ndim != 2:
            raise ValueError(f"features are (N, D) rows, got shape {tuple(feats.shape)}")
        x = feats.detach().to("cpu", torch.float64)
        if not torch.isfinite(x).all():
            raise ValueError("features contain NaN or inf; the input video is broken")
        if self.total is None:
            self.total = torch.zeros(x.shape[1], dtype=torch.float64)
            self.outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        elif x.shape[1] != self.total.shape[0]:
            raise ValueError(f"feature width changed from {self.total.shape[0]} to {x.shape[1]}")
        self.n += x.shape[0]
        self.total += x.sum(0)
        self.outer += x.T @ x
        if self.keep:
            self.rows.append(x.float())

    @classmethod
    def from_features(cls, feats: Tensor, keep: bool = True) -> FeatureStats:
        stats = cls(keep)
        stats.update(feats)
        return stats

    @property
    def features(self) -> Tensor:
        if not self.keep:
            raise ValueError("these statistics were streamed without keeping the rows")
        return torch.cat(self.rows) if self.rows else torch.zeros(0, 0)

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        """Mean ``(D,)`` and unbiased covariance ``(D, D)`` in float64."""
        if self.n < 2 or self.total is None or self.outer is None:
            raise ValueError(f"a covariance needs at least 2 clips, got {self.n}")
        mu = self.total / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu, cov


def _psd_eigvals(vals: Tensor) -> Tensor:
    """Eigenvalues of a PSD matrix, the negative ones (rounding) set to zero. Small positive
    ones are kept: zeroing those under a rank tolerance (max * D * eps) dropped their square
    roots from tr (S1 S2)^½ and biased FVD upward (4e-5 relative for 400 features with half the
    spectrum at 1e-7). Rank-deficient sets (fewer clips than features) take the exact
    sample-space route, ``frechet_distance_gram``."""
    return vals.clamp(min=0)


def _sqrt_psd(m: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * _psd_eigvals(vals).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. The trace of the matrix square root is
    taken as the sum of square roots of the eigenvalues of the symmetric ``S1^½ S2 S1^½`` (same
    spectrum as ``S1 S2``), in float64, which avoids the complex parts ``scipy.linalg.sqrtm``
    returns for nearly singular covariances.
    """
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    s1 = torch.as_tensor(sigma1, dtype=torch.float64)
    s2 = torch.as_tensor(sigma2, dtype=torch.float64)
    d = mu1.shape[-1]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"Gaussians of different widths: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
            f"sigma {tuple(s1.shape)} / {tuple(s2.shape)}"
        )
    root1 = _sqrt_psd((s1 + s1.T) / 2)
    middle = root1 @ s2 @ root1
    trace_sqrt = _psd_eigvals(torch.linalg.eigvalsh((middle + middle.T) / 2)).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * trace_sqrt)


def fvd_from_stats(real: FeatureStats, fake: FeatureStats) -> float:
    return frechet_distance(*real.mean_cov(), *fake.mean_cov())


def frechet_distance_gram(x: Tensor, y: Tensor) -> float:
    """The Fréchet distance of the Gaussians fitted to rows ``x (N1, D)`` and ``y (N2, D)``
    (unbiased covariances), computed in the ``N1 x N2`` space of the samples.

    With ``S1 = A^T A`` and ``S2 = B^T B`` (A, B the centred rows over sqrt(N - 1)), the square
    roots of the eigenvalues of ``S1 S2`` are the singular values of ``A B^T``, so
    ``tr (S1 S2)^½`` is its nuclear norm. Exact when there are fewer clips than feature
    dimensions (256 test videos against 400 I3D logits, say), where the covariances are singular.
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"FVD compares (N >= 2, D) sets, got {tuple(x.shape)}, {tuple(y.shape)}")
    a = (x - x.mean(0)) / math.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / math.sqrt(len(y) - 1)
    trace_sqrt = torch.linalg.svdvals(a @ b.T).sum()
    mean_term = (x.mean(0) - y.mean(0)).square().sum()
    return float(mean_term + a.square().sum() + b.square().sum() - 2 * trace_sqrt)


def frechet_distance_features(x: Tensor, y: Tensor) -> float:
    """Fréchet distance of two feature sets, by whichever exact route is smaller: the sample
    space (``frechet_distance_gram``) when ``N1 N2 <= D^2``, else the ``D x D`` covariances."""
    if len(x) * len(y) <= x.shape[1] ** 2:
        return frechet_distance_gram(x, y)
    return fvd_from_stats(FeatureStats.from_features(x), FeatureStats.from_features(y))


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, coef0: float = 1.0) -> Tensor:
    """``(x y^T / D + coef0) ** degree``: sklearn's polynomial kernel with gamma = 1 / D."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def kernel_distance(real: Tensor, fake: Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (KVD, as in TATS and KID).

    Mean of the off-diagonal ``k(x, x')`` plus that of ``k(y, y')`` minus twice the mean of
    ``k(x, y)``; computed in float64 over all rows.
    """
    x, y = real.to(torch.float64), fake.to(torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"KVD compares (N, D) feature sets, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"KVD needs at least 2 clips per set, got {m} real and {n} generated")
    kxx, kyy = polynomial_kernel(x, x, degree, coef0), polynomial_kernel(y, y, degree, coef0)
    kxy = polynomial_kernel(x, y, degree, coef0)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


def inception_score(
    probs: Tensor, splits: int = 10, shuffle_seed: int | None = None, eps: float = 0.0
) -> tuple[float, float]:
    """Inception Score of class probabilities ``(N, K)``: mean and std of ``exp(E KL(p(y|x) ||
    p(y)))`` over ``splits`` equal parts (part i is rows ``i*N//splits : (i+1)*N//splits``).

    ``shuffle_seed`` shuffles the rows first with ``numpy.random.RandomState(seed)`` as
    StyleGAN-V does (seed 42); TGAN2 adds ``eps = 1e-20`` to the probabilities.
    """
    p = probs.detach().to("cpu", torch.float64).numpy().copy()
    n = p.shape[0]
    if p.ndim != 2 or n < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} clips")
    if shuffle_seed is not None:
        np.random.RandomState(shuffle_seed).shuffle(p)
    p = p + eps
    scores = []
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(part.mean(0, keepdims=True))), 0)
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
