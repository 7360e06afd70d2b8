"""PVDM's stage-1 objective: L1 + LPIPS + an image and a video patch discriminator.

Yu et al. 2023 (PVDM), eq. 1 (the VQGAN / TATS objective without quantisation). The facts below
are from the official code (``losses/perceptual.py`` ``LPIPSWithDiscriminator``,
``tools/trainer.py`` ``first_stage_train``, ``exps/first_stage.py``,
``configs/autoencoder/base.yaml`` and ``base_gan.yaml``):

- reconstruction: ``pixel`` (4.0) x mean |x - x̂| over every frame, plus ``perceptual`` (4.0) x
  LPIPS of *one* frame per clip, drawn uniformly (the same frame for the 2D discriminator);
  the official LPIPS is the VGG16 one, here it is the project's AlexNet LPIPS
  (``videogen.metrics.lpips``), given by the caller or left out;
- adversarial, each term multiplied by ``gan_factor(step, disc_start)`` (0 before
  ``disc_start``, 1 from then on; no adaptive weight): the autoencoder minimises
  ``gan`` (1.0) x (-mean D2(x̂_f) - mean D3(x̂)) plus ``feature`` (4.0) x the L1 feature-matching
  loss over every intermediate layer of both discriminators (real features detached);
  the discriminators minimise ``gan`` x (hinge(D2) + hinge(D3)) with
  ``hinge = (mean relu(1 - D(real)) + mean relu(1 + D(fake))) / 2``;
- discriminators: pix2pix PatchGAN ``NLayerDiscriminator`` in 2D (on the drawn frame) and in 3D
  (on the clip): 4x4(x4) convs with padding 2, ``ndf`` 64 doubling to at most 512, three
  stride-2 layers, a stride-1 layer, a stride-1 conv to one logit per patch; BatchNorm after
  every conv but the first and last (SyncBatchNorm under DDP: convert with
  ``nn.SyncBatchNorm.convert_sync_batchnorm``); LeakyReLU 0.2; conv weights N(0, 0.02),
  norm weights N(1, 0.02) and biases 0;
- schedule: two runs. ``base.yaml`` trains without the GAN (``disc_start`` 1e8, never reached);
  ``base_gan.yaml`` resumes that run's weights and optimizer with ``disc_start`` -1 (GAN from
  the first step), early-stopped after typically 8k-14k iterations at batch 8. With the GAN on,
  the official loop alternates: one (accumulated) optimizer step of the autoencoder, then one of
  the discriminators on the next batches with the reconstruction computed under ``no_grad``.
  Gradients are accumulated over 3 batches; the discriminators' gradients are clipped to norm
  1.0; both optimizers are AdamW, lr 1e-4, betas (0.5, 0.9); fp16 autocast with a GradScaler
  per optimizer.

One term is ours, off by default: ``mse`` x mean (x - x̂)², for short runs on sparse data (the
moving digits: most pixels are exactly -1, the sigmoid output's asymptote, where the L1
gradient never fades, so an L1-only autoencoder first drives every pixel to black and saturates
its output; see ``configs/pvdm/moving_digits_autoencoder.yaml``).

The functions here are pure: a method's training step calls ``autoencoder_loss`` for the
autoencoder's update and ``discriminator_loss`` for the discriminators'. The autoencoder loss
also puts gradients on the discriminators' parameters (as in the official code); the training
step zeroes those before the discriminators' update or freezes the discriminators meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass(frozen=True)
class PVDMLossWeights:
    """The official loss weights (``LPIPSWithDiscriminator`` defaults), and ``mse`` (ours, 0:
    off)."""

    pixel: float = 4.0
    perceptual: float = 4.0
    gan: float = 1.0
    feature: float = 4.0
    mse: float = 0.0


# --------------------------------------------------------------------------- discriminators


class PatchDiscriminator(nn.Module):
    """PatchGAN over images ``(B, C, H, W)`` (``dims=2``) or clips ``(B, C, T, H, W)``
    (``dims=3``). ``forward`` returns the patch logits ``(B, 1, ...)`` and the outputs of every
    layer before the last (for feature matching)."""

    def __init__(self, dims: int, in_channels: int = 3, ndf: int = 64, layers: int = 3) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"PatchDiscriminator dims must be 2 or 3, got {dims}")
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d

        def stage(cin: int, cout: int, stride: int, normed: bool) -> nn.Sequential:
            mods: list[nn.Module] = [conv(cin, cout, 4, stride=stride, padding=2)]
            if normed:
                mods.append(norm(cout))
            mods.append(nn.LeakyReLU(0.2))
            return nn.Sequential(*mods)

        stages = [stage(in_channels, ndf, 2, normed=False)]
        nf = ndf
        for _ in range(1, layers):
            stages.append(stage(nf, min(2 * nf, 512), 2, normed=True))
            nf = min(2 * nf, 512)
        stages.append(stage(nf, min(2 * nf, 512), 1, normed=True))
        nf = min(2 * nf, 512)
        self.stages = nn.ModuleList(stages)
        self.to_logits = conv(nf, 1, 4, stride=1, padding=2)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for s in self.stages:
            x = s(x)
            features.append(x)
        return self.to_logits(x), features


class VideoDiscriminators(nn.Module):
    """The pair the official code trains: ``image`` (2D, on one frame per clip) and ``video``
    (3D, on the whole clip)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.image = PatchDiscriminator(2, in_channels, ndf, layers)
        self.video = PatchDiscriminator(3, in_channels, ndf, layers)

    def forward(
        self, clip: Tensor, frame: Tensor
    ) -> tuple[tuple[Tensor, list[Tensor]], tuple[Tensor, list[Tensor]]]:
        """``clip`` ``(B, T, C, H, W)``, ``frame`` ``(B, C, H, W)`` -> (logits, features) of the
        image discriminator on ``frame`` and of the video discriminator on ``clip``."""
        return self.image(frame), self.video(rearrange(clip, "b t c h w -> b c t h w"))


