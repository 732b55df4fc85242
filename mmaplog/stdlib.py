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

:func:`accelerate` (or ``"accelerate": True`` in the handler's configuration)
makes the level methods of ``logging.Logger`` instances write straight into
the ring wherever the outcome is provably the standard library's, and leaves
every other call on the standard path; :func:`explain` says which path a
logger's records take and why.
"""

from __future__ import annotations

import collections.abc
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, SupportsIndex

from . import _lifecycle, _native
from . import layout as L
from ._record import LogRecord
from .handlers import _base
from .handlers.ring import RingHandler
from .writer import DEFAULT_RING_SIZE, RingWriter

__all__ = ["LoggingHandler", "accelerate", "accelerated", "deaccelerate", "explain"]

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
    logger and fields as columns of their own.  ``capture_source=True`` adds
    the caller's location as the fields ``pathname``, ``lineno`` and
    ``funcName`` (the LogRecord attributes of those names, which ``extra``
    cannot override); ``accelerate=True`` calls :func:`accelerate`.
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
        accelerate: bool = False,
        capture_source: bool = False,
    ) -> None:
        super().__init__(level)
        if (path is None) == (writer is None):
            raise ValueError("LoggingHandler needs exactly one of path= or writer=")
        target: RingWriter | str | os.PathLike[str] = writer if writer is not None else path  # type: ignore[assignment]
        self.ring = RingHandler(target, size=size, slot_size=slot_size, rotate=rotate, mode=mode)
        #: Whether records carry the caller's location as the fields ``pathname``, ``lineno`` and ``funcName``.
        self.capture_source = bool(capture_source)
        if accelerate:
            _accelerate()

    def __setattr__(self, name: str, value: Any) -> None:
        # Level, filters, ring: any change may change where accelerated loggers' records go.
        if name == "filters" and type(value) is list:
            value = _WatchedList(value)
        object.__setattr__(self, name, value)
        _bump()

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
            if self.capture_source:
                extra.update(pathname=record.pathname, lineno=record.lineno, funcName=record.funcName)
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


# ---------------------------------------------------------------------------------------------- acceleration
#
# While accelerated, the level methods ``debug``, ``info``, ``warning``, ``error``, ``critical``,
# ``fatal`` and ``log`` of every eligible ``logging.Logger`` are instance attributes: C callables
# (``_cstdlib.FastMethod``) that keep a plan per configuration generation.  A plan is computed here,
# by :func:`_plan`, from the logger's state through the standard library's own ``isEnabledFor``;
# every change that may alter the outcome bumps the generation:
#
# * ``setLevel`` and ``logging.disable`` (both call ``manager._clear_cache``), new loggers and any
#   attribute set on the manager: the manager's class is swapped for a subclass that reports them;
# * any attribute set on an accelerated logger (``propagate``, ``disabled``, ``level``, ``parent``,
#   ``handlers``, ...): the logger's class is swapped for a subclass with a reporting ``__setattr__``;
# * changes to the ``handlers`` and ``filters`` lists (``addHandler``, ``addFilter``, direct
#   ``append``): those lists become :class:`_WatchedList`, a list that reports its changes;
# * any attribute set on a :class:`LoggingHandler` (level, filters) and its ring's level;
# * ``Handler.setLevel`` on any other handler (one skipped by level may stop being skipped).
#
# The record factory and ``logging.logThreads`` are checked by the C code on every call.

_cstdlib: Any = _native.load("_cstdlib")
_cwrite: Any = _native.load("_cwrite")

#: The level methods that get a fast twin, with their levels.
_METHODS = (("debug", logging.DEBUG), ("info", logging.INFO), ("warning", logging.WARNING),
            ("error", logging.ERROR), ("critical", logging.CRITICAL), ("fatal", logging.CRITICAL))
#: Logger attributes whose standard behaviour the fast path reproduces; a class overriding one is not accelerated.
_LOGGER_BEHAVIOUR = ("debug", "info", "warning", "error", "critical", "fatal", "exception", "log", "_log",
                     "makeRecord", "handle", "callHandlers", "findCaller", "isEnabledFor", "getEffectiveLevel",
                     "filter", "__getattribute__", "__getattr__", "__setattr__", "__delattr__")
_MANAGER_BEHAVIOUR = ("getLogger", "_clear_cache", "_fixupParents", "_fixupChildren", "__setattr__")


def _noop() -> None:
    """Stands in for the generation bump while the accelerator is not built."""


_bump: Callable[[], None] = _cstdlib.bump if _cstdlib is not None else _noop


class _WatchedList(list):  # type: ignore[type-arg]
    """A list that reports every change (a logger's ``handlers`` or ``filters`` while accelerated)."""

    __slots__ = ()

    def append(self, item: Any) -> None:
        super().append(item)
        _bump()

    def extend(self, items: Iterable[Any]) -> None:
        super().extend(items)
        _bump()

    def insert(self, index: SupportsIndex, item: Any) -> None:
        super().insert(index, item)
        _bump()

    def remove(self, item: Any) -> None:
        super().remove(item)
        _bump()

    def pop(self, index: SupportsIndex = -1) -> Any:
        try:
            return super().pop(index)
        finally:
            _bump()

    def clear(self) -> None:
        super().clear()
        _bump()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        _bump()

    def reverse(self) -> None:
        super().reverse()
        _bump()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        _bump()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        _bump()

    def __iadd__(self, items: Iterable[Any]) -> _WatchedList:  # type: ignore[misc]
        super().__iadd__(items)
        _bump()
        return self

    def __imul__(self, count: SupportsIndex) -> _WatchedList:
        super().__imul__(count)
        _bump()
        return self


class _Watched:
    """The reporting subclasses that accelerated loggers and the manager are switched to, one per original class."""

    _made: ClassVar[dict[type, type]] = {}

    @staticmethod
    def original(kind: type) -> type:
        """The class a swapped instance had before (``kind`` itself when it was not swapped)."""
        found: type = getattr(kind, "_mmaplog_original", kind)
        return found

    @classmethod
    def logger_class(cls, original: Any) -> type:
        """The reporting subclass of logger class ``original``."""
        made = cls._made.get(original)
        if made is None:
            def __setattr__(self: Any, name: str, value: Any) -> None:
                if name in ("handlers", "filters") and type(value) is list:
                    value = _WatchedList(value)
                original.__setattr__(self, name, value)
                _bump()

            def __delattr__(self: Any, name: str) -> None:
                original.__delattr__(self, name)
                _bump()

            made = type(original.__name__, (original,), {
                "__module__": original.__module__, "__qualname__": original.__qualname__,
                "__setattr__": __setattr__, "__delattr__": __delattr__, "_mmaplog_original": original,
                "__doc__": original.__doc__,
            })
            cls._made[original] = made
        return made

    @classmethod
    def manager_class(cls, original: Any) -> type:
        """The reporting subclass of manager class ``original`` (also accelerates new loggers)."""
        made = cls._made.get(original)
        if made is None:
            def __setattr__(self: Any, name: str, value: Any) -> None:
                original.__setattr__(self, name, value)
                _bump()

            def _clear_cache(self: Any) -> None:
                original._clear_cache(self)
                _bump()

            def getLogger(self: Any, name: str) -> Any:
                known = name in self.loggerDict and not isinstance(self.loggerDict[name], logging.PlaceHolder)
                logger = original.getLogger(self, name)
                if not known:
                    _bump()
                    with _State.lock:
                        _accelerate_logger(logger)
                return logger

            made = type(original.__name__, (original,), {
                "__module__": original.__module__, "__qualname__": original.__qualname__,
                "__setattr__": __setattr__, "_clear_cache": _clear_cache, "getLogger": getLogger,
                "_mmaplog_original": original, "__doc__": original.__doc__,
            })
            cls._made[original] = made
        return made


def _behaves_like(cls: type, reference: type, names: tuple[str, ...]) -> bool:
    return all(getattr(cls, n, None) is getattr(reference, n, None) for n in names)


def _eligible_class(logger: logging.Logger) -> bool:
    """The logger's own class (before any swap) does everything the standard way."""
    return _behaves_like(_Watched.original(type(logger)), logging.Logger, _LOGGER_BEHAVIOUR)


class _State:
    """What :func:`accelerate` changed, to undo it."""

    on = False
    lock = threading.RLock()
    manager: Any = None


def _accelerate_logger(logger: Any) -> bool:
    """Switch one logger to the fast level methods (when its class is the standard one); True if it is."""
    if not _State.on or not isinstance(logger, logging.Logger):
        return False
    if "_mmaplog_original" in type(logger).__dict__:
        return True
    if not _eligible_class(logger):
        return False
    original = type(logger)
    try:
        logger.__class__ = _Watched.logger_class(original)
    except TypeError:
        return False
    for attribute in ("handlers", "filters"):
        value = logger.__dict__.get(attribute)
        if type(value) is list:
            object.__setattr__(logger, attribute, _WatchedList(value))
    for name, level in _METHODS:
        standard = getattr(original, name).__get__(logger, original)
        object.__setattr__(logger, name, _cstdlib.FastMethod(logger, level, standard))
    object.__setattr__(logger, "log", _cstdlib.FastMethod(logger, None, original.log.__get__(logger, original)))
    return True


def _restore_logger(logger: Any) -> None:
    original = type(logger).__dict__.get("_mmaplog_original")
    if original is None:
        return
    for name, _ in _METHODS:
        logger.__dict__.pop(name, None)
    logger.__dict__.pop("log", None)
    for attribute in ("handlers", "filters"):
        value = logger.__dict__.get(attribute)
        if type(value) is _WatchedList:
            logger.__dict__[attribute] = list(value)
    logger.__class__ = original


def _loggers() -> list[Any]:
    manager = logging.Logger.manager
    return [logging.root, *(lg for lg in list(manager.loggerDict.values()) if isinstance(lg, logging.Logger))]


def _watch_handler_levels(self: logging.Handler, level: int | str) -> None:
    _original_handler_set_level(self, level)
    _bump()


_original_handler_set_level = logging.Handler.setLevel


def _accelerate() -> bool:
    """:func:`accelerate`'s body (the handler's ``accelerate`` argument shadows the public name)."""
    if _cstdlib is None or _cwrite is None:
        return False
    with logging._lock, _State.lock:  # type: ignore[attr-defined]
        if _State.on:
            return True
        manager = logging.Logger.manager
        if not _behaves_like(type(manager), logging.Manager, _MANAGER_BEHAVIOUR):
            return False
        _cstdlib.configure(logging, _plan, collections.abc.Mapping)
        _State.on = True
        _State.manager = manager
        manager.__class__ = _Watched.manager_class(type(manager))
        logging.Handler.setLevel = _watch_handler_levels  # type: ignore[method-assign]
        for logger in _loggers():
            _accelerate_logger(logger)
        _bump()
        return True


def accelerate() -> bool:
    """Make standard-library loggers write straight into mmaplog rings wherever that is provably exact.

    Process-wide and reversible (:func:`deaccelerate`).  Every ``logging.Logger``
    of the standard class, existing or created later, gets fast level methods
    (``debug`` ... ``critical``); a call takes the fast path only when its
    outcome is provably the standard library's (docs/API.md lists the
    conditions) and the standard path, unchanged, otherwise.  Returns False
    where the C accelerator is not in use (``MMAPLOG_PURE_PYTHON=1``): then
    everything stays on the standard path.
    """
    return _accelerate()


def deaccelerate() -> None:
    """Undo :func:`accelerate`: loggers, the manager and ``Handler.setLevel`` are the standard ones again."""
    if _cstdlib is None:
        return
    with logging._lock, _State.lock:  # type: ignore[attr-defined]
        if not _State.on:
            return
        _State.on = False
        _cstdlib.configure(logging, None, collections.abc.Mapping)
        for logger in _loggers():
            _restore_logger(logger)
        manager = _State.manager
        original = type(manager).__dict__.get("_mmaplog_original")
        if original is not None:
            manager.__class__ = original
        _State.manager = None
        if logging.Handler.setLevel is _watch_handler_levels:
            logging.Handler.setLevel = _original_handler_set_level  # type: ignore[method-assign]
        _bump()


def accelerated() -> bool:
    """True while :func:`accelerate` is in effect."""
    return _State.on


def _after_fork_in_child() -> None:
    _State.lock = threading.RLock()  # another thread may have held it at the fork


_base.level_listeners.append(lambda handler: _bump())
_lifecycle.on_fork_child(_after_fork_in_child)


def _decide(logger: logging.Logger, level: int, planning: bool = False) -> tuple[str, str, RingHandler | None]:
    """Which path a record of ``logger`` at ``level`` takes: ("disabled" | "standard" | "ring" | "source", why, ring).

    ``planning``: leave out the record factory and ``logThreads``, which the C
    methods check on every call (nothing reports their changes).
    """
    if not _State.on:
        return "standard", "acceleration is off (mmaplog.stdlib.accelerate() was not called)", None
    if "_mmaplog_original" not in type(logger).__dict__:
        return "standard", f"logger class {type(logger).__qualname__} overrides the standard behaviour", None
    if not planning and logging.getLogRecordFactory() is not logging.LogRecord:
        return "standard", "a custom LogRecord factory is installed (logging.setLogRecordFactory)", None
    if not planning and not logging.logThreads:
        return "standard", "logging.logThreads is off", None
    if not logger.isEnabledFor(level):
        why = "the logger is disabled" if logger.disabled else (
            "logging.disable() covers it" if logger.manager.disable >= level
            else f"below the effective level {logging.getLevelName(logger.getEffectiveLevel())}")
        return "disabled", why, None
    if logger.filters:
        return "standard", f"logger {logger.name!r} has filters", None
    rings: list[RingHandler] = []
    receiver: LoggingHandler | None = None
    node: Any = logger
    while node is not None:
        if "_mmaplog_original" not in type(node).__dict__:
            return "standard", f"ancestor {node.name!r} is not a standard logger", None
        for handler in node.handlers:
            if level < handler.level:
                continue
            if type(handler) is not LoggingHandler:
                return "standard", f"{type(handler).__name__} on {node.name!r} receives it", None
            if handler.filters:
                return "standard", f"a LoggingHandler on {node.name!r} has filters", None
            ring = handler.ring
            if type(ring) is not RingHandler or ring.line_format is not None or ring.level > level:
                return "standard", f"the ring handler of a LoggingHandler on {node.name!r} is customised", None
            rings.append(ring)
            receiver = handler
        if not node.propagate:
            break
        node = node.parent
    if not rings:
        return "standard", "no handler receives it (logging.lastResort does)", None
    if len(rings) > 1:
        return "standard", f"{len(rings)} handlers receive it (the fast path writes to one)", None
    if receiver is not None and receiver.capture_source:
        return "source", f"straight into {rings[0].path}, with the caller's location", rings[0]
    return "ring", f"straight into {rings[0].path}", rings[0]


def _plan(logger: logging.Logger, level: int, standard: Callable[..., None]) -> Any:
    """The planner the C methods call: None (disabled), False (standard path) or the ring emitter.

    The emitter hands anything it does not write itself (keyword arguments, a
    message that is not a ``str``, a failed ``%``) to ``standard``, the
    logger class's own method.
    """
    kind, _, ring = _decide(logger, level, planning=True)
    if kind == "disabled":
        return None
    if kind == "standard" or ring is None:
        return False
    if kind == "source":
        return (ring, logger.name)
    if getattr(standard, "__name__", "") == "log":  # log(level, msg, ...): the emitter's fallback gets the level
        standard = functools.partial(standard, level)
    return _cwrite.ring_emitter(ring, level, logger.name, standard)


def explain(name: str | None = None) -> str:
    """Which path the records of logger ``name`` (None: the root) take at each level, and why."""
    logger = logging.getLogger(name)
    lines = [f"logger {logger.name!r}:"]
    if _cstdlib is None:
        lines.append("  all levels: standard path (the C accelerator is not in use here)")
        return "\n".join(lines)
    for method, level in _METHODS[:5]:
        kind, why, _ = _decide(logger, level)
        shown = "ring" if kind == "source" else kind
        lines.append(f"  {method}: {shown} path ({why})" if kind != "disabled" else f"  {method}: disabled ({why})")
    lines.append("  log(level, ...): the path of its level; exception, warn and calls with exc_info, extra, "
                 "stack_info or stacklevel: standard path")
    return "\n".join(lines)
