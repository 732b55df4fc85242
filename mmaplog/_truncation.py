"""Surviving a ring file that another process truncates under a live writer.

A writer stores records into a shared mapping of its file.  When someone cuts
the file short -- logrotate's ``copytruncate``, ``: > app.mmlog``, a careless
``truncate -s 0`` -- the next store into a page past the new end raises SIGBUS,
whose default action kills the process.  Logging must never do that, and no
check made before a store can close the race (the file can shrink between the
check and the store), so the guard acts after the fact, in a SIGBUS handler:

* the handler is installed with ``sigaction`` through :mod:`ctypes` when the
  first ring is mapped, and the previous disposition is restored when the last
  one is closed;
* a fault inside a watched mapping whose file is now shorter than the ring:
  the file is extended back to its size (``posix_fallocate``; ``ftruncate`` if
  that fails), the header and the name table are written again when they were
  cut, one line is printed on stderr, and the interrupted store is retried by
  the CPU -- it now lands in a fresh zero page, and writing goes on.  Records
  that were in the cut part are gone (``copytruncate`` copied them);
* a fault inside a watched mapping whose file still has its size (a hole that
  cannot be allocated: the disk is full) -- the page is replaced by anonymous
  memory so the process survives, and stderr says that records stored there are
  lost;
* any other SIGBUS is not ours: the previous disposition is put back and the
  fault happens again under it (default: the process dies, as it would have);
* a SIGBUS that was sent rather than caused by a fault (``kill -BUS``, or a
  handler installed after ours, such as :mod:`faulthandler`, passing the fault
  on with ``raise()``): every watched file found cut short is repaired; if
  there was none, and none was repaired in the last few seconds (another
  thread may have repaired the cut first), the signal goes to the previous
  disposition.

The handler runs Python code on the faulting thread, which holds the GIL in
the middle of a plain memory copy (``mmap`` slice assignment or
``struct.pack_into``).  It takes none of the writer's locks, only its own
around a repair, which touches the file through its descriptor and never the
mapping, so it cannot deadlock or fault again.  Supported on Linux x86-64 and
AArch64 (the ``struct sigaction`` layout is known there); elsewhere
:func:`watch` does nothing and a truncated ring still kills its writer.
"""

from __future__ import annotations

import _thread
import ctypes
import mmap
import os
import platform
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from . import layout as L

__all__ = ["forget", "reset_after_fork", "supported", "watch"]

_SA_SIGINFO = 0x4
_SA_NODEFER = 0x40000000
_SA_RESTART = 0x10000000
_PROT_READ_WRITE = 0x1 | 0x2
_MAP_PRIVATE_ANONYMOUS_FIXED = 0x02 | 0x20 | 0x10
#: Seconds after a repair during which a sent SIGBUS is taken for a late echo of that fault.
_RECENT = 5.0
#: A page still faulting this many times while its file has its full size is given up.
_RETRIES = 3


class _SigInfo(ctypes.Structure):
    # si_addr sits after three ints, aligned to a pointer (offset 16 on 64-bit Linux).
    _fields_ = [("si_signo", ctypes.c_int), ("si_errno", ctypes.c_int), ("si_code", ctypes.c_int),
                ("si_addr", ctypes.c_void_p)]


class _SigAction(ctypes.Structure):
    # glibc and musl on x86-64 and AArch64: handler, 1024-bit mask, flags, restorer.
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * (128 // ctypes.sizeof(ctypes.c_ulong))),
                ("flags", ctypes.c_int), ("restorer", ctypes.c_void_p)]


_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(_SigInfo), ctypes.c_void_p)


def supported() -> bool:
    """True where the guard can be installed (Linux on x86-64 or AArch64 with a C library)."""
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "aarch64") and ctypes.sizeof(ctypes.c_void_p) == 8


class _Region:
    """One watched mapping: its address range and what is needed to repair its file."""

    __slots__ = (
        "end",
        "fd",
        "header",
        "lock",
        "mm",
        "names",
        "path",
        "repaired_at",
        "repairs",
        "reported",
        "retries",
        "start",
    )

    def __init__(self, start: int, mm: mmap.mmap, fd: int, header: L.FileHeader, path: object,
                 names: Callable[[mmap.mmap], Mapping[str, int]]) -> None:
        self.start = start
        self.end = start + len(mm)
        self.mm = weakref.ref(mm)
        self.fd = fd
        self.header = header
        self.path = path
        self.names = names
        self.lock = threading.RLock()
        #: Page address -> faults seen there while the file had its full size.
        self.retries: dict[int, int] = {}
        self.reported: set[str] = set()
        self.repairs = 0
        self.repaired_at = -_RECENT


