"""Flushing and closing a writer, at exit too, and abandoning its ring in a forked child."""

from __future__ import annotations

import atexit
import os
import threading
import warnings
import weakref

from . import _truncation
from ._ringmap import RingMap as _Map
from ._rotation import RotationMixin

__all__ = ["ClosingMixin", "register_atexit"]

_open_writers: weakref.WeakSet[ClosingMixin] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _close_all_at_exit() -> None:
    for writer in list(_open_writers):
        writer.close()


def _abandon_all_in_child() -> None:
    """After ``os.fork()``, in the child: no inherited writer may touch its parent's ring."""
    global _atexit_lock
    _atexit_lock = threading.Lock()
    _truncation.reset_after_fork()
    for writer in list(_open_writers):
        writer._abandon_after_fork()


def register_atexit(writer: ClosingMixin) -> None:
    global _atexit_registered
    with _atexit_lock:
        _open_writers.add(writer)
        if not _atexit_registered:
            atexit.register(_close_all_at_exit)
            os.register_at_fork(after_in_child=_abandon_all_in_child)
            _atexit_registered = True


class ClosingMixin(RotationMixin):
    """flush(), close(), the finaliser and what a forked child does with an inherited writer."""

    def flush(self) -> None:
        """Force written records to stable storage (msync), for durability against power loss."""
        with self._lock:
            if not self._closed:
                self._check_size(self._map)
                self._map.mm.flush()
        self._check_live()

    def close(self) -> None:
        """Flush and unmap the file and release its lock; idempotent.  Later writes are counted as dropped."""
        # Where there is no GIL, whole writes run under _claim_lock: taking it first waits for the one in flight.
        with self._claim_lock, self._lock:
            if self._closed:
                return
            m = self._map
            if os.getpid() == self._pid:
                self._check_size(m)  # a cut nothing noticed must not leave a file readers refuse
            self._closed = True
            try:
                if os.getpid() == self._pid:
                    m.mm.flush()
            finally:
                self._let_go(m)
        _open_writers.discard(self)

    def _abandon_after_fork(self) -> None:
        """In a forked child: the mapping is shared with the parent, so stop writing (writes count as dropped).

        The child's copies of the descriptor and mapping are released without an
        unlock or a flush, so the parent keeps its lock and its ring untouched.
        """
        self._lock = threading.RLock()
        self._claim_lock = threading.RLock()
        self._registering = self._rotating = False
        if self._closed:
            return
        self._closed = True
        self._let_go(self._map)
        _open_writers.discard(self)

    def _let_go(self, m: _Map) -> None:
        """Stop every write into ``m`` (the current map), then unmap it and every retired one and close their files."""
        m.hot = (None,) * 9  # type: ignore[assignment]
        if self._fast is not None:
            self._fast.release()
        self._release(m)
        for old in self._retired:
            self._release(old)
        self._retired = []

    def __del__(self) -> None:
        # A writer dropped without close(): release its file and lock as a file object would (its records
        # are already in the page cache), and say so the way Python does for unclosed files.
        if getattr(self, "_closed", True) or getattr(self, "_map", None) is None:
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass
