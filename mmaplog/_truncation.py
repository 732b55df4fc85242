"""Surviving a ring file that another process truncates under a live writer.

A writer stores records into a shared mapping of its file.  When someone cuts
the file short -- logrotate's ``copytruncate``, ``: > app.mmlog``, a careless
``truncate -s 0`` -- the next store into a page past the new end raises SIGBUS,
whose default action kills the process.  No check made before a store can close
the race (the file can shrink between the check and the store), so the guard
works in two halves:

* in the signal handler, in C (:mod:`mmaplog._sigbus`, async-signal-safe, no
  Python): a fault inside a registered mapping gets an anonymous page mapped
  over the faulting page and bumps that mapping's fault counter; the store is
  retried by the CPU and lands in that page.  Every other SIGBUS (sent with
  ``kill``, or a fault outside our mappings) goes to the disposition that was
  in place before, exactly as if the guard were not installed;
* in ordinary code, right after each store: the writer compares the counter
  with the value it read before (one call on this path, one load on the C
  path) and, when it moved, calls :func:`_repair` under the writer's lock: the
  file is extended back (``posix_fallocate``, ``ftruncate`` if that fails), the
  header and the name table are written again when they were cut, one line
  goes to stderr, and the file is mapped again over the same addresses
  (``MAP_FIXED``), so every pointer and the :class:`mmap.mmap` object stay
  valid.  The writer then stores its record again: a write call that returned
  left a readable record.  When even that store faults (a hole the file system
  cannot back: the disk is full), the record is counted in
  ``RingWriter.dropped`` and the file is mapped again, so that no anonymous
  page outlives the write that caused it; nothing loops.

Without the C extension (no compiler at install time) there is no guard: a
truncated ring kills its writer with SIGBUS, as any program writing through
``mmap`` would be.  ``MMAPLOG_PURE_PYTHON=1`` does not turn the guard off.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from typing import Any

from . import _native, _shortfile
from . import layout as L

__all__ = ["Region", "counter", "faults", "forget", "remap", "reset_after_fork", "say", "supported", "watch"]

_sigbus: Any = _native.guard()


def _no_faults(slot: int) -> int:
    return 0


#: faults(slot) -> pages of that region replaced by anonymous memory so far (0 for slot -1 or without the guard).
faults = _sigbus.faults if _sigbus is not None else _no_faults


def supported() -> bool:
    """True where the guard is available (the C extension ``mmaplog._sigbus`` is built)."""
    return _sigbus is not None


class Region:
    """One watched mapping: its slot in the guard's table and what is needed to repair its file.

    Owned by the writer's map and touched only under the writer's lock.
    """

    __slots__ = ("fd", "header", "live", "path", "repairs", "reported", "seen", "slot")

    def __init__(self, slot: int, fd: int, header: L.FileHeader, path: object) -> None:
        self.slot = slot
        self.fd = fd
        self.header = header
        self.path = path
        #: The fault counter's value once the last fault was dealt with (the file mapped again).
        self.seen = faults(slot)
        self.live = True
        self.repairs = 0
        self.reported: set[str] = set()


def watch(mm: mmap.mmap, fd: int, header: L.FileHeader, path: object) -> Region | None:
    """Register ``mm`` (the shared mapping of ``fd``) with the guard; None where there is no guard or no room."""
    if _sigbus is None:
        return None
    try:
        slot = _sigbus.register(_sigbus.address(mm), len(mm), fd)
    except (OSError, ValueError):
        return None
    return Region(slot, fd, header, path)


def forget(region: Region | None) -> None:
    """Stop watching ``region`` (call before unmapping it or closing its descriptor); idempotent."""
    if region is not None and region.live:
        region.live = False
        _sigbus.unregister(region.slot)


def counter(region: Region | None) -> object:
    """The capsule the C append reads the fault counter through, or None without a guard."""
    return _sigbus.counter(region.slot) if region is not None and region.live else None


def remap(region: Region) -> None:
    """Map the file over the region again: every anonymous page the handler put there is dropped.

    The remap bumps the region's counter (a store another thread made into a dropped
    page sees the change after its store); the new value becomes ``region.seen``.
    """
    region.seen = _sigbus.remap(region.slot, region.fd)


def reset_after_fork() -> None:
    """In a forked child: nothing to do (the guard's table lock is reset by its own fork handler)."""


def say(region: Region, key: str, message: str) -> None:
    """One line on stderr, once per ``key`` for this region; never raises."""
    if key in region.reported:
        return
    region.reported.add(key)
    try:
        os.write(2, f"mmaplog: {region.path}: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def _repair(region: Region, mm: mmap.mmap, names: Mapping[str, int]) -> None:
    """Pages of ``region`` went to anonymous memory: extend the file back if it was cut, and map it again.

    Runs in ordinary code under the writer's lock, after the store that faulted;
    ``names`` is the writer's name table (name -> id) for this file.  Raises
    OSError when the file cannot be mapped again (the counter then stays unseen,
    so every later store asks again and is counted as lost if it faulted).
    """
    current = faults(region.slot)
    if current == region.seen:  # another thread dealt with this fault already
        return
    header = region.header
    size = header.file_size
    have = os.fstat(region.fd).st_size
    saved: dict[tuple[int, int], bytes] = {}
    if have < size:
        # Stores past the cut inside the page holding the new end did not fault; extending the file zeroes that
        # page's tail on some file systems (ext4): take the valid slots there first, put them back after.
        saved = _shortfile.readable_valid(mm, header, have)
        try:
            os.posix_fallocate(region.fd, 0, size)
        except OSError:
            os.ftruncate(region.fd, size)  # sparse: a store may still fault if the disk is full (counted)
        if have < header.data_offset:
            _rewrite_head(region, have, names)
        region.repairs += 1
        say(region, f"truncated {region.repairs}",
            f"the ring file was truncated to {have} bytes by another process (logrotate copytruncate?); "
            f"extended it back to {size} bytes and went on writing; records in the cut part are gone")
    remap(region)
    if saved:
        _shortfile.put_back(mm, header, have, saved, set(saved) - set(_shortfile.readable_valid(mm, header, have)))


def _rewrite_head(region: Region, have: int, names: Mapping[str, int]) -> None:
    """Write the header and the name table again after a truncation cut them (through the descriptor)."""
    header = region.header
    os.pwrite(region.fd, L.encode_header(header), 0)
    for name, ident in names.items():
        raw = name.encode("utf-8", "backslashreplace")
        if 1 <= ident <= header.name_entries and 0 < len(raw) <= L.NAME_MAX:
            off = header.name_offset + (ident - 1) * L.NAME_ENTRY_SIZE
            if off + L.NAME_ENTRY_SIZE > have:
                os.pwrite(region.fd, L.NAME_STRUCT.pack(len(raw), 0, L.name_check(raw), raw), off)
