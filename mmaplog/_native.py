"""Loads the optional C accelerators, or reports that the pure-Python paths are in use.

``MMAPLOG_PURE_PYTHON=1`` in the environment turns them off (the tests run
both ways); ``MMAPLOG_REQUIRE_NATIVE=1`` makes a missing accelerator an
import error instead of a silent fallback (CI sets it, so a broken build
cannot hide behind the fallback).

The SIGBUS guard (``mmaplog._sigbus``, see :func:`guard`) is not an
accelerator: both write paths use it whenever it is built.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

__all__ = ["guard", "load", "pure_python"]


def pure_python() -> bool:
    """True when the environment asks for the pure-Python paths only."""
    return os.environ.get("MMAPLOG_PURE_PYTHON", "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The accelerator ``mmaplog.<name>``, or None where it is not built, turned off or unsafe here.

    Free-threaded builds get None: the accelerators rely on the GIL to make a
    record's claim and copy one step.
    """
    if pure_python():
        return None
    gil = getattr(sys, "_is_gil_enabled", None)
    if gil is not None and not gil():
        return None
    try:
        return importlib.import_module(f"mmaplog.{name}")
    except ImportError:
        if os.environ.get("MMAPLOG_REQUIRE_NATIVE", "") not in ("", "0"):
            raise
        return None


def guard() -> ModuleType | None:
    """The SIGBUS guard ``mmaplog._sigbus``, or None where it is not built (or not Linux-like).

    Loaded on both write paths and on free-threaded builds: ``MMAPLOG_PURE_PYTHON``
    turns off the accelerators, not the guard, which has no pure-Python twin
    (a signal handler written in Python cannot be made safe).
    ``MMAPLOG_REQUIRE_NATIVE=1`` makes a missing guard an import error too.
    """
    try:
        return importlib.import_module("mmaplog._sigbus")
    except ImportError:
        if os.environ.get("MMAPLOG_REQUIRE_NATIVE", "") not in ("", "0"):
            raise
        return None
