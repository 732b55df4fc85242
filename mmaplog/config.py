"""configure(): set up the root logger from keyword arguments, a dict, a TOML file or ``MMAPLOG_CONFIG``.

The configuration is a table with these keys (all optional)::

    level = "INFO"                    # the root logger's level
    format = "{time} {level:<8} {logger}: {message}"   # default for text handlers
    capture_uncaught = true           # log uncaught exceptions as CRITICAL
    flush_on_sigterm = true           # flush handlers on SIGTERM, then end as SIGTERM would
    capture_source = false            # records carry the caller's file, line and function

    [[handlers]]                      # default: one console handler
    type = "ring"                     # ring, console, file, async, otel, or a registered type
    path = "logs/app-{pid}.mmlog"
    size = "64 MiB"
    level = "DEBUG"

    [loggers."app.db"]
    level = "DEBUG"
    handlers = ["db"]                 # names given by a handler's ``name`` key, or tables
    propagate = true
    capture_source = true             # this logger (and its children) only

A TOML file may also keep this table under ``[tool.mmaplog]`` (in
``pyproject.toml``).  Every mistake raises :class:`mmaplog.ConfigError` with
one message naming the key: ``handlers[1].size: must be a positive size, got -5``.
New handler types are added with :func:`register_handler_type`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from . import _lifecycle
from ._errors import ConfigError, WriterBusyError
from .handlers._base import Handler
from .handlers._options import HandlerOptions, config_level
from .layout import DEFAULT_SLOT_SIZE, MAX_SLOT_SIZE, MIN_SLOT_SIZE
from .logger import Logger, LoggerTree, default_tree, get_logger, on_default_tree
from .writer import DEFAULT_RING_SIZE

__all__ = ["ENVIRONMENT_VARIABLE", "HandlerFactory", "HandlerOptions", "configure", "get_logger", "load_toml",
           "register_handler_type"]

#: The environment variable that names a configuration file.
ENVIRONMENT_VARIABLE = "MMAPLOG_CONFIG"

_TOP_KEYS = ("level", "format", "handlers", "loggers", "capture_uncaught", "flush_on_sigterm", "capture_source")
_LOGGER_KEYS = ("level", "handlers", "propagate", "capture_source")

#: ``factory(options) -> Handler``: reads its keys from a :class:`HandlerOptions` and builds the handler.
HandlerFactory = Callable[[HandlerOptions], Handler]
_registry: dict[str, HandlerFactory | str] = {}


def register_handler_type(name: str, factory: HandlerFactory | str) -> None:
    """Make ``type = name`` build handlers with ``factory`` (or ``"module:function"``, imported on first use)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"handler type name must be a non-empty string, not {name!r}")
    _registry[name] = factory


def _lookup(name: str) -> HandlerFactory | None:
    factory = _registry.get(name)
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        module = __import__(module_name, fromlist=[attr])
        factory = _registry[name] = getattr(module, attr)
    return factory


def _text_format(options: HandlerOptions) -> str:
    from .handlers._format import LineFormat

    fmt = options.format()
    try:
        LineFormat(fmt)
    except ValueError as exc:
        raise options.error("format", str(exc)) from None
    return fmt


def _ring_factory(options: HandlerOptions) -> Handler:
    from .handlers.ring import RingHandler

    path = options.path()
    size = options.size("size", DEFAULT_RING_SIZE)
    slot_size = options.integer("slot_size", DEFAULT_SLOT_SIZE, minimum=MIN_SLOT_SIZE, maximum=MAX_SLOT_SIZE)
    if slot_size % 8:
        raise options.error("slot_size", f"must be a multiple of 8, got {slot_size}")
    if size < slot_size:
        raise options.error("size", f"must hold at least one slot ({slot_size} bytes), got {size}")
    rotate = options.integer("rotate", 0, minimum=0)
    mode = options.file_mode()
    level = options.level()
    fmt = options.string("format", None)
    options.finish()
    carried = options.carry_over_ring(path, level=level, format=fmt, size=size, slot_size=slot_size, rotate=rotate,
                                      mode=mode)
    if carried is not None:
        return carried
    return RingHandler(path, size=size, slot_size=slot_size, rotate=rotate, mode=mode, level=level, format=fmt)


