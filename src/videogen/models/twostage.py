"""The networks of the two-stage test method (``videogen.methods.twostage``): a per-frame
convolutional autoencoder, a patch discriminator for its adversarial loss, and a small
convolutional denoiser over a clip's codes. Tiny on purpose: they exist to exercise the
architecture a latent method needs (PVDM's is the same shape, with bigger networks)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from videogen.nn.embeddings import TimestepEmbedding


class FrameAutoencoder(nn.Module):
    """Frames ``(N, C, H, W)`` in [-1, 1] <-> codes ``(N, latent_channels, H/2, W/2)``."""

    def __init__(self, channels: int, hidden: int, latent_channels: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, latent_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, hidden, 3, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )

    def encode(self, frames: Tensor) -> Tensor:
        return self.encoder(frames)

    def decode(self, codes: Tensor) -> Tensor:
        """Frames in (-1, 1) (a tanh keeps reconstructions in the video range)."""
        return torch.tanh(self.decoder(codes))


class PatchDiscriminator(nn.Module):
    """Frames ``(N, C, H, W)`` -> real/fake logits ``(N, 1, H/2, W/2)``, one per patch."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )

    def forward(self, frames: Tensor) -> Tensor:
        return self.net(frames)


class LatentDenoiser(nn.Module):
    """``(z_t (B, latent, h, w), t (B,), cond (B, cond_channels, h, w)) -> prediction`` shaped
    like ``z_t``: convolutions with the timestep embedding added after each one."""

    def __init__(self, latent: int, cond_channels: int, width: int, depth: int = 3) -> None:
        super().__init__()
        self.inp = nn.Conv2d(latent + cond_channels, width, 3, padding=1)
        self.time = TimestepEmbedding(width, width)
        self.blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.out = nn.Conv2d(width, latent, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        emb = self.time(t)[:, :, None, None]
        h = self.inp(torch.cat([z_t, cond.to(z_t.dtype)], dim=1))
        for block in self.blocks:
            h = h + block(nn.functional.silu(h + emb))
        return self.out(nn.functional.silu(h))
