"""What goes wrong with data, and the record of videos skipped on the way."""

from __future__ import annotations

import warnings
from pathlib import Path


class DatasetError(ValueError):
    """A dataset root, file or option is wrong; the message names it and the expected layout."""


class SkippedVideoWarning(UserWarning):
    """An unreadable, empty, truncated or too-short video was left out; the epoch goes on."""


class SkipLog:
    """Videos left out of a dataset, with the reason, each warned about once.

    ``count`` is what a trainer logs. Each DataLoader worker holds its own copy, so skips met
    while reading inside workers are warned there and counted in that worker; skips found
    while indexing (in the main process, at construction) are counted here.
    """

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def add(self, path: str | Path, reason: str) -> None:
        key = str(path)
        if key not in self.reasons:
            self.reasons[key] = reason
            warnings.warn(f"skipping {key}: {reason}", SkippedVideoWarning, stacklevel=3)

    def __contains__(self, path: object) -> bool:
        return str(path) in self.reasons

    @property
    def count(self) -> int:
        return len(self.reasons)

    @property
    def paths(self) -> list[str]:
        return list(self.reasons)
