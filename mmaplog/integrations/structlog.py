"""End a structlog processor chain in a mmaplog ring: key-value pairs become fields, the event the message.

Give structlog a :class:`MmaplogLoggerFactory` and let the chain end with the
event dict (no renderer: mmaplog stores the pairs as fields, and
``mmaplog-read`` renders them as text, JSON or CSV)::

    import logging, structlog
    from mmaplog.integrations.structlog import MmaplogLoggerFactory

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=MmaplogLoggerFactory("app.mmlog"),
    )
    structlog.get_logger("app.db").info("paid", order_id=42)

What each part of the event dict becomes:

* ``event`` is the message (``str()`` of it when it is not a string);
* the method structlog calls gives the level: ``debug`` 10, ``info``/``msg``
  20, ``warning``/``warn`` 30, ``error``/``err``/``exception`` 40,
  ``critical``/``fatal`` 50 (a ``level`` key, as ``add_log_level`` puts
  there, is dropped: the record has its level);
* ``logger`` (``add_logger_name``) or else the name given to
  ``structlog.get_logger(name)`` is the logger name;
* ``exc_info`` (``log.exception(...)``, ``exc_info=True`` or an exception)
  becomes the traceback, as does an ``exception`` text that
  ``format_exc_info`` made;
* every other key is a field (``timestamp`` too, if a ``TimeStamper`` adds one:
  the record has its own time, so it is not needed).

A chain that does end in a renderer still works: the rendered string is the
message, without fields.  This module does not import structlog.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .._record import LogRecord
from ..handlers._base import Handler
from ..logger import exception_text
from ..writer import RingWriter
from . import as_handler

__all__ = ["LEVELS", "MmaplogLogger", "MmaplogLoggerFactory"]

#: The level of each method name structlog may call on its logger.
LEVELS: dict[str, int] = {
    "trace": 5, "debug": 10, "info": 20, "msg": 20, "log": 20, "warning": 30, "warn": 30, "error": 40, "err": 40,
    "exception": 40, "critical": 50, "fatal": 50, "failure": 40,
}  # fmt: skip

#: Keys of the event dict that are parts of the record, not fields.
_RECORD_KEYS = frozenset(("event", "level", "logger", "exc_info", "exception"))

_time_ns = time.time_ns
_get_ident = threading.get_ident


class MmaplogLogger:
    """The logger structlog calls at the end of its chain: one method per level, each writes one record."""

    def __init__(self, handler: Handler, name: str = "") -> None:
        self.handler = handler
        self.name = name
        handle = handler.handle
        for method, level in LEVELS.items():
            setattr(self, method, self._method(handle, level, name))

    @staticmethod
    def _method(handle: Callable[[LogRecord], None], level: int, name: str) -> Callable[..., None]:
        def emit(event: Any = None, /, **event_dict: Any) -> None:
            if event_dict:
                message = event_dict.pop("event", event)
                logger = event_dict.pop("logger", None)
                event_dict.pop("level", None)
                exc_info = event_dict.pop("exc_info", None)
                exception = event_dict.pop("exception", None)
                if exc_info:
                    exception = exception_text(exc_info)
                elif exception is not None and not isinstance(exception, str):
                    exception = str(exception)
                fields = event_dict or None
            else:
                message, logger, exception, fields = event, None, None, None
            handle(LogRecord(
                logger if type(logger) is str else name, level,
                message if type(message) is str else ("" if message is None else str(message)), (), fields,
                _time_ns(), _get_ident(), exception,
            ))

        return emit

    def __repr__(self) -> str:
        return f"<MmaplogLogger {self.name!r} {self.handler!r}>"


class MmaplogLoggerFactory:
    """structlog's ``logger_factory``: loggers writing into one ring (a path, a writer or any mmaplog handler).

    A path is opened once, with ``ring_options`` as by
    :class:`~mmaplog.RingHandler` (``size``, ``rotate``, ``{pid}`` in the
    path, ...); :meth:`close` closes it.
    """

    def __init__(self, target: RingWriter | Handler | str | os.PathLike[str], **ring_options: Any) -> None:
        self.handler, self._owned = as_handler(target, **ring_options)

    def __call__(self, *args: Any) -> MmaplogLogger:
        """A logger named by the first argument of ``structlog.get_logger(name)`` (a string), else unnamed."""
        name = args[0] if args and isinstance(args[0], str) else ""
        return MmaplogLogger(self.handler, name)

    def close(self) -> None:
        """Close the ring when this factory opened it (else flush the handler given)."""
        if self._owned:
            self.handler.close()
        else:
            self.handler.flush()
