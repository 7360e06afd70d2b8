"""VideoFusion's two generators (Luo et al., CVPR 2023, Sec. 3.3) and the network that chains them.

- The **base generator** is an image diffusion U-Net, a diffusers ``UNet2DModel``: it sees the
  noisy key frame (the middle one) and the timestep and predicts the base noise ``b`` that all
  frames share. It can start from any pretrained ``UNet2DModel`` folder (``load_base_unet``).
- The **residual generator** (``ResidualUNet``) is a space-time U-Net: 2D convolutions applied to
  every frame, attention over time at every pixel after each residual block, spatial attention at
  low resolutions. It sees each frame with the estimated base noise taken out, the timestep, the
  frame index and optionally a class label (and, for the known-frame tasks, the clean known
  frames and their mask), and predicts the residual noise ``r^i`` of every frame in one call.
- ``VideoFusionNet`` runs the two stages: one base call per clip, one batched residual call, and
  returns the combined noise ``eps^i = sqrt(λ^i) b + sqrt(1 - λ^i) r^i`` of every frame.

Where the paper is silent we chose, and say so here: the residual U-Net's layout follows the
improved-diffusion U-Net (scale/shift residual blocks, attention at 16 and 8 px) with a temporal
attention layer after every residual block, as in VDM's factorised space-time U-Net; the frame
index enters as a sinusoidal embedding added to the timestep embedding.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DModel
from einops import rearrange, repeat
from torch import Tensor, nn

from videogen.diffusion.decomposed import combine, key_frame, remove_base
from videogen.nn import (
    Downsample,
    ResBlock,
    SpatialAttention,
    TemporalAttention,
    TimestepEmbedding,
    Upsample,
)
from videogen.nn.resblocks import group_norm

# --------------------------------------------------------------------------- base generator

# A plain DDPM-style image U-Net: attention in the two lowest-resolution levels.
DEFAULT_BASE: dict[str, Any] = {
    "block_out_channels": (128, 256, 256, 256),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "attention_head_dim": 64,
}

# UNet2DModel settings that the method fixes from the data config, never from the user's dict.
_MANAGED = ("in_channels", "out_channels", "sample_size", "num_class_embeds", "class_embed_type")


def _architecture(config: dict[str, Any]) -> dict[str, Any]:
    """A ``UNet2DModel`` config without diffusers' private keys, lists made tuples."""
    return {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in dict(config).items()
        if not k.startswith("_")
    }


def build_base_unet(
    architecture: dict[str, Any],
    *,
    channels: int,
    size: int,
    num_class_embeds: int | None = None,
) -> UNet2DModel:
    """A freshly initialised base generator: ``UNet2DModel(**architecture)`` over frames of
    ``channels`` x ``size`` x ``size``, with ``num_class_embeds`` class embeddings (or none)."""
    arch = _architecture(architecture or DEFAULT_BASE)
    clash = sorted(set(arch) & set(_MANAGED))
    if clash:
        raise ValueError(
            f"model.base sets {', '.join(clash)}, which follow the data config and "
            "model.num_classes; remove them from model.base"
        )
    arch.update(_managed(channels, num_class_embeds), sample_size=size)
    _check_size(arch, size)
    try:
        return UNet2DModel(**arch)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model.base is not a valid diffusers UNet2DModel config: {err}") from err


def _managed(channels: int, num_class_embeds: int | None) -> dict[str, Any]:
    return {
        "in_channels": channels,
        "out_channels": channels,
        "num_class_embeds": num_class_embeds,
        "class_embed_type": None,
    }


def _check_size(arch: dict[str, Any], size: int) -> None:
    default = inspect.signature(UNet2DModel.__init__).parameters["block_out_channels"].default
    levels = len(arch.get("block_out_channels", default))
    if size % 2 ** (levels - 1):
        raise ValueError(
            f"frames of {size} px do not halve {levels - 1} times for the base U-Net's "
            f"{levels} levels; use a size divisible by {2 ** (levels - 1)}"
        )


