"""mmaplog: a memory-mapped, crash-safe, high-throughput file logger with a numpy reader.

A :class:`RingWriter` appends fixed-layout records into a memory-mapped ring
file, so every record whose write call returned survives the process dying;
:func:`read` and :func:`read_array` decode it, and ``mmaplog-read`` shows it.

The names below are imported on first use (PEP 562), so ``import mmaplog``
and commands such as ``mmaplog-read --version`` start without loading numpy
or the writer; ``from mmaplog import X`` works as usual.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, FormatError, MmaplogError, WriterBusyError

if TYPE_CHECKING:
    from ._levels import level_name, level_number
    from ._native import Accelerator, accelerators
    from ._record import LogRecord
    from .config import configure, get_logger, register_handler_type
    from .follow import Followed, Follower, FollowEvent, FollowStats, follow
    from .frames import read_arrow, read_dataframe
    from .handlers import AsyncHandler, ConsoleHandler, FileHandler, Handler, Overflow, RingHandler
    from .integrations.loguru import loguru_sink
    from .layout import FORMAT_VERSION
    from .logger import (
        CRITICAL,
        DEBUG,
        ERROR,
        INFO,
        NOTSET,
        TRACE,
        WARNING,
        BoundLogger,
        Logger,
        LoggerNameError,
    )
    from .reader import ReadStats, Record, read, read_array, scan
    from .stdlib import LoggingHandler
    from .writer import RingWriter

#: Where each public name lives: the module is imported when the name is first asked for.
_LAZY = {
    "Accelerator": "_native", "accelerators": "_native",
    "LogRecord": "_record",
    "configure": "config", "register_handler_type": "config",
    "Followed": "follow", "Follower": "follow", "FollowEvent": "follow", "FollowStats": "follow", "follow": "follow",
    "read_arrow": "frames", "read_dataframe": "frames",
    "AsyncHandler": "handlers", "ConsoleHandler": "handlers", "FileHandler": "handlers", "Handler": "handlers",
    "Overflow": "handlers", "RingHandler": "handlers",
    "FORMAT_VERSION": "layout",
    "CRITICAL": "logger", "DEBUG": "logger", "ERROR": "logger", "INFO": "logger", "NOTSET": "logger",
    "TRACE": "logger", "WARNING": "logger", "BoundLogger": "logger", "Logger": "logger", "get_logger": "config",
    "LoggerNameError": "logger",
    "ReadStats": "reader", "Record": "reader", "level_name": "_levels", "level_number": "_levels", "read": "reader",
    "read_array": "reader", "scan": "reader",
    "LoggingHandler": "stdlib",
    "loguru_sink": "integrations.loguru",
    "RingWriter": "writer",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """Import the module of a public name (or a submodule) on first use and keep the name here (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        if not name.startswith("__"):
            # A submodule (mmaplog.reader, ...): an eager package used to make them all attributes.
            try:
                return importlib.import_module(f".{name}", __name__)
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """This package's module type: ``mmaplog.follow`` stays the function when its submodule is imported.

    Importing ``mmaplog.follow`` (the module) binds it on the package; a public
    name that is also the name of its own submodule keeps the public object.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name and value.__name__ == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if os.environ.get("MMAPLOG_REQUIRE_NATIVE", "") not in ("", "0"):
    from ._native import check_required

    check_required()  # a broken build fails at import, as when every module was imported here


__all__ = [
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "FORMAT_VERSION",
    "INFO",
    "NOTSET",
    "TRACE",
    "WARNING",
    "Accelerator",
    "AsyncHandler",
    "BoundLogger",
    "ConfigError",
    "ConsoleHandler",
    "FileHandler",
    "FollowEvent",
    "FollowStats",
    "Followed",
    "Follower",
    "FormatError",
    "Handler",
    "LogRecord",
    "Logger",
    "LoggerNameError",
    "LoggingHandler",
    "MmaplogError",
    "Overflow",
    "ReadStats",
    "Record",
    "RingHandler",
    "RingWriter",
    "WriterBusyError",
    "accelerators",
    "configure",
    "follow",
    "get_logger",
    "level_name",
    "level_number",
    "loguru_sink",
    "read",
    "read_array",
    "read_arrow",
    "read_dataframe",
    "register_handler_type",
    "scan",
]

__version__ = "0.1.0"
