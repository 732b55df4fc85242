"""Following ring files for the shipper: every record after a per-series position, in order, once.

:class:`RingSource` keeps, for each series (one writer and its rotated
segments), the last seq it handed out, and for each file the slot position up
to which everything has been seen.  A poll reads only the slots written since
(a cheap probe when nothing changed), validates them, assembles the records
after the series position and hands them out in seq order.

A seq missing below newer records may still be in flight (a writer thread
between claiming and committing it), so the source waits ``grace`` seconds
before it calls the missing records lost; it then hands out a :class:`Gap`
with the exact count.  Records overwritten by a writer that lapped the reader
are such a gap, and so are records a crashed writer never finished.
"""

from __future__ import annotations

import glob
import heapq
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import _codec
from .._errors import FormatError
from ..reader import Record, RingFile, expand_paths

__all__ = ["Gap", "Item", "RingSource"]

#: Slots per pread while reading forward from a file's position (the first read is a small probe).
_PROBE = 64
_CHUNK = 4096


@dataclass(frozen=True)
class Gap:
    """Records of one series that can no longer be read (overwritten, or never completed by the writer)."""

    series: bytes
    first_seq: int
    last_seq: int
    path: str
    host: str
    process: str
    pid: int
    #: "overwritten" (the writer lapped the reader, or rotated the records away) or "unfinished"
    #: (a writer thread died between claiming the records and committing them).
    cause: str = "overwritten"

    @property
    def count(self) -> int:
        """How many records were lost."""
        return self.last_seq - self.first_seq + 1

    def describe(self) -> str:
        """One line for people: ``1234 records overwritten before they could be shipped (seq 1..1234 of app.mmlog)``."""
        span = f"seq {self.first_seq}" if self.count == 1 else f"seq {self.first_seq}..{self.last_seq}"
        noun = "record" if self.count == 1 else "records"
        if self.cause == "overwritten":
            return f"{self.count} {noun} overwritten before they could be shipped ({span} of {self.path})"
        return f"{self.count} {noun} never finished by the writer, so not shipped ({span} of {self.path})"


class Item(NamedTuple):
    """One thing to ship: a record, or a gap report.  ``seq`` is where the series' cursor moves once it is delivered."""

    series: bytes
    seq: int
    record: Record | None = None
    gap: Gap | None = None


@dataclass
class _Tail:
    """One open ring file and how far it has been read."""

    ring: RingFile
    key: tuple[int, int]
    path: str
    #: Every slot position up to this one has been seen (or given up on).
    after_pos: int = 0
    #: (first missing position, monotonic time first seen, highest position seen then)
    stall: tuple[int, float, int] | None = None
    #: Multiplier of the slots read per poll; doubles while a long record does not fit.
    scale: int = 1
    listed: bool = True
    done: bool = False


@dataclass
class _Series:
    """Where one series stands: the last seq handed out, the newest seen, a hole being waited on."""

    series_id: bytes
    delivered: int
    newest: int = 0
    #: (first missing seq, monotonic time first seen, highest seq seen then)
    hole: tuple[int, float, int] | None = None
    #: Set when a file of the series was found lapped (positions overwritten before they were read).
    lapped: bool = False
    info: tuple[str, str, str, int] = ("", "", "", 0)
    tails: list[_Tail] = field(default_factory=list)


