"""Logger: the front of logging.  It checks the level, builds the record and hands it to its handlers.

A :class:`Logger` has a dotted name, a level and handlers injected at
construction; it only orchestrates, the handlers do the output.  Loggers made
by :func:`get_logger` form a tree: a child without a level of its own takes
its parent's, and records also go to the parent's handlers unless the child
sets ``propagate=False`` (as in the standard ``logging`` module).

The hot path is kept short: each logger binds its level methods (``info``,
``debug``, ...) to a do-nothing function while the level is disabled, so a
disabled call costs one attribute lookup and an empty call, and to a small
closure over the current handlers while it is enabled.  The bindings are
rebuilt whenever a level, a handler list or a handler's level changes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Union

from . import _lifecycle, _native
from ._errors import ConfigError
from ._levels import CRITICAL, DEBUG, ERROR, INFO, NOTSET, TRACE, WARNING, level_name, level_number
from ._record import LogRecord, render_message
from .handlers import _base
from .handlers._base import Handler, report_once
from .handlers.ring import RingHandler

__all__ = [
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "INFO",
    "NOTSET",
    "TRACE",
    "WARNING",
    "BoundLogger",
    "ExcInfo",
    "Logger",
    "LoggerNameError",
    "LoggerTree",
    "get_logger",
    "on_default_tree",
]

#: What ``exc_info=`` accepts: True (the exception being handled), an exception, or a ``sys.exc_info()`` tuple.
ExcInfo = Union[
    bool,
    BaseException,
    "tuple[type[BaseException], BaseException, types.TracebackType | None]",
    "tuple[None, None, None]",
    None,
]

#: The level gate of a logger that has no handler at all: nothing passes.
_NOTHING = 1 << 30
_LEVEL_METHODS = (("trace", TRACE), ("debug", DEBUG), ("info", INFO), ("warning", WARNING), ("error", ERROR),
                  ("critical", CRITICAL))

_time_ns = time.time_ns
_get_ident = threading.get_ident
#: The C level methods (same behaviour, no Python frame per call), where built; None: the Python ones below.
_cwrite = _native.load("_cwrite")
#: The C level method with the caller's location (``SourceEmitter``), where built.
_cstdlib = _native.load("_cstdlib")
_getframe = sys._getframe


def source_fields(frame: types.FrameType) -> dict[str, Any]:
    """The location of ``frame`` as the fields ``pathname``, ``lineno`` and ``funcName`` (the stdlib's names)."""
    code = frame.f_code
    return {"pathname": code.co_filename, "lineno": frame.f_lineno, "funcName": code.co_name}


class LoggerNameError(ConfigError, TypeError):
    """A logger name that is not a string (also a TypeError, what the standard library raises)."""

    __module__ = "mmaplog"


def _name_error(name: object) -> LoggerNameError:
    return LoggerNameError(
        f"logger name must be a string (a dotted name such as __name__), got {type(name).__name__} {name!r}"
    )


class _Config:
    """The lock that serialises changes to loggers (never taken while logging)."""

    lock = threading.RLock()


def _after_fork_in_child() -> None:
    _Config.lock = threading.RLock()
    _Default.lock = threading.Lock()


def exception_text(exc_info: ExcInfo) -> str | None:
    """The formatted traceback for an ``exc_info=`` argument, or None when there is no exception; never raises."""
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[1] is None:
        return None
    try:
        return "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    except Exception as exc:  # noqa: BLE001 - a broken exception must not stop logging
        return f"<unformattable {getattr(exc_info[0], '__name__', 'exception')}: {type(exc).__name__}>"


def _disabled(*args: Any, **kwargs: Any) -> None:
    """Stands in for a level method while the level is disabled."""


if _cwrite is not None:
    _disabled = _cwrite.disabled  # the same, as a C function: cheaper than a call of an empty Python function


# Twin: _cwrite.c ring_emit and record_emit are the C forms of emit_ring and emit_one below. See docs/MAP.md.
def _emitter(name: str, level: int, handlers: tuple[Handler, ...], source: bool = False) -> Callable[..., None]:
    """The level method of an enabled level: build one record, give it to each handler.

    ``source``: add the caller's location to the record's fields (:func:`source_fields`); the caller is the
    frame right above the level method (the C methods add no frame, the Python ones read ``_getframe(1)``).
    """
    if source:
        return _source_emitter(name, level, handlers)
    if len(handlers) == 1 and type(handlers[0]) is RingHandler and handlers[0].line_format is None:
        # The common case, one ring: no LogRecord at all, straight into the writer, which takes
        # the time and thread itself.  ``_append`` and ``_write`` are looked up per call: they change
        # on fork and close.  A plain record (no fields, no traceback) takes the writer's positional
        # entry, and a %-format that works is applied here without render_message's checks.
        ring = handlers[0]

        def emit_ring(msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
            if fields or exc_info:
                ring._write(render_message(msg, args), level=level, logger=name, fields=fields or None,
                            exception=exception_text(exc_info) if exc_info else None)
                return
            if type(msg) is not str:
                msg = render_message(msg, args)
            elif args:
                try:
                    msg = msg % args
                except Exception:  # noqa: BLE001 - render_message shows what went wrong in the text
                    msg = render_message(msg, args)
            ring._append(msg, level, name)

        if _cwrite is not None:
            return _cwrite.ring_emitter(ring, level, name, emit_ring)  # type: ignore[no-any-return]
        return emit_ring
    if len(handlers) == 1:
        handle = handlers[0].handle

        def emit_one(msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
            handle(
                LogRecord(name, level, msg, args, fields or None, _time_ns(), _get_ident(),
                          exception_text(exc_info) if exc_info else None)
            )

        method: Callable[..., None] = emit_one
        if _cwrite is not None:
            method = _cwrite.record_emitter(handle, level, name, emit_one, LogRecord)
        # A handler with a level method of its own (the async handler's native queue) takes the call directly.
        native = getattr(handlers[0], "_level_method", None)
        if native is not None:
            return native(level, name, method) or method
        return method
    handles = tuple(h.handle for h in handlers)

    def emit_many(msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        record = LogRecord(name, level, msg, args, fields or None, _time_ns(), _get_ident(),
                           exception_text(exc_info) if exc_info else None)
        for handle in handles:
            handle(record)

    return emit_many


def _source_emitter(name: str, level: int, handlers: tuple[Handler, ...]) -> Callable[..., None]:
    """:func:`_emitter` with the caller's location as fields (which override call fields of the same names)."""
    handles = tuple(h.handle for h in handlers)

    def emit_source(msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        located = {**fields, **source_fields(_getframe(1))} if fields else source_fields(_getframe(1))
        record = LogRecord(name, level, msg, args, located, _time_ns(), _get_ident(),
                           exception_text(exc_info) if exc_info else None)
        for handle in handles:
            handle(record)

    if len(handlers) == 1 and type(handlers[0]) is RingHandler and handlers[0].line_format is None:
        ring = handlers[0]

        def emit_ring_source(msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
            located = {**fields, **source_fields(_getframe(1))} if fields else source_fields(_getframe(1))
            ring._write(render_message(msg, args), level=level, logger=name, fields=located,
                        exception=exception_text(exc_info) if exc_info else None)

        if _cstdlib is not None:
            # The C form reads the caller's frame and writes plain calls; the rest goes to the Python one.
            return _cstdlib.SourceEmitter(ring, level, name, emit_ring_source)  # type: ignore[no-any-return]
        return emit_ring_source
    return emit_source


_owners: weakref.WeakSet[Logger] = weakref.WeakSet()


def _on_handler_level(handler: Handler) -> None:
    """A handler's level changed: refresh the loggers that hold it."""
    with _Config.lock:
        for logger in list(_owners):
            if handler in (logger._own_handlers or ()):
                logger._refresh()


_base.level_listeners.append(_on_handler_level)
_lifecycle.on_fork_child(_after_fork_in_child)


class Logger:
    """A named source of log records that passes them to its handlers.

    ``Logger("app.db", handlers=[RingHandler("app.mmlog")], level="INFO")``
    makes a standalone logger; :func:`get_logger` makes loggers that belong to
    a tree and inherit level and handlers from their dotted parents.

    Level methods take a %-style message with lazy arguments, formatted only
    if a handler writes the record (``log.info("took %d ms", ms)``), key-value
    fields (``log.info("paid", order_id=42)``) and ``exc_info``.  They never
    raise.  Changing handlers or levels is safe while other threads log.
    """

    # Bound per instance (see the module docstring); these class-level versions document them.
    def trace(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at TRACE (5): finer than DEBUG."""
        self.log(TRACE, msg, *args, exc_info=exc_info, **fields)

    def debug(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at DEBUG (10)."""
        self.log(DEBUG, msg, *args, exc_info=exc_info, **fields)

    def info(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at INFO (20)."""
        self.log(INFO, msg, *args, exc_info=exc_info, **fields)

    def warning(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at WARNING (30)."""
        self.log(WARNING, msg, *args, exc_info=exc_info, **fields)

    def error(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at ERROR (40)."""
        self.log(ERROR, msg, *args, exc_info=exc_info, **fields)

    def critical(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at CRITICAL (50)."""
        self.log(CRITICAL, msg, *args, exc_info=exc_info, **fields)

    def __init__(
        self,
        name: str = "",
        handlers: Iterable[Handler] | None = None,
        level: int | str | None = None,
        *,
        parent: Logger | None = None,
        propagate: bool = True,
        capture_source: bool | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise _name_error(name)
        self.name = name
        self._own_level: int | None = None if level is None else level_number(level)
        self._own_source: bool | None = None if capture_source is None else bool(capture_source)
        self._source = False
        self._own_handlers: tuple[Handler, ...] | None = None
        self._parent = parent
        self._propagate = bool(propagate)
        self._children: weakref.WeakSet[Logger] = weakref.WeakSet()
        self._gate = _NOTHING
        self._level = NOTSET
        self._handlers: tuple[Handler, ...] = ()
        with _Config.lock:
            if parent is not None:
                parent._children.add(self)
            if handlers is not None:
                self._set_own_handlers(tuple(handlers))
            self._refresh()

    # ------------------------------------------------------------------ configuration
    @property
    def parent(self) -> Logger | None:
        """The logger this one inherits from (None for a root or standalone logger)."""
        return self._parent

    @property
    def level(self) -> int:
        """The effective level: this logger's own, else its nearest ancestor's, else NOTSET."""
        return self._level

    @property
    def own_level(self) -> int | None:
        """The level set on this logger, or None when it inherits."""
        return self._own_level

    def set_level(self, level: int | str | None) -> None:
        """Set the level (a number or a name such as "INFO"); None inherits the parent's again."""
        value = None if level is None else level_number(level)
        with _Config.lock:
            self._own_level = value
            self._refresh()

    @property
    def capture_source(self) -> bool:
        """Whether records carry the caller's location (fields ``pathname``, ``lineno``, ``funcName``).

        This logger's own setting, else its nearest ancestor's, else False.
        """
        return self._source

    @capture_source.setter
    def capture_source(self, value: bool | None) -> None:
        """True or False for this logger (and the children that inherit); None inherits the parent's again."""
        with _Config.lock:
            self._own_source = None if value is None else bool(value)
            self._refresh()

    @property
    def own_capture_source(self) -> bool | None:
        """The ``capture_source`` set on this logger, or None when it inherits."""
        return self._own_source

    @property
    def propagate(self) -> bool:
        """Whether records also go to the parent's handlers."""
        return self._propagate

    @propagate.setter
    def propagate(self, value: bool) -> None:
        with _Config.lock:
            self._propagate = bool(value)
            self._refresh()

    @property
    def handlers(self) -> tuple[Handler, ...]:
        """Every handler a record of this logger goes to: its own, then its ancestors' (while propagating)."""
        return self._handlers

    @property
    def own_handlers(self) -> tuple[Handler, ...]:
        """The handlers attached to this logger itself."""
        return self._own_handlers or ()

    def add_handler(self, handler: Handler) -> None:
        """Attach ``handler`` (once); safe while other threads log."""
        if not isinstance(handler, Handler):
            raise TypeError(f"expected a mmaplog Handler, got {type(handler).__name__}")
        with _Config.lock:
            own = self._own_handlers or ()
            if handler not in own:
                self._set_own_handlers(own + (handler,))
                self._refresh()

    def remove_handler(self, handler: Handler) -> None:
        """Detach ``handler`` if attached (it is not closed); safe while other threads log."""
        with _Config.lock:
            own = self._own_handlers or ()
            if handler in own:
                self._set_own_handlers(tuple(h for h in own if h is not handler))
                self._refresh()

    def set_handlers(self, handlers: Iterable[Handler]) -> None:
        """Replace this logger's own handlers in one step (the old ones are not closed)."""
        new = tuple(handlers)
        for handler in new:
            if not isinstance(handler, Handler):
                raise TypeError(f"expected a mmaplog Handler, got {type(handler).__name__}")
        with _Config.lock:
            self._set_own_handlers(new)
            self._refresh()

    def _set_own_handlers(self, handlers: tuple[Handler, ...]) -> None:
        self._own_handlers = handlers
        if handlers:
            _owners.add(self)
        else:
            _owners.discard(self)

    def _refresh(self) -> None:
        """Recompute the effective level, handlers and level methods here and below (config lock held)."""
        parent = self._parent
        if self._own_level is not None:
            level = self._own_level
        else:
            level = parent._level if parent is not None else NOTSET
        handlers = list(self._own_handlers or ())
        if parent is not None and self._propagate:
            handlers.extend(h for h in parent._handlers if h not in handlers)
        self._level = level
        self._handlers = tuple(handlers)
        if self._own_source is not None:
            self._source = self._own_source
        else:
            self._source = parent._source if parent is not None else False
        source = self._source
        gate = max(level, min(h.level for h in handlers)) if handlers else _NOTHING
        self._gate = gate
        cls = type(self)
        for method, method_level in _LEVEL_METHODS:
            if getattr(cls, method) is not getattr(Logger, method):
                continue  # a subclass overrides this level method: leave it in charge
            value = _emitter(self.name, method_level, self._handlers, source) if method_level >= gate else _disabled
            setattr(self, method, value)
        for child in list(self._children):
            child._refresh()

    # ------------------------------------------------------------------ logging
    def is_enabled_for(self, level: int | str) -> bool:
        """True when a record at ``level`` would reach at least one handler."""
        return level_number(level) >= self._gate

    def log(self, level: int | str, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at any level, given as a number (0-255) or a name; never raises."""
        self._log(level, msg, args, exc_info, fields, 3)

    def _log(self, level: int | str, msg: Any, args: tuple[Any, ...], exc_info: ExcInfo, fields: Mapping[str, Any],
             depth: int) -> None:
        """:meth:`log`'s body; ``depth``: frames from :meth:`_emit` up to the caller whose location is recorded."""
        if type(level) is not int or not 0 <= level <= 255:
            try:
                level = level_number(level)
            except (TypeError, ValueError) as exc:
                report_once(self, "level", f"logger {self.name!r}: {exc}; such records are logged at WARNING")
                level = WARNING
        if level >= self._gate:
            self._emit(level, msg, args, exc_info, fields or None, depth)

    def exception(self, msg: Any, /, *args: Any, exc_info: ExcInfo = True, **fields: Any) -> None:
        """Log at ERROR with the traceback of the exception being handled (call it in an ``except`` block)."""
        if self._gate <= ERROR:
            self._emit(ERROR, msg, args, exc_info, fields or None)

    def _emit(self, level: int, msg: Any, args: tuple[Any, ...], exc_info: ExcInfo,
              fields: Mapping[str, Any] | None, depth: int = 2) -> None:
        if self._source:
            located = source_fields(_getframe(depth))
            fields = {**fields, **located} if fields else located
        record = LogRecord(self.name, level, msg, args, fields, _time_ns(), _get_ident(),
                           exception_text(exc_info) if exc_info else None)
        for handler in self._handlers:
            handler.handle(record)

    def bind(self, **fields: Any) -> BoundLogger:
        """A logger that adds ``fields`` to every record (``log.bind(request_id=rid).info("start")``)."""
        return BoundLogger(self, fields)

    def __repr__(self) -> str:
        return f"<Logger {self.name!r} {level_name(self._level)}>"


class BoundLogger:
    """A :class:`Logger` with context: the bound fields are added to every record it logs.

    It shares its logger's name, level and handlers (changes to those show at
    once); fields given in a call override bound ones of the same name.
    """

    __slots__ = ("_context", "_logger")

    def __init__(self, logger: Logger, context: Mapping[str, Any]) -> None:
        self._logger = logger
        self._context: dict[str, Any] = dict(context)

    @property
    def logger(self) -> Logger:
        """The logger this one adds context to."""
        return self._logger

    @property
    def name(self) -> str:
        """The logger's name."""
        return self._logger.name

    @property
    def context(self) -> Mapping[str, Any]:
        """The bound fields (a read-only view)."""
        return types.MappingProxyType(self._context)

    def bind(self, **fields: Any) -> BoundLogger:
        """A logger with these fields added to the bound ones."""
        return BoundLogger(self._logger, {**self._context, **fields})

    def unbind(self, *keys: str) -> BoundLogger:
        """A logger without these bound fields."""
        return BoundLogger(self._logger, {k: v for k, v in self._context.items() if k not in keys})

    def is_enabled_for(self, level: int | str) -> bool:
        """True when a record at ``level`` would reach at least one handler."""
        return self._logger.is_enabled_for(level)

    def _fields(self, fields: dict[str, Any]) -> Mapping[str, Any] | None:
        if fields:
            return {**self._context, **fields} if self._context else fields
        return self._context or None

    def trace(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at TRACE with the bound fields."""
        logger = self._logger
        if logger._gate <= TRACE:
            logger._emit(TRACE, msg, args, exc_info, self._fields(fields))

    def debug(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at DEBUG with the bound fields."""
        logger = self._logger
        if logger._gate <= DEBUG:
            logger._emit(DEBUG, msg, args, exc_info, self._fields(fields))

    def info(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at INFO with the bound fields."""
        logger = self._logger
        if logger._gate <= INFO:
            logger._emit(INFO, msg, args, exc_info, self._fields(fields))

    def warning(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at WARNING with the bound fields."""
        logger = self._logger
        if logger._gate <= WARNING:
            logger._emit(WARNING, msg, args, exc_info, self._fields(fields))

    def error(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at ERROR with the bound fields."""
        logger = self._logger
        if logger._gate <= ERROR:
            logger._emit(ERROR, msg, args, exc_info, self._fields(fields))

    def critical(self, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at CRITICAL with the bound fields."""
        logger = self._logger
        if logger._gate <= CRITICAL:
            logger._emit(CRITICAL, msg, args, exc_info, self._fields(fields))

    def exception(self, msg: Any, /, *args: Any, exc_info: ExcInfo = True, **fields: Any) -> None:
        """Log at ERROR with the bound fields and the traceback of the exception being handled."""
        logger = self._logger
        if logger._gate <= ERROR:
            logger._emit(ERROR, msg, args, exc_info, self._fields(fields))

    def log(self, level: int | str, msg: Any, /, *args: Any, exc_info: ExcInfo = None, **fields: Any) -> None:
        """Log at any level with the bound fields."""
        self._logger._log(level, msg, args, exc_info, {**self._context, **fields}, 3)

    def __repr__(self) -> str:
        return f"<BoundLogger {self.name!r} {self._context!r}>"


class LoggerTree:
    """Loggers by dotted name: the same name gives the same :class:`Logger`, from any thread.

    ``tree.get("app.db")`` creates ``app`` and ``app.db`` on first use, each the
    child of its dotted parent; the root (``tree.root``) is the top.
    """

    def __init__(self, root: Logger | None = None) -> None:
        self.root = root if root is not None else Logger("root", level=WARNING)
        self._loggers: dict[str, Logger] = {"": self.root, "root": self.root}
        #: Handlers the tree made for itself (closed when :func:`mmaplog.configure` replaces them).
        self.startup_handlers: list[Handler] = []

    def get(self, name: str | None = None) -> Logger:
        """The logger called ``name`` (the root for None, "" or "root"), created on first use."""
        if name is not None and not isinstance(name, str):
            raise _name_error(name)
        logger = self._loggers.get(name or "")
        if logger is not None:
            return logger
        assert name is not None
        with _Config.lock:
            logger = self._loggers.get(name)
            if logger is None:
                head, dot, _ = name.rpartition(".")
                parent = self.get(head) if dot and head else self.root
                logger = Logger(name, parent=parent)
                self._loggers[name] = logger
            return logger

    def loggers(self) -> list[Logger]:
        """Every logger in the tree, root first."""
        with _Config.lock:
            return [self.root] + [lg for name, lg in self._loggers.items() if lg is not self.root]

    def handlers(self) -> list[Handler]:
        """Every handler attached to a logger of the tree."""
        found: list[Handler] = []
        for logger in self.loggers():
            found.extend(h for h in logger.own_handlers if h not in found)
        return found


class _Default:
    """The process-wide tree behind :func:`get_logger`, made on first use."""

    tree: LoggerTree | None = None
    lock = threading.Lock()
    #: Steps run on the tree when it is made (see :func:`on_default_tree`).
    setup: ClassVar[list[Callable[[LoggerTree], None]]] = []


def on_default_tree(step: Callable[[LoggerTree], None]) -> None:
    """Run ``step(tree)`` when the default tree is made: how configuration reaches it from above.

    :mod:`mmaplog.config` registers the ``MMAPLOG_CONFIG`` step when it is
    imported; the package's own :func:`mmaplog.get_logger` imports it first,
    so the logger module never needs to know the configuration module.
    """
    _Default.setup.append(step)


def default_tree() -> LoggerTree:
    """The tree :func:`get_logger` and :func:`mmaplog.configure` use; made (and configured) on first use.

    Until :func:`mmaplog.configure` runs, the root sends WARNING and above to
    stderr, so problems are not silent; when the environment variable
    ``MMAPLOG_CONFIG`` names a file, that file configures the tree instead
    (the step :mod:`mmaplog.config` registers with :func:`on_default_tree`).
    """
    tree = _Default.tree
    if tree is not None:
        return tree
    with _Default.lock:
        if _Default.tree is None:
            from .handlers.console import ConsoleHandler

            tree = LoggerTree()
            tree.startup_handlers.append(ConsoleHandler(level=WARNING))
            tree.root.set_handlers(tree.startup_handlers)
            _Default.tree = tree
            _lifecycle.attached_handlers(tree.handlers)
            if not _Default.setup and os.environ.get("MMAPLOG_CONFIG"):
                # Only mmaplog.config reads that file; say so rather than ignore it silently.
                report_once(_Default, "environment", "MMAPLOG_CONFIG is set but mmaplog.config was not imported, so "
                            "the file is not read: use mmaplog.get_logger (or import mmaplog.config first)")
            try:
                for step in list(_Default.setup):
                    step(tree)
            except BaseException:
                _Default.tree = None
                raise
        assert _Default.tree is not None
        return _Default.tree


def get_logger(name: str | None = None) -> Logger:
    """The logger called ``name`` (dotted, like a module path; None for the root): the same object every time.

    A name that is not a string (``get_logger(123)``) raises
    :class:`LoggerNameError`, a :class:`~mmaplog.ConfigError` that is also a
    ``TypeError`` (as ``logging.getLogger`` raises), instead of being turned
    into text: such a call is nearly always a mistake (a logger or a module
    object passed where its name was meant).
    """
    tree = _Default.tree or default_tree()
    if name is not None and type(name) is not str:
        return tree.get(name)  # checks the type
    logger = tree._loggers.get(name or "")
    return logger if logger is not None else tree.get(name)
