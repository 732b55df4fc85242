"""Helpers for testing code that logs with mmaplog: capture records in memory and assert on them.

::

    from mmaplog.testing import capture_logs

    def test_payment_is_logged():
        with capture_logs() as records:
            pay(order_id=42)
        assert records[0].message == "order paid"
        assert records[0].fields == {"order_id": 42}
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ._levels import level_name
from ._record import LogRecord
from .config import get_logger
from .handlers._base import Handler
from .logger import Logger

__all__ = ["CapturedRecord", "CapturingHandler", "capture_logs"]


@dataclass(frozen=True)
class CapturedRecord:
    """One record as a handler received it, with the message already rendered."""

    logger: str
    level: int
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    exception: str | None = None
    time_ns: int = 0
    thread: int = 0

    @property
    def level_name(self) -> str:
        """The level as a name ("INFO")."""
        return level_name(self.level)


class CapturingHandler(Handler):
    """Keeps every record it receives in :attr:`records` (thread-safe), for tests."""

    def __init__(self, level: int | str = 0) -> None:
        super().__init__(level)
        self.records: list[CapturedRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: LogRecord) -> None:
        """Store ``record`` with its message rendered and its fields copied."""
        captured = CapturedRecord(
            logger=record.logger,
            level=record.level,
            message=record.message,
            fields=dict(record.fields or {}),
            exception=record.exception,
            time_ns=record.time_ns,
            thread=record.thread,
        )
        with self._lock:
            self.records.append(captured)

    def clear(self) -> None:
        """Forget the records captured so far."""
        with self._lock:
            self.records.clear()


@contextmanager
def capture_logs(logger: Logger | str | None = None, level: int | str = 0) -> Iterator[list[CapturedRecord]]:
    """Capture the records of ``logger`` (the root by default: everything) while the block runs.

    For the block the logger's level is set to ``level``, its own handlers are
    replaced by a capturing one and it stops propagating to its parent's
    handlers; all three are restored afterwards.
    """
    target = logger if isinstance(logger, Logger) else get_logger(logger)
    handler = CapturingHandler(level)
    saved = (target.own_level, target.own_handlers, target.propagate)
    target.set_handlers([handler])
    target.set_level(level)
    target.propagate = False
    try:
        yield handler.records
    finally:
        target.set_handlers(saved[1])
        target.set_level(saved[0])
        target.propagate = saved[2]