def _console_factory(options: HandlerOptions) -> Handler:
    from .handlers.console import ConsoleHandler

    stream_name = options.choice("stream", ("stderr", "stdout"), "stderr")
    colour = options.choice("colour", ("auto", True, False), "auto")
    level = options.level()
    fmt = _text_format(options)
    options.finish()
    stream = sys.stdout if stream_name == "stdout" else None
    return ConsoleHandler(stream, level=level, format=fmt, colour=colour)


def _file_factory(options: HandlerOptions) -> Handler:
    from .handlers.file import FileHandler

    path = options.path()
    mode = options.file_mode()
    level = options.level()
    fmt = _text_format(options)
    options.finish()
    return FileHandler(path, level=level, format=fmt, mode=mode)


def _async_factory(options: HandlerOptions) -> Handler:
    from .handlers.async_ import AsyncHandler  # imported on first use: it starts threads only when built

    return AsyncHandler.from_config(options)


register_handler_type("ring", _ring_factory)
register_handler_type("console", _console_factory)
register_handler_type("file", _file_factory)
register_handler_type("async", _async_factory)
register_handler_type("otel", "mmaplog.integrations.otel:from_config")  # imported only when a table names it


class _Builder:
    """Builds the handlers of one configuration without touching the running one.

    New handlers go to :attr:`built`; handlers of the running configuration
    that the new one names again (a ring on the same path) are taken over
    into :attr:`carried` rather than opened twice.  If any part fails,
    :meth:`discard` closes what was built and nothing else.
    """

    def __init__(self, default_format: str, previous: list[Handler]) -> None:
        self.default_format = default_format
        self.built: list[Handler] = []
        self.carried: list[Handler] = []
        #: Levels of carried-over handlers to set when the configuration is swapped in.
        self.levels: list[tuple[Handler, int]] = []
        self.named: dict[str, Handler] = {}
        self._previous = previous

    def handler(self, spec: Any, key: str) -> Handler:
        if isinstance(spec, Handler):
            return spec
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{key}: must be a table with a 'type' key (or a Handler), got {spec!r}")
        table = dict(spec)
        kind = table.pop("type", None)
        name = table.pop("name", None)
        if kind is None:
            raise ConfigError(f"{key}.type: required (one of {', '.join(sorted(_registry))})")
        factory = _lookup(kind) if isinstance(kind, str) else None
        if factory is None:
            raise ConfigError(f"{key}.type: unknown handler type {kind!r} (known: {', '.join(sorted(_registry))})")
        if name is not None and (not isinstance(name, str) or name in self.named):
            raise ConfigError(f"{key}.name: must be a unique string, got {name!r}")
        options = HandlerOptions(key, table, self)
        try:
            handler = factory(options)
        except ConfigError:
            raise
        except WriterBusyError as exc:
            raise ConfigError(f"{key}.path: {exc}{_busy_hint(table.get('path'))}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{key}: cannot create {kind} handler: {exc}") from None
        if not any(handler is c for c in self.carried):
            self.built.append(handler)
        options.finish()
        if name is not None:
            self.named[name] = handler
        return handler

    def handler_list(self, value: Any, key: str) -> list[Handler]:
        if isinstance(value, (Mapping, Handler)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: must be a list of handlers, got {value!r}")
        return [self.handler(spec, f"{key}[{i}]") for i, spec in enumerate(value)]

    def reference_list(self, value: Any, key: str) -> list[Handler]:
        """Handlers of a logger: names of handlers defined above, or tables."""
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: must be a list of handler names or tables, got {value!r}")
        found = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                if item not in self.named:
                    known = ", ".join(sorted(self.named)) or "none are named"
                    raise ConfigError(f"{key}[{i}]: no handler is named {item!r} ({known})")
                found.append(self.named[item])
            else:
                found.append(self.handler(item, f"{key}[{i}]"))
        return found

    def carry_over_ring(self, options: HandlerOptions, path: str, level: int, fmt: str | None,
                        settings: dict[str, Any]) -> Handler | None:
        from .handlers.ring import RingHandler

        target = _resolve(path)
        for old in self._previous:
            if not isinstance(old, RingHandler) or any(old is c for c in self.carried):
                continue
            template = old._template
            if template is None or old.closed or not old._owns_writer or _resolve(template) != target:
                continue
            if old.writer is None and not old._reopen_pending:
                continue  # a forked child's handler that may not write the parent's file: open afresh
            for name, value in settings.items():
                if old._options.get(name) != value:
                    raise options.error(
                        name, f"the ring {target} is open in the running configuration with {name}="
                        f"{old._options.get(name)!r}; it stays open across a reload, so its settings cannot "
                        f"change (drop it from the configuration first, or use another path), got {value!r}")
            old_fmt = old.line_format.fmt if old.line_format is not None else None
            if old_fmt != fmt:
                raise options.error(
                    "format", f"the ring {target} is open in the running configuration with format="
                    f"{old_fmt!r}; it stays open across a reload, so its format cannot change, got {fmt!r}")
            self.carried.append(old)
            if old.level != level:
                self.levels.append((old, level))
            return old
        return None

    def discard(self) -> None:
        """Close what this build made (outermost first), never what it took over or was given."""
        made = {id(h) for h in self.built}
        for handler in _front_to_back(self.built):
            _close_handler(handler, lambda h: id(h) in made)


def _resolve(path: str) -> Path:
    return Path(path.replace("{pid}", str(os.getpid()))).absolute()


def _busy_hint(path: Any) -> str:
    if isinstance(path, (str, os.PathLike)) and "{pid}" not in os.fspath(path):
        return ("; a ring has one writer at a time: when several processes run this configuration, put {pid} "
                "in the path so each writes a file of its own (e.g. 'logs/app-{pid}.mmlog')")
    return ""


def _inner(handler: Handler) -> tuple[Handler, ...]:
    """The handlers ``handler`` wraps (an AsyncHandler's), else none."""
    inner = getattr(handler, "handlers", ())
    return tuple(h for h in inner if isinstance(h, Handler)) if isinstance(inner, (tuple, list)) else ()


def _reachable(handlers: Iterable[Handler]) -> list[Handler]:
    """``handlers`` and everything they wrap, each once, outermost first."""
    found: list[Handler] = []
    seen: set[int] = set()
    todo = list(handlers)
    while todo:
        handler = todo.pop(0)
        if id(handler) in seen:
            continue
        seen.add(id(handler))
        found.append(handler)
        todo.extend(_inner(handler))
    return found


def _front_to_back(handlers: Iterable[Handler]) -> list[Handler]:
    """``handlers`` and what they wrap, each after every handler that wraps it (so a queue drains before its sink closes)."""
    found = _reachable(handlers)
    depth = {id(h): 0 for h in found}
    for _ in range(len(found)):  # longest path from a front; a cycle cannot make this loop forever
        changed = False
        for handler in found:
            for inner in _inner(handler):
                if depth[id(inner)] <= depth[id(handler)]:
                    depth[id(inner)] = depth[id(handler)] + 1
                    changed = True
        if not changed:
            break
    return sorted(found, key=lambda h: depth[id(h)])


def _close_handler(handler: Handler, owned: Callable[[Handler], bool]) -> None:
    """Flush and close ``handler`` when ``owned(handler)``; a wrapper closes only the inner handlers that are owned."""
    if not owned(handler):
        return
    close_owned = getattr(handler, "_close_owned", None)
    if close_owned is None:  # an async handler's close drains by itself, and gives up on a stalled worker
        try:
            handler.flush()
        except Exception:  # noqa: BLE001
            pass
    try:
        if close_owned is not None:
            close_owned(owned)
        else:
            handler.close()
    except Exception:  # noqa: BLE001
        pass


# ---------------------------------------------------------------------- TOML
def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML configuration file (its ``[tool.mmaplog]`` table when it has one)."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ModuleNotFoundError:
            raise ConfigError(
                f"{os.fspath(path)}: reading TOML needs the 'tomli' package on Python "
                f"{sys.version_info[0]}.{sys.version_info[1]} (pip install 'mmaplog[toml]')"
            ) from None
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{os.fspath(path)}: invalid TOML ({exc})") from None
    tool = data.get("tool")
    if isinstance(tool, dict) and isinstance(tool.get("mmaplog"), dict):
        return dict(tool["mmaplog"])
    return data


# ---------------------------------------------------------------------- configure
#: Serialises configure() calls (building, swapping and closing), so two reloads never interleave.
_configure_lock = threading.RLock()


def _after_fork_in_child() -> None:
    global _configure_lock
    _configure_lock = threading.RLock()


_lifecycle.on_fork_child(_after_fork_in_child)


class _TreeState:
    """What the last configure() of a tree made, so the next one can undo it."""

    def __init__(self) -> None:
        self.handlers: list[Handler] = []
        self.loggers: list[str] = []
        self.uncaught_hooks = False
        self.sigterm_flush = False


def _state(tree: LoggerTree) -> _TreeState:
    state: _TreeState | None = getattr(tree, "_config_state", None)
    if state is None:
        state = _TreeState()
        state.handlers = list(getattr(tree, "startup_handlers", ()))
        tree._config_state = state  # type: ignore[attr-defined]
    return state


def configure(
    config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    /,
    *,
    tree: LoggerTree | None = None,
    **options: Any,
) -> Logger:
    """Set up the root logger and return it; replaces (and closes) what the previous configure() made.

    ``config`` is a dict or the path of a TOML file; keyword arguments
    (``level``, ``handlers``, ``format``, ``loggers``, ``capture_uncaught``,
    ``flush_on_sigterm``) are applied over it.  ``handlers`` may hold
    :class:`~mmaplog.Handler` objects as well as tables.  Without any
    argument, the file named by ``MMAPLOG_CONFIG`` is loaded when set, and a
    console handler at INFO is set up otherwise.  Raises
    :class:`~mmaplog.ConfigError`, naming the key, before changing anything.

    A reload is a transaction: the new configuration is built while the old
    one runs (a ring it names again with the same settings is carried over,
    not reopened), every logger is switched in one step, and then the old
    handlers the new configuration does not use are closed from the front to
    the back, so an async handler drains before what it feeds is closed.
    ``docs/API.md`` ("Reconfiguration rules") compares this with
    ``logging.config.dictConfig``.
    """
    if tree is None:
        tree = default_tree()
    source = ""
    if config is None and not options and os.environ.get(ENVIRONMENT_VARIABLE):
        config = os.environ[ENVIRONMENT_VARIABLE]
        source = f"{ENVIRONMENT_VARIABLE}={config}"
    if isinstance(config, (str, os.PathLike)):
        source = source or os.fspath(config)
        table = load_toml(config)
    elif config is None:
        table = {}
    elif isinstance(config, Mapping):
        table = dict(config)
    else:
        raise ConfigError(f"configuration must be a dict or a TOML file path, got {type(config).__name__}")
    table.update(options)
    try:
        return _apply(table, tree)
    except ConfigError as exc:
        if source:
            raise ConfigError(f"{source}: {exc}") from None
        raise


def configure_from_environment(tree: LoggerTree) -> None:
    """Configure ``tree`` from the file ``MMAPLOG_CONFIG`` names, when it is set."""
    if os.environ.get(ENVIRONMENT_VARIABLE):
        configure(tree=tree)


# The default tree (behind get_logger) is configured from the environment when it is made.  get_logger is
# re-exported here: ``mmaplog.get_logger`` is taken from this module, so the step is registered before use.
on_default_tree(configure_from_environment)


def _apply(table: dict[str, Any], tree: LoggerTree) -> Logger:
    for key in table:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{key}: unknown key (expected one of {', '.join(_TOP_KEYS)})")
    level = config_level(table.get("level", "INFO"), "level")
    default_format = table.get("format")
    if default_format is None:
        from .handlers._format import DEFAULT_FORMAT

        default_format = DEFAULT_FORMAT
    if not isinstance(default_format, str):
        raise ConfigError(f"format: must be a format string, got {default_format!r}")
    flags = {}
    for key in ("capture_uncaught", "flush_on_sigterm", "capture_source"):
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {value!r}")
        flags[key] = value
    loggers = table.get("loggers", {})
    if not isinstance(loggers, Mapping):
        raise ConfigError(f"loggers: must be a table of logger names, got {loggers!r}")
    plans: list[tuple[str, dict[str, Any]]] = []
    for name, spec in loggers.items():
        key = f"loggers.{name}" if "." not in name else f'loggers."{name}"'
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{key}: must be a table, got {spec!r}")
        for sub in spec:
            if sub not in _LOGGER_KEYS:
                raise ConfigError(f"{key}.{sub}: unknown key (expected one of {', '.join(_LOGGER_KEYS)})")
        plan: dict[str, Any] = {}
        if "level" in spec:
            plan["level"] = config_level(spec["level"], f"{key}.level")
        if "propagate" in spec:
            if not isinstance(spec["propagate"], bool):
                raise ConfigError(f"{key}.propagate: must be true or false, got {spec['propagate']!r}")
            plan["propagate"] = spec["propagate"]
        if "capture_source" in spec:
            if not isinstance(spec["capture_source"], bool):
                raise ConfigError(f"{key}.capture_source: must be true or false, got {spec['capture_source']!r}")
            plan["capture_source"] = spec["capture_source"]
        if "handlers" in spec:
            plan["handlers"] = spec["handlers"]
        plans.append((name, plan))
    if flags["flush_on_sigterm"] and not _main_thread():
        raise ConfigError("flush_on_sigterm: can only be installed from the main thread")

    with _configure_lock:
        state = _state(tree)
        builder = _Builder(default_format, state.handlers)
        try:
            root_handlers = builder.handler_list(table.get("handlers", [{"type": "console"}]), "handlers")
            logger_plans = []
            for name, plan in plans:
                key = f"loggers.{name}" if "." not in name else f'loggers."{name}"'
                if "handlers" in plan:
                    plan["handlers"] = builder.reference_list(plan["handlers"], f"{key}.handlers")
                logger_plans.append((name, plan))
        except BaseException:
            builder.discard()
            raise
        _swap(tree, state, builder, level, root_handlers, logger_plans, flags["capture_source"])
        _install_hooks(state, tree.root, flags)
    return tree.root


def _swap(tree: LoggerTree, state: _TreeState, builder: _Builder, level: int, root_handlers: list[Handler],
          logger_plans: list[tuple[str, dict[str, Any]]], capture_source: bool = False) -> None:
    """Switch every logger to the new handlers in one step, then close the old configuration front to back."""
    from .logger import _Config

    with _Config.lock:  # the lock every logger change takes: no other change interleaves with the switch
        for handler, handler_level in builder.levels:
            handler.level = handler_level
        root = tree.root
        for name in state.loggers:
            logger = tree.get(name)
            logger.set_handlers(())
            logger.set_level(None)
            logger.propagate = True
            logger.capture_source = None
        root.set_level(level)
        root.capture_source = capture_source
        root.set_handlers(root_handlers)
        for name, plan in logger_plans:
            logger = tree.get(name)
            if "level" in plan:
                logger.set_level(plan["level"])
            if "propagate" in plan:
                logger.propagate = plan["propagate"]
            if "capture_source" in plan:
                logger.capture_source = plan["capture_source"]
            if "handlers" in plan:
                logger.set_handlers(plan["handlers"])
        previous = state.handlers
        state.handlers = list(builder.built) + list(builder.carried)
        state.loggers = [name for name, _ in logger_plans]
    # Everything the new configuration reaches stays open; the rest of the old one is closed from the front
    # (an async handler drains its queue into its inner handlers and stops) to the back (what it fed).
    used = [h for _, plan in logger_plans for h in plan.get("handlers", ())]
    keep = {id(h) for h in _reachable([*root_handlers, *used, *builder.built, *builder.carried])}
    for old in _front_to_back(previous):
        _close_handler(old, lambda h: id(h) not in keep)


def _install_hooks(state: _TreeState, root: Logger, flags: dict[str, bool]) -> None:
    """Install the hooks asked for; remove only what an earlier configure() installed."""
    if flags["capture_uncaught"]:
        _lifecycle.install_uncaught_hooks(root)
        state.uncaught_hooks = True
    elif state.uncaught_hooks:
        _lifecycle.uninstall_uncaught_hooks()
        state.uncaught_hooks = False
    if flags["flush_on_sigterm"]:
        _lifecycle.install_sigterm_flush()
        state.sigterm_flush = True
    elif state.sigterm_flush and _main_thread():
        _lifecycle.uninstall_sigterm_flush()
        state.sigterm_flush = False


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
