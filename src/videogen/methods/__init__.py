"""Methods, one module per paper. ``method: NAME`` in a config names ``videogen.methods.NAME``.

``build_method(cfg)`` builds the method of a config; ``model_config(cfg)`` checks its ``model``
section; ``save_pretrained`` / ``load_pretrained`` write and read an export folder
(``config.yaml`` + ``model.safetensors``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from videogen.config import Config, ConfigError, from_dict
from videogen.methods.base import VideoMethod

METHOD_NAMES = ("mcvd", "ramvid", "videofusion", "pvdm", "videoflow")


def method_class(name: str) -> type[VideoMethod]:
    """The ``VideoMethod`` subclass of ``videogen.methods.<name>``."""
    if name not in METHOD_NAMES:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
    try:
        module = importlib.import_module(f"videogen.methods.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"videogen.methods.{name}":
            raise ConfigError(f"method {name!r} is not available in this version") from err
        raise
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, VideoMethod) and obj.name == name:
            return obj
    raise ConfigError(f"videogen.methods.{name} defines no VideoMethod named {name!r}")


def model_config(cfg: Config) -> Any:
    """The method's typed model config, checked (unknown keys and wrong types raise)."""
    cls = method_class(cfg.method)
    return from_dict(cls.ModelConfig, cfg.model, "model")


def build_method(cfg: Config) -> VideoMethod:
    return method_class(cfg.method)(cfg)


__all__ = ["METHOD_NAMES", "VideoMethod", "build_method", "method_class", "model_config"]
