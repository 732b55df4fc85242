"""The name of this process as a record's header shows it: the script's name, else the kernel's ``comm``."""

from __future__ import annotations

import os
import sys

__all__ = ["process_name"]


def process_name() -> str:
    """``argv[0]``'s base name when the kernel calls the process ``python...``, else ``/proc/self/comm``."""
    try:
        with open("/proc/self/comm", "rb") as f:
            comm = f.read().strip().decode("utf-8", "replace")
    except OSError:
        comm = ""
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return argv0 if argv0 and comm.startswith("python") else (comm or argv0 or "python")
