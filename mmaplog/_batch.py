"""A writer's batches: consecutive one-slot records packed into one buffer and committed as a run."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from . import _truncation
from . import layout as L
from ._encode import HEAD as _HEAD
from ._encode import MASK32 as _MASK32
from ._encode import WHOLE as _WHOLE
from ._encode import crc32 as _crc32
from ._encode import trailer as _trailer
from ._repair import RepairMixin
from ._ringmap import RingMap as _Map
from ._writerbase import GIL as _GIL

__all__ = ["RUN_CHUNK", "BatchMixin", "BatchRecord"]

#: Slots a batch's run commits at a time: the most a kill can leave between invalid and valid trailers.
RUN_CHUNK = 16
_RUN_CHUNK = RUN_CHUNK
_faults = _truncation.faults


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


class BatchMixin(RepairMixin):
    """:meth:`write_batch` and its runs of one-slot records."""

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
        return self._write_py(r.message, level=r.level, logger=r.logger, fields=r.fields, time_ns=r.time_ns,
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
                    # Twin: writer.RingWriter._put's one-slot header, packed per record here (a call per record would
                    # cost more than its checksum); the commit is _commit_run's, a run at a time.
                    try:
                        body = pack(pos, seq, r.time_ns, r.thread, n, n, n, 0, lid, r.level, _WHOLE, data)
                    except struct.error:  # a level outside 0..255 is clamped, as write() does
                        level = min(max(int(r.level), 0), 255)
                        body = pack(pos, seq, r.time_ns, r.thread, n, n, n, 0, lid, level, _WHOLE, data)
                    if not bodies or pos != last + 1 or pos == end:
                        # A run holds consecutive positions and stops at the ring's end.  An empty run starts here
                        # whatever ``last`` says: position 1 (a new file) would otherwise extend a run at 0.
                        written += self._commit_run(m, first, bodies, checks)
                        first = pos
                        end = pos + count - (pos - 1) % count
                    last = pos
                    add_body(body)
                    add_check(_crc32(body[: _HEAD + n]))
                    continue
                written += self._commit_run(m, first, bodies, checks)
                written += self._write_py(
                    r.message, level=r.level, logger=r.logger, fields=r.fields, time_ns=r.time_ns,
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
        done = 0  # slots committed whole into m so far
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
                done = stop
            if _faults(m.slot) != before or before != m.seen:  # a slot went to the guard's anonymous page
                kept = self._store_again(m, [(off + i * size, body, first + i) for i, body in enumerate(bodies)], n)
                if kept == -2:  # its file was rotated away meanwhile: write the run's records in the current one
                    return sum(self._write_body_again(body) != 0 for body in bodies)
                return kept
            return n
        except Exception as exc:  # noqa: BLE001
            if m.mm.closed and m is not self._map:
                # Rotated away twice (and unmapped) since the run's positions were taken: the slots committed
                # before are in its file; the rest are written again, whole, in the current one.
                return done + sum(self._write_body_again(body) != 0 for body in bodies[done:])
            for _ in range(n - done):
                self._failed(exc)
            return done
        finally:
            bodies.clear()
            checks.clear()

    def _write_body_again(self, body: bytes) -> int:
        """Write the one-slot record packed in ``body`` again, whole, in the current file (same seq)."""
        _, seq, stamp, ident, _, _, n, _, lid, level, _ = struct.unpack_from(L.SLOT_HEADER_FORMAT, body)
        logger = next((name for name, ident_ in self._names.items() if ident_ == lid), "")
        return self._write_record(seq, bytes(body[_HEAD : _HEAD + n]), b"", 0, level, logger, stamp, ident)
