"""The files of a run folder that belong to one run, and setting an earlier run's aside.

A run folder holds one run: its config, checkpoints, export, log, snapshots, previews and
TensorBoard events. ``train --fresh`` in a folder that holds an earlier run moves all of these
into ``<run>/previous-<UTC time>/`` before it starts, so the new run never deletes, mixes in
or resumes from the earlier run's checkpoints, and the earlier run stays whole.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from videogen.atomic import fsync_dir, write_error

RUN_FILES = ("ckpt", "export", "snapshots", "samples", "tb", "metrics.jsonl", "config.yaml")
PREVIOUS_PREFIX = "previous-"


def set_aside_previous_run(run_dir: Path) -> Path | None:
    """Move the earlier run's files of ``run_dir`` into a new ``previous-<YYYYmmdd-HHMMSS>``
    folder inside it and return that folder; None when ``run_dir`` holds no run files."""
    present = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    if not present:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = run_dir / f"{PREVIOUS_PREFIX}{stamp}"
    n = 1
    while target.exists():
        target = run_dir / f"{PREVIOUS_PREFIX}{stamp}-{n}"
        n += 1
    try:
        target.mkdir()
        for path in present:  # renames within one folder: nothing is copied or lost
            os.replace(path, target / path.name)
        fsync_dir(run_dir)
    except OSError as err:
        raise write_error(target, err) from err
    return target
