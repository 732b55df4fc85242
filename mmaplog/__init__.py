"""mmaplog: a memory-mapped, crash-safe, high-throughput file logger with a numpy reader.

A :class:`RingWriter` appends fixed-layout records into a memory-mapped ring
file, so every record whose write call returned survives the process dying;
:func:`read` and :func:`read_array` decode it, and ``mmaplog-read`` shows it.
"""

from __future__ import annotations

from ._errors import ConfigError, FormatError, MmaplogError, WriterBusyError
from .follow import FollowEvent, Follower, FollowStats, follow
from .layout import FORMAT_VERSION
from .reader import ReadStats, Record, level_name, level_number, read, read_array, scan
from .writer import RingWriter

__all__ = [
    "FORMAT_VERSION",
    "ConfigError",
    "FollowEvent",
    "FollowStats",
    "Follower",
    "FormatError",
    "MmaplogError",
    "ReadStats",
    "Record",
    "RingWriter",
    "WriterBusyError",
    "follow",
    "level_name",
    "level_number",
    "read",
    "read_array",
    "scan",
]

__version__ = "0.1.0"
