"""Command-line tools: ``mmaplog-read`` (:mod:`mmaplog.cli.read`).

This package imports nothing heavy: the ``mmaplog-read`` script enters at
:func:`read_main`, which makes Ctrl-C quiet before anything else is loaded.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from ._interrupts import INTERRUPTED, quiet_interrupts

__all__ = ["INTERRUPTED", "quiet_interrupts", "read_main"]


def read_main() -> NoReturn:
    """The ``mmaplog-read`` script: quiet Ctrl-C first, then import and run :func:`mmaplog.cli.read.main`."""
    quiet_interrupts()
    from .read import main

    sys.exit(main())
