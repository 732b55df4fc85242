"""A writer's side of the SIGBUS guard: guarding its maps, repairing after a fault, storing a record again.

The guard itself (process-wide, the handler and its region table) is :mod:`mmaplog._truncation`.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from . import _truncation
from . import layout as L
from ._encode import MASK32 as _MASK32
from ._encode import trailer as _trailer
from ._ringmap import RingMap as _Map
from ._writerbase import WriterBase

__all__ = ["FAULT_ATTEMPTS", "RepairMixin"]

_faults = _truncation.faults
#: Times a store is made again after a repair before its page is given up (a full disk).
FAULT_ATTEMPTS = 3
_FAULT_ATTEMPTS = FAULT_ATTEMPTS


class RepairMixin(WriterBase):
    """Guarding a writer's maps and dealing with faults in them."""

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
        """Another process changed the live file (inotify, in the watcher thread): was it cut short?

        The map is taken under the writer's lock (re-entered by the check), so a rotation that ran while this
        thread waited for it is seen: the check is of the file records go to now.
        """
        with self._lock:
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
        ident, pos)``, or that and ``fields_json`` (``Appender.append_fields``):
        the record is kept if the rotated file holds it, else written again, with
        its fields, in the current file (returns its seq, or 0 when lost).
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

        ``record`` is ``(seq, data, level, logger, stamp, ident, pos)``, and ``fields_json`` after them for a
        record with fields (``Appender.append_fields``).  Never raises.
        """
        try:
            seq, data, level, logger, stamp, ident, pos, *rest = record
            fields_json = rest[0] if rest else b""
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
            return self._write_record(seq, data, fields_json, L.FLAG_FIELDS if fields_json else 0, level, logger,
                                      stamp, ident)
        except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
            return self._failed(exc)
