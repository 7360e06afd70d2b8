"""Ctrl-C and SIGTERM as a request to stop at the next step boundary.

The training process turns SIGINT/SIGTERM into a flag the loop reads once per step (a host
boolean, no device sync), so the signal never lands inside a half-done operation: a
DataLoader being shut down, a checkpoint being written. The loop then saves a checkpoint and
ends. A second signal stops at once (``KeyboardInterrupt``), without a checkpoint.

DataLoader workers ignore both signals: Ctrl-C and ``timeout``/``kill -- -PGID`` reach the
whole process group, and a worker that died of them would end the run with "DataLoader worker
exited unexpectedly". The main process shuts its workers down itself. The signals stay blocked
while workers are forked (``blocked``) and each worker unblocks them only after it ignores
them (``ignore_in_worker``), so one that arrives in between is dropped, not fatal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Context manager: while active, SIGINT/SIGTERM set ``signum`` instead of raising.

    Outside the main thread (where Python cannot take signals) it does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        # No printing here: the handler may run while the main thread is inside a write to
        # the same stream (tqdm's bar), and a reentrant write raises.
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back in this thread (and in processes forked meanwhile, which
    inherit the mask); what arrived is delivered when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_in_worker(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's signature
    """``worker_init_fn`` of the trainer's DataLoaders: ignore SIGINT/SIGTERM, then unblock
    them (setting SIG_IGN discards one that arrived since the fork)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
