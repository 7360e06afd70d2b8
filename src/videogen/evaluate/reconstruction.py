"""The reconstruction protocol (``task="reconstruct"``): an autoencoder's reconstructions of the
test clips scored against the clips themselves.

PVDM reports its autoencoder this way (Yu et al. 2023, Table 3: PSNR and R-FVD, the FVD between
reconstructions and their inputs). ``evaluate_run`` wraps a method that has
``reconstruct(video) -> video`` in ``Reconstruction``, treats every frame as generated and
scores with the usual metrics: PSNR / SSIM / LPIPS per frame against the input, and, with I3D
weights, FVD between the reconstructions and the test clips (R-FVD).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from videogen.evaluate.protocol import ProtocolError

TASK = "reconstruct"


class Reconstruction:
    """``generate`` of an autoencoder: its reconstruction of the whole clip (``known`` and the
    sampling options are ignored: reconstruction is deterministic)."""

    def __init__(self, method: Any) -> None:
        if not callable(getattr(method, "reconstruct", None)):
            raise ProtocolError(
                f"task {TASK!r} needs an autoencoder (a method with reconstruct(), such as a "
                f"PVDM run); {type(method).__name__} has none"
            )
        self.method = method

    def generate(self, video: Tensor, known: Tensor, **_: Any) -> Tensor:  # noqa: ARG002
        return self.method.reconstruct(video).to(video.dtype)
