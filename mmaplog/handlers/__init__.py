"""Handlers: where records go.  Each one takes a level and (text handlers) a format string.

:class:`RingHandler` writes the memory-mapped ring, :class:`ConsoleHandler`
formatted lines on stderr, :class:`FileHandler` a plain-text file; subclass
:class:`Handler` and write :meth:`Handler.emit` for anything else.
"""

from __future__ import annotations

from ._base import Handler, report_once
from ._format import DEFAULT_FORMAT, FORMAT_FIELDS, LineFormat
from .async_ import AsyncHandler, Overflow, OverflowPolicy
from .console import ConsoleHandler
from .file import FileHandler
from .ring import RingHandler

__all__ = [
    "DEFAULT_FORMAT",
    "FORMAT_FIELDS",
    "AsyncHandler",
    "ConsoleHandler",
    "FileHandler",
    "Handler",
    "LineFormat",
    "Overflow",
    "OverflowPolicy",
    "RingHandler",
    "report_once",
]
