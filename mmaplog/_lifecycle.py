"""Process life: flush and close at exit, log uncaught exceptions, flush on SIGTERM, stay safe across fork.

Handlers register themselves with :func:`track` when created.  The first one
installs an ``atexit`` hook (never at import) that closes every live handler,
outermost first, so buffered records reach their files before the interpreter
goes; each later handler moves the hook back to the end of the ``atexit``
queue, so it runs before the exit hooks of anything those handlers write into.
After ``os.fork()`` every tracked handler gets ``_after_fork_in_child()`` in
the child: locks are made new and ring handlers never write into the parent's
ring.

Children of :mod:`multiprocessing` end with ``os._exit()`` (fork and
forkserver) after running ``multiprocessing.util._exit_function``, so
``atexit`` hooks never run there.  Once ``multiprocessing`` is imported, the
same :func:`close_all` is registered as a ``multiprocessing.util.Finalize``
with an exit priority, which that function runs after the target returns,
calls ``sys.exit`` or raises.  multiprocessing clears its finalizers when a
child starts, so the registration is renewed from
``multiprocessing.util.register_after_fork`` (run right after that), and
from the ``os.register_at_fork`` hook for a parent that imported
multiprocessing only after its handlers were made.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = [
    "Closable",
    "CriticalLogger",
    "attached_handlers",
    "close_all",
    "flush_all",
    "install_sigterm_flush",
    "install_uncaught_hooks",
    "on_fork_child",
    "track",
    "uninstall_sigterm_flush",
    "uninstall_uncaught_hooks",
]


class Closable(Protocol):
    """What this module needs of a handler (:class:`mmaplog.Handler` has it): hooks sit below the handlers."""

    def flush(self) -> None: ...

    def close(self) -> None: ...


class CriticalLogger(Protocol):
    """What the uncaught-exception hooks need of a logger (:class:`mmaplog.Logger` has it)."""

    def critical(self, msg: Any, /, *args: Any, exc_info: Any = None, **fields: Any) -> None: ...


#: Seconds the SIGTERM handler waits for handlers to flush before letting the process end anyway.
SIGTERM_FLUSH_TIMEOUT = 5.0

_tracked: weakref.WeakKeyDictionary[Closable, int] = weakref.WeakKeyDictionary()
_order = itertools.count()
_lock = threading.Lock()
_fork_hook_installed = False
_child_hooks: list[Callable[[], None]] = []
_attached: list[Callable[[], Iterable[Closable]]] = []

#: Exit priority of the multiprocessing finalizer: above the library's own (queues' feeders use 10 and
#: below), so handlers drain while everything they may write through still works.
MULTIPROCESSING_EXIT_PRIORITY = 100
#: The process in which the multiprocessing finalizer is registered (0: none yet).
_mp_finalizer_pid = 0
_mp_after_fork_registered = False


class _Anchor:
    """A long-lived object to key ``multiprocessing.util.register_after_fork`` (it holds its key weakly)."""


_anchor = _Anchor()


def _hook_multiprocessing() -> None:
    """Register :func:`close_all` on multiprocessing's exit path, once per process; never raises.

    Only when ``multiprocessing`` is already imported: a process that never
    imports it never starts its children, and importing it here would cost
    every program that logs.
    """
    global _mp_finalizer_pid, _mp_after_fork_registered
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    pid = os.getpid()
    if _mp_finalizer_pid == pid and _mp_after_fork_registered:
        return
    try:
        if _mp_finalizer_pid != pid:
            util.Finalize(None, close_all, exitpriority=MULTIPROCESSING_EXIT_PRIORITY)
            _mp_finalizer_pid = pid
        if not _mp_after_fork_registered:
            util.register_after_fork(_anchor, _renew_multiprocessing_hook)
            _mp_after_fork_registered = True
    except Exception:  # noqa: BLE001 - a changed multiprocessing must not stop logging
        pass


def _renew_multiprocessing_hook(_: object) -> None:
    """A multiprocessing child starts: its finalizers were just cleared, register ours again."""
    global _mp_finalizer_pid
    _mp_finalizer_pid = 0
    _hook_multiprocessing()


def track(handler: Closable) -> None:
    """Have ``handler`` flushed and closed at interpreter exit and told about forks."""
    global _fork_hook_installed
    with _lock:
        _tracked[handler] = next(_order)
        # Re-registering keeps this hook last in the queue, so it runs first at exit.
        atexit.unregister(close_all)
        atexit.register(close_all)
        if not _fork_hook_installed:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True
    _hook_multiprocessing()


def on_fork_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in the child after ``os.fork()`` (in the order registered, before any handler hook).

    Modules that keep process-wide locks or caches (handlers, loggers)
    register here when imported, so this module needs to know none of them.
    """
    _child_hooks.append(hook)


def attached_handlers(source: Callable[[], Iterable[Closable]]) -> None:
    """Register a source of handlers attached to loggers; they are closed first at exit (outermost)."""
    _attached.append(source)