def load_base_unet(
    path: str | Path, *, channels: int, size: int, num_class_embeds: int | None = None
) -> UNet2DModel:
    """Load a pretrained diffusers ``UNet2DModel`` folder (``config.json`` + weights) as the base
    generator, to be fine-tuned jointly.

    The model must predict eps over the same beta schedule as the run's ``diffusion`` section
    (diffusers' folders do not record that, so it cannot be checked). A model without class
    embeddings gets a zero-initialised ``nn.Embedding`` when ``num_class_embeds`` is set, so it
    starts out exactly as the pretrained unconditional model.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model.base_pretrained: {path} is not a diffusers model folder (no config.json); "
            "give a folder written by UNet2DModel.save_pretrained"
        )
    unet = UNet2DModel.from_pretrained(path)
    cfg = unet.config
    if cfg.in_channels != channels or cfg.out_channels != channels:
        raise ValueError(
            f"model.base_pretrained: {path} maps {cfg.in_channels} to {cfg.out_channels} "
            f"channels but the data has {channels}; use a model made for {channels}-channel images"
        )
    _check_size(dict(cfg), size)
    if num_class_embeds is not None:
        if unet.class_embedding is None:
            dim = unet.time_embedding.linear_2.out_features
            unet.class_embedding = nn.Embedding(num_class_embeds, dim)
            nn.init.zeros_(unet.class_embedding.weight)
            unet.register_to_config(num_class_embeds=num_class_embeds)
        elif cfg.num_class_embeds != num_class_embeds or cfg.class_embed_type is not None:
            raise ValueError(
                f"model.base_pretrained: {path} has class embeddings of another kind "
                f"({cfg.class_embed_type or cfg.num_class_embeds}); VideoFusion needs "
                f"{num_class_embeds} (model.num_classes + 1 for the null label)"
            )
    elif unet.class_embedding is not None:
        raise ValueError(
            f"model.base_pretrained: {path} is class-conditional; set model.num_classes to "
            "match, or give an unconditional model"
        )
    return unet


def base_architecture(unet: UNet2DModel) -> dict[str, Any]:
    """The config of a base U-Net that ``build_base_unet`` rebuilds it from (data-derived
    settings left out), so an export does not need the folder it was loaded from."""
    return {k: v for k, v in _architecture(unet.config).items() if k not in _MANAGED}


# --------------------------------------------------------------------------- residual generator


class SpaceTimeBlock(nn.Module):
    """A residual block on every frame, then spatial attention (optional), then attention over
    time at every pixel. ``forward(x (B*T, C, H, W), emb (B*T, E), frames) -> (B*T, C', H, W)``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        *,
        spatial: bool,
        heads: int,
        head_dim: int | None,
        dropout: float,
    ) -> None:
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_dim, dims=2, dropout=dropout)
        self.spatial = SpatialAttention(out_ch, heads, head_dim) if spatial else None
        self.temporal = TemporalAttention(out_ch, heads, head_dim)

    def forward(self, x: Tensor, emb: Tensor, frames: int) -> Tensor:
        x = self.res(x, emb)
        if self.spatial is not None:
            x = self.spatial(x)
        x = rearrange(x, "(b t) c h w -> b c t h w", t=frames)
        x = self.temporal(x)
        return rearrange(x, "b c t h w -> (b t) c h w")


