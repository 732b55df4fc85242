"""The writer's counters (record seqs, slot positions): one atomic step to take a value, and an exact peek.

With the C accelerator, a counter is a ``mmaplog._cwrite.Counter``: a 64-bit
value and its stop, which the C append and the async producer step with one
increment under the GIL (``mmaplog_claim`` in ``_slot.h``), ``next()`` in
Python, and ``peek()`` reads.  Without it (or with ``MMAPLOG_PURE_PYTHON=1``), a
counter is an iterator over ``range(start, stop)`` with the same values and
limits: the hot paths take a value with ``next()``, one C call that holds the
GIL for its whole length, so two threads never get the same value, as with
``itertools.count``.  Rotation and the size checks must read the next value
without taking it (a value taken and not written is a hole in the ring and a
gap in the seqs).  The C counter is read directly; a range iterator knows how many values it has left, and
:func:`peek` reads that through ``operator.length_hint``, which a range iterator
answers exactly: the next value is ``stop - left``.  The read is one C call too,
so it never sees half a step.

``stop`` is ``sys.maxsize`` (CPython's fast range iterator, on C integers)
unless ``start`` is at or beyond it, where the iterator runs on Python integers
to 2**64 - 2 (the most ``length_hint`` can count from 2**63 - 1).  Either way a
counter runs out short of what a slot's 64-bit fields hold -- after 2**63 - 2
values from 1, or at 2**64 - 2 from a crafted file's positions past 2**63 --
and a write that finds it empty fails and is counted, as one past 2**64 would.

Where there is no GIL, writes run under the writer's claim lock, so a counter is
advanced by one thread at a time there; a :func:`peek` outside that lock (the
size check of ``flush()``) may read a value a write takes a moment later, as it
may under the GIL.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Iterator
from typing import Any

from . import _native

__all__ = ["Counter", "counter", "peek"]

#: A counter: ``next(c)`` takes the next value.
Counter = Iterator[int]
_FAST_STOP = sys.maxsize
_SLOW_STOP = (1 << 64) - 2
_FAST = type(iter(range(0)))


_cwrite: Any = _native.load("_cwrite")
#: The C accelerator's counter (None without it): the same values and limits, and the C append and the async
#: producer take a value with one increment instead of making an int (a quarter of the async producer's cost).
_NATIVE: Any = getattr(_cwrite, "Counter", None)


def _range_counter(start: int) -> Counter:
    """The pure-Python counter: an iterator over a range (what :func:`counter` gives without the C accelerator)."""
    if start < _FAST_STOP:
        return iter(range(start, _FAST_STOP))
    return iter(range(min(start, _SLOW_STOP), _SLOW_STOP))


def counter(start: int) -> Counter:
    """A counter whose first value is ``start`` (0 <= ``start``)."""
    if _NATIVE is not None:
        return _NATIVE(start, _FAST_STOP if start < _FAST_STOP else _SLOW_STOP)  # type: ignore[no-any-return]
    return _range_counter(start)


def peek(c: Counter) -> int:
    """The value ``next(c)`` would take now, without taking it."""
    if type(c) is _NATIVE:
        return c.peek()  # type: ignore[attr-defined, no-any-return]
    return (_FAST_STOP if type(c) is _FAST else _SLOW_STOP) - operator.length_hint(c)