class RingSource:
    """Hands out the records of ``paths`` (and their sealed segments) after given per-series positions.

    ``positions`` maps a series id to the last seq already shipped.  A series
    without a position starts at its oldest record (``start="oldest"``), the
    records before it reported as a gap, or after its newest record at the time
    it is first seen (``start="end"``).  A path with glob characters that names
    no file (``/var/log/app-*.mmlog``) is a pattern, matched again on every poll,
    so files of processes started later are picked up.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        positions: Mapping[bytes, int] | None = None,
        start: str = "oldest",
        grace: float = 1.0,
        segments: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if start not in ("oldest", "end"):
            raise ValueError(f"start must be 'oldest' or 'end', not {start!r}")
        self.paths = [Path(os.fspath(p)) for p in paths]
        self.start = start
        self.grace = grace
        self.segments = segments
        self._clock = clock
        self._positions = dict(positions or {})
        self._tails: dict[tuple[int, int], _Tail] = {}
        self._series: dict[bytes, _Series] = {}
        self._turn = 0
        #: Problems with files (path -> reason), for the caller to report; a path leaves when it reads again.
        self.problems: dict[str, str] = {}

    # ------------------------------------------------------------------ public
    def poll(self, limit: int = 8192) -> list[Item]:
        """Read what is new and return up to ``limit`` items (records and gaps) in seq order per series."""
        self._refresh()
        per_series: list[list[Item]] = []
        room = limit
        # Start with a different series each time, so a long backlog in one cannot starve the others.
        order = list(self._series.items())
        self._turn = (self._turn + 1) % max(1, len(order))
        for series_id, series in order[self._turn :] + order[: self._turn]:
            if room <= 0:
                break
            got = self._poll_series(series_id, series, room)
            room -= len(got)
            if got:
                per_series.append(got)
        self._close_finished()
        if len(per_series) == 1:
            return per_series[0]
        # Interleave series by time; each series keeps its own seq order.
        return list(heapq.merge(*per_series, key=_item_time))

    @property
    def waiting(self) -> bool:
        """True while a missing record or slot is given time to appear (a later poll may hand out more)."""
        return any(s.hole is not None for s in self._series.values()) or any(
            t.stall is not None for t in self._tails.values()
        )

    def lag(self) -> int:
        """Records written but not yet handed out, summed over the series seen."""
        return sum(max(0, s.newest - s.delivered) for s in self._series.values())

    def positions(self) -> dict[bytes, int]:
        """The last seq handed out per series."""
        return {sid: s.delivered for sid, s in self._series.items()}

    def close(self) -> None:
        """Close every open file."""
        for tail in self._tails.values():
            tail.ring.close()
        self._tails.clear()
        for series in self._series.values():
            series.tails.clear()

    # ------------------------------------------------------------------ files
    def _refresh(self) -> None:
        """Open files that appeared (new file, rotation), note files that left the listing."""
        for tail in self._tails.values():
            tail.listed = False
        for path in expand_paths(self._listing(), self.segments):
            try:
                st = os.stat(path)
            except OSError:
                continue
            known = self._tails.get((st.st_dev, st.st_ino))
            if known is not None:
                known.listed = True
                known.path = str(path)
                continue
            try:
                ring = RingFile(path)
            except FormatError as exc:
                self.problems[str(path)] = exc.reason
                continue
            self.problems.pop(str(path), None)
            if ring.inode in self._tails:  # replaced between stat and open: the listing catches up next poll
                ring.close()
                continue
            tail = _Tail(ring=ring, key=ring.inode, path=str(path))
            self._tails[ring.inode] = tail
            self._attach(tail)

    def _listing(self) -> list[Path]:
        """The given paths, with glob patterns (``app-*.mmlog``) expanded anew on every poll."""
        out: list[Path] = []
        for path in self.paths:
            text = str(path)
            if glob.has_magic(text) and not path.exists():
                out += sorted(Path(p) for p in glob.glob(text))
            else:
                out.append(path)
        return out

    def _attach(self, tail: _Tail) -> None:
        h = tail.ring.header
        series = self._series.get(h.series_id)
        if series is None:
            if h.series_id in self._positions:
                delivered = self._positions[h.series_id]
            elif self.start == "end":
                delivered = self._newest_seq(tail)
            else:
                delivered = 0
            series = _Series(h.series_id, delivered=delivered, newest=delivered)
            self._series[h.series_id] = series
        series.info = (tail.path, h.hostname, h.process_name, h.pid)
        series.tails.append(tail)

    def _newest_seq(self, tail: _Tail) -> int:
        slots = tail.ring.slots()
        valid = _codec.valid_slots(slots, tail.ring.header.slot_count)
        return int(slots["seq"][valid].max()) if valid.any() else 0

    def _close_finished(self) -> None:
        for key, tail in list(self._tails.items()):
            if tail.done or (not tail.listed and tail.stall is None and self._exhausted(tail)):
                tail.ring.close()
                del self._tails[key]
                series = self._series.get(tail.ring.header.series_id)
                if series is not None and tail in series.tails:
                    series.tails.remove(tail)

    def _exhausted(self, tail: _Tail) -> bool:
        """True when a file that left the listing holds nothing after its series' position."""
        series = self._series[tail.ring.header.series_id]
        probe = tail.ring.slots(tail.after_pos % tail.ring.header.slot_count, 1)
        return not (len(probe) and int(probe["pos"][0]) > tail.after_pos and int(probe["seq"][0]) > series.delivered)

    # ------------------------------------------------------------------ reading
    def _read(self, tail: _Tail, delivered: int, want: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Valid slots of ``tail`` after its position: (their positions, those with seq > delivered, capped?).

        Reads about twice the slots that ``want`` records need, so a shipper far
        behind does not validate the whole ring on every poll.
        """
        ring = tail.ring
        count = ring.header.slot_count
        if ring.sealed() and tail.after_pos >= count:
            tail.done = not tail.listed
            return np.empty(0, np.uint64), ring.slots(0, 0), False
        limit = min(max(2 * want, 1024) * tail.scale, count)
        positions: list[np.ndarray] = []
        candidates: list[np.ndarray] = []
        read = 0
        start = tail.after_pos % count
        capped = False
        chunk = _PROBE
        while read < limit:
            index = (start + read) % count
            n = min(chunk, count - index, limit - read)
            chunk = _CHUNK
            slots = ring.slots(index, n)
            read += n
            newer = slots["pos"] > tail.after_pos
            if newer.any():
                fresh = slots[newer]
                where = np.flatnonzero(newer).astype(np.uint64) + np.uint64(index)
                ok = _codec.valid_slots(fresh, count, where)
                good = fresh[ok]
                positions.append(good["pos"])
                candidates.append(good[good["seq"] > delivered])
            if not newer[-1]:
                break
        else:
            capped = read < count
        if not positions:
            return np.empty(0, np.uint64), ring.slots(0, 0), capped
        return np.concatenate(positions), np.concatenate(candidates), capped

    def _poll_series(self, series_id: bytes, series: _Series, limit: int) -> list[Item]:
        now = self._clock()
        delivered = series.delivered
        reads = []
        for tail in series.tails:
            positions, candidates, capped = self._read(tail, delivered, limit)
            reads.append((tail, positions, candidates, capped))
        # Assemble only the first `limit` distinct seqs; later ones are read again next time.
        all_seqs = np.concatenate([c["seq"] for _, _, c, _ in reads]) if reads else np.empty(0, np.uint64)
        if len(all_seqs):
            series.newest = max(series.newest, int(all_seqs.max()))
        wanted = np.unique(all_seqs)[:limit]
        records: dict[int, Record] = {}
        if len(wanted):
            top = wanted[-1]
            for tail, _, candidates, _ in reads:
                chosen = candidates[candidates["seq"] <= top]
                if len(chosen):
                    for record in self._assemble(tail, chosen):
                        records.setdefault(record.seq, record)
        items = self._advance(series_id, series, records, now, limit)
        for tail, positions, candidates, capped in reads:
            self._move(tail, series, positions, candidates, capped, now)
        return items

    def _assemble(self, tail: _Tail, slots: np.ndarray) -> Iterable[Record]:
        """Whole records from valid slots (records missing a part are left out: they count as missing)."""
        h = tail.ring.header
        asm = _codec.assemble(slots, tail.ring.read_names())
        seqs = asm.seq.tolist()
        times = asm.time_ns.tolist()
        levels = asm.level.tolist()
        threads = asm.thread.tolist()
        flags = asm.flags.tolist()
        for i, seq in enumerate(seqs):
            yield Record(
                seq=seq,
                time_ns=times[i],
                level=levels[i],
                logger=asm.logger[i],
                thread=threads[i],
                pid=h.pid,
                message=asm.message[i],
                fields=asm.fields[i] or {},
                exception=asm.exception[i],
                host=h.hostname,
                process=h.process_name,
                source=tail.path,
                flags=flags[i],
            )

    def _advance(
        self, series_id: bytes, series: _Series, records: dict[int, Record], now: float, limit: int
    ) -> list[Item]:
        """Hand out records in seq order from the series position, turning holes older than ``grace`` into gaps.

        A hole is a run of missing seqs below a record that is present.  When it
        is first seen, the newest seq seen so far is noted; once ``grace`` has
        passed, every seq of the hole up to that note is declared lost (a
        record claimed back then had time to be committed).
        """
        items: list[Item] = []
        for seq in sorted(records):
            if len(items) >= limit:
                break
            expected = series.delivered + 1
            if seq < expected:
                continue
            if seq > expected:
                hole = series.hole
                if hole is None or hole[0] != expected:
                    series.hole = (expected, now, series.newest)
                    break
                if now - hole[1] < self.grace:
                    break
                last = min(seq - 1, hole[2])
                items.append(Item(series_id, last, gap=self._gap(series, expected, last)))
                series.delivered = last
                if last < seq - 1:
                    series.hole = (last + 1, now, series.newest)
                    break
            items.append(Item(series_id, seq, record=records[seq]))
            series.delivered = seq
            series.hole = None
        if not records:
            series.hole = None
        if series.hole is None:
            series.lapped = False  # a lap that left no hole lost nothing
        return items

    def _gap(self, series: _Series, first: int, last: int) -> Gap:
        path, host, process, pid = series.info
        oldest_kept = min((t.ring.header.first_seq for t in series.tails), default=0)
        overwritten = series.lapped or first < oldest_kept
        series.lapped = False
        cause = "overwritten" if overwritten else "unfinished"
        return Gap(series.series_id, first, last, path, host, process, pid, cause)

    def _move(
        self, tail: _Tail, series: _Series, positions: np.ndarray, candidates: np.ndarray, capped: bool, now: float
    ) -> None:
        """Advance the file's position past everything seen, stopping before undelivered records and missing slots."""
        if not len(positions):
            return
        count = tail.ring.header.slot_count
        after = tail.after_pos
        seen = np.unique(positions)
        frontier = _frontier(seen, after)
        highest = int(seen[-1])
        if frontier < highest:
            stall = tail.stall
            if stall is None or stall[0] != frontier + 1:
                tail.stall = (frontier + 1, now, highest)
            elif now - stall[1] >= self.grace:
                # Slots claimed before the stall began and still missing are dead (a writer killed mid-record).
                skipped = np.union1d(seen, np.arange(frontier + 1, stall[2] + 1, dtype=np.uint64))
                frontier = _frontier(skipped, after)
                tail.stall = None
        else:
            tail.stall = None
        # Positions a full ring behind the newest one seen are overwritten: nothing there to wait for.
        if highest - count > frontier:
            series.lapped = True
            frontier = highest - count
        waiting = candidates["pos"][candidates["seq"] > series.delivered]
        if len(waiting):
            frontier = min(frontier, int(waiting.min()) - 1)
        if frontier <= after and capped:
            tail.scale = min(tail.scale * 2, 1 << 20)
        elif frontier > after:
            tail.scale = 1
        tail.after_pos = max(after, frontier)


def _frontier(seen: np.ndarray, after: int) -> int:
    """The highest position P such that every position after ``after`` up to P is in the sorted ``seen``."""
    seen = seen[seen > after]
    if not len(seen):
        return after
    expected = np.arange(after + 1, after + 1 + len(seen), dtype=np.uint64)
    mismatch = np.flatnonzero(seen != expected)
    run = int(mismatch[0]) if len(mismatch) else len(seen)
    return after + run


def _item_time(item: Item) -> int:
    return item.record.time_ns if item.record is not None else 0