_lock = threading.Lock()
#: Replaced whole under _lock, read without it by the handler (a tuple is never half-updated).
_regions: tuple[_Region, ...] = ()
_libc: Any = None
#: Made once and never freed: a fault being handled may still be running it after an uninstall.
_callback: Any = None
_installed = False
_previous: _SigAction | None = None


def watch(mm: mmap.mmap, fd: int, header: L.FileHeader, path: object,
          names: Callable[[mmap.mmap], Mapping[str, int]]) -> None:
    """Protect the writer of ``mm`` (the mapping of ``fd``) against its file being truncated.

    ``names(mm)`` returns the logger names registered in that file (name -> id),
    to write the name table again when a truncation cut it.  Never raises: where
    the guard cannot be installed, nothing happens.
    """
    global _regions
    if not supported():
        return
    try:
        view = ctypes.c_char.from_buffer(mm)
        start = ctypes.addressof(view)
        del view  # release the buffer export at once, or mm could not be closed
        region = _Region(start, mm, fd, header, path, names)
        with _lock:
            if not _install():
                return
            _regions = tuple(r for r in _regions if r.mm() is not None) + (region,)
    except Exception:  # noqa: BLE001 - the guard is best effort; logging goes on without it
        return


def forget(mm: mmap.mmap) -> None:
    """Stop watching ``mm`` (call before unmapping it or closing its descriptor); idempotent."""
    global _regions
    with _lock:
        for region in _regions:
            if region.mm() is mm:
                with region.lock:  # let a repair in progress finish before the mapping goes away
                    pass
        _regions = tuple(r for r in _regions if r.mm() is not mm and r.mm() is not None)
        if not _regions:
            _uninstall()


def reset_after_fork() -> None:
    """In a forked child: locks held at the fork by threads that do not exist here are made anew."""
    global _lock
    _lock = threading.Lock()
    for region in _regions:
        region.lock = threading.RLock()


def _install() -> bool:
    """Make our handler the SIGBUS disposition (again, if someone replaced it since), keeping the one before."""
    global _libc, _callback, _previous, _installed
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        _libc, _callback = libc, _HANDLER_TYPE(_on_sigbus)
    current = _SigAction()
    if _libc.sigaction(signal.SIGBUS, None, ctypes.byref(current)) == 0 and current.handler == _address():
        _installed = True
        return True
    action = _SigAction()
    action.handler = _address()
    action.flags = _SA_SIGINFO | _SA_NODEFER | _SA_RESTART
    previous = _SigAction()
    if _libc.sigaction(signal.SIGBUS, ctypes.byref(action), ctypes.byref(previous)) != 0:
        return False
    _previous, _installed = previous, True
    return True


def _address() -> int | None:
    return ctypes.cast(_callback, ctypes.c_void_p).value


def _uninstall() -> None:
    """Put the previous SIGBUS disposition back, unless someone installed another handler since."""
    global _installed
    if not _installed:
        return
    current = _SigAction()
    _libc.sigaction(signal.SIGBUS, None, ctypes.byref(current))
    if current.handler == _address() and _previous is not None:
        _libc.sigaction(signal.SIGBUS, ctypes.byref(_previous), None)
    _installed = False


