"""Loads the optional C accelerators, or reports that the pure-Python paths are in use.

``MMAPLOG_PURE_PYTHON=1`` in the environment turns them off (the tests run
both ways); ``MMAPLOG_REQUIRE_NATIVE=1`` makes a missing accelerator an
import error instead of a silent fallback (CI sets it, so a broken build
cannot hide behind the fallback).
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

__all__ = ["load", "pure_python"]


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
