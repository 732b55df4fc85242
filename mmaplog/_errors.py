"""The exception family of mmaplog: one base, one subclass per kind of failure.

Each says it lives in ``mmaplog`` (``__module__``), where it is imported from,
so tracebacks and reprs show ``mmaplog.ConfigError``, not this private module.
"""

from __future__ import annotations

__all__ = ["ConfigError", "FormatError", "MmaplogError", "WriterBusyError"]


class MmaplogError(Exception):
    """Base class of every error mmaplog raises on purpose."""

    __module__ = "mmaplog"


class FormatError(MmaplogError, ValueError):
    """A file is not a readable mmaplog file (bad magic, newer major version, corrupt header, ...).

    The reader raises this and nothing else for bad input: any other exception
    escaping from reading a file is a bug.
    """

    __module__ = "mmaplog"

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class WriterBusyError(MmaplogError):
    """The ring file is already open for writing by another writer (advisory lock held)."""

    __module__ = "mmaplog"


class ConfigError(MmaplogError, ValueError):
    """Configuration that cannot be applied; the message names the key and the value."""

    __module__ = "mmaplog"
