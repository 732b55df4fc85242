"""Command-line tools: ``mmaplog-read`` (:mod:`mmaplog.cli.read`).

This package imports nothing heavy: the ``mmaplog-read`` script enters at
:func:`read_main`, which makes Ctrl-C quiet before anything else is loaded.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

__all__ = ["INTERRUPTED", "quiet_interrupts", "read_main"]

#: Exit status after Ctrl-C (128 + SIGINT), as shells report a process that SIGINT ended.
INTERRUPTED = 128 + signal.SIGINT


def _interrupted(signum: int, frame: object) -> NoReturn:
    # No traceback, no message, no flushing (a full pipe would block): the status says what happened.
    os._exit(INTERRUPTED)


def quiet_interrupts() -> None:
    """From now on SIGINT (Ctrl-C) ends the process at once with status 130 and no traceback.

    For command-line entry points only (a library must not take over SIGINT);
    ``--follow`` replaces it while following, to end with the records shown so far.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted)


def read_main() -> NoReturn:
    """The ``mmaplog-read`` script: quiet Ctrl-C first, then import and run :func:`mmaplog.cli.read.main`."""
    quiet_interrupts()
    from .read import main

    sys.exit(main())
