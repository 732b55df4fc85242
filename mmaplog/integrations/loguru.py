"""A loguru sink that writes into a mmaplog ring: ``logger.add(mmaplog.loguru_sink("app.mmlog"))``.

Each loguru record becomes one mmaplog record:

=====================  =========================================================
loguru                 mmaplog
=====================  =========================================================
``record["message"]``  message (the raw message, not the formatted line)
``level.no``           level number (TRACE 5, DEBUG 10, INFO 20, SUCCESS 25
                       shown as ``LEVEL25``, WARNING 30, ERROR 40, CRITICAL 50)
``record["name"]``     logger (the module's ``__name__``)
``record["extra"]``    fields (``logger.bind(...)``, ``logger.contextualize(...)``)
``record["exception"]``  the formatted traceback (``logger.exception``, ``opt(exception=...)``)
``record["time"]``     time; ``record["thread"].id`` thread
=====================  =========================================================

This module never imports loguru: the sink is an object with ``write`` (what
loguru calls with each message) and ``stop`` (called by ``logger.remove``,
it closes a ring the sink opened).  loguru still formats its own line before
calling a sink; ``format="{message}"`` in ``logger.add`` keeps that cheap.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import traceback
from typing import Any

from .._record import LogRecord
from ..handlers._base import Handler, report_once
from ..writer import RingWriter
from . import as_handler

__all__ = ["LoguruSink", "loguru_sink"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _time_ns(when: _dt.datetime) -> int:
    """An aware datetime as integer nanoseconds since the epoch (exact: no float on the way)."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


class LoguruSink:
    """Writes loguru messages into a mmaplog handler (a ring by default); never raises into loguru."""

    def __init__(self, target: RingWriter | Handler | str | os.PathLike[str], **ring_options: Any) -> None:
        self.handler, self._owned = as_handler(target, **ring_options)
        self._handle = self.handler.handle
        self._lock = threading.Lock()
        self._closed = False

    def write(self, message: Any) -> None:
        """Turn one loguru message (a ``str`` with a ``record`` dict) into a record; never raises."""
        try:
            record = message.record
            exception = record["exception"]
            text = None
            if exception is not None:
                text = "".join(traceback.format_exception(exception.type, exception.value, exception.traceback))
            level = record["level"].no
            thread = record["thread"]
            self._handle(LogRecord(
                record["name"] or "",
                level if 0 <= level <= 255 else min(max(level, 0), 255),
                record["message"],
                (),
                record["extra"] or None,
                _time_ns(record["time"]),
                thread.id if thread is not None else threading.get_ident(),
                text,
            ))
        except Exception as exc:  # noqa: BLE001 - a sink must not raise into the logging call
            report_once(self, type(exc).__name__, f"loguru sink could not write a record ({type(exc).__name__}: {exc})")

    def stop(self) -> None:
        """Close the ring when this sink opened it (loguru calls this on ``logger.remove``); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._owned:
            self.handler.close()
        else:
            self.handler.flush()

    close = stop

    def __repr__(self) -> str:
        return f"<LoguruSink {self.handler!r}>"


def loguru_sink(target: RingWriter | Handler | str | os.PathLike[str], **ring_options: Any) -> LoguruSink:
    """A loguru sink writing into ``target``: a ring file path (opened with ``ring_options`` as by
    :class:`~mmaplog.RingHandler`: ``size``, ``rotate``, ...), a :class:`~mmaplog.RingWriter` or any handler."""
    return LoguruSink(target, **ring_options)
