"""A finished process of a multi-process launch ends, even when torch's teardown does not.

Now and then one CPU (gloo) worker of a finished two-process run never ends: its run folder is
complete, but destroying the process group or the interpreter's shutdown blocks (seen in CI and
in ``benchmarks/ddp.py launch``; upstream: pytorch/pytorch#75097). The launcher then waits
forever for that worker. ``end_within`` bounds the wait for teardown that still has work to do
(destroying the process group); ``end_now`` skips the interpreter's own shutdown once nothing is
left to do.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from typing import NoReturn


def end_within(seconds: float, who: str) -> threading.Thread:
    """Arm a daemon timer: if this process is still alive ``seconds`` from now, every thread's
    Python stack goes to stderr with a line naming ``who``, and the process ends with status 0
    (``os._exit``: no further teardown). Call it only once the process's work is written; a
    process that ends in time never hears of it. Returns the timer's thread."""

    def end() -> None:
        sys.stderr.write(
            f"videogen: {who}: the work is written, but the process had not ended {seconds:g} s "
            "later (torch's process-group teardown blocked); ending it. Its threads:\n"
        )
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()
    return timer


def end_now() -> NoReturn:
    """End this process with status 0 at once, after flushing stdout and stderr: the interpreter's
    shutdown (atexit handlers, module and C++ destructors, where a gloo worker's teardown has been
    seen to block) is skipped. Call it only once every file the process writes is closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
