"""Quiet Ctrl-C for the command-line entry points: status 130, no traceback."""

from __future__ import annotations

import os
import signal
from typing import NoReturn

__all__ = ["INTERRUPTED", "quiet_interrupts"]

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
