"""Writes that survive a kill or a full disk: every file is written whole, fsynced, and renamed
into place; a folder (a checkpoint) is staged in a hidden temporary folder first.

A failed write (no space, quota, read-only disk, I/O error) becomes one ``WriteError`` that
names the path and says what to do; whatever was in place before stays as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"  # staged folders: `.tmp-step-0000100` beside `step-0000100`


class WriteError(OSError):
    """A file or folder could not be written; the message names it and the fix."""


def write_error(path: Path, err: OSError) -> WriteError:
    """``err`` from writing ``path`` as a ``WriteError`` whose message says what to do."""
    if isinstance(err, WriteError):
        return err
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device" if err.errno == errno.ENOSPC else "disk quota full"
        advice = "free some space there (or set train.out to a disk with room) and run again"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason = "the folder is not writable"
        advice = "make it writable (or set train.out elsewhere) and run again"
    else:
        reason = err.strerror or str(err)
        advice = "check the disk and run again"
    return WriteError(err.errno, f"could not write {path}: {reason} ({err}); {advice}")


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it: the one writer of checkpoint and export files."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise write_error(path, err) from err


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (new names, renames) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Write ``path`` atomically: a hidden file beside it, fsynced, renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_bytes(tmp, data)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(path, err) from err


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and a newline to the log ``path``."""
    try:
        with path.open("a") as f:
            f.write(line + "\n")
    except OSError as err:
        raise write_error(path, err) from err


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``final``; when the block ends, fsync it and rename
    it to ``final`` (a folder that must not exist yet). On any error the staged folder is
    removed and ``final`` is untouched; an ``OSError`` comes out as a ``WriteError``."""
    tmp = final.with_name(TMP_PREFIX + final.name)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        fsync_dir(tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except OSError as err:
        raise write_error(final, err) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_staged(folder: Path) -> list[Path]:
    """Remove the staged folders a killed write left in ``folder``; return what was removed."""
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.glob(TMP_PREFIX + "*") if p.is_dir())
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale
