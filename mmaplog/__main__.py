"""``python -m mmaplog``: the version, the Python it runs on, and whether the C accelerators are in use.

Exit status 0 when both accelerators are in use, 1 when some path runs in
pure Python (so a script or CI can check a build: ``python -m mmaplog``).
"""

from __future__ import annotations

import os
import platform
import sys

from . import __version__
from ._native import accelerators, summary

__all__ = ["main"]


def main() -> int:
    """Print the summary; 0 when every accelerator is in use, else 1."""
    print(f"mmaplog {__version__} at {os.path.dirname(os.path.abspath(__file__))}")
    print(f"Python {platform.python_version()} ({sys.executable})")
    print(summary())
    if not all(a.active for a in accelerators()):
        print("Why and how: README.md, section 'Is the fast path in use?'")
        return 1
    return 0


if __name__ == "__main__":
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `python -m mmaplog | head -1`: the reader left; no traceback, as any filter
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
