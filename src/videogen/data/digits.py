"""Digit images for moving-digits: real MNIST from files, or glyphs rendered here.

Real MNIST is read from the files a user already has (idx, gzipped or not, or Keras'
``mnist.npz``); nothing is downloaded. Without them the package renders its own digits 0-9
with Pillow's built-in font, each with its own stroke thickness, slant, rotation and width,
normalised the way MNIST is (fit in a 20x20 box, centred by mass in 28x28). Training and test
use disjoint glyph banks, as MNIST's train and test digits are disjoint.
"""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from videogen.data.errors import DatasetError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
}
GLYPHS_PER_DIGIT = 64
_RENDER = 48  # glyphs are drawn large and reduced, which antialiases their edges


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    except (OSError, EOFError, struct.error) as err:
        raise DatasetError(f"{path}: not a readable MNIST idx image file ({err})") from err
    if magic != 2051 or len(data) != 16 + count * rows * cols:
        raise DatasetError(
            f"{path}: not an MNIST idx image file (magic {magic}, expected 2051, or wrong size); "
            "give train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz] or mnist.npz"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def _read_npz(path: Path, split: str) -> np.ndarray:
    key = "x_train" if split == "train" else "x_test"
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data:
                raise DatasetError(f"{path}: no '{key}' array (Keras mnist.npz layout expected)")
            images = data[key]
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable .npz file ({err})") from err
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DatasetError(
            f"{path}: '{key}' must be uint8 (N, 28, 28), got {images.dtype} {images.shape}"
        )
    return images


def load_mnist(path: str | Path, split: str) -> np.ndarray:
    """MNIST images ``uint8 (N, 28, 28)`` of ``split`` ("train"/"test") from ``path``.

    ``path`` is ``mnist.npz``, one idx file (used for both splits), or a folder holding
    the idx files (gzipped or not, searched recursively, e.g. torchvision's MNIST/raw) or
    ``mnist.npz``.
    """
    path = Path(path).expanduser()
    split = "train" if split == "train" else "test"
    if path.is_file():
        return _read_npz(path, split) if path.suffix == ".npz" else _read_idx(path)
    if not path.is_dir():
        raise DatasetError(
            f"MNIST path {path} does not exist (give mnist.npz, an idx file or "
            "a folder with train-images-idx3-ubyte / t10k-images-idx3-ubyte)"
        )
    for name in MNIST_FILES[split]:
        for candidate in (name, name + ".gz"):
            found = sorted(path.rglob(candidate))
            if found:
                return _read_idx(found[0])
    npz = sorted(path.rglob("mnist.npz"))
    if npz:
        return _read_npz(npz[0], split)
    raise DatasetError(
        f"MNIST folder {path} has no {MNIST_FILES[split][0]}[.gz] (nor mnist.npz) for the "
        f"{split} split"
    )


def _mnist_normalise(glyph: np.ndarray) -> np.ndarray:
    """Fit a glyph into a 20x20 box (keeping its aspect) and centre its mass in 28x28."""
    ys, xs = np.nonzero(glyph > 20)
    crop = glyph[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = 20 / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(crop).resize(new, Image.Resampling.LANCZOS))
    mass = small.astype(np.float64)
    total = mass.sum() or 1.0
    cy = (mass.sum(1) * np.arange(small.shape[0])).sum() / total
    cx = (mass.sum(0) * np.arange(small.shape[1])).sum() / total
    top = int(np.clip(round(14 - cy), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - small.shape[1]))
    out = np.zeros((28, 28), dtype=np.uint8)
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out


def _render_glyph(digit: int, rng: np.random.Generator, font: ImageFont.FreeTypeFont) -> np.ndarray:
    image = Image.new("L", (_RENDER * 2, _RENDER * 2))
    draw = ImageDraw.Draw(image)
    thickness = int(rng.integers(0, 4))  # pen width: thin to bold strokes
    draw.text(
        (_RENDER, _RENDER),
        str(digit),
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=thickness,
        stroke_fill=255,
    )
    slant = rng.uniform(-0.35, 0.2)  # italic lean, mostly to the right as handwriting does
    widen = rng.uniform(0.75, 1.15)
    # inverse map of: widen x, shear x by y, about the image centre
    c = float(_RENDER)
    matrix = (1 / widen, -slant / widen, c - c / widen + slant * c / widen, 0, 1, 0)
    image = image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)
    image = image.rotate(rng.uniform(-12, 12), Image.Resampling.BILINEAR)
    return _mnist_normalise(np.asarray(image))


@functools.lru_cache(maxsize=4)
def rendered_digits(split: str, per_digit: int = GLYPHS_PER_DIGIT) -> np.ndarray:
    """``uint8 (10 * per_digit, 28, 28)`` rendered digits; "train" and "test" banks differ."""
    font = ImageFont.load_default(size=_RENDER)
    rng = np.random.default_rng([0xD1617, 0 if split == "train" else 1])
    glyphs = [_render_glyph(d, rng, font) for _ in range(per_digit) for d in range(10)]
    return np.stack(glyphs)


def resize_digits(images: np.ndarray, size: int) -> np.ndarray:
    """``uint8 (N, 28, 28)`` -> ``uint8 (N, size, size)`` (bilinear, as the protocol's
    ``Resize(32)`` of MNIST)."""
    if images.shape[1:] == (size, size):
        return np.ascontiguousarray(images)
    x = torch.from_numpy(np.ascontiguousarray(images))[:, None].float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
