"""A writer's rotation to a new file at its path, and the checks that the live file is still whole and at the path."""

from __future__ import annotations

import errno
import os

from . import _series, _truncation
from . import layout as L
from ._counter import peek as _peek
from ._encode import encode_text as _encode_text
from ._errors import MmaplogError
from ._opening import OpeningMixin
from ._repair import RepairMixin
from ._ringmap import NEVER as _NEVER
from ._ringmap import RingMap as _Map
from ._ringmap import prefault as _prefault
from ._series import segment_path
from ._shortfile import cut_loss as _cut_loss
from ._writerbase import report as _report

__all__ = ["CHECK_INTERVAL", "RotationMixin"]

#: Seconds between checks, on the slow write path, that the live file is still at the path.
CHECK_INTERVAL = 1.0
_CHECK_INTERVAL = CHECK_INTERVAL


class RotationMixin(OpeningMixin, RepairMixin):
    """Rotation, and noticing the live file moved, deleted or cut short."""

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
            # Under the lock: a rotation on another thread releases the map it retired before (its descriptor
            # closed, and its number perhaps reused by another file).
            with self._lock:
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
                after, kept = _truncation.extend_back(m.fd, m.mm, h, dict(self._names), have, region)
                if region is not None:
                    m.seen = region.seen
                lost = _cut_loss(h, have, after | kept, _peek(m.positions))
                self.cut_slots += lost
                _report(f"{self.path}: the ring file was truncated to {have} bytes by another "
                        f"process; extended it back to {h.file_size} bytes and went on writing; "
                        f"{lost} used slots lost, {len(kept)} stored past the cut put back")
        except Exception as exc:  # noqa: BLE001 - a check must never fail a write
            self._report_once("cutcheck", f"{self.path}: cannot repair the truncated ring file "
                                          f"({type(exc).__name__}: {exc})")

    def _prune_segments(self, newest: int) -> None:
        keep_sealed = max(0, self.rotate - 1)
        for segment in range(newest - keep_sealed - 1, -1, -1):
            target = segment_path(self.path, segment)
            if not target.exists():
                break
            _series.unlink_quietly(target)
