"""Tiny configs of every method, shared by the contract suite and the pinned-loss tests.

A new method gets the whole contract suite (``test_method_contract.py``) by adding its entry
here; ``test_every_registered_method_has_a_tiny_config`` fails until it does.
"""

from __future__ import annotations

from typing import Any

from videogen.config import Config, from_dict

TINY: dict[str, dict[str, Any]] = {
    "mcvd": {
        "method": "mcvd",
        "model": {
            "past": 2,
            "current": 2,
            "future": 0,
            "ngf": 8,
            "ch_mult": [1, 2],
            "num_res_blocks": 1,
            "attn_resolutions": [4],
            "head_channels": 8,
            "dropout": 0.0,
        },
        "data": {"frames": 4, "size": 8, "channels": 1},
        "sample": {"sampler": "ddim", "steps": 3},
    },
    "ramvid": {
        "method": "ramvid",
        "model": {
            "channels": 16,
            "channel_mult": [1, 2],
            "num_res_blocks": 1,
            "attention_resolutions": [4],
            "heads": 2,
            "max_known": 3,
        },
        "data": {"frames": 4, "size": 8, "channels": 1},
        "sample": {"sampler": "ddim", "steps": 3},
    },
    "videofusion": {
        "method": "videofusion",
        "model": {
            "base": {
                "block_out_channels": [8, 16],
                "layers_per_block": 1,
                "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
                "norm_num_groups": 8,
                "attention_head_dim": 8,
            },
            "channels": 8,
            "channel_mult": [1, 2],
            "num_res_blocks": 1,
            "attention_resolutions": [4],
            "heads": 2,
            "dropout": 0.0,
            "cond_frames": True,
        },
        "data": {"frames": 4, "size": 8, "channels": 1},
        "sample": {"sampler": "ddim", "steps": 3},
    },
    "videoflow": {
        "method": "videoflow",
        "model": {
            "levels": 2,
            "steps_per_level": 1,
            "coupling_width": 8,
            "prior_depth": 1,
            "prior_width": 8,
            "cond_frames": 1,
            "context_frames": 1,
        },
        "data": {"frames": 4, "size": 8, "channels": 1},
    },
    "pvdm": {
        "method": "pvdm",
        "model": {
            "stage": "diffusion",
            "clip": 4,
            "patch": 2,
            "width": 16,
            "depth": 1,
            "heads": 2,
            "head_dim": 8,
            "ff_mult": 2,
            "latent_channels": 2,
            "proj_depth": 1,
            "proj_heads": 2,
            "proj_head_dim": 8,
            "proj_mlp": 16,
            "model_channels": 8,
            "channel_mult": [1, 2],
            "num_res_blocks": 1,
            "attention_resolutions": [2],
            "unet_heads": 2,
        },
        "data": {"frames": 8, "size": 8, "channels": 1},
        "sample": {"sampler": "ddim", "steps": 3},
    },
    "twostage": {
        "method": "twostage",
        "model": {"stage": "diffusion", "hidden": 8, "width": 8, "depth": 1},
        "data": {"frames": 4, "size": 8, "channels": 1},
        "sample": {"sampler": "ddim", "steps": 3},
    },
}


def tiny_config(name: str, **sections: dict[str, Any]) -> Config:
    """The tiny config of method ``name``, with sections updated from ``sections``."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY[name].items()}
    for key, update in sections.items():
        data[key] = {**data.get(key, {}), **update}
    return from_dict(Config, data)
