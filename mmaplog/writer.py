"""RingWriter: appends records into a memory-mapped ring file.

Once :meth:`RingWriter.write` returns, the record is in the operating system's
page cache, so it survives the process dying abruptly; :meth:`RingWriter.flush`
adds durability against power loss.  The byte layout comes from
:mod:`mmaplog.layout`.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import json
import mmap
import os
import socket
import struct
import sys
import threading
import time
import uuid
import warnings
import weakref
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import _codec, _native, _series, _shortfile, _truncation
from . import layout as L
from ._errors import FormatError, MmaplogError
from ._process import process_name as _process_name  # the owner is _process; the old name stays here
from ._record import LogRecord
from ._series import segment_path

__all__ = ["DEFAULT_RING_SIZE", "BatchRecord", "RingWriter", "parse_size", "segment_path"]

#: 16 MiB of slots: 65,536 records of up to 200 bytes with the default slot size.
DEFAULT_RING_SIZE = 16 << 20
_MASK32 = 0xFFFFFFFF
#: Slots a batch's run commits at a time: the most a kill can leave between invalid and valid trailers.
_RUN_CHUNK = 16
_U64_MAX = (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_NEVER = 1 << 64
#: Seconds between checks, on the slow write path, that the live file is still at the path.
_CHECK_INTERVAL = 1.0
#: Free-threaded builds cannot rely on the GIL to make ``next(count)`` atomic.
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
#: The C append (one-slot records), where it is built and safe; None means the pure-Python path.
_cwrite = _native.load("_cwrite") if _GIL else None
if _cwrite is not None and getattr(_cwrite, "FORMAT_MAJOR", 1) != L.FORMAT_VERSION[0]:
    # A build left over from another format version would write the wrong check: rebuild it.
    if os.environ.get("MMAPLOG_REQUIRE_NATIVE", "") not in ("", "0"):
        raise ImportError(f"mmaplog._cwrite was built for format {getattr(_cwrite, 'FORMAT_MAJOR', 1)}.x; rebuild it")
    _cwrite = None
if _cwrite is not None:
    _cwrite.use_record_type(LogRecord)  # write_batch reads a LogRecord's slots in place

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000**2, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30}


def parse_size(value: int | str) -> int:
    """Parse a byte size such as ``65536``, ``"64 MiB"`` or ``"1g"``; raises ValueError naming the value."""
    if isinstance(value, bool):
        raise ValueError(f"size must be a number of bytes, not {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower().replace("_", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = text[len(number) :].strip()
    try:
        scale = _UNITS[unit]
        return int(float(number) * scale)
    except (KeyError, ValueError):
        raise ValueError(f"cannot read {value!r} as a size (examples: 65536, '64 MiB', '1 GiB')") from None


class _Map:
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
        self.positions = itertools.count(next_pos)
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


_open_writers: weakref.WeakSet[RingWriter] = weakref.WeakSet()
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


def _register_atexit(writer: RingWriter) -> None:
    global _atexit_registered
    with _atexit_lock:
        _open_writers.add(writer)
        if not _atexit_registered:
            atexit.register(_close_all_at_exit)
            os.register_at_fork(after_in_child=_abandon_all_in_child)
            _atexit_registered = True


def _report(message: str) -> None:
    """Write one line to stderr without ever raising."""
    try:
        sys.stderr.write(f"mmaplog: {message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr may be closed or broken at shutdown
        pass


class BatchRecord(Protocol):
    """What :meth:`RingWriter.write_batch` reads from each record (:class:`mmaplog.LogRecord` has it all)."""

    @property
    def message(self) -> str: ...
    @property
    def level(self) -> int: ...
    @property
    def logger(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, Any] | None: ...
    @property
    def time_ns(self) -> int: ...
    @property
    def thread(self) -> int: ...
    @property
    def exception(self) -> str | None: ...


class RingWriter:
    """Appends records to a ring of fixed-size slots in a memory-mapped file.

    ``size`` is the ring's capacity in bytes (the file adds a 64 KiB header);
    ``slot_size`` the bytes per slot (a record longer than one slot spans several).
    With ``rotate=0`` the oldest slots are overwritten when the ring is full
    (flight recorder); with ``rotate=K`` the full file is sealed, renamed to
    :func:`segment_path` and a new one started, keeping at most K files.
    ``{pid}`` in ``path`` is replaced by the process id, so each process can get
    a file of its own; missing directories above it are created.  A live file
    moved or deleted by someone else is replaced by a new one at ``path`` (noticed
    at rotation, on :meth:`flush`, and at most once a second on the slow path).
    Thread-safe; :meth:`write` never raises.  See "Creation and rotation" in
    ``docs/FORMAT.md``.

    ``guard_truncation`` (default on, where the C extension ``mmaplog._sigbus`` is
    built) registers the mapping with a process-wide SIGBUS guard so that another
    process truncating the file cannot kill this one; SIGBUS that is not a fault
    in a ring still reaches the application's handler or the default action
    (see ``docs/RELIABILITY.md``).  Records lost to such a fault are counted in
    :attr:`dropped`.  The guard also watches the live file with inotify (one
    daemon thread per process, ``mmaplog-watch``, idle in ``read`` until a ring
    file changes), so a cut that never faults is repaired at once.  Turn it off
    to leave the ring out of the guard, and then never truncate a live ring.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int | str = DEFAULT_RING_SIZE,
        *,
        slot_size: int = L.DEFAULT_SLOT_SIZE,
        rotate: int = 0,
        mode: int = 0o640,
        prefault: bool = True,
        guard_truncation: bool = True,
    ) -> None:
        self.path = Path(os.fspath(path).replace("{pid}", str(os.getpid())))
        ring_bytes = parse_size(size)
        if slot_size % 8 or not (L.MIN_SLOT_SIZE <= slot_size <= L.MAX_SLOT_SIZE):
            raise ValueError(
                f"slot_size {slot_size} must be a multiple of 8 between {L.MIN_SLOT_SIZE} and {L.MAX_SLOT_SIZE}"
            )
        if ring_bytes < slot_size:
            raise ValueError(f"size {size!r} is smaller than one slot ({slot_size} bytes)")
        if ring_bytes // slot_size > L.MAX_SLOT_COUNT:
            raise ValueError(f"size {size!r} needs more than {L.MAX_SLOT_COUNT} slots; use a larger slot_size")
        if isinstance(rotate, bool) or not isinstance(rotate, int) or rotate < 0:
            raise ValueError(f"rotate must be a whole number >= 0 (files to keep), not {rotate!r}")
        if isinstance(mode, bool) or not isinstance(mode, int) or mode & ~0o7777 or mode & 0o002:
            raise ValueError(f"mode {mode!r} is not allowed: a log file must not be writable by every user (use 0o640)")
        self.rotate = rotate
        self._mode = mode
        self._prefault = prefault
        self._guard_truncation = guard_truncation
        self._requested = (slot_size, ring_bytes // slot_size)
        # Re-entrant: a signal handler that logs may interrupt this very thread while it holds the lock.
        self._lock = threading.RLock()  # rotation, name registration, close
        # Re-entrant too: a signal handler that logs may interrupt a write of its own thread (free-threaded builds).
        self._claim_lock = threading.RLock()  # serialises whole writes where there is no GIL
        self._registering = self._rotating = False  # what the interrupted thread was doing under _lock
        self._next_check = 0.0  # monotonic time of the next check that the path still names the live file
        self._names: dict[str, int] = {"": 0}
        self._pid = os.getpid()
        self._closed = False
        self._reported: set[str] = set()
        #: Records that could not be written (after close, or a failure); never silent.
        self.dropped = 0
        #: Write calls that failed with an unexpected error (reported once on stderr).
        self.errors = 0
        #: Used slots that another process cut away by truncating the file and that did not survive the
        #: repair (records lost; noticed at open, rotation, flush, close and by the periodic check).
        self.cut_slots = 0
        self._map: _Map
        self._seqs: itertools.count[int]
        self._fast: Any = None  # the C appender, writing into the current map
        self._retired: list[_Map] = []  # the map rotated away last: still mapped and guarded (see _retire)
        self._open_initial()
        _register_atexit(self)
        if not _GIL:
            self.write = self._write_locked  # type: ignore[method-assign]
            self._append = self._append_locked  # type: ignore[method-assign]

    # ------------------------------------------------------------------ opening
    def _open_initial(self) -> None:
        _series.ensure_parent(self.path, self._mode)
        fd, header, mm, next_pos, next_seq, sealed = self._acquire()
        # Guarded before anything touches it: the file is published, so another process may cut it already.
        first = self._guard(_Map(fd, mm, header, next_pos, self._limit(header), self.path))
        try:
            if self._prefault:
                _prefault(mm, header.data_offset)
        except BaseException:
            self._release(first)
            raise
        self._seqs = itertools.count(next_seq)
        if _cwrite is not None:
            self._fast = _cwrite.Appender(self._seqs, _weak(self._append_slow), _weak(self._append_full),
                                          _weak(self._failed), _weak(self._write_one), _weak(self._write_py),
                                          _weak(self._fault))
            self._append = self._fast.append  # type: ignore[method-assign]
            if type(self).write is RingWriter.write:  # a subclass's own write() stays in charge
                self.write = self._fast.write  # type: ignore[method-assign]
        self._use(first)
        # We hold the series' lock now: clear what writers killed mid-creation or mid-rotation left behind.
        try:
            _series.remove_orphans(self.path, fd)
            if sealed:  # a rotation was cut short after sealing this file: finish it
                self._rotate(self._map, "sealed")
            if self.rotate:
                _series.prune(self.path, self._map.header, self.rotate)
        except Exception as exc:  # noqa: BLE001 - the ring is open and usable; tidying is best effort
            self._report_once("tidy", f"{self.path}: cannot tidy the ring's directory ({type(exc).__name__}: {exc})")

    def _acquire(self) -> tuple[int, L.FileHeader, mmap.mmap, int, int, bool]:
        """Open the ring at the path, or create and publish it; the writer's lock is held on return.

        Returns (fd, header, map, next position, next seq, sealed).  A file that
        someone else publishes first, or that changes between open and lock, is
        opened again (bounded); a file locked by a live writer raises WriterBusyError.
        """
        for _ in range(16):
            fd = _series.open_existing(self.path)
            if fd is None:
                header = self._new_header(segment=0, series_id=uuid.uuid4().bytes, first_seq=1)
                fd, temp, mm = _series.build(self.path, self._mode, header)
                try:
                    published = _series.publish(temp, self.path)
                except BaseException:
                    mm.close()
                    os.close(fd)
                    raise
                if published:
                    return fd, header, mm, 1, 1, False
                mm.close()
                os.close(fd)
                if published is None:  # no hard links here: an empty file, set up below under its lock
                    try:
                        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                                         | getattr(os, "O_NOFOLLOW", 0), self._mode))
                    except FileExistsError:
                        pass
                    except OSError as exc:
                        raise _series.explain(self.path, exc) from None
                continue  # someone published first: open theirs
            try:
                _series.lock(fd, self.path)
                if not _series.names_file(fd, self.path):  # rotated, moved or replaced since we opened it
                    os.close(fd)
                    continue
                size = os.fstat(fd).st_size
                if _series.blank(fd, size):  # touched, or cut short by an older version: no ring to keep
                    header = self._new_header(segment=0, series_id=uuid.uuid4().bytes, first_seq=1)
                    if size:
                        os.ftruncate(fd, 0)
                    return fd, header, _series.create_ring(fd, self.path, header), 1, 1, False
                header, mm, next_pos, next_seq, sealed = self._reopen(fd, size)
                return fd, header, mm, next_pos, next_seq, sealed
            except BaseException:
                os.close(fd)
                raise
        raise MmaplogError(f"{self.path}: the file kept changing while it was being opened; try again")

    def _use(self, m: _Map) -> None:
        """Make ``m`` the map records go to (and the C appender's target)."""
        self._map = m
        if self._fast is not None:
            self._fast.target(m.mm, m.positions, self._names, m.header.slot_count, m.header.data_offset,
                              m.header.slot_size, m.limit, _truncation.counter(m.guard),
                              m.guard.seen if m.guard is not None else 0)

    def _guard(self, m: _Map) -> _Map:
        """Let the writer survive its file being truncated by another process (see mmaplog._truncation)."""
        if self._guard_truncation:
            m.guard = _truncation.watch(m.mm, m.fd, m.header, m.path)
            m.slot = m.guard.slot if m.guard is not None else -1
            m.seen = m.guard.seen if m.guard is not None else 0
            if m.guard is not None:
                m.watch = _truncation.notice_changes(m.fd, self._file_changed)
        return m

    @staticmethod
    def _unguard(m: _Map) -> None:
        """Take ``m`` out of the SIGBUS guard (under the writer's lock, before it is unmapped)."""
        _truncation.unnotice(m.watch)
        m.watch = -1
        _truncation.forget(m.guard)
        m.slot = -1

    def _file_changed(self) -> None:
        """Another process changed the live file (inotify, in the watcher thread): was it cut short?"""
        if not self._closed and os.getpid() == self._pid:
            self._check_size(self._map)

    def _retire(self, old: _Map) -> None:
        """Keep the map rotated away mapped and guarded until the next rotation, then unmap it.

        A Python write that took ``old`` before the rotation may still store into
        it (a record of several slots, a thread switch between two stores): its
        file may have been cut, so the mapping must stay in the guard as long as
        it is mapped.  It is unmapped at the next rotation or at close(); a store
        still arriving then fails on the closed mmap and is counted.
        """
        for m in self._retired:
            self._release(m)
        self._retired = [old]

    def _release(self, m: _Map) -> None:
        """Take ``m`` out of the guard, unmap it and close its file (under the writer's lock)."""
        self._unguard(m)
        try:
            m.mm.close()
        except Exception:  # noqa: BLE001 - a view still exported: the map goes with the object
            pass
        try:
            os.close(m.fd)
        except OSError:
            pass

    def _fault(self, state: int, m: _Map | None = None, record: tuple[Any, ...] | None = None) -> int:
        """A store into ``m`` (default: the current map) may have gone to an anonymous page of the guard.

        ``state`` 0: the store's fault counter moved: repair the file and map it
        again (see :func:`mmaplog._truncation._repair`); returns the counter value
        now seen, and the caller stores its record again, or -1 when the map is
        gone (closed, rotated, cannot be repaired), the record counted as lost.
        ``state`` 1: the store made again faulted too (a hole the disk cannot back):
        the file is mapped again so no anonymous page stays, the record is counted
        as lost.  ``state`` 2: the caller's map changed under the repair: counted as
        lost.  ``state`` 3 (the C append): the map was rotated away while the
        fault was dealt with; ``record`` is ``(seq, data, level, logger, stamp,
        ident, pos)``: the record is kept if the rotated file holds it, else
        written again in the current file (returns its seq, or 0 when lost).
        With ``state`` 0 and a map ``m`` that is no longer the current one
        (rotated away between the store and this call), returns -2 and counts
        nothing: the caller keeps or writes the record again (see
        :meth:`_store_again`).  Never raises.
        """
        if state == 3 and record is not None:
            return self._rewrite_moved(record)
        try:
            with self._lock:
                if m is not None and m is not self._map and not self._closed and state == 0:
                    return -2
                m = self._map if m is None else m
                region = m.guard
                # Only the current map is repaired; a retired one keeps its anonymous pages (stores there counted).
                live = region is not None and region.live and not self._closed and m is self._map
                if state == 0 and live:
                    assert region is not None
                    _truncation._repair(region, m.mm, self._names)
                    m.seen = region.seen
                    return region.seen
                if state == 1 and live:
                    assert region is not None
                    _truncation.remap(region)
                    m.seen = region.seen
                self.dropped += 1
                if region is not None:
                    _truncation.say(region, "lost", "a record stored while the ring file was cut short, or into "
                                    "space the file system cannot back (disk full?), was lost; counting such "
                                    "records in RingWriter.dropped")
                return region.seen if state == 1 and live and region is not None else -1
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            self._failed(exc)
            return -1

    def _store_again(self, m: _Map, parts: list[tuple[int, bytes, int]], seq: int) -> int:
        """The fault counter of ``m`` moved during a store: repair, then store ``parts`` (offset, body, pos) again.

        Returns ``seq``, or 0 when the record is lost (counted).  Another thread's
        fault can move the counter between the repair and this store, so it tries
        a few times; a page that faults every time (a full disk) is given up.
        When ``m`` was rotated away meanwhile (another thread filled it, or found
        it moved), it is not repaired: if its file holds every part the record is
        kept there, otherwise -2 is returned and the caller writes the record
        again, whole, in the current file (an open writer never refuses a record).
        """
        for _ in range(_FAULT_ATTEMPTS):
            seen = self._fault(0, m)
            if seen == -2:
                return seq if self._held(m, parts) else -2
            if seen < 0:
                return 0
            try:
                mm = m.mm
                count = m.header.slot_count
                for off, body, pos in parts:  # the commit protocol of _commit, the check read from the body
                    _trailer(mm, off + len(body), 0, L.invalid_echo(pos, count))
                    mm[off : off + len(body)] = body
                    _trailer(mm, off + len(body), L.slot_check(body), pos & _MASK32)
            except Exception as exc:  # noqa: BLE001 - the map was closed meanwhile
                return self._failed(exc)
            # The counter is the region's: other threads' faults and repairs move it too.  If it moved, the file
            # itself says whether this store landed (read through the descriptor, not the map).
            if _faults(m.slot) == seen or self._held(m, parts):
                return seq
        self._fault(1, m)
        return 0

    def _held(self, m: _Map, parts: list[tuple[int, bytes, int]]) -> bool:
        """Whether the file of ``m`` holds every slot of ``parts`` as committed (``m`` may be rotated away).

        Read through the descriptor, not the map: a store that went to an anonymous
        page of the guard shows in the map but is not in the file.
        """
        with self._lock:
            if m.mm.closed:  # released: its descriptor may name another file now
                return False
            try:
                for off, body, pos in parts:
                    want = body + L.SLOT_TRAILER_STRUCT.pack(L.slot_check(body), pos & _MASK32)
                    if os.pread(m.fd, len(want), off) != want:
                        return False
            except OSError:
                return False
        return True

    def _rewrite_moved(self, record: tuple[Any, ...]) -> int:
        """The C append's record went to a map rotated away while its fault was dealt with: keep it or write it again.

        ``record`` is ``(seq, data, level, logger, stamp, ident, pos)``.  Never raises.
        """
        try:
            seq, data, level, logger, stamp, ident, pos = record
            with self._lock:
                old = [m for m in self._retired if not m.mm.closed]
            for m in old:
                h = m.header
                off = h.data_offset + (pos - 1) % h.slot_count * h.slot_size
                body_len = h.slot_size - L.SLOT_TRAILER_SIZE
                with self._lock:
                    raw = b"" if m.mm.closed else os.pread(m.fd, h.slot_size, off)
                if len(raw) == h.slot_size:
                    rpos, rseq = struct.unpack_from("<QQ", raw)
                    check, commit = L.SLOT_TRAILER_STRUCT.unpack_from(raw, body_len)
                    if rpos == pos and rseq == seq and commit == pos & _MASK32 and check == L.slot_check(raw[:body_len]):
                        return int(seq)
            return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            return self._failed(exc)

    def _new_header(self, segment: int, series_id: bytes, first_seq: int) -> L.FileHeader:
        slot_size, slot_count = self._requested
        return L.FileHeader(
            version=L.FORMAT_VERSION,
            data_offset=L.DATA_OFFSET,
            slot_size=slot_size,
            name_offset=L.NAME_OFFSET,
            slot_count=slot_count,
            created_ns=time.time_ns(),
            created_mono_ns=time.monotonic_ns(),
            pid=os.getpid(),
            name_entries=L.NAME_ENTRIES,
            series_id=series_id,
            segment=segment,
            first_seq=first_seq,
            hostname=socket.gethostname(),
            process_name=_process_name(),
        )

    def _reopen(self, fd: int, size: int) -> tuple[L.FileHeader, mmap.mmap, int, int, bool]:
        raw = os.pread(fd, L.HEADER_CHECK_OFFSET + 4, 0)
        try:
            # Checked against the size its header declares: a valid header over a file cut short is repaired below.
            header = L.decode_header(raw, max(size, _series.declared_size(raw)))
        except L.HeaderError as exc:
            raise FormatError(self.path, f"{exc.reason}; refusing to overwrite a file that is not a valid mmaplog ring") from None
        if L.legacy_check(header.version):
            # Its slots carry adler32 checks: records written now (CRC-32) would read as corrupt, and
            # rewriting the header would hide the old ones.  The file stays as it is, readable.
            major, minor = header.version
            raise FormatError(self.path, f"format {major}.{minor} ring written by an older mmaplog; this writer writes "
                                         f"{L.FORMAT_VERSION[0]}.{L.FORMAT_VERSION[1]}: read it, then move it away")
        if size < header.file_size and (header.slot_size, header.slot_count) != self._requested:
            # Extend a cut file only to the size this writer was asked for: a header is no licence to take disk.
            raise FormatError(self.path, f"truncated file: header declares {header.file_size} bytes, file has "
                                         f"{size}, and this writer was asked for {self._requested[1]} slots of "
                                         f"{self._requested[0]} bytes; refusing to extend or overwrite it")
        saved = _shortfile.page_cache_tail(fd, header, size) if size < header.file_size else {}
        have = _series.restore_size(fd, header, {})
        if (header.slot_size, header.slot_count) != self._requested:
            _report(
                f"{self.path}: existing ring has {header.slot_count} slots of {header.slot_size} bytes "
                f"(requested {self._requested[1]} of {self._requested[0]}); continuing with the existing layout"
            )
        mm = mmap.mmap(fd, header.file_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        if have is not None and saved:  # records a killed writer stored past the cut, zeroed by extending
            gone = set(saved) - set(_shortfile.readable_valid(mm, header, have))
            rescued = _shortfile.put_back(mm, header, have, saved, gone)
            if rescued:
                self._report_once("rescued", f"{self.path}: put back {len(rescued)} slots stored past the end of the "
                                             f"cut file, from the page cache")
        table = mm[header.name_offset : header.name_offset + header.name_entries * L.NAME_ENTRY_SIZE]
        for ident, name in _codec.decode_names(table, header.name_entries).items():
            self._names[name] = ident
        self._next_name_id = max(self._names.values()) + 1
        slots = np.frombuffer(mm, dtype=L.slot_dtype(header.slot_size), count=header.slot_count, offset=header.data_offset).copy()
        valid = _codec.valid_slots(slots, header.slot_count)
        good = slots[valid]
        next_pos = int(good["pos"].max()) + 1 if len(good) else 1
        # After every seq of the series, not only after the file's highest: a record that took its seq before a
        # rotation and its position after it starts the new file below seqs sealed in the segment, so the file's
        # highest seq can be lower than the segment's.  A rotation sets first_seq past every seq taken before it.
        next_seq = max(int(good["seq"].max()) + 1 if len(good) else 0, header.first_seq)
        del slots, good
        # A sealed file at the path: a rotation was cut short after step 2; the caller finishes it.
        sealed_pos, check = L.STATE_STRUCT.unpack(mm[L.STATE_OFFSET : L.STATE_OFFSET + L.STATE_STRUCT.size])
        sealed = sealed_pos != 0 and check == ~sealed_pos & 0xFFFFFFFFFFFFFFFF
        if not sealed and (sealed_pos or check):
            _series.set_state(mm, 0)
        if have is not None:
            lost = _cut_loss(header, have, valid, next_pos)
            self.cut_slots += lost
            self._report_once("cut", f"{self.path}: the ring file was found truncated to {have} bytes (header "
                                     f"declares {header.file_size}); extended it back, {lost} used slots lost")
        return header, mm, next_pos, next_seq, sealed

    def _limit(self, header: L.FileHeader) -> int:
        return header.slot_count if self.rotate else _NEVER

    @property
    def header(self) -> L.FileHeader:
        """The header of the file currently being written."""
        return self._map.header

    @property
    def slot_count(self) -> int:
        """Number of slots in the ring."""
        return self._map.header.slot_count

    @property
    def slot_size(self) -> int:
        """Bytes per slot."""
        return self._map.header.slot_size

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    # ------------------------------------------------------------------ writing
    def write(
        self,
        message: str,
        *,
        level: int = 20,
        logger: str = "",
        fields: Mapping[str, Any] | None = None,
        time_ns: int | None = None,
        thread: int | None = None,
        exception: str | None = None,
    ) -> int:
        """Append one record and return its sequence number (0 if it could not be written).

        ``fields`` are stored as a JSON object beside the message; ``exception``
        is a formatted traceback stored with the record.  Never raises.
        """
        if self._fast is not None and fields is None and exception is None and time_ns is None and thread is None:
            return self._append(message, level, logger)
        try:
            if (
                fields is None
                and exception is None
                and 0 <= level <= 255
                and (time_ns is None or (type(time_ns) is int and _I64_MIN <= time_ns <= _I64_MAX))
                and (thread is None or (type(thread) is int and 0 <= thread <= _U64_MAX))
            ):
                lid = self._names.get(logger)
                if lid is not None:
                    try:
                        data = message.encode()
                    except Exception:  # noqa: BLE001 - not a str, or lone surrogates: the slow path renders it
                        return self._write_slow(message, level, logger, fields, time_ns, thread, exception)
                    m = self._map
                    mm, pack, count, base, size, body_len, payload, limit, positions = m.hot
                    n = len(data)
                    if n <= payload:
                        stamp = _time_ns() if time_ns is None else time_ns
                        ident = _get_ident() if thread is None else thread
                        seq = next(self._seqs)
                        pos = next(positions)
                        if pos <= limit:
                            off = base + (pos - 1) % count * size
                            body = pack(pos, seq, stamp, ident, n, n, n, 0, lid, level, _WHOLE, data)
                            before = _faults(m.slot)
                            try:
                                _trailer(mm, off + body_len, 0, (pos + (count | 1)) & _MASK32)  # see _commit
                                mm[off : off + body_len] = body
                                _trailer(mm, off + body_len, _crc32(body[: _HEAD + n]), pos & _MASK32)
                            except (ValueError, TypeError):  # a closed mmap: pack_into raises TypeError
                                if not (mm.closed and m is not self._map):
                                    raise
                                # Rotated away twice (and unmapped) since the claim: write it in the current file.
                                return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
                            if _faults(m.slot) != before or before != m.seen:  # stored into an anonymous page
                                kept = self._store_again(m, [(off, body, pos)], seq)
                                if kept == -2:  # its file was rotated away meanwhile: write it in the current one
                                    return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
                                return kept
                            return seq
                        return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
            return self._write_slow(message, level, logger, fields, time_ns, thread, exception)
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            return self._failed(exc)

    def _write_py(self, message: str, **kwargs: Any) -> int:
        """The Python :meth:`write`, for what the C write leaves to it (fields, a traceback, a given time)."""
        return RingWriter.write(self, message, **kwargs)

    def _write_locked(self, message: str, **kwargs: Any) -> int:
        with self._claim_lock:
            return RingWriter.write(self, message, **kwargs)

    # Twin: _cwrite.c Appender.append is the C form of this method (same bytes; tests run both). See docs/MAP.md.
    def _append(self, message: str, level: int, logger: str) -> int:
        """:meth:`write` without fields, traceback, time or thread, taking positional arguments.

        The loggers' hot path (``level`` must be 0..255: the caller checked it).
        Keyword arguments cost a Python call more than the record's checksum
        does.  The fast path is :meth:`write`'s, kept in step with it; anything
        else goes through :meth:`write`.  Never raises.
        """
        try:
            lid = self._names.get(logger)
            if lid is not None:
                data = message.encode()
                m = self._map
                mm, pack, count, base, size, body_len, payload, limit, positions = m.hot
                n = len(data)
                if n <= payload:
                    stamp = _time_ns()
                    ident = _get_ident()
                    seq = next(self._seqs)
                    pos = next(positions)
                    try:
                        if pos <= limit:
                            off = base + (pos - 1) % count * size
                            body = pack(pos, seq, stamp, ident, n, n, n, 0, lid, level, _WHOLE, data)
                            before = _faults(m.slot)
                            try:
                                _trailer(mm, off + body_len, 0, (pos + (count | 1)) & _MASK32)  # see _commit
                                mm[off : off + body_len] = body
                                _trailer(mm, off + body_len, _crc32(body[: _HEAD + n]), pos & _MASK32)
                            except (ValueError, TypeError):  # a closed mmap: pack_into raises TypeError
                                if not (mm.closed and m is not self._map):
                                    raise
                                # Rotated away twice (and unmapped) since the claim: write it in the current file.
                                return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
                            if _faults(m.slot) != before or before != m.seen:  # stored into an anonymous page
                                kept = self._store_again(m, [(off, body, pos)], seq)
                                if kept == -2:  # its file was rotated away meanwhile: write it in the current one
                                    return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
                                return kept
                            return seq
                        return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
                    except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
                        return self._failed(exc)
        except Exception:  # noqa: BLE001 - not text, lone surrogates, a closed writer: write() decides
            pass
        return self.write(message, level=level, logger=logger)

    def _append_slow(self, message: str, level: int, logger: str) -> int:
        """What the C append leaves to Python: odd text, long records, new logger names, a closed writer."""
        try:
            return self._write_slow(message, level, logger, None, None, None, None)
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            return self._failed(exc)

    def _append_full(self, seq: int, data: bytes, level: int, logger: str, stamp: int, ident: int) -> int:
        """The C append claimed a position past the end of the file: rotate and write record ``seq`` there."""
        try:
            return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            return self._failed(exc)

    def _append_locked(self, message: str, level: int, logger: str) -> int:
        with self._claim_lock:
            return RingWriter._append(self, message, level, logger)

    def write_batch(self, records: Iterable[BatchRecord]) -> int:
        """Append several records in order, as :meth:`write` would one by one; return how many were written.

        Each record supplies ``message``, ``level``, ``logger``, ``fields``,
        ``time_ns``, ``thread`` and ``exception`` (a :class:`mmaplog.LogRecord`
        does).  Consecutive records that fit one slot are packed into one buffer,
        copied into the map in one slice (two where the ring wraps), and then
        committed: every slot's body is in place before any trailer is written.
        Other records take :meth:`write`'s path at their place in the order.
        Never raises.
        """
        if _GIL:
            if self._fast is not None:
                return self._fast.append_records(records)  # type: ignore[no-any-return]
            return self._write_batch(records)
        with self._claim_lock:
            return self._write_batch(records)

    def _write_one(self, r: BatchRecord) -> int:
        """One record of a batch that the C append leaves to Python (fields, a traceback, odd values)."""
        return RingWriter.write(self, r.message, level=r.level, logger=r.logger, fields=r.fields, time_ns=r.time_ns,
                                thread=r.thread, exception=r.exception)

    def _write_batch(self, records: Iterable[BatchRecord]) -> int:
        written = 0
        bodies: list[bytes] = []
        checks: list[int] = []
        add_body, add_check = bodies.append, checks.append
        first = last = end = 0
        m = self._map
        names = self._names
        _, pack, count, _, _, _, payload, limit, positions = m.hot
        seqs = self._seqs
        for r in records:
            try:
                lid = names.get(r.logger)
                data = None
                if lid is not None and not r.fields and r.exception is None:
                    try:
                        data = r.message.encode()
                    except (AttributeError, UnicodeEncodeError):  # not text, or lone surrogates: write() renders it
                        pass
                if data is not None and len(data) <= payload:
                    n = len(data)
                    seq = next(seqs)
                    pos = next(positions)
                    if pos > limit:  # the file is full (rotation): this record starts the next file
                        written += self._commit_run(m, first, bodies, checks)
                        written += self._write_record(seq, data, b"", 0, r.level, r.logger, r.time_ns, r.thread) != 0
                        m = self._map
                        names = self._names
                        _, pack, count, _, _, _, payload, limit, positions = m.hot
                        last = end = 0
                        continue
                    try:
                        body = pack(pos, seq, r.time_ns, r.thread, n, n, n, 0, lid, r.level, _WHOLE, data)
                    except struct.error:  # a level outside 0..255 is clamped, as write() does
                        level = min(max(int(r.level), 0), 255)
                        body = pack(pos, seq, r.time_ns, r.thread, n, n, n, 0, lid, level, _WHOLE, data)
                    if pos != last + 1 or pos == end:
                        # A run holds consecutive positions and stops at the ring's end.
                        written += self._commit_run(m, first, bodies, checks)
                        first = pos
                        end = pos + count - (pos - 1) % count
                    last = pos
                    add_body(body)
                    add_check(_crc32(body[: _HEAD + n]))
                    continue
                written += self._commit_run(m, first, bodies, checks)
                written += RingWriter.write(
                    self, r.message, level=r.level, logger=r.logger, fields=r.fields, time_ns=r.time_ns,
                    thread=r.thread, exception=r.exception,
                ) != 0
                m = self._map
                names = self._names
                _, pack, count, _, _, _, payload, limit, positions = m.hot
                last = end = 0
            except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
                self._failed(exc)
        return written + self._commit_run(m, first, bodies, checks)

    def _commit_run(self, m: _Map, first: int, bodies: list[bytes], checks: list[int]) -> int:
        """Copy slots at positions ``first``, ``first + 1``, ... (not crossing the ring's end) and commit them.

        The commit protocol of every write (:func:`_commit`), for a run at once:
        first every slot gets its invalid trailer (:func:`mmaplog.layout.invalid_echo`),
        then the block of bodies is copied (carrying the same invalid trailers), then
        every slot's check and commit words are written as one aligned 8-byte store.
        Empties both lists; returns how many slots were committed.
        """
        n = len(bodies)
        if not n:
            return 0
        try:
            mm, _, count, base, size, body_len, _, _, _ = m.hot
            off = base + (first - 1) % count * size
            at = off + body_len
            gap = size - body_len
            before = _faults(m.slot)
            # Steps 1-3 of the commit for the whole run.  Every store is a checked store into the map, never a
            # numpy view over it (numpy does not pin the mapping: a close() between two stores would leave the
            # view writing into unmapped memory); each holds the mapping for its own length only.
            # In chunks of _RUN_CHUNK slots: a kill stops at most one chunk between its invalid and its valid
            # trailers, so a run as long as the ring never leaves the whole ring unreadable at once.
            for start in range(0, n, _RUN_CHUNK):
                stop = min(n, start + _RUN_CHUNK)
                block = bytearray(bytes(gap).join(bodies[start:stop])) + bytes(gap)
                for i in range(start, stop):
                    echo = L.invalid_echo(first + i, count)
                    _trailer(block, body_len + (i - start) * size, 0, echo)  # the copy carries the invalid trailers
                    _trailer(mm, at + i * size, 0, echo)
                mm[off + start * size : off + stop * size] = block
                for i in range(start, stop):
                    _trailer(mm, at + i * size, checks[i], (first + i) & _MASK32)
            if _faults(m.slot) != before or before != m.seen:  # a slot went to the guard's anonymous page
                kept = self._store_again(m, [(off + i * size, body, first + i) for i, body in enumerate(bodies)], n)
                if kept == -2:  # its file was rotated away meanwhile: write the run's records in the current one
                    return sum(self._write_body_again(body) != 0 for body in bodies)
                return kept
            return n
        except Exception as exc:  # noqa: BLE001
            for _ in range(n):
                self._failed(exc)
            return 0
        finally:
            bodies.clear()
            checks.clear()

    def _write_body_again(self, body: bytes) -> int:
        """Write the one-slot record packed in ``body`` again, whole, in the current file (same seq)."""
        _, seq, stamp, ident, _, _, n, _, lid, level, _ = struct.unpack_from(L.SLOT_HEADER_FORMAT, body)
        logger = next((name for name, ident_ in self._names.items() if ident_ == lid), "")
        return self._write_record(seq, bytes(body[_HEAD : _HEAD + n]), b"", 0, level, logger, stamp, ident)

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

    def _write_slow(
        self,
        message: Any,
        level: int,
        logger: str,
        fields: Mapping[str, Any] | None,
        time_ns: int | None,
        thread: int | None,
        exception: str | None,
    ) -> int:
        """Everything the fast path leaves out: odd text, fields, long records, new logger names."""
        if self._closed:
            self.dropped += 1
            return 0
        self._check_live(time.monotonic())
        data = _encode_text(message)
        extra = b""
        flags = 0
        if exception:
            text = _encode_text(exception)
            extra = L.EXCEPTION_LENGTH.pack(len(text)) + text
            flags |= L.FLAG_EXCEPTION
        if fields:
            extra += _encode_fields(fields)
            flags |= L.FLAG_FIELDS
        level = min(max(int(level), 0), 255)
        seq = next(self._seqs)
        return self._write_record(seq, data, extra, flags, level, logger, time_ns, thread)

    def _write_record(
        self,
        seq: int,
        data: bytes,
        extra: bytes,
        flags: int,
        level: int,
        logger: str,
        time_ns: int | None,
        thread: int | None,
    ) -> int:
        """Write record ``seq`` (already claimed) into as many slots as it needs.

        All parts of a record go into one file: when the file fills up part-way
        (rotation), the record is written again from its first part in the new file.
        """
        stamp = _time_ns() if time_ns is None else int(time_ns)
        ident = _get_ident() if thread is None else int(thread) & 0xFFFFFFFFFFFFFFFF
        while True:
            # The name first, then the map: a name is registered in the map current at that moment and carried
            # into every later one, so the map taken after it always has it (the other order could store the
            # record into a file rotated away before the name was registered in its successor).
            lid = self._logger_id(logger)
            m = self._map
            mm, pack, count, base, size, body_len, payload_size, limit, positions = m.hot
            prefix = b""
            part_flags = flags
            if lid is None:
                name = _cut_utf8(_encode_text(logger), 255)  # the length is a byte: longer names are cut
                prefix = bytes([len(name)]) + name
                lid = 0
                part_flags |= L.FLAG_INLINE_LOGGER
            prefix, body_data, tail, part_flags = _fit(data, extra, prefix, part_flags,
                                                       L.max_record_parts(count) * payload_size)
            payload = prefix + body_data + tail
            rec_len, msg_len = len(payload), len(body_data)
            parts = max(1, -(-rec_len // payload_size))
            stored: list[tuple[int, bytes, int]] = []
            before = _faults(m.slot)
            for part in range(parts):
                pos = next(positions)
                if pos > limit:
                    self._rotate(m)
                    break
                chunk = payload[part * payload_size : (part + 1) * payload_size]
                bits = part_flags | (L.FLAG_FIRST if part == 0 else 0) | (L.FLAG_LAST if part == parts - 1 else 0)
                off = base + (pos - 1) % count * size
                body = pack(pos, seq, stamp, ident, rec_len, msg_len, len(chunk), part, lid, level, bits, chunk)
                try:
                    _commit(mm, off, body_len, body, _HEAD + len(chunk), pos, count)
                except (ValueError, TypeError):  # a closed mmap: pack_into raises TypeError
                    if not (mm.closed and m is not self._map):
                        raise
                    break  # the map was rotated away and unmapped between two parts: the record goes on anew
                stored.append((off, body, pos))
            else:
                if _faults(m.slot) != before or before != m.seen:  # a part went to the guard's anonymous page
                    kept = self._store_again(m, stored, seq)
                    if kept == -2:  # its file was rotated away meanwhile: write the record again in the current one
                        continue
                    return kept
                return seq

    def _logger_id(self, logger: str) -> int | None:
        """The name-table id of ``logger``, registering it on first use (None: store it inline)."""
        lid = self._names.get(logger)
        if lid is not None:
            return lid
        if not isinstance(logger, str):
            logger = str(logger)
        raw = _encode_text(logger)
        with self._lock:
            if self._registering or self._rotating:  # a signal handler interrupted this thread here: go inline
                return None
            self._registering = True
            try:
                return self._register(logger, raw)
            finally:
                self._registering = False

    def _register(self, logger: str, raw: bytes) -> int | None:
        lid = self._names.get(logger)
        if lid is not None:
            return lid
        header = self._map.header
        ident = getattr(self, "_next_name_id", 1)
        if len(raw) > L.NAME_MAX or ident > header.name_entries or not raw:
            return None
        entry = L.NAME_STRUCT.pack(len(raw), 0, L.name_check(raw), raw)
        off = header.name_offset + (ident - 1) * L.NAME_ENTRY_SIZE
        m = self._map
        before = _faults(m.slot)
        m.mm[off : off + L.NAME_ENTRY_SIZE] = entry
        self._next_name_id = ident + 1
        self._names[logger] = ident
        if _faults(m.slot) != before or before != m.seen:  # the table was cut: the repair writes every name again
            self._fault(0, m)
        return ident

    # ------------------------------------------------------------------ rotation
    def _rotate(self, current: _Map, why: str = "full") -> None:
        """Continue in a fresh file at the path: ``current`` is full, was found sealed, or was moved away."""
        with self._lock:
            if self._rotating:  # a signal handler interrupted a rotation on this thread
                raise MmaplogError("a record logged by a signal handler in the middle of a rotation was dropped")
            self._rotating = True
            try:
                self._rotate_now(current, why)
            finally:
                self._rotating = False

    def _rotate_now(self, current: _Map, why: str = "full") -> None:
        """Rotation as a transaction: build the next file, publish it, and only then switch to it.

        Steps (docs/FORMAT.md, "Creation and rotation"): build the next segment
        under a temporary name, with the name table carried over; seal the
        current file; link it to its segment name; rename the new file over the
        path.  When the path no longer names the current file (moved or deleted),
        the new file is published with ``link`` instead and the old one gets no
        segment name.  Any failure before the switch leaves the writer as it was
        (the seal undone) and is reported once; the writer then overwrites its
        current file.
        """
        with self._lock:
            if self._map is not current or self._closed:
                if self._closed:
                    raise MmaplogError("writer is closed")
                return
            moved = not _series.names_file(current.fd, self.path)
            if why == "moved" and not moved:
                return
            if moved and os.path.lexists(self.path):  # another file took its place: it is not ours to replace
                self._keep_current(current, "the live file was moved or deleted and another file took its place", why,
                                   "taken")
                return
            self._check_size(current)  # a cut that never faulted must not be sealed into a segment
            header = current.header
            new_header = self._new_header(header.segment + 1, header.series_id, _peek(self._seqs))
            try:
                fd, temp, mm = _series.build(self.path, self._mode, new_header, self._name_table(new_header))
            except OSError as exc:
                self._keep_current(current, f"cannot start a new segment ({exc.strerror or exc})", why)
                return
            # Guarded and prefaulted before it is published: once it has the path, another process may cut it.
            new = self._guard(_Map(fd, mm, new_header, 1, self._limit(new_header), self.path))
            if self._prefault:
                _prefault(mm, new_header.data_offset)
            linked = False
            try:
                _series.set_state(current.mm, max(1, min(_peek(current.positions) - 1, current.limit)))
                if not moved:
                    linked = _series.link_segment(current.fd, self.path, header.segment)
                    moved = not linked  # moved or deleted between the check and the link
                if moved:
                    published = _series.publish(temp, self.path)
                    if published is None:
                        raise OSError(errno.EPERM, "the file system has no hard links")
                    if not published:
                        raise FileExistsError(errno.EEXIST, "another file took its place")
                else:
                    os.replace(temp, self.path)
            except OSError as exc:
                _series.unlink_quietly(temp)
                self._release(new)
                if linked:  # the current file stays live: it must not also be readable as a segment
                    _series.unlink_quietly(segment_path(self.path, header.segment))
                _series.set_state(current.mm, 0)
                self._keep_current(current, f"cannot start a new file at the path ({exc.strerror or exc})", why)
                return
            self._use(new)
            self._retire(current)
            if moved:
                self._report_once("moved", f"{self.path}: the live file was moved or deleted; "
                                           f"continuing in a new file at the path (segment {new_header.segment})")
            if self.rotate:
                self._prune_segments(new_header.segment)

    def _name_table(self, header: L.FileHeader) -> bytes:
        """The name table of the next file: every name registered so far, under the same ids.

        Carrying the names over means a name-table entry is written once per file
        and never rewritten, and an id a thread looked up before a rotation names
        the same logger in the new file.
        """
        names = list(self._names.items())
        used = min(header.name_entries, max(ident for _, ident in names))
        table = bytearray(used * L.NAME_ENTRY_SIZE)  # the rest of the table is zeros already
        for logger, ident in names:
            if 0 < ident <= header.name_entries:
                raw = _encode_text(logger)
                off = (ident - 1) * L.NAME_ENTRY_SIZE
                table[off : off + L.NAME_ENTRY_SIZE] = L.NAME_STRUCT.pack(len(raw), 0, L.name_check(raw), raw)
        return bytes(table)

    def _keep_current(self, current: _Map, reason: str, why: str, key: str = "rotate") -> None:
        """Rotation failed: keep logging into the current file (overwriting it once full) and say so once."""
        if why == "moved":  # not full yet: a later check or the rotation at the file's end tries again
            self._report_once(key, f"{self.path}: {reason}; writing on into the moved file")
            return
        self._report_once(key, f"{self.path}: {reason}; overwriting the current ring")
        if why == "sealed":  # found sealed at open: it is the live file again
            _series.set_state(current.mm, 0)
        if current.limit != _NEVER:
            current.limit = _NEVER
            current.hot = current.hot[:7] + (_NEVER, current.positions)
            self._use(current)

    def _check_live(self, now: float | None = None) -> None:
        """Notice a live file moved or deleted under the writer and start a new one at the path.

        Called by :meth:`flush` and, at most once a second, from the slow write
        path; rotation checks every time.  Never raises.
        """
        if now is not None:
            if now < self._next_check:
                return
            self._next_check = now + _CHECK_INTERVAL
        try:
            m = self._map
            if self._closed or self._rotating or self._registering:
                return
            self._check_size(m)
            if _series.names_file(m.fd, self.path):
                return
            self._rotate(m, "moved")
        except Exception as exc:  # noqa: BLE001 - a check must never fail a write
            self._report_once("check", f"{self.path}: cannot check the live file ({type(exc).__name__}: {exc})")

    def _check_size(self, m: _Map) -> None:
        """Notice the file of ``m`` cut short by another process and extend it back (never raises).

        A truncation that spares the pages the writer stores into never faults,
        so the SIGBUS guard never sees it: stores below the new end land in the
        file, stores past it within the last partial page land in a page the
        file no longer covers.  Extending the file back keeps the first; the
        second survive only where the file system keeps that page's tail (tmpfs
        does, ext4 zeroes it), so they are read back from the map before and
        after and counted in :attr:`cut_slots` when gone.  Runs at the
        writer's transitions and, through the guard's inotify watch, in the
        watcher thread as soon as another process changes the file.
        """
        try:
            with self._lock:
                if self._closed or m.mm.closed:
                    return
                h = m.header
                have = os.fstat(m.fd).st_size
                if have >= h.file_size:
                    return
                # A store racing the extension could land before it and be zeroed with the page's tail, after the
                # slots past the cut were taken: the bump makes every store in flight ask for the lock (held here)
                # and store again; the remap afterwards bumps again and drops any page a fault made anonymous.
                region = m.guard if m.guard is not None and m.guard.live and m is self._map else None
                if region is not None:
                    _truncation.bump(region)
                saved = _shortfile.readable_valid(m.mm, h, have)
                _series.restore_size(m.fd, h, dict(self._names), m.mm)
                if region is not None:
                    _truncation.remap(region)
                    m.seen = region.seen
                after = set(_shortfile.readable_valid(m.mm, h, have))
                kept = _shortfile.put_back(m.mm, h, have, saved, set(saved) - after)
                lost = _cut_loss(h, have, after | kept, _peek(m.positions))
                self.cut_slots += lost
                _report(f"{self.path}: the ring file was truncated to {have} bytes by another "
                        f"process; extended it back to {h.file_size} bytes and went on writing; "
                        f"{lost} used slots lost, {len(kept)} stored past the cut put back")
        except Exception as exc:  # noqa: BLE001 - a check must never fail a write
            self._report_once("cutcheck", f"{self.path}: cannot repair the truncated ring file "
                                          f"({type(exc).__name__}: {exc})")

    def _report_once(self, key: str, message: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            _report(message)

    def _prune_segments(self, newest: int) -> None:
        keep_sealed = max(0, self.rotate - 1)
        for segment in range(newest - keep_sealed - 1, -1, -1):
            target = segment_path(self.path, segment)
            if not target.exists():
                break
            _series.unlink_quietly(target)

    # ------------------------------------------------------------------ lifecycle
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
                m.hot = (None,) * 9  # type: ignore[assignment]
                if self._fast is not None:
                    self._fast.release()
                self._unguard(m)
                try:
                    m.mm.close()
                except Exception:  # noqa: BLE001 - a view still exported: the map goes with the object
                    pass
                os.close(m.fd)
                for old in self._retired:
                    self._release(old)
                self._retired = []
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
        m = self._map
        m.hot = (None,) * 9  # type: ignore[assignment]
        if self._fast is not None:
            self._fast.release()
        self._unguard(m)
        try:
            m.mm.close()
        except Exception:  # noqa: BLE001 - a child must go on even if its copy cannot be unmapped
            pass
        try:
            os.close(m.fd)
        except OSError:
            pass
        for old in self._retired:
            self._release(old)
        self._retired = []
        _open_writers.discard(self)

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

    def __enter__(self) -> RingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.slot_count} slots of {self.slot_size} bytes"
        return f"<RingWriter {str(self.path)!r} {state}>"


# ---------------------------------------------------------------------- helpers
_time_ns = time.time_ns
_get_ident = threading.get_ident
_crc32 = zlib.crc32
_faults = _truncation.faults
_FAULT_ATTEMPTS = 3
_trailer = L.SLOT_TRAILER_STRUCT.pack_into
_HEAD = L.SLOT_HEADER_SIZE


def _commit(mm: mmap.mmap, off: int, body_len: int, body: bytes, used: int, pos: int, count: int) -> None:
    """The commit protocol of one slot (docs/FORMAT.md); the one-slot hot paths inline it.

    1. the trailer becomes invalid: check 0, commit :func:`mmaplog.layout.invalid_echo`,
       an echo of neither the old nor the new position, so no state of the body
       between the steps passes a reader's commit test;
    2. the body (header, payload, zero padding) in one copy;
    3. the trailer: CRC-32 of the header and the ``used - 48`` payload bytes, and the position's echo.

    A reader that reads the trailer before and after its copy of the body and
    finds it unchanged (and valid) has a whole slot.  The pure-Python path has no
    memory fences: it relies on each step being a separate memcpy into the map,
    which CPython does not reorder, and on the CPU making stores visible in program
    order (x86-64's TSO).  On weakly ordered CPUs (AArch64) the C append orders the
    steps with release fences; there this path leaves a live reader's torn copy to
    the CRC alone.  Crash safety does not depend on the order: after the process
    dies, every store it made is in the page cache.
    """
    _trailer(mm, off + body_len, 0, L.invalid_echo(pos, count))
    mm[off : off + body_len] = body
    _trailer(mm, off + body_len, _crc32(body[:used]), pos & _MASK32)
_WHOLE = L.FLAG_FIRST | L.FLAG_LAST


def _weak(method: Any) -> Any:
    """A callable that calls bound ``method`` while its object lives (0 after): no reference cycle through the C appender."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = ref()
        return bound(*args, **kwargs) if bound is not None else 0

    return call


def _cut_loss(h: L.FileHeader, have: int, survivors: Any, next_pos: int) -> int:
    """Used slots the cut at ``have`` removed: those in the cut range (up to the next position) that did not survive."""
    first = max(0, (have - h.data_offset) // h.slot_size)
    used = min(h.slot_count, max(0, next_pos - 1))
    if isinstance(survivors, set):
        kept = sum(1 for i, _ in survivors if first <= i < used)
    else:  # a boolean mask over the ring (at open)
        kept = int(np.count_nonzero(survivors[first:used]))
    return max(0, used - first) - kept


def _peek(counter: itertools.count[int]) -> int:
    """The next value of an itertools.count without consuming it."""
    text = repr(counter)
    return int(text[text.index("(") + 1 : text.index(")")])


def _encode_text(value: Any) -> bytes:
    """UTF-8 bytes of any value; unencodable characters (lone surrogates) become visible escapes."""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception as exc:  # noqa: BLE001 - a broken __str__ must not stop logging
            value = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    text: str = value
    return text.encode("utf-8", "backslashreplace")


def _json_default(value: Any) -> str:
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _encode_fields(fields: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(dict(fields), ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError):
        text = json.dumps({str(k): _json_default(v) for k, v in dict(fields).items()}, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")


def _fit(data: bytes, extra: bytes, prefix: bytes, flags: int, max_payload: int) -> tuple[bytes, bytes, bytes, int]:
    """Cut a record to at most ``max_payload`` bytes, visibly; return (prefix, message, extra, flags).

    ``prefix`` is the inline logger name (length byte and name) or empty.  A record
    that does not fit gets ``FLAG_TRUNCATED`` and its message ends with the marker;
    the fields and traceback are dropped when they would take more than half the
    room.  In rings too small for that (fewer than 8 slots, or 64..80-byte slots),
    the inline logger name is cut to leave room for the marker, and where the
    marker alone does not fit, the message is cut with the flag alone saying so.
    The result never exceeds ``max_payload``, so a record never overwrites itself.
    """
    if len(prefix) + len(data) + len(extra) <= max_payload:
        return prefix, data, extra, flags
    flags |= L.FLAG_TRUNCATED
    marker = L.TRUNCATION_MARKER.encode()
    if len(prefix) + len(extra) + len(marker) > max_payload // 2:
        extra = b""
        flags &= ~(L.FLAG_FIELDS | L.FLAG_EXCEPTION)
    if prefix and len(prefix) + len(marker) > max_payload:
        name_room = max_payload - 1 - len(marker)
        if name_room < 0:  # no room for the marker: the name gets half, the message the rest
            name_room, marker = (max_payload - 1) // 2, b""
        name = _cut_utf8(prefix[1:], name_room)
        prefix = bytes([len(name)]) + name
    room = max_payload - len(prefix) - len(extra)
    if room < len(marker):
        marker = b""
    return prefix, _cut_utf8(data, room - len(marker)) + marker, extra, flags


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """Cut ``data`` to at most ``limit`` bytes without splitting a UTF-8 character."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


def _prefault(mm: mmap.mmap, start: int) -> None:
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
