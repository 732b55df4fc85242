"""One mapped ring file of a writer and its per-file counters (:class:`RingMap`), and touching its pages once."""

from __future__ import annotations

import errno
import mmap
import struct
from pathlib import Path

from . import _truncation
from . import layout as L
from ._counter import counter

__all__ = ["NEVER", "RingMap", "prefault"]

#: The position limit of a ring that never rotates (overwrites its oldest slots).
NEVER = 1 << 64
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)


class RingMap:
    """One mapped ring file and its per-file counters; replaced whole on rotation.

    The map is owned here, and the rule for it is: nothing stores into ``mm``
    unless the store cannot outlive the mapping.  Python code stores only
    through the :class:`mmap.mmap` object itself (slice assignment,
    ``struct.pack_into``), which checks that it is open on every call and holds
    the mapping for the length of that one call; no numpy array or memoryview
    over ``mm`` is kept across anything that can switch threads.  The C append
    holds a buffer export only between ``Appender.target`` and
    ``Appender.release`` and calls no Python code between taking its state and
    its commit.  ``close()``, rotation and the truncation repair take the
    writer's lock and release the C append (or retarget it) before they unmap
    or map again; a Python store racing them fails with ValueError, which is
    counted in ``dropped``.  ``guard`` is this mapping's region in the SIGBUS
    guard (None without one): every store is followed by a look at its fault
    counter (see :mod:`mmaplog._truncation`).  The Python stores read the
    counter before and after: a change, or a value before that differs from
    ``seen`` (a page made anonymous by another thread's fault and not yet
    repaired), means the store must be made again after the repair; a repair's
    remap bumps the counter, so a store it dropped is seen by its own thread.
    """

    __slots__ = ("fd", "guard", "header", "hot", "last_pos", "limit", "mm", "path", "positions", "seen", "slot",
                 "watch")

    def __init__(self, fd: int, mm: mmap.mmap, header: L.FileHeader, next_pos: int, limit: int, path: Path):
        self.fd = fd
        self.mm = mm
        self.header = header
        self.positions = counter(next_pos)
        self.limit = limit
        self.path = path
        self.guard: _truncation.Region | None = None
        self.slot = -1  # the guard's region slot (-1: none; _faults(-1) reads 0)
        self.seen = 0  # the guard's counter once the last fault was dealt with (guard.seen, read without a lookup)
        self.watch = -1  # the handle of the inotify watch on the file (-1: none)
        size = header.slot_size
        body = size - L.SLOT_TRAILER_SIZE
        pack = struct.Struct(f"{L.SLOT_HEADER_FORMAT}{L.slot_payload_size(size)}s").pack
        # Everything the hot path needs, unpacked in one step.
        payload = L.slot_payload_size(size)
        self.hot = (mm, pack, header.slot_count, header.data_offset, size, body, payload, limit, self.positions)

def prefault(mm: mmap.mmap, start: int) -> None:
    """Touch every page of the ring once so the hot path never pays a page fault."""
    try:
        mm.madvise(_MADV_POPULATE_WRITE, start, len(mm) - start)
        return
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EFAULT: the file was cut meanwhile; touching it would fault
            return
    except (ValueError, AttributeError):
        pass
    page = mmap.PAGESIZE
    for off in range(start, len(mm), page):
        mm[off] = mm[off]