# --------------------------------------------------------------------------- loss terms


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """``(mean relu(1 - real) + mean relu(1 + fake)) / 2`` (scalar)."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_adversarial_loss(logits_fake: Tensor) -> Tensor:
    """The generator's hinge loss: ``-mean D(fake)`` (scalar)."""
    return -logits_fake.mean()


def feature_matching_loss(fake: list[Tensor], real: list[Tensor]) -> Tensor:
    """Sum over layers of the mean |fake - real| with the real features detached (scalar)."""
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake, real, strict=True))


def gan_factor(step: int, disc_start: int) -> float:
    """0 before ``disc_start`` optimisation steps, 1 from then on (``adopt_weight``)."""
    return 0.0 if step < disc_start else 1.0


def draw_frames(video: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One frame index per clip of ``video`` ``(B, T, ...)``, uniform over T: ``(B,)`` long."""
    b, t = video.shape[:2]
    device = generator.device if generator is not None else video.device
    return torch.randint(t, (b,), generator=generator, device=device).to(video.device)


def frames_at(video: Tensor, index: Tensor) -> Tensor:
    """``video[b, index[b]]`` for each clip: ``(B, T, C, H, W)``, ``(B,)`` -> ``(B, C, H, W)``."""
    return video[torch.arange(video.shape[0], device=video.device), index]


# --------------------------------------------------------------------------- the two objectives


def autoencoder_loss(
    video: Tensor,
    recon: Tensor,
    frame_index: Tensor,
    *,
    step: int,
    disc_start: int,
    discriminators: VideoDiscriminators | None = None,
    lpips: nn.Module | None = None,
    weights: PVDMLossWeights = PVDMLossWeights(),
) -> dict[str, Tensor]:
    """The autoencoder's loss on ``video`` and its reconstruction ``recon`` (both
    ``(B, T, C, H, W)`` in [-1, 1]); ``frame_index`` ``(B,)`` picks the frame for LPIPS and the
    image discriminator. Without ``lpips`` the perceptual term is left out, without
    ``discriminators`` (or before ``disc_start``) the adversarial ones. Returns ``"loss"`` and
    its weighted terms ``"pixel"``, ``"mse"``, ``"perceptual"``, ``"gan"``, ``"feature"`` (those
    present).
    """
    out = {"pixel": weights.pixel * F.l1_loss(recon, video)}
    if weights.mse > 0:
        out["mse"] = weights.mse * F.mse_loss(recon, video)
    real_frame, fake_frame = frames_at(video, frame_index), frames_at(recon, frame_index)
    if lpips is not None and weights.perceptual > 0:
        out["perceptual"] = weights.perceptual * lpips(real_frame, fake_frame).mean()
    factor = gan_factor(step, disc_start)
    if discriminators is not None and factor > 0:
        with torch.no_grad():
            (_, real_2d), (_, real_3d) = discriminators(video, real_frame)
        (logits_2d, fake_2d), (logits_3d, fake_3d) = discriminators(recon, fake_frame)
        adversarial = generator_adversarial_loss(logits_2d) + generator_adversarial_loss(logits_3d)
        matching = feature_matching_loss(fake_2d, real_2d) + feature_matching_loss(fake_3d, real_3d)
        out["gan"] = factor * weights.gan * adversarial
        out["feature"] = factor * weights.feature * matching
    out["loss"] = sum(out.values())
    return out


def discriminator_loss(
    video: Tensor,
    recon: Tensor,
    frame_index: Tensor,
    discriminators: VideoDiscriminators,
    *,
    step: int,
    disc_start: int,
    weights: PVDMLossWeights = PVDMLossWeights(),
) -> dict[str, Tensor]:
    """The discriminators' hinge loss, real ``video`` against ``recon`` (detached here), both
    ``(B, T, C, H, W)``. Returns ``"loss"``, and ``"logits_real"`` / ``"logits_fake"`` (the
    mean logits of both discriminators, for logging)."""
    recon = recon.detach()
    (real_2d, _), (real_3d, _) = discriminators(video, frames_at(video, frame_index))
    (fake_2d, _), (fake_3d, _) = discriminators(recon, frames_at(recon, frame_index))
    hinge = hinge_d_loss(real_2d, fake_2d) + hinge_d_loss(real_3d, fake_3d)
    return {
        "loss": gan_factor(step, disc_start) * weights.gan * hinge,
        "logits_real": (real_2d.mean() + real_3d.mean()).detach() / 2,
        "logits_fake": (fake_2d.mean() + fake_3d.mean()).detach() / 2,
    }
