"""Shared network blocks: time embeddings, residual blocks (2D/3D), SDPA attention, resampling."""

from videogen.nn.attention import SpatialAttention, TemporalAttention, TokenAttention
from videogen.nn.embeddings import TimestepEmbedding, timestep_embedding
from videogen.nn.resblocks import ResBlock, group_norm
from videogen.nn.sampling import Downsample, Upsample

__all__ = [
    "Downsample",
    "ResBlock",
    "SpatialAttention",
    "TemporalAttention",
    "TimestepEmbedding",
    "TokenAttention",
    "Upsample",
    "group_norm",
    "timestep_embedding",
]
