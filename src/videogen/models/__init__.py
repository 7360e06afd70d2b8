"""Backbones, one per file: each model file reads top to bottom on its own."""
