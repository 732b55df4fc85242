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

A cut that spares the pages the writer stores into (one inside the page that
holds the new end) raises nothing: stores past the new end land in a page the
file no longer covers, invisible to readers.  So the guard also watches each
ring file with inotify (:class:`_Watcher`, one daemon thread per process,
blocked in ``read`` until someone changes a ring file: stores through the
mapping raise no event); on a change the writer checks the file's size in
ordinary code and repairs it as above (``RingWriter._check_size``), putting
back the slots stored past the cut in the meantime.

Without the C extension (no compiler at install time) there is no guard: a
truncated ring kills its writer with SIGBUS, as any program writing through
``mmap`` would be.  ``MMAPLOG_PURE_PYTHON=1`` does not turn the guard off.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from . import _native, _series, _shortfile
from . import layout as L

__all__ = ["Region", "bump", "counter", "extend_back", "faults", "forget", "notice_changes", "remap", "reset_after_fork", "say",
           "supported", "unnotice", "watch"]

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


def bump(region: Region) -> None:
    """Bump ``region``'s counter: every store in flight checks it afterwards and asks the writer (see _check_size)."""
    _sigbus.bump(region.slot)


class _Watcher:
    """Tells writers when another process changed their file: one inotify descriptor, one daemon thread.

    States: *off* (no descriptor; also after a fork, in the child), *on* (the
    descriptor and the thread, which blocks in ``os.read`` without the GIL and
    runs a writer's callback, in ordinary code, for each change of its file).
    A writer adds its live file when it maps it and removes it before it unmaps
    it or closes the descriptor.  Where inotify is missing or its limits are
    reached, nothing is watched and the writer's periodic checks remain.
    """

    _EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)
    _IGNORED = 0x8000  # IN_IGNORED: the watch is gone (file deleted, or removed)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fd = -1
        self.callbacks: dict[int, weakref.WeakMethod[Any]] = {}
        self.failed = False

    def add(self, fd: int, callback: Any) -> int:
        """Watch the file open as ``fd``; ``callback`` (a bound method, held weakly) runs on each change. -1: not watched."""
        with self.lock:
            if self.failed:
                return -1
            try:
                if self.fd < 0:
                    self.fd = _sigbus.watch_open()
                    threading.Thread(target=self._run, args=(self.fd,), name="mmaplog-watch", daemon=True).start()
                wd = int(_sigbus.watch_add(self.fd, fd))
            except (OSError, RuntimeError):
                self.failed = True  # inotify missing or out of instances/watches: stay off for this process
                return -1
            self.callbacks[wd] = weakref.WeakMethod(callback)
            return wd

    def remove(self, wd: int) -> None:
        with self.lock:
            if wd >= 0 and self.callbacks.pop(wd, None) is not None and self.fd >= 0:
                _sigbus.watch_remove(self.fd, wd)

    def _run(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 4096)
            except InterruptedError:
                continue
            except OSError:
                return  # closed after a fork, or the descriptor is gone: nothing more to watch
            if self.fd != fd:
                return
            changed: list[Any] = []
            for offset in self._offsets(data):
                wd, mask, _, _ = self._EVENT.unpack_from(data, offset)
                with self.lock:
                    ref = self.callbacks.get(wd)
                    if mask & self._IGNORED:
                        self.callbacks.pop(wd, None)
                if ref is not None and not mask & self._IGNORED:
                    method = ref()
                    if method is not None and method not in changed:
                        changed.append(method)
            for method in changed:
                try:
                    method()
                except Exception:  # noqa: BLE001 - a check must never take the watcher down
                    pass

    @classmethod
    def _offsets(cls, data: bytes) -> list[int]:
        out, offset = [], 0
        while offset + cls._EVENT.size <= len(data):
            out.append(offset)
            offset += cls._EVENT.size + cls._EVENT.unpack_from(data, offset)[3]
        return out

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's descriptor and thread are not ours (the thread did not survive)."""
        self.lock = threading.Lock()
        if self.fd >= 0:
            try:
                os.close(self.fd)  # the parent's inotify instance lives on in the parent
            except OSError:
                pass
        self.fd = -1
        self.callbacks = {}
        self.failed = False


_watcher = _Watcher()


def notice_changes(fd: int, callback: Any) -> int:
    """Run ``callback`` (a bound method, held weakly) whenever another process changes the file open as ``fd``.

    Returns a handle for :func:`unnotice`, or -1 where there is no guard or inotify (nothing is watched).
    """
    if _sigbus is None:
        return -1
    return _watcher.add(fd, callback)


def unnotice(handle: int) -> None:
    """Stop :func:`notice_changes` for ``handle`` (before the descriptor is closed); idempotent."""
    if handle >= 0:
        _watcher.remove(handle)


def reset_after_fork() -> None:
    """In a forked child: the watcher starts again from nothing (the table lock is reset by the C module)."""
    _watcher.reset_after_fork()


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
    if have >= size:
        remap(region)
        return
    extend_back(region.fd, mm, header, names, have, region)  # sparse if it must: a store may still fault (counted)
    region.repairs += 1
    say(region, f"truncated {region.repairs}",
        f"the ring file was truncated to {have} bytes by another process (logrotate copytruncate?); "
        f"extended it back to {size} bytes and went on writing; records in the cut part are gone")


def extend_back(fd: int, mm: mmap.mmap, header: L.FileHeader, names: Mapping[str, int], have: int,
                region: Region | None) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """Extend the ring file cut to ``have`` bytes back to its size, keeping what was stored past the cut.

    Stores past the cut inside the page holding the new end did not fault; extending the file zeroes that
    page's tail on some file systems (ext4), so the valid slots there are taken from the map first and put back
    after.  ``region`` (None: not guarded) is mapped again in between, dropping any page a fault made anonymous.
    Returns the valid slots past the cut after the extension and those put back (see mmaplog._shortfile).
    """
    saved = _shortfile.readable_valid(mm, header, have)
    _series.restore_size(fd, header, names, mm)
    if region is not None:
        remap(region)
    after = set(_shortfile.readable_valid(mm, header, have))
    return after, _shortfile.put_back(mm, header, have, saved, set(saved) - after)