class ResidualUNet(nn.Module):
    """Space-time U-Net of the residual generator.

    ``forward(x, t, frame_index, labels=None, extra=None)``:

    - ``x`` ``(B, T, C, H, W)``: the noisy frames with the base noise taken out;
    - ``t`` ``(B,)`` float timesteps; ``frame_index`` ``(T,)`` or ``(B, T)`` frame positions;
    - ``labels`` ``(B,)`` long in ``[0, num_classes]`` (``num_classes`` is the null label) when
      ``num_classes > 0``;
    - ``extra`` ``(B, T, extra_channels, H, W)``: more input channels (clean known frames and
      their mask, for the known-frame tasks);

    returns the residual noise ``(B, T, out_channels, H, W)``. Time is never resampled, and any
    clip length works.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int | None = None,
        extra_channels: int = 0,
        image_size: int = 64,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16, 8),
        heads: int = 4,
        head_dim: int | None = None,
        dropout: float = 0.0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        if image_size % 2 ** (levels - 1):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**{levels - 1} for the residual "
                f"U-Net's {levels} levels (channel_mult={tuple(channel_mult)})"
            )
        out_channels = out_channels or in_channels
        self.extra_channels = extra_channels
        self.num_classes = num_classes
        emb_dim = 4 * channels
        self.time_embed = TimestepEmbedding(channels, emb_dim)
        self.frame_embed = TimestepEmbedding(channels, emb_dim)
        # one extra row: the null label of classifier-free guidance
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

        def block(cin: int, cout: int, spatial: bool) -> SpaceTimeBlock:
            return SpaceTimeBlock(
                cin,
                cout,
                emb_dim,
                spatial=spatial,
                heads=heads,
                head_dim=head_dim,
                dropout=dropout,
            )

        self.conv_in = nn.Conv2d(in_channels + extra_channels, channels, 3, padding=1)
        skips = [channels]
        ch = channels
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            attends = image_size // 2**level in attention_resolutions
            for _ in range(num_res_blocks):
                self.down.append(block(ch, mult * channels, attends))
                ch = mult * channels
                skips.append(ch)
            if level != levels - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)

        self.middle = nn.ModuleList([block(ch, ch, True), block(ch, ch, False)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            attends = image_size // 2**level in attention_resolutions
            for i in range(num_res_blocks + 1):
                self.up.append(block(ch + skips.pop(), mult * channels, attends))
                ch = mult * channels
                if level and i == num_res_blocks:
                    self.up.append(Upsample(ch))

        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _embedding(self, t: Tensor, frame_index: Tensor, labels: Tensor | None, frames: int):
        b = t.shape[0]
        emb = repeat(self.time_embed(t), "b e -> b t e", t=frames)
        index = frame_index.expand(b, frames) if frame_index.dim() == 1 else frame_index
        emb = emb + rearrange(self.frame_embed(index.reshape(-1)), "(b t) e -> b t e", b=b)
        if self.class_embed is not None:
            if labels is None:
                raise ValueError("this residual generator is class-conditional: pass labels")
            emb = emb + self.class_embed(labels)[:, None]
        return rearrange(emb, "b t e -> (b t) e")

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        frame_index: Tensor,
        labels: Tensor | None = None,
        extra: Tensor | None = None,
    ) -> Tensor:
        b, frames = x.shape[:2]
        emb = self._embedding(t, frame_index.to(x.device).float(), labels, frames)
        if self.extra_channels:
            if extra is None:
                raise ValueError(
                    f"the residual generator needs {self.extra_channels} more input "
                    "channels (the known frames and their mask)"
                )
            x = torch.cat([x, extra.to(x.dtype)], dim=2)
        h = self.conv_in(rearrange(x, "b t c h w -> (b t) c h w"))
        skips = [h]
        for layer in self.down:
            h = layer(h, emb, frames) if isinstance(layer, SpaceTimeBlock) else layer(h)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, emb, frames)
        for layer in self.up:
            if isinstance(layer, SpaceTimeBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb, frames)
            else:
                h = layer(h)
        h = self.conv_out(torch.nn.functional.silu(self.norm_out(h)))
        return rearrange(h, "(b t) c h w -> b t c h w", b=b)


# --------------------------------------------------------------------------- the two stages


class VideoFusionNet(nn.Module):
    """Base generator + residual generator: noisy clip to the noise of every frame.

    ``forward(x_t, t, noise_scale, labels=None, extra=None)`` with ``x_t`` ``(B, T, C, H, W)``,
    ``t`` ``(B,)`` float timesteps, ``noise_scale`` ``(B,)`` = ``sqrt(1 - ᾱ_t)``:

    1. ``b̂ = base(x_t^k, t)`` on the key frame ``k = floor(T/2)``: one call per clip;
    2. ``x'^i = x_t^i - sqrt(1 - ᾱ_t) sqrt(λ^i) b̂`` for every frame;
    3. ``r̂ = residual(x', t, i)`` for all frames in one call;
    4. returns ``epŝ^i = sqrt(λ^i) b̂ + sqrt(1 - λ^i) r̂^i`` ``(B, T, C, H, W)``.

    With ``stop_base_grad`` (the paper's choice) the base generator gets gradients only through
    the key frame's term of step 4: every other frame uses ``b̂`` detached in step 4, and step 2
    uses it detached for all frames (the residual generator mixes frames through temporal
    attention, so a live ``b̂`` in the key frame's input would carry every frame's gradient to
    the base generator; with λ = 1 at the key frame, its own residual term vanishes anyway).
    ``lambdas`` ``(T,)`` fixes the clip length. ``base_class_cond``: the base U-Net is given the
    class label too (its class embedding) - needed when λ of the key frame is 1, since the key
    frame is then generated by the base generator alone.
    """

    def __init__(
        self,
        base: UNet2DModel,
        residual: ResidualUNet,
        lambdas: Tensor,
        *,
        stop_base_grad: bool = True,
        base_class_cond: bool = False,
    ) -> None:
        super().__init__()
        self.base = base
        self.residual = residual
        self.stop_base_grad = stop_base_grad
        self.base_class_cond = base_class_cond
        self.register_buffer("lambdas", lambdas.float(), persistent=False)
        self.register_buffer("frame_index", torch.arange(lambdas.numel()), persistent=False)

    @property
    def frames(self) -> int:
        return self.lambdas.numel()

    def base_noise(self, key: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """The base generator on the noisy key frames ``(B, C, H, W)``: ``b̂`` of the same
        shape."""
        return self.base(key, t, class_labels=labels if self.base_class_cond else None).sample

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        noise_scale: Tensor,
        labels: Tensor | None = None,
        extra: Tensor | None = None,
    ) -> Tensor:
        frames = x_t.shape[1]
        if frames != self.frames:
            raise ValueError(
                f"this VideoFusion network was built for clips of {self.frames} frames "
                f"(one λ per frame), got {frames}"
            )
        k = key_frame(frames)
        base = self.base_noise(x_t[:, k], t, labels).to(x_t.dtype)[:, None]  # (B, 1, C, H, W)
        if self.stop_base_grad and torch.is_grad_enabled():
            # The residual generator attends across frames, so the key frame's input reaches
            # every frame's output: it gets the detached estimate everywhere.
            x_res = remove_base(x_t, base.detach(), self.lambdas, noise_scale)
            is_key = (self.frame_index == k).reshape(1, -1, 1, 1, 1)
            base = torch.where(is_key, base, base.detach())  # (B, T, C, H, W)
        else:
            x_res = remove_base(x_t, base, self.lambdas, noise_scale)
        residual = self.residual(x_res, t, self.frame_index, labels=labels, extra=extra)
        return combine(base, residual.to(x_t.dtype), self.lambdas)
