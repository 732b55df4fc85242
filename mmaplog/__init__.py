"""mmaplog: a memory-mapped, crash-safe, high-throughput file logger with a numpy reader.

A :class:`RingWriter` appends fixed-layout records into a memory-mapped ring
file, so every record whose write call returned survives the process dying;
:func:`read` and :func:`read_array` decode it, and ``mmaplog-read`` shows it.
"""

from __future__ import annotations

from ._errors import ConfigError, FormatError, MmaplogError, WriterBusyError
from ._record import LogRecord
from .config import configure, register_handler_type
from .follow import Followed, Follower, FollowEvent, FollowStats, follow
from .handlers import AsyncHandler, ConsoleHandler, FileHandler, Handler, Overflow, RingHandler
from .layout import FORMAT_VERSION
from .logger import CRITICAL, DEBUG, ERROR, INFO, NOTSET, TRACE, WARNING, BoundLogger, Logger, get_logger
from .reader import ReadStats, Record, level_name, level_number, read, read_array, scan
from .stdlib import LoggingHandler
from .writer import RingWriter

__all__ = [
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "FORMAT_VERSION",
    "INFO",
    "NOTSET",
    "TRACE",
    "WARNING",
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
    "LoggingHandler",
    "MmaplogError",
    "Overflow",
    "ReadStats",
    "Record",
    "RingHandler",
    "RingWriter",
    "WriterBusyError",
    "configure",
    "follow",
    "get_logger",
    "level_name",
    "level_number",
    "read",
    "read_array",
    "register_handler_type",
    "scan",
]

__version__ = "0.1.0"
