"""What every part of :class:`mmaplog.writer.RingWriter` shares: its state, failure counting, reporting.

The writer is one class put together from parts, each in a module of its own
(bottom to top): this base; the truncation repair (:mod:`mmaplog._repair`);
opening a ring at its path (:mod:`mmaplog._opening`); rotation and the checks of
the live file (:mod:`mmaplog._rotation`); flushing, closing and fork abandonment
(:mod:`mmaplog._closing`); batches (:mod:`mmaplog._batch`); and on top, in
:mod:`mmaplog.writer`, claiming and appending, the hot paths.  The attributes
are declared here and set by ``RingWriter.__init__``.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from . import _truncation
from ._counter import Counter
from ._ringmap import RingMap as _Map

__all__ = ["GIL", "WriterBase", "report"]

#: Free-threaded builds cannot rely on the GIL to make ``next(count)`` atomic.
GIL: bool = getattr(sys, "_is_gil_enabled", lambda: True)()


def report(message: str) -> None:
    """Write one line to stderr without ever raising."""
    try:
        sys.stderr.write(f"mmaplog: {message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr may be closed or broken at shutdown
        pass


_report = report


class WriterBase:
    """The state of a ring writer and the methods every part of it uses."""

    path: Path
    rotate: int
    _mode: int
    _prefault: bool
    _guard_truncation: bool
    _requested: tuple[int, int]
    _lock: threading.RLock
    _claim_lock: threading.RLock
    _registering: bool
    _rotating: bool
    _next_check: float
    _names: dict[str, int]
    _next_name_id: int
    _pid: int
    _closed: bool
    _reported: set[str]
    dropped: int
    errors: int
    cut_slots: int
    _map: _Map
    _seqs: Counter
    _fast: Any
    _retired: list[_Map]

    def _use(self, m: _Map) -> None:
        """Make ``m`` the map records go to (and the C appender's target)."""
        self._map = m
        if self._fast is not None:
            self._fast.target(m.mm, m.positions, self._names, m.header.slot_count, m.header.data_offset,
                              m.header.slot_size, m.limit, _truncation.counter(m.guard),
                              m.guard.seen if m.guard is not None else 0)

    def _failed(self, exc: BaseException) -> int:
        self.dropped += 1
        if self._closed:
            return 0
        self.errors += 1
        key = type(exc).__name__
        if key not in self._reported:
            self._reported.add(key)
            _report(f"{self.path}: a record could not be written ({key}: {exc}); counting further failures silently")
        return 0

    def _report_once(self, key: str, message: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            _report(message)

    def _write_record(self, *args: Any, **kwargs: Any) -> int:
        """Write a record already claimed into as many slots as it needs (``RingWriter``'s own)."""
        raise NotImplementedError

    def _check_size(self, m: _Map) -> None:
        """Notice the file of ``m`` cut short by another process and extend it back (``RotationMixin``'s own)."""
        raise NotImplementedError

    def _write_py(self, *args: Any, **kwargs: Any) -> int:
        """The Python ``write`` (``RingWriter``'s own)."""
        raise NotImplementedError
