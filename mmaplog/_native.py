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
from typing import NamedTuple

__all__ = ["ROLES", "Accelerator", "accelerators", "check_required", "guard", "load", "pure_python", "summary"]


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
    except ImportError as exc:
        if os.environ.get("MMAPLOG_REQUIRE_NATIVE", "") not in ("", "0") and not _refused_here(exc):
            raise
        return None


def _refused_here(exc: ImportError) -> bool:
    """True when the module is built but this interpreter refuses it: an isolated subinterpreter (own GIL) loads
    only modules that declare per-interpreter support, which the async and stdlib accelerators do not (their
    Python twins serve there)."""
    return "does not support loading in subinterpreters" in str(exc)


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


#: The accelerators this package ships, and what each one speeds up.
ROLES = {
    "_cwrite": "write path: Logger and RingWriter",
    "_cread": "read path: read_array and mmaplog-read",
    "_cstdlib": "standard-library loggers: mmaplog.stdlib.accelerate()",
    "_casync": "async handler: native queue and GIL-free worker in front of one RingHandler",
    "_sigbus": "truncation guard: SIGBUS handler in C (both write paths)",
}
#: Modules that MMAPLOG_PURE_PYTHON and free-threaded builds leave on (no pure-Python twin can be safe).
_ALWAYS = {"_sigbus"}


class Accelerator(NamedTuple):
    """Whether one C accelerator is in use here, and why (see :func:`accelerators`)."""

    name: str  #: the extension module, e.g. ``"_cwrite"``
    role: str  #: what it speeds up
    active: bool  #: True when mmaplog uses it in this process
    reason: str  #: why: ``built``, ``not built (...)``, ``disabled by MMAPLOG_PURE_PYTHON=1``, ...


def _source_tree_hint() -> str:
    """Where the package was imported from a source checkout without its builds (``python -m mmaplog`` run in the
    clone after ``pip install .``, which built them into site-packages instead): say so, since the fix differs."""
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(os.path.join(os.path.dirname(here), "pyproject.toml")):
        return ""
    return (f"; this is the source tree at {here}: if mmaplog is also installed (pip install .), run from another "
            f"directory, else build it in place (pip install -e .)")


def accelerators() -> tuple[Accelerator, ...]:
    """Which C accelerators are in use in this interpreter, and why not where they are not.

    Cheap and without side effects beyond importing the extension modules
    themselves (no numpy): ``mmaplog-read --version`` and ``python -m mmaplog``
    print it.  Without a build mmaplog still works, on its pure-Python paths,
    which write and read the same files more slowly; no warning is printed at
    import for that (set ``MMAPLOG_REQUIRE_NATIVE=1`` to make it an error).
    """
    status = []
    for name, role in ROLES.items():
        if name in _ALWAYS:
            pass
        elif pure_python():
            value = os.environ.get("MMAPLOG_PURE_PYTHON", "")
            status.append(Accelerator(name, role, False, f"disabled by MMAPLOG_PURE_PYTHON={value}"))
            continue
        gil = getattr(sys, "_is_gil_enabled", None)
        if name not in _ALWAYS and gil is not None and not gil():
            status.append(Accelerator(name, role, False, "off on a free-threaded Python (the accelerators rely on the GIL)"))
            continue
        try:
            module = importlib.import_module(f"mmaplog.{name}")
        except ImportError as exc:
            why = "off in this subinterpreter (main interpreter only)" if _refused_here(exc) else f"not built ({exc})"
            status.append(Accelerator(name, role, False, why + _source_tree_hint()))
            continue
        where = os.path.basename(getattr(module, "__file__", None) or name)
        status.append(Accelerator(name, role, True, f"built ({where})"))
    return tuple(status)


def summary() -> str:
    """:func:`accelerators` as a verdict line on the accelerators, then one line per module (the guard last)."""
    status = accelerators()
    lines = [f"  {a.name:<8} {'on ' if a.active else 'off'}  {a.role}: {a.reason}" for a in status]
    fast = [a for a in status if a.name not in _ALWAYS]
    if all(a.active for a in fast):
        verdict = "C accelerators: on"
    elif any(a.active for a in fast):
        verdict = "C accelerators: partly on (the others run in pure Python, more slowly)"
    else:
        verdict = "C accelerators: off (pure Python: the same files, written and read more slowly)"
    return "\n".join([verdict, *lines])


def check_required() -> None:
    """Under ``MMAPLOG_REQUIRE_NATIVE=1``, raise ImportError now if an accelerator is not built.

    The package imports its modules on first use; this keeps ``import mmaplog``
    itself failing on a broken build where the environment asks for that.
    """
    if os.environ.get("MMAPLOG_REQUIRE_NATIVE", "") in ("", "0"):
        return
    missing = [f"mmaplog.{a.name}: {a.reason}" for a in accelerators() if a.reason.startswith("not built")]
    if missing:
        raise ImportError(f"MMAPLOG_REQUIRE_NATIVE is set but {'; '.join(missing)}")
