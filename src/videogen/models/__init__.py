"""Backbones, one per file; methods build them from their ``ModelConfig``."""