def _closing_order() -> list[Closable]:
    """Handlers attached to loggers first, then the rest newest first (wrappers before what they wrap)."""
    with _lock:
        tracked = sorted(_tracked.items(), key=lambda item: -item[1])
    order: list[Closable] = []
    seen: set[int] = set()
    for source in _attached:
        try:
            found = source()
        except Exception:  # noqa: BLE001 - exit must go on
            found = []
        for handler in found:
            if id(handler) not in seen:
                seen.add(id(handler))
                order.append(handler)
    for handler, _ in tracked:
        if id(handler) not in seen:
            seen.add(id(handler))
            order.append(handler)
    return order


def flush_all() -> None:
    """Flush every live handler; never raises."""
    for handler in _closing_order():
        try:
            handler.flush()
        except Exception:  # noqa: BLE001
            pass


def close_all() -> None:
    """Flush and close every live handler, outermost first; never raises (the ``atexit`` hook)."""
    for handler in _closing_order():
        try:
            handler.flush()
        except Exception:  # noqa: BLE001
            pass
        try:
            handler.close()
        except Exception:  # noqa: BLE001
            pass


def _after_fork_in_child() -> None:
    global _lock, _mp_finalizer_pid
    _lock = threading.Lock()
    _mp_finalizer_pid = 0
    for hook in _child_hooks:
        try:
            hook()
        except Exception:  # noqa: BLE001
            pass
    for handler in list(_tracked):
        reset = getattr(handler, "_after_fork_in_child", None)
        if reset is not None:
            try:
                reset()
            except Exception:  # noqa: BLE001
                pass
    if _tracked:
        _hook_multiprocessing()


# ---------------------------------------------------------------------- uncaught exceptions
class _Hooks:
    """The hooks installed by :func:`install_uncaught_hooks` and the ones they chain to."""

    logger: CriticalLogger | None = None
    previous_sys: Callable[..., Any] | None = None
    previous_threading: Callable[..., Any] | None = None


def _sys_hook(exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
    logger = _Hooks.logger
    if logger is not None and not issubclass(exc_type, KeyboardInterrupt):
        try:
            logger.critical("uncaught exception: %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))
            flush_all()
        except Exception:  # noqa: BLE001
            pass
    (_Hooks.previous_sys or sys.__excepthook__)(exc_type, exc, tb)


def _threading_hook(args: threading.ExceptHookArgs) -> None:
    logger = _Hooks.logger
    if logger is not None and args.exc_type is not SystemExit and args.exc_value is not None:
        name = args.thread.name if args.thread is not None else "?"
        try:
            logger.critical(
                "uncaught exception in thread %s: %s: %s", name, args.exc_type.__name__, args.exc_value,
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback), thread_name=name,
            )
            flush_all()
        except Exception:  # noqa: BLE001
            pass
    (_Hooks.previous_threading or threading.__excepthook__)(args)


def install_uncaught_hooks(logger: CriticalLogger) -> None:
    """Log uncaught exceptions (main and other threads) as CRITICAL on ``logger``, then run the previous hooks."""
    _Hooks.logger = logger
    if sys.excepthook is not _sys_hook:
        _Hooks.previous_sys = sys.excepthook
        sys.excepthook = _sys_hook
    if threading.excepthook is not _threading_hook:
        _Hooks.previous_threading = threading.excepthook
        threading.excepthook = _threading_hook


def uninstall_uncaught_hooks() -> None:
    """Put back the hooks that were there before :func:`install_uncaught_hooks`."""
    if sys.excepthook is _sys_hook:
        sys.excepthook = _Hooks.previous_sys or sys.__excepthook__
    if threading.excepthook is _threading_hook:
        threading.excepthook = _Hooks.previous_threading or threading.__excepthook__
    _Hooks.logger = None


# ---------------------------------------------------------------------- SIGTERM
class _Sigterm:
    previous: Any = None
    installed = False


def _flush_with_deadline(action: Callable[[], None], timeout: float) -> None:
    """Run ``action`` in a helper thread and wait at most ``timeout`` seconds.

    A signal handler runs in the main thread between two bytecodes, possibly
    while that thread holds a handler's lock; doing the work elsewhere means
    such a lock costs at most the timeout instead of a hung process.
    """
    worker = threading.Thread(target=action, name="mmaplog-sigterm-flush", daemon=True)
    worker.start()
    worker.join(timeout)


def _on_sigterm(signum: int, frame: types.FrameType | None) -> None:
    previous = _Sigterm.previous
    if callable(previous):
        _flush_with_deadline(flush_all, SIGTERM_FLUSH_TIMEOUT)
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        _flush_with_deadline(flush_all, SIGTERM_FLUSH_TIMEOUT)
        return
    # The default action: close everything, then die of SIGTERM so the exit status is the usual one.
    _flush_with_deadline(close_all, SIGTERM_FLUSH_TIMEOUT)
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def install_sigterm_flush() -> None:
    """On SIGTERM flush every handler, then do what SIGTERM did before (by default: end the process).

    Must be called from the main thread (a Python rule for signal handlers).
    """
    if _Sigterm.installed:
        return
    _Sigterm.previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _Sigterm.installed = True


def uninstall_sigterm_flush() -> None:
    """Put back the SIGTERM handler that was there before :func:`install_sigterm_flush`."""
    if not _Sigterm.installed:
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        previous = _Sigterm.previous
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    _Sigterm.installed = False
    _Sigterm.previous = None
