"""The catalogue of methods: ``method: NAME`` in a config names ``videogen/methods/NAME.py``.

A leaf of the package: it imports the config module only, and a method module is imported by
name when it is asked for. So ``config`` knows nothing of methods, ``checkpoint`` and the
trainer find methods here, and there is no import cycle. Adding a method is adding its file:
the module ``videogen.methods.NAME`` defines one ``VideoMethod`` subclass whose ``name`` is
``NAME`` (files starting with ``_`` and ``base.py`` are not methods).

``build_method(cfg)`` is the one way to make a method from a config: it resolves the
sub-models the config gives by path (``VideoMethod.resolve_submodels``) into the method's own
config and weights, so ``method.cfg`` is what the run folder and the export record.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.config import Config, ConfigError, from_dict

if TYPE_CHECKING:
    from videogen.methods.base import VideoMethod

_METHODS_DIR = Path(__file__).resolve().parent / "methods"
_NOT_METHODS = {"base"}


def method_names() -> tuple[str, ...]:
    """Names of the methods of this installation, sorted."""
    return tuple(
        sorted(
            p.stem
            for p in _METHODS_DIR.glob("*.py")
            if not p.stem.startswith("_") and p.stem not in _NOT_METHODS
        )
    )


def method_class(name: str) -> type[VideoMethod]:
    """The ``VideoMethod`` subclass of ``videogen.methods.<name>``."""
    names = method_names()
    if name not in names:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(names)}")
    from videogen.methods.base import VideoMethod

    module = importlib.import_module(f"videogen.methods.{name}")
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, VideoMethod) and obj.name == name:
            return obj
    raise ConfigError(f"videogen.methods.{name} defines no VideoMethod named {name!r}")


def model_config(cfg: Config) -> Any:
    """The method's typed ``model`` section, checked (unknown keys and wrong types raise)."""
    return from_dict(method_class(cfg.method).ModelConfig, cfg.model, "model")


def build_method(cfg: Config) -> VideoMethod:
    """The method of ``cfg``, with every sub-model given by path loaded into it.

    ``method.cfg`` is the resolved config (paths replaced by the sub-models' recorded settings
    and provenance): write that one with the run, and an export of the method loads with no
    other file.
    """
    cls = method_class(cfg.method)
    model_config(cfg)  # one clear error naming the key before anything is loaded
    resolved, weights = cls.resolve_submodels(cfg)
    method = cls(resolved)
    if weights:
        missing, unexpected = method.load_state_dict(weights, strict=False)
        if unexpected:
            raise ConfigError(
                f"{cfg.method}: sub-model weights {unexpected[:3]} have no place in the model"
            )
    return method
