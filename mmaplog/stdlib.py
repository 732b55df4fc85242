"""LoggingHandler: a standard-library ``logging.Handler`` that writes into a mmaplog ring.

An application that uses ``logging`` switches by configuration alone::

    logging.config.dictConfig({
        "version": 1,
        "handlers": {"ring": {"class": "mmaplog.LoggingHandler", "path": "logs/app-{pid}.mmlog"}},
        "root": {"level": "INFO", "handlers": ["ring"]},
    })

Each record keeps its logger name, level, message (``msg % args``), time,
thread, exception text and ``extra`` fields, and reads back with
``mmaplog-read`` like a native one.
"""

from __future__ import annotations

import logging
import os

from . import layout as L
from ._record import LogRecord
from .handlers.ring import RingHandler
from .writer import DEFAULT_RING_SIZE, RingWriter

__all__ = ["LoggingHandler"]

#: Attributes every stdlib LogRecord has; anything else in ``record.__dict__`` came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName",
}


class LoggingHandler(logging.Handler):
    """Writes standard-library log records into a ring file (opened from ``path``) or a given writer.

    ``path``, ``size``, ``slot_size``, ``rotate`` and ``mode`` are those of
    :class:`~mmaplog.RingHandler` (``{pid}`` in the path gives each process
    its own file; forked children never write into the parent's ring).  A
    formatter set on this handler is not used: the ring stores time, level,
    logger and fields as columns of their own.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        writer: RingWriter | None = None,
        size: int | str = DEFAULT_RING_SIZE,
        slot_size: int = L.DEFAULT_SLOT_SIZE,
        rotate: int = 0,
        mode: int = 0o640,
        level: int | str = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        if (path is None) == (writer is None):
            raise ValueError("LoggingHandler needs exactly one of path= or writer=")
        target: RingWriter | str | os.PathLike[str] = writer if writer is not None else path  # type: ignore[assignment]
        self.ring = RingHandler(target, size=size, slot_size=slot_size, rotate=rotate, mode=mode)

    def emit(self, record: logging.LogRecord) -> None:
        """Write one stdlib record into the ring; a failure goes to :meth:`logging.Handler.handleError`."""
        try:
            message = record.getMessage()
            exception = None
            if record.exc_info:
                if not record.exc_text:
                    record.exc_text = _formatter.formatException(record.exc_info)
                exception = record.exc_text
            elif record.exc_text:
                exception = record.exc_text
            if record.stack_info:
                stack = _formatter.formatStack(record.stack_info)
                exception = f"{exception}\n{stack}" if exception else stack
            extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES}
            self.ring.handle(
                LogRecord(
                    record.name,
                    min(max(int(record.levelno), 0), 255),
                    message,
                    (),
                    extra or None,
                    int(record.created * 1e9),
                    record.thread if record.thread is not None else 0,
                    exception,
                )
            )
        except Exception:  # noqa: BLE001 - the stdlib way: report through handleError, never raise
            self.handleError(record)

    def flush(self) -> None:
        """Force written records to stable storage."""
        self.ring.flush()

    def close(self) -> None:
        """Close the ring (when this handler opened it) and detach from ``logging``."""
        try:
            self.ring.close()
        finally:
            super().close()

    def __repr__(self) -> str:
        return f"<LoggingHandler {str(self.ring.path)!r} ({logging.getLevelName(self.level)})>"


_formatter = logging.Formatter()