def _say(region: _Region, key: str, message: str) -> None:
    if key in region.reported:
        return
    region.reported.add(key)
    try:
        os.write(2, f"mmaplog: {region.path}: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def _on_sigbus(signum: int, info: Any, context: Any) -> None:
    """The SIGBUS handler (runs on the faulting thread)."""
    try:
        addr, code = info.contents.si_addr or 0, info.contents.si_code
    except BaseException:  # noqa: BLE001 - nothing may escape into the interrupted C code
        addr, code = 0, 0
    if code > 0:  # a fault: ours if it lies in a watched mapping
        region = next((r for r in _regions if r.start <= addr < r.end), None)
        mm = region.mm() if region is not None else None
        if region is None or mm is None or mm.closed:
            _give_back()  # the fault happens again under the previous disposition
            return
        try:
            _repair(region, mm, addr)
        except BaseException as exc:  # noqa: BLE001
            _survive(region, addr, exc)
        return
    # Sent rather than caused: ``kill -BUS``, or a handler installed after ours (faulthandler) passing
    # a fault on with raise().  Repair whatever file was cut; if none was, and none was just repaired
    # (another thread may have repaired the cut this fault came from), the signal is not ours.
    try:
        if _repair_any():
            return
    except BaseException:  # noqa: BLE001
        pass
    _give_back()
    signal.raise_signal(signal.SIGBUS)  # delivered at once to the previous disposition


def _survive(region: _Region, addr: int, exc: BaseException) -> None:
    """The repair failed: keep the process alive at the price of the faulting page."""
    if isinstance(exc, KeyboardInterrupt):  # a Ctrl-C that arrived while we ran: deliver it later
        _thread.interrupt_main()
    try:
        _lose_page(region, addr)
    except BaseException:  # noqa: BLE001
        pass


def _repair_any() -> bool:
    """Repair every watched file found cut short; True if one was, now or in the last ``_RECENT`` seconds."""
    ours = False
    for region in _regions:
        mm = region.mm()
        if mm is None or mm.closed:
            continue
        with region.lock:  # a repair under way in another thread finishes first
            if os.fstat(region.fd).st_size < region.header.file_size:
                _repair(region, mm, region.start)
            ours |= time.monotonic() - region.repaired_at < _RECENT
    return ours


def _give_back() -> None:
    """Not our fault: put the previous disposition back so the fault happens again under it."""
    global _installed
    try:
        if _previous is not None:
            _libc.sigaction(signal.SIGBUS, ctypes.byref(_previous), None)
        _installed = False  # a writer mapping a ring later installs the guard again
    except BaseException:  # noqa: BLE001
        pass


def _repair(region: _Region, mm: mmap.mmap, addr: int) -> None:
    size = region.header.file_size
    page = addr - addr % mmap.PAGESIZE
    with region.lock:  # threads faulting on one truncation: one repairs, the others just retry their store
        have = os.fstat(region.fd).st_size
        if have < size:
            try:
                os.posix_fallocate(region.fd, 0, size)
            except OSError:
                os.ftruncate(region.fd, size)  # sparse: a store may still fault if the disk is full (below)
            if have < region.header.data_offset:
                _rewrite_head(region, mm, have)
            region.retries.clear()
            region.repairs += 1
            region.repaired_at = time.monotonic()
            _say(region, f"truncated {region.repairs}",
                 f"the ring file was truncated to {have} bytes by another process (logrotate copytruncate?); "
                 f"extended it back to {size} bytes and went on writing; records in the cut part are gone")
            return
        # The file has its size: retry the store a few times (another thread may just have repaired it) ...
        tries = region.retries.get(page, 0) + 1
        if tries <= _RETRIES:
            if len(region.retries) > 1024:
                region.retries.clear()
            region.retries[page] = tries
            return
        # ... then give the page up (a hole with no block behind it: the disk is full) so the process lives on.
        _lose_page(region, addr)


def _lose_page(region: _Region, addr: int) -> None:
    """Put anonymous memory under the faulting page of a watched mapping: stores there succeed and are lost."""
    page = addr - addr % mmap.PAGESIZE
    _libc.mmap(page, mmap.PAGESIZE, _PROT_READ_WRITE, _MAP_PRIVATE_ANONYMOUS_FIXED, -1, 0)
    _say(region, "lost", "cannot store into the ring file (disk full?); records stored in the affected pages are lost")


def _rewrite_head(region: _Region, mm: mmap.mmap, have: int) -> None:
    """Write the header and the name table again after a truncation cut them (page cache: the mapping sees it)."""
    header = region.header
    os.pwrite(region.fd, L.encode_header(header), 0)
    entries = []
    for name, ident in region.names(mm).items():
        raw = name.encode("utf-8", "backslashreplace")
        if 1 <= ident <= header.name_entries and 0 < len(raw) <= L.NAME_MAX:
            off = header.name_offset + (ident - 1) * L.NAME_ENTRY_SIZE
            if off + L.NAME_ENTRY_SIZE > have:
                entries.append((off, L.NAME_STRUCT.pack(len(raw), 0, L.name_check(raw), raw)))
    for off, entry in entries:
        os.pwrite(region.fd, entry, off)
