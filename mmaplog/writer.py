"""RingWriter: appends records into a memory-mapped ring file.

Once :meth:`RingWriter.write` returns, the record is in the operating system's
page cache, so it survives the process dying abruptly; :meth:`RingWriter.flush`
adds durability against power loss.  The byte layout comes from
:mod:`mmaplog.layout`.

This module holds the public face and the job of claiming and appending (the
one-slot hot paths, records of several slots, logger names); the writer's other
jobs are parts of the class in modules of their own (see
:mod:`mmaplog._writerbase` for the list, and ``docs/MAP.md``).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _native, _series, _truncation
from . import layout as L
from ._batch import BatchMixin, BatchRecord
from ._closing import ClosingMixin
from ._closing import register_atexit as _register_atexit
from ._counter import Counter, counter
from ._counter import peek as _peek  # noqa: F401 - tests peek at counters through this name
from ._encode import HEAD as _HEAD
from ._encode import MASK32 as _MASK32
from ._encode import WHOLE as _WHOLE
from ._encode import commit as _commit
from ._encode import crc32 as _crc32
from ._encode import cut_utf8 as _cut_utf8
from ._encode import encode_fields as _encode_fields
from ._encode import encode_text as _encode_text
from ._encode import fit as _fit
from ._encode import trailer as _trailer
from ._process import process_name as _process_name  # noqa: F401 - the owner is _process; the old name stays here
from ._record import LogRecord
from ._ringmap import RingMap as _Map
from ._ringmap import prefault as _prefault
from ._series import segment_path
from ._writerbase import GIL as _GIL

__all__ = ["DEFAULT_RING_SIZE", "BatchRecord", "RingWriter", "parse_size", "segment_path"]

#: 16 MiB of slots: 65,536 records of up to 200 bytes with the default slot size.
DEFAULT_RING_SIZE = 16 << 20
_U64_MAX = (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
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


class RingWriter(BatchMixin, ClosingMixin):
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
        self._seqs: Counter
        self._fast: Any = None  # the C appender, writing into the current map
        self._retired: list[_Map] = []  # the map rotated away last: still mapped and guarded (see _retire)
        self._open_initial()
        _register_atexit(self)
        if not _GIL:
            self.write = self._write_locked  # type: ignore[method-assign]
            self._append = self._append_locked  # type: ignore[method-assign]

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
        self._seqs = counter(next_seq)
        if _cwrite is not None:
            self._fast = _cwrite.Appender(self._seqs, _weak(self._append_slow), _weak(self._append_full),
                                          _weak(self._failed), _weak(self._write_one), _weak(self._write_py),
                                          _weak(self._fault), slow_fields=_weak(self._append_fields))
            self._append = self._fast.append  # type: ignore[method-assign]
            # Taken after the Python method above was bound for the rare cases: C from here on.
            self._append_fields = self._fast.append_fields  # type: ignore[method-assign]
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
                    if len(data) <= m.hot[6]:  # the payload of one slot
                        return self._put(m, data, lid, level, logger, _time_ns() if time_ns is None else time_ns,
                                         _get_ident() if thread is None else thread)
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
        does.  Anything but a record that fills one slot goes through :meth:`write`.
        Never raises.
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
                    # Twin: _put, inlined here (measured: the call costs 3-4% of this path); the rare branches are
                    # _put_again's.  Keep the two in step.
                    try:
                        seq = next(self._seqs)
                        pos = next(positions)
                        if pos > limit:  # the file is full: this record starts the next one
                            return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
                        off = base + (pos - 1) % count * size
                        body = pack(pos, seq, stamp, ident, n, n, n, 0, lid, level, _WHOLE, data)
                        before = _faults(m.slot)
                        try:
                            _trailer(mm, off + body_len, 0, (pos + (count | 1)) & _MASK32)  # layout.invalid_echo
                            mm[off : off + body_len] = body
                            _trailer(mm, off + body_len, _crc32(body[: _HEAD + n]), pos & _MASK32)
                        except (ValueError, TypeError) as exc:  # a closed mmap: pack_into raises TypeError
                            return self._put_again(m, exc, seq, data, level, logger, stamp, ident)
                        if _faults(m.slot) != before or before != m.seen:  # stored into an anonymous page
                            return self._put_again(m, (off, body, pos), seq, data, level, logger, stamp, ident)
                        return seq
                    except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
                        return self._failed(exc)
        except Exception:  # noqa: BLE001 - not text, lone surrogates, a closed writer: write() decides
            pass
        return self.write(message, level=level, logger=logger)

    # Twin: _append inlines this method's claim, pack and commit (a call there costs 3-4% of the direct path).
    def _put(self, m: _Map, data: bytes, lid: int, level: int, logger: str, stamp: int, ident: int) -> int:
        """Claim, encode and commit record ``data`` that fills one slot of ``m`` (the caller checked it fits).

        The one owner of the one-slot record in Python: :meth:`write` takes it,
        :meth:`_append` inlines it (a declared twin), :meth:`write_batch` packs the
        same header and commits in runs.  The commit is :func:`mmaplog._encode.commit`'s protocol,
        inlined: a call costs more here than the record's checksum.  The rare
        branches (a closed map, a fault) are :meth:`_put_again`'s.  May raise:
        the callers count the failure.
        """
        mm, pack, count, base, size, body_len, _, limit, positions = m.hot
        n = len(data)
        seq = next(self._seqs)
        pos = next(positions)
        if pos > limit:  # the file is full: this record starts the next one
            return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
        off = base + (pos - 1) % count * size
        body = pack(pos, seq, stamp, ident, n, n, n, 0, lid, level, _WHOLE, data)
        before = _faults(m.slot)
        try:
            _trailer(mm, off + body_len, 0, (pos + (count | 1)) & _MASK32)  # layout.invalid_echo
            mm[off : off + body_len] = body
            _trailer(mm, off + body_len, _crc32(body[: _HEAD + n]), pos & _MASK32)
        except (ValueError, TypeError) as exc:  # a closed mmap: pack_into raises TypeError
            return self._put_again(m, exc, seq, data, level, logger, stamp, ident)
        if _faults(m.slot) != before or before != m.seen:  # stored into an anonymous page
            return self._put_again(m, (off, body, pos), seq, data, level, logger, stamp, ident)
        return seq

    def _put_again(self, m: _Map, why: BaseException | tuple[int, bytes, int], seq: int, data: bytes, level: int,
                   logger: str, stamp: int, ident: int) -> int:
        """The rare branches of a one-slot store into ``m``: keep record ``seq`` or write it again.

        ``why`` is the exception the store raised (re-raised unless the map was
        closed because it was rotated away and unmapped since the claim), or the
        stored slot ``(offset, body, pos)`` when the store went to an anonymous page
        of the guard (repaired and stored again by :meth:`_store_again`).  Either
        way, a record whose file is gone is written again, whole, in the current file.
        """
        if isinstance(why, BaseException):
            if not (m.mm.closed and m is not self._map):
                raise why
            # Rotated away twice (and unmapped) since the claim: write it in the current file.
            return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
        kept = self._store_again(m, [why], seq)
        if kept == -2:  # its file was rotated away meanwhile: write it in the current one
            return self._write_record(seq, data, b"", 0, level, logger, stamp, ident)
        return kept

    def _append_slow(self, message: str, level: int, logger: str) -> int:
        """What the C append leaves to Python: odd text, long records, new logger names, a closed writer."""
        try:
            return self._write_slow(message, level, logger, None, None, None, None)
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            return self._failed(exc)

    def _append_full(self, seq: int, data: bytes, level: int, logger: str, stamp: int, ident: int,
                     fields_json: bytes = b"") -> int:
        """The C append claimed a position past the end of the file: rotate and write record ``seq`` there.

        ``fields_json``: the record's fields as encoded (``Appender.append_fields``), kept with it.
        """
        try:
            return self._write_record(seq, data, fields_json, L.FLAG_FIELDS if fields_json else 0, level, logger, stamp,
                                      ident)
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            return self._failed(exc)

    def _append_locked(self, message: str, level: int, logger: str) -> int:
        with self._claim_lock:
            return RingWriter._append(self, message, level, logger)


    # Twin: _cwrite.c Appender.append_fields is the C form of this method (same bytes; tests run both). See docs/MAP.md.
    def _append_fields(self, message: str, level: int, logger: str, fields_json: bytes) -> int:
        """:meth:`write` with fields already encoded as the writer encodes them (positional; never raises).

        The source-location path (``capture_source``) encodes its three fields in
        C; this takes them as they are instead of a dict that :meth:`write` would
        encode again.  Where the C append is in use, ``Appender.append_fields``
        stands in for it (a record of one slot in C) and calls it for the rest.
        """
        try:
            if self._closed:
                self.dropped += 1
                return 0
            self._check_live(time.monotonic())
            if type(level) is not int or not 0 <= level <= 255:  # min() and max() cost more than the record
                level = min(max(int(level), 0), 255)
            seq = next(self._seqs)
            return self._write_record(seq, _encode_text(message), bytes(fields_json), L.FLAG_FIELDS, level, logger,
                                      None, None)
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            return self._failed(exc)

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
_faults = _truncation.faults


def _weak(method: Any) -> Any:
    """A callable that calls bound ``method`` while its object lives (0 after): no reference cycle through the C appender."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = ref()
        return bound(*args, **kwargs) if bound is not None else 0

    return call
