"""Methods, one module per paper. ``method: NAME`` in a config names ``videogen.methods.NAME``.

The catalogue lives in ``videogen.registry`` (``build_method``, ``method_class``,
``model_config``, ``method_names``), re-exported here; the interface every method answers is
``videogen.methods.base.VideoMethod``.
"""

from __future__ import annotations

from videogen.methods.base import VideoMethod
from videogen.registry import build_method, method_class, method_names, model_config

__all__ = ["VideoMethod", "build_method", "method_class", "method_names", "model_config"]
