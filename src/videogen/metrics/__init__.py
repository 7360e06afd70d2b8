"""Video metrics computed the way the papers compute them.

Feature networks load the standard weight files by path (nothing is downloaded): I3D for FVD and
KVD, C3D for the Inception Score, AlexNet + LPIPS v0.1. Per-frame PSNR and SSIM match
scikit-image. ``shapes_motion`` checks generated stochastic-shapes clips against the dataset's
rules (motion, direction, colour, size). ``videogen.evaluate`` runs the protocols and writes the
report.
"""

from videogen.metrics.c3d import C3D, load_c3d
from videogen.metrics.distances import (
    FeatureStats,
    frechet_distance,
    frechet_distance_features,
    frechet_distance_gram,
    fvd_from_stats,
    inception_score,
    kernel_distance,
    polynomial_kernel,
)
from videogen.metrics.frames import gaussian_window, grey_uint8, psnr, ssim
from videogen.metrics.i3d import InceptionI3d, i3d_inputs, load_i3d
from videogen.metrics.likelihood import bits_per_dim
from videogen.metrics.lpips import LPIPS, load_lpips
from videogen.metrics.shapes_motion import ShapesMotion, shapes_motion
from videogen.metrics.weights import WeightFileError, sha256_file

__all__ = [
    "C3D",
    "LPIPS",
    "FeatureStats",
    "InceptionI3d",
    "ShapesMotion",
    "WeightFileError",
    "bits_per_dim",
    "frechet_distance",
    "frechet_distance_features",
    "frechet_distance_gram",
    "fvd_from_stats",
    "gaussian_window",
    "grey_uint8",
    "i3d_inputs",
    "inception_score",
    "kernel_distance",
    "load_c3d",
    "load_i3d",
    "load_lpips",
    "polynomial_kernel",
    "psnr",
    "sha256_file",
    "shapes_motion",
    "ssim",
]
