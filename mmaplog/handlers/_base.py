"""Handler: the output side of logging.  Subclasses write only :meth:`Handler.emit`."""

from __future__ import annotations

import functools
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from .. import _lifecycle
from .._levels import level_number
from .._record import LogRecord
from ._format import LineFormat

__all__ = ["Handler", "report_once"]

_reported: set[tuple[int, str]] = set()
_reported_lock = threading.RLock()  # re-entrant: report_once may run again in a signal handler
#: Called with a handler whenever its ``level`` is set (the logger module keeps its caches right).
level_listeners: list[Callable[[Handler], None]] = []


def _after_fork_in_child() -> None:
    global _reported_lock
    _reported_lock = threading.RLock()


_lifecycle.on_fork_child(_after_fork_in_child)


@functools.cache
def _default_format() -> LineFormat:
    return LineFormat()


def report_once(owner: object, key: str, message: str) -> None:
    """Print ``mmaplog: message`` on stderr the first time ``owner`` reports ``key``; never raises."""
    token = (id(owner), key)
    with _reported_lock:
        if token in _reported:
            return
        _reported.add(token)
    try:
        sys.stderr.write(f"mmaplog: {message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr itself may be gone at shutdown
        pass


class Handler(ABC):
    """Receives records from loggers and writes them somewhere.

    :meth:`handle` checks the level and calls :meth:`emit`; a failure inside
    ``emit`` never reaches the caller: it is counted in :attr:`errors` and
    reported once on stderr (:meth:`handle_error`).  ``format`` is a format
    string (see :mod:`mmaplog.handlers._format`) that :meth:`format` applies;
    a malformed one raises ValueError here, not on the first record.
    """

    def __init__(self, level: int | str = 0, format: str | None = None) -> None:
        #: The lowest level this handler writes; a name ("INFO") is turned into its number.
        self.level: int = level  # type: ignore[assignment]  # normalised by __setattr__
        #: The compiled ``format`` (None when none was given: :meth:`format` uses the default).
        self.line_format = LineFormat(format) if format is not None else None
        #: Records this handler failed to emit.
        self.errors = 0

    def format(self, record: LogRecord) -> str:
        """``record`` as text in this handler's format (the default format when it has none)."""
        return (self.line_format or _default_format()).format(record)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "level":
            value = level_number(value)
            object.__setattr__(self, name, value)
            for listener in level_listeners:  # loggers refresh their cached level gates
                listener(self)
            return
        object.__setattr__(self, name, value)

    def handle(self, record: LogRecord) -> None:
        """Emit ``record`` if its level passes this handler's level; never raises."""
        if record.level >= self.level:
            try:
                self.emit(record)
            except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
                self.handle_error(record, exc)

    def handle_batch(self, records: Iterable[LogRecord]) -> None:
        """Emit several records (used by the async handler's worker); never raises."""
        level = self.level
        batch = [r for r in records if r.level >= level]
        if batch:
            try:
                self.emit_batch(batch)
            except Exception as exc:  # noqa: BLE001
                self.handle_error(batch[0], exc)

    @abstractmethod
    def emit(self, record: LogRecord) -> None:
        """Write one record.  May raise: :meth:`handle` catches and reports."""

    def emit_batch(self, records: list[LogRecord]) -> None:
        """Write several records; subclasses override when a batch is cheaper than a loop."""
        for record in records:
            try:
                self.emit(record)
            except Exception as exc:  # noqa: BLE001
                self.handle_error(record, exc)

    def handle_error(self, record: LogRecord, exc: BaseException) -> None:
        """Count a failed record and report the first failure of its kind on stderr."""
        self.errors += 1
        report_once(
            self,
            type(exc).__name__,
            f"{type(self).__name__} failed to write a record from {record.logger or 'root'!r} "
            f"({type(exc).__name__}: {exc}); further failures of this kind are counted, not shown",
        )

    def flush(self) -> None:
        """Push buffered output to its destination (no-op by default)."""

    def close(self) -> None:
        """Release resources; idempotent (no-op by default)."""
