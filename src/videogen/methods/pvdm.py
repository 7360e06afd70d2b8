"""PVDM (Yu et al., CVPR 2023): a projected (triplane) video autoencoder, then latent diffusion
over its three planes, conditioned on the previous clip.

**Stage 1** (``model.stage: autoencoder``, ``data.frames`` = ``model.clip``) trains
``PVDMAutoencoder`` on ``pixel`` x L1 (+ ``mse`` x squared error, ours, off officially) +
``perceptual`` x LPIPS of one frame and, from step
``disc_start`` on, ``gan`` x the hinge generator loss + ``feature`` x feature matching of an
image and a video PatchGAN (``videogen.models.pvdm_losses``). Two parameter groups:
"autoencoder" every step, "discriminator" (not averaged, its own gradient clip) only from
``disc_start`` on; both phases of a step see the same batches (the official loop feeds the
discriminators the next batches). LPIPS loads its AlexNet and linear weight files by path
(``lpips_alexnet``, ``lpips_lin``, as ``videogen eval`` does) when training starts; without them
the run says it trains without the perceptual term. The preview shows reconstructions.

**Stage 2** (``model.stage: diffusion``, ``data.frames`` = 2 x ``clip``) reads the stage-1 export
from ``model.autoencoder.path`` once (its settings, provenance and weight file sha256 go into
this run's config, its weights into the frozen ``autoencoder``, outside every optimizer and the
EMA) and trains ``PVDMUNet`` on the packed planes with the joint objective of the paper's eq. 2
(official ``tools/trainer.py``): each training item is two clips; with probability
``cond_prob`` (``tasks.PrevClipMasks``) the first clip's planes condition the second's, otherwise
the target is a random ``clip``-frame window of the item and the condition is zeros. Both are
drawn per item; the official loop draws them once per batch (the whole batch conditional or
not, one window offset), which gives the same mix in expectation with a noisier gradient. Latents
come from the autoencoder every step, or from a cache (``model.cache``, written once by
``videogen pvdm-cache``, refused if another autoencoder wrote it); from a cache the
unconditional window starts at frame 0 or ``clip`` (the two cached clips) instead of anywhere.

``generate`` takes ``2 x clip`` frames with the first clip known (continue a video) or nothing
known (a first clip, then a second conditioned on its sampled planes), or one clip with nothing
known: encode the known clip, sample planes (DDIM with ``eta`` 1 by default), decode, paste the
known frames back exactly. A request for one new clip goes to ``generate`` as it is
(``takes_whole``: one clip sampled, not the two of a padded window, e.g. for FVD16); longer
videos go clip by clip through ``videogen.rollout``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from videogen.compile_options import NO_POINTWISE_CAT
from videogen.config import Config, ConfigError, from_dict
from videogen.data.latent_cache import LatentCache
from videogen.diffusion import GaussianDiffusion
from videogen.methods.base import (
    ParamGroup,
    Pretrained,
    SampleOptions,
    VideoMethod,
    load_stage_one,
    refuse_unresolved,
)
from videogen.models.pvdm_autoencoder import PVDMAutoencoder, PVDMAutoencoderSpec
from videogen.models.pvdm_losses import (
    PVDMLossWeights,
    VideoDiscriminators,
    autoencoder_loss,
    discriminator_loss,
    draw_frames,
)
from videogen.models.pvdm_planes import pack_planes, unpack_planes
from videogen.models.pvdm_unet import PVDMUNet, PVDMUNetSpec
from videogen.pvdm_cache import export_weights_file
from videogen.tasks import PrevClipMasks

# the model keys that fix the autoencoder's shape (recorded from the stage-1 export): the
# spec's fields but those the data fixes, with "clip" for its frames
AUTOENCODER_KEYS = ("clip",) + tuple(
    f.name for f in fields(PVDMAutoencoderSpec) if f.name not in ("channels", "frames", "size")
)


@dataclass
class PVDMConfig:
    """The ``model:`` section; defaults are the official UCF-101 256² model and recipe.

    Autoencoder (``PVDMAutoencoderSpec``): ``clip`` frames per clip, ``patch`` ... ``max_freq``.
    Stage 1: the loss weights (``mse_weight``: a squared-error term of ours, 0 officially),
    ``disc_start`` (optimisation steps before the GAN is on; 1e8:
    never, the official first run), the discriminators' ``disc_ndf``/``disc_layers``, their
    optimizer (``disc_lr``/``disc_betas``, None: the ``train`` section's) and gradient clip;
    ``lpips_alexnet``/``lpips_lin``: LPIPS weight files. Stage 2: ``autoencoder`` (the stage-1
    export by path; ``autoencoder_sha256`` is recorded from it), the U-Net (``model_channels``
    ... ``dropout``), ``cond_prob`` (λ of eq. 2), ``cache`` (a latent cache folder or None) and
    the DDIM ``eta`` of sampling.
    """

    stage: Literal["autoencoder", "diffusion"] = "autoencoder"
    clip: int = 16
    patch: int = 8
    width: int = 384
    depth: int = 8
    heads: int = 8
    head_dim: int = 64
    ff_mult: int = 4
    latent_channels: int = 4
    proj_depth: int = 4
    proj_heads: int = 4
    proj_head_dim: int = 48
    proj_mlp: int = 512
    max_freq: float = 10.0
    # stage 1
    pixel_weight: float = 4.0
    perceptual_weight: float = 4.0
    gan_weight: float = 1.0
    feature_weight: float = 4.0
    mse_weight: float = 0.0
    disc_start: int = 100_000_000
    disc_ndf: int = 64
    disc_layers: int = 3
    disc_lr: float | None = None
    disc_betas: tuple[float, float] | None = None
    disc_grad_clip: float | None = 1.0
    lpips_alexnet: str | None = None
    lpips_lin: str | None = None
    # stage 2
    autoencoder: Pretrained = field(default_factory=Pretrained)
    autoencoder_sha256: str | None = None
    model_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    unet_heads: int = 8
    dropout: float = 0.0
    cond_prob: float = 0.3
    cache: str | None = None
    eta: float = 1.0


def autoencoder_spec(m: PVDMConfig, cfg: Config) -> PVDMAutoencoderSpec:
    d = cfg.data
    return PVDMAutoencoderSpec(
        channels=d.channels,
        frames=m.clip,
        size=d.size,
        **{k: getattr(m, k) for k in AUTOENCODER_KEYS if k != "clip"},
    )


class PVDM(VideoMethod):
    """Projected video autoencoder (stage 1), latent diffusion over its planes (stage 2)."""

    name = "pvdm"
    title = "PVDM"
    ModelConfig = PVDMConfig
    ddp_find_unused = True  # the discriminator phase leaves the autoencoder without gradients
    sample_options = frozenset({"steps", "sampler"})
    inductor_config = NO_POINTWISE_CAT  # the plane unpacking's backward (compile_options)

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        m: PVDMConfig = from_dict(PVDMConfig, cfg.model, "model")
        refuse_unresolved("model.autoencoder.path", m.autoencoder.path, self.title or self.name)
        want = m.clip if m.stage == "autoencoder" else 2 * m.clip
        if cfg.data.frames != want:
            raise ConfigError(
                f"data.frames={cfg.data.frames}: PVDM stage {m.stage!r} trains on "
                f"{'one clip' if m.stage == 'autoencoder' else 'two clips'} of model.clip="
                f"{m.clip} frames; set data.frames={want}"
            )
        if not 0.0 <= m.cond_prob <= 1.0:
            raise ConfigError(f"model.cond_prob={m.cond_prob} must lie in [0, 1]")
        self.model_cfg = m
        self.autoencoder = PVDMAutoencoder(autoencoder_spec(m, cfg))
        self.plane_shape = self.autoencoder.plane_shape
        # training-only state, set by setup_training; kept out of the module tree so that
        # weights, checkpoints and exports do not depend on them
        self._lpips: list[nn.Module] = []
        self._gan_on = False
        if m.stage == "autoencoder":
            self.discriminators = VideoDiscriminators(cfg.data.channels, m.disc_ndf, m.disc_layers)
            self.loss_weights = PVDMLossWeights(
                m.pixel_weight, m.perceptual_weight, m.gan_weight, m.feature_weight, m.mse_weight
            )
            return
        self.autoencoder.requires_grad_(False)
        self.unet = PVDMUNet(
            PVDMUNetSpec(
                latent_channels=m.latent_channels,
                frames=self.plane_shape.frames,
                height=self.plane_shape.height,
                width=self.plane_shape.width,
                model_channels=m.model_channels,
                channel_mult=tuple(m.channel_mult),
                num_res_blocks=m.num_res_blocks,
                attention_resolutions=tuple(m.attention_resolutions),
                heads=m.unet_heads,
                dropout=m.dropout,
                cond=True,
            )
        )
        # planes are tanh-bounded: samples are clamped to (-1, 1), the decoder's input range
        self.diffusion = GaussianDiffusion(cfg.diffusion, data_range=(-1.0, 1.0))
        self.masks = PrevClipMasks(m.clip, m.cond_prob)

    @property
    def context(self) -> int:
        return self.model_cfg.clip

    @property
    def latent_shape(self) -> tuple[int, int]:
        """``(C, L)`` of one clip's packed planes."""
        return self.model_cfg.latent_channels, self.plane_shape.tokens

    # ------------------------------------------------------------------ sub-model by path

    @classmethod
    def resolve_submodels(cls, cfg: Config) -> tuple[Config, dict[str, Tensor]]:
        """Stage 2's ``model.autoencoder.path``: a stage-1 export or run folder with an export."""
        m: PVDMConfig = from_dict(PVDMConfig, cfg.model, "model")
        path = m.autoencoder.path
        if path is None:
            return cfg, {}
        if m.stage != "diffusion":
            raise ConfigError("model.autoencoder.path is for model.stage=diffusion")
        weights_file = export_weights_file(path)
        stage1, s1 = load_stage_one(cls, cfg, weights_file.parent)
        from videogen.metrics.weights import sha256_file

        resolved = cls.with_model(
            cfg,
            **{k: getattr(s1, k) for k in AUTOENCODER_KEYS},
            autoencoder={"path": None, "loaded_from": str(Path(path))},
            autoencoder_sha256=sha256_file(weights_file),
        )
        weights = {f"autoencoder.{k}": v for k, v in stage1.autoencoder.state_dict().items()}
        return resolved, weights

    # ------------------------------------------------------------------ training set-up

    def setup_training(self) -> LatentCache | None:
        """Called once by the trainer: stage 1 loads LPIPS (or says it trains without it);
        stage 2 opens its latent cache, whose items the trainer then feeds (None: the
        configured clips)."""
        m = self.model_cfg
        if m.stage == "autoencoder":
            if m.lpips_alexnet and m.lpips_lin:
                from videogen.metrics import load_lpips

                self._lpips = [load_lpips(m.lpips_alexnet, m.lpips_lin, device=self.device)]
            else:
                warnings.warn(
                    "PVDM stage 1 trains without its LPIPS term: no model.lpips_alexnet / "
                    "model.lpips_lin weight files given (torchvision's alexnet-owt-7be5be79.pth "
                    "and LPIPS v0.1 alex.pth)",
                    stacklevel=2,
                )
            return None
        if m.autoencoder.loaded_from is None:
            warnings.warn(
                "PVDM stage 2 with a freshly initialised autoencoder: give "
                "model.autoencoder.path=<stage-1 export> for a real run",
                stacklevel=2,
            )
        if m.cache is None:
            return None
        return LatentCache.open(
            m.cache, autoencoder_sha256=m.autoencoder_sha256, shape=(2, *self.latent_shape)
        )

    # ------------------------------------------------------------------ stage 1

    def param_groups(self) -> dict[str, ParamGroup]:
        m = self.model_cfg
        if m.stage == "diffusion":
            return {"model": ParamGroup(list(self.unet.parameters()))}
        return {
            "autoencoder": ParamGroup(list(self.autoencoder.parameters())),
            "discriminator": ParamGroup(
                list(self.discriminators.parameters()),
                lr=m.disc_lr,
                betas=m.disc_betas,
                ema=False,
                grad_clip=m.disc_grad_clip,
            ),
        }

    def training_phases(self, step: int) -> tuple[str, ...]:
        """Stage 1: the autoencoder alone before ``disc_start``, then the discriminators too."""
        if self.model_cfg.stage == "diffusion":
            return ("model",)
        self._gan_on = step >= self.model_cfg.disc_start
        return ("autoencoder", "discriminator") if self._gan_on else ("autoencoder",)

    def phase_loss(self, phase: str, video: Tensor, **extra: Any) -> dict[str, Tensor]:
        if phase == "discriminator":
            self._check_clips(video)
            with torch.no_grad():
                recon = self.autoencoder(video)[0]
            return discriminator_loss(
                video,
                recon,
                draw_frames(video),
                self.discriminators,
                step=0,
                disc_start=0,
                weights=self.loss_weights,
            )
        return self.loss(video, **extra)

    def reconstruct(self, video: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` through the autoencoder clip by clip (T a multiple of ``clip``)."""
        return self.autoencoder.reconstruct(video)

    def _perceptual(self, device: torch.device) -> nn.Module | None:
        if not self._lpips:
            return None
        net = self._lpips[0]
        if net.shift.device != device:
            self._lpips[0] = net = net.to(device)
        return net

    # ------------------------------------------------------------------ stage 2

    def encode(self, clips: Tensor) -> Tensor:
        """Clips ``(B, clip, C, H, W)`` -> packed planes ``(B, c, L)``."""
        return pack_planes(self.autoencoder.encode(clips))

    def decode(self, z: Tensor) -> Tensor:
        """Packed planes ``(B, c, L)`` -> clips ``(B, clip, C, H, W)`` in (-1, 1)."""
        return self.autoencoder.decode(unpack_planes(z, self.plane_shape))

    def encode_items(self, video: Tensor) -> Tensor:
        """Training items ``(B, 2 clip, C, H, W)`` -> the planes of both clips ``(B, 2, c, L)``
        (what a latent cache holds)."""
        clip = self.model_cfg.clip
        z = self.encode(torch.cat(video.split(clip, dim=1)))
        return torch.stack(z.chunk(2), dim=1)

    def _pairs(self, video: Tensor | None, latents: Tensor | None) -> tuple[Tensor, Tensor]:
        """The joint objective's ``(condition, target)`` planes, each ``(B, c, L)``: with
        probability ``cond_prob`` the first clip conditions the second, otherwise the target is
        a random window and the condition zeros."""
        clip = self.model_cfg.clip
        source = video if video is not None else latents
        assert source is not None
        b, dev = source.shape[0], source.device
        # drawn on the host: which rows need their first clip encoded is then known without
        # a device sync
        cond_host = self.masks(b, 2 * clip)[:, 0]
        cond = cond_host.to(dev)
        rows = torch.arange(b, device=dev)
        if latents is not None:
            # cached items hold two clips: the unconditional target is one of them
            pick = torch.randint(0, 2, (b,)).to(dev)
            target = latents[rows, torch.where(cond, 1, pick)]
            return latents[:, 0] * cond[:, None, None].to(latents.dtype), target
        offset = torch.randint(0, clip + 1, (b,)).to(dev)
        start = torch.where(cond, clip, offset)
        window = video[rows[:, None], start[:, None] + torch.arange(clip, device=dev)]
        # only the conditioned rows' first clips are encoded (a zero condition needs none)
        picked = cond_host.nonzero().flatten().to(dev)
        with torch.no_grad():
            z = self.encode(torch.cat([video[picked, :clip], window]))
        first, target = z[: picked.numel()], z[picked.numel() :]
        return torch.zeros_like(target).index_copy(0, picked, first), target

    def loss(
        self,
        video: Tensor | None,
        latents: Tensor | None = None,
        labels: Tensor | None = None,  # noqa: ARG002 - labelled data trains PVDM unconditionally
    ) -> dict[str, Tensor]:
        """Stage 1: the autoencoder's loss on clips ``(B, clip, C, H, W)``. Stage 2: the
        denoising loss of the joint objective on items of two clips ``(B, 2 clip, C, H, W)``
        or their cached planes ``latents`` ``(B, 2, c, L)``. Class ``labels`` are ignored."""
        m = self.model_cfg
        if m.stage == "autoencoder":
            self._check_clips(video)
            recon = self.autoencoder(video)[0]
            out = autoencoder_loss(
                video,
                recon,
                draw_frames(video),
                step=0,
                disc_start=0,  # the phase schedule switches the GAN on (training_phases)
                discriminators=self.discriminators if self._gan_on else None,
                lpips=self._perceptual(video.device),
                weights=self.loss_weights,
            )
            return {k: v if k == "loss" else v.detach() for k, v in out.items()}
        if video is None and latents is None:
            raise ValueError("PVDM stage 2 needs training clips or cached latents")
        if video is not None:
            self._check_clips(video)
        cond, target = self._pairs(video, latents)
        out = self.diffusion.denoising_loss(lambda x, t: self.unet(x, t, cond), target)
        return {"loss": out["loss"]}

    # ------------------------------------------------------------------ sampling

    def supported_known(self, known: Tensor) -> str | None:
        m = self.model_cfg
        if m.stage == "autoencoder":
            return (
                "this is stage 1 of PVDM (the autoencoder): it reconstructs, it does not "
                "generate; train stage 2 (model.stage=diffusion, model.autoencoder.path=<this "
                "export>)"
            )
        clip = m.clip
        if known.shape[-1] == clip:
            if bool(known.any()):
                return (
                    f"PVDM conditions on a whole previous clip: give {self.window} frames with "
                    f"the first {clip} known to continue a clip; a clip of {clip} frames is "
                    "generated with nothing known"
                )
            return None
        if known.shape[-1] != self.window:
            return (
                f"PVDM generates one clip of {clip} frames or windows of exactly 2 x {clip} = "
                f"{self.window} frames"
            )
        first, second = known[:, :clip], known[:, clip:]
        whole = (first.all(dim=1) | ~first.any(dim=1)) & ~second.any(dim=1)
        if not bool(whole.all()):
            return (
                f"PVDM conditions on whole clips: the first {clip} frames known (continue a "
                f"video) or none (a new clip); got known frames "
                f"{known[~whole][0].nonzero().flatten().tolist()}"
            )
        return None

    def takes_whole(self, known: Tensor) -> bool:
        """One new clip (``clip`` frames, nothing known) is sampled directly."""
        return (
            self.model_cfg.stage == "diffusion"
            and known.shape[-1] == self.model_cfg.clip
            and not bool(known.any())
        )

    def check_video(self, video: Tensor) -> None:
        size = self.cfg.data.size
        if tuple(video.shape[-2:]) != (size, size):
            raise ValueError(f"PVDM expects {size}x{size} frames, got {tuple(video.shape)}")

    def _sample(self, cond: Tensor, opts: SampleOptions) -> Tensor:
        """Planes ``(B, c, L)`` of the clip that follows ``cond`` (zeros: a first clip)."""
        return self.diffusion.sample_loop(
            lambda x, t: self.unet(x, t, cond),
            cond,
            sampler=opts.sampler,
            steps=opts.steps,
            generator=opts.generator,
            eta=self.model_cfg.eta,
        )

    def _generate(self, video: Tensor, known: Tensor, opts: SampleOptions) -> Tensor:
        """Encode the known first clips, sample the first clip's planes where it is unknown and
        then the second clip's given the first's, decode, keep the known frames exactly."""
        clip = self.model_cfg.clip
        if video.shape[1] == clip:  # one new clip
            z = self._sample(video.new_zeros(video.shape[0], *self.latent_shape), opts)
            return self.decode(z).to(video.dtype)
        given = known[:, 0]
        first = self.encode(video[:, :clip])
        first_frames = video[:, :clip]
        new = (~given).nonzero().flatten()
        if new.numel():
            z_new = self._sample(torch.zeros_like(first[new]), opts)
            first = first.index_copy(0, new, z_new)
            first_frames = first_frames.index_copy(0, new, self.decode(z_new).to(video.dtype))
        second = self.decode(self._sample(first, opts)).to(video.dtype)
        out = torch.cat([first_frames, second], dim=1)
        return torch.where(known[:, :, None, None, None], video, out)

    def default_known(self, batch: int = 1) -> Tensor:
        """Stage 2's main task: continue the first clip."""
        from videogen.tasks import predict

        return predict(self.window, self.model_cfg.clip, batch).to(self.device)

    @torch.no_grad()
    def preview(
        self, video: Tensor, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """Stage 1: clips and their reconstructions; stage 2: continued and new clips."""
        if self.model_cfg.stage == "autoencoder":
            return [video, self.reconstruct(video)], None
        known = self.default_known(video.shape[0])
        continued = self.generate(video, known, generator=generator)
        fresh = self.generate(video, torch.zeros_like(known), generator=generator)
        return [video, continued, fresh], known[0]
