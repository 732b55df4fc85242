"""Following ring files while live writers append to them (``tail -f`` for mmaplog).

:func:`follow` returns a :class:`Follower`; iterate it for :class:`~mmaplog.Record`
objects as writers commit them, across ring wraps and rotations, from one file
or several (one per process, merged by time).

The follower never maps a file: it reads with ``pread``, so a file truncated,
deleted or replaced under it cannot raise SIGBUS.  Nor does it re-read a whole
ring on every poll: per file it keeps the next slot position it expects and
reads only the slots ahead of it.  Loss is counted, never hidden: records the
writer overwrote before the follower got to them, slots that stayed uncommitted
(a writer thread that died between claiming a slot and committing it) or
corrupt, and multi-slot records whose parts never all arrived are reported as
:class:`FollowEvent` objects and counted in :class:`FollowStats`, so that
``stats.records + stats.missed`` equals the records written after the starting
point.

A seq is counted missed only when it provably can never appear: the writer
overwrote its slots or deleted its segment before it was read, or no writer
holds the file any more (its lock is gone) and everything was read.  A record
merely committed late -- a seq taken just before a rotation can be written many
segments later -- is waited for however long that takes; when following stops,
seqs still in flight are counted in :attr:`FollowStats.pending`, not missed.

With ``ordered=True`` each series (one writer and its segments) comes out
strictly in seq order: a record that committed late is waited for and the
records after it wait with it (up to half of 65,536 held back; past that they
go ahead, counted in :attr:`FollowStats.overtaken`, and the late one follows
when it comes, the cursor staying below it until then); a seq given up on is a
``missed`` event in its place.  :attr:`Follower.cursor` then never skips a
record: everything up to it was shown or reported missed.  This is what a
shipper needs (``mmaplog-ship`` is built on it); :meth:`Follower.take` also
says which series each item belongs to and bounds the batch.
"""

from __future__ import annotations

import glob
import heapq
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Union

from ._errors import FormatError
from ._tail import Followed, FollowEvent, FollowStats, Start, Tailer, live_paths
from .reader import PathArg, Record

__all__ = ["FollowEvent", "FollowStats", "Followed", "Follower", "Start", "follow"]

Item = Union[Record, FollowEvent]  # noqa: UP007 - a runtime alias; X | Y needs 3.10 types on both sides


def _time_of(record: Record) -> int:
    return record.time_ns


def _entry_time(entry: Followed) -> int:
    """Merge key of an ordered item: a record's time; events sort first (they explain what follows)."""
    return entry.item.time_ns if isinstance(entry.item, Record) else 0


class Follower(Iterator[Record]):
    """Yields the records of one or more ring files as writers commit them; made by :func:`follow`.

    Iterate it from one thread.  :meth:`poll` is the non-blocking core: one pass
    over every file, returning records and :class:`FollowEvent` objects in the
    order they happened.  Iteration calls it, sleeps ``poll_interval`` after a
    poll that found nothing, and hands events to ``on_event``.  :attr:`stats`
    counts what was shown and what was missed; :meth:`close` counts whatever is
    still pending as missed, so the totals are exact.

    With ``watch``, a path that does not exist yet is waited for and a path
    with glob characters that names no file (``/var/log/app-*.mmlog``) is a
    pattern matched again on every poll, so files of processes started later
    are followed too; a file that cannot be opened is noted in
    :attr:`problems` and tried again.  ``start`` overrides ``last`` and
    ``from_start`` with a :class:`Start` policy (``Start("after", 0)``: every
    record from seq 1 on, those already gone reported missed).  ``clock`` is the
    monotonic clock grace periods are measured with.
    """

    def __init__(
        self,
        paths: PathArg | Sequence[PathArg],
        *,
        last: int = 0,
        from_start: bool = False,
        after: Mapping[str, int] | None = None,
        poll_interval: float = 0.1,
        grace: float = 1.0,
        stop: threading.Event | None = None,
        on_event: Callable[[FollowEvent], None] | None = None,
        ordered: bool = False,
        watch: bool = False,
        start: Start | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if isinstance(last, bool) or not isinstance(last, int) or last < 0:
            raise ValueError(f"last must be a whole number >= 0, not {last!r}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0 seconds, not {poll_interval!r}")
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds, not {grace!r}")
        self.poll_interval = float(poll_interval)
        self.grace = float(grace)
        self.stats = FollowStats()
        self._retired = FollowStats()
        self._stop = stop if stop is not None else threading.Event()
        self._on_event = on_event
        self.ordered = ordered
        self.watch = watch
        #: Files that could not be opened (path -> reason), while ``watch`` waits for them to become readable.
        self.problems: dict[str, str] = {}
        self._clock = clock
        self._queue: deque[Item] = deque()
        self._ready: deque[Followed] = deque()
        self._cursor: dict[str, int] = {}
        #: Per series (hex id), the highest seq handed out; the cursor is this, or the floor below it.
        self._top: dict[str, int] = {}
        self._closed = False
        self._progressed = False
        self._turn = 0
        if start is None:
            start = Start("oldest") if from_start else Start("last", last) if last else Start("end")
        self._start = start
        self._after = dict(after or {})
        self._paths = [Path(os.fspath(p)) for p in paths]
        self._tailers: list[Tailer] = []
        if watch:
            self._discover()
            return
        try:
            for path in live_paths(self._paths):
                self._tailers.append(Tailer(path, start, self._after, self.grace, ordered))
        except BaseException:
            for tailer in self._tailers:
                tailer.close()
            raise

    def _discover(self) -> None:
        """Start following files that appeared since the last poll (``watch``)."""
        listing: list[Path] = []
        for path in self._paths:
            text = str(path)
            if glob.has_magic(text) and not path.exists():
                listing += sorted(Path(p) for p in glob.glob(text))
            else:
                listing.append(path)
        followed = [t.path for t in self._tailers]
        # A segment of a file followed already is followed through it (a rotation caught half-way, too).
        for path in live_paths([*followed, *listing]):
            if path in followed or not path.exists():
                continue
            try:
                tailer = Tailer(path, self._start, self._after, self.grace, self.ordered)
            except FormatError as exc:
                self.problems[str(path)] = exc.reason
                continue
            self.problems.pop(str(path), None)
            self._tailers.append(tailer)

    @property
    def idle(self) -> bool:
        """True when the last :meth:`poll` found nothing new: a caller looping on it should sleep."""
        return not self._progressed

    @property
    def cursor(self) -> dict[str, int]:
        """Per series (hex id), the highest seq yielded so far: pass it as ``after=`` to resume there.

        With ``ordered``, seqs reported missed count as yielded: every seq up to
        the cursor was shown or reported, so resuming there skips nothing (after
        records went ahead of a seq still in flight, the cursor stays below that
        seq until it is shown: see :meth:`floor`).
        """
        return dict(self._cursor)

    @property
    def waiting(self) -> bool:
        """True while a record is given time to arrive (a later poll may yield more even if nothing is written)."""
        return any(tailer.waiting for tailer in self._tailers)

    @property
    def drained(self) -> bool:
        """True when the last poll read every file to its end (nothing more committed) and everything was handed out."""
        return not self._ready and all(tailer.drained for tailer in self._tailers)

    def in_flight(self) -> int:
        """Seqs skipped over that a live writer may still commit (pending, neither shown nor missed)."""
        return sum(tailer.tracker.pending_count() for tailer in self._tailers)

    def lag(self) -> int:
        """Records read from the files but not yet yielded, summed over the series followed."""
        total = 0
        for tailer in self._tailers:
            total += max(0, tailer.newest - self._cursor.get(tailer.series_key, tailer.tracker.min_seq - 1))
        return total

    def origin(self, series: bytes) -> tuple[str, str, str, int] | None:
        """Where a series followed now is written: (path, host, process name, pid); None if none is."""
        for tailer in self._tailers:
            if tailer.series == series:
                h = tailer.ring.header
                return tailer.source, h.hostname, h.process_name, h.pid
        return None

    def poll(self) -> list[Item]:
        """One non-blocking pass over every file: events, then new records merged by time."""
        return [entry.item for entry in self.take()]

    def take(self, limit: int | None = None) -> list[Followed]:
        """Like :meth:`poll`, but at most ``limit`` items, each with its series id.

        Items beyond ``limit`` are kept for the next call (and files are read
        only about as far as ``limit`` needs), so memory stays bounded however
        far behind the follower is.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a whole number >= 1, not {limit!r}")
        if self._closed:
            return []
        if limit is None or len(self._ready) < limit:
            self._read(None if limit is None else limit - len(self._ready))
        else:
            self._progressed = True
        return self._hand_out(limit)

    def _read(self, limit: int | None) -> None:
        if self.watch:
            self._discover()
        now = self._clock()
        progressed = False
        # Start with a different file each time, so a long backlog in one cannot starve the others.
        self._turn = (self._turn + 1) % max(1, len(self._tailers))
        per_file: list[list[Followed]] = []
        for tailer in self._tailers[self._turn :] + self._tailers[: self._turn]:
            moved = tailer.poll(now, limit)
            progressed |= moved
            if self.watch and not moved and not tailer.waiting and not tailer.path.exists():
                self._retire(tailer, now)  # deleted and read to the end: the pattern may bring it back as new
            per_file.append(tailer.out)
            tailer.out = []
        self._progressed = progressed
        self._merge(per_file)

    def _retire(self, tailer: Tailer, now: float) -> None:
        tailer.finish(now)
        tailer.close()
        self._tailers.remove(tailer)
        self._retired.add(tailer.counts)

    def _merge(self, per_file: list[list[Followed]]) -> None:
        per_file = [entries for entries in per_file if entries]
        if self.ordered:
            merged: Iterator[Followed] = heapq.merge(*per_file, key=_entry_time)
            self._ready.extend(merged)
        else:
            records: list[list[Followed]] = []
            for entries in per_file:
                self._ready.extend(e for e in entries if isinstance(e.item, FollowEvent))
                records.append([e for e in entries if isinstance(e.item, Record)])
            self._ready.extend(heapq.merge(*records, key=_entry_time))
        total = FollowStats()
        total.add(self._retired)
        for tailer in self._tailers:
            total.add(tailer.counts)
        self.stats = total

    def _hand_out(self, limit: int | None) -> list[Followed]:
        ready = self._ready
        count = len(ready) if limit is None else min(limit, len(ready))
        if count == len(ready):
            out = list(ready)
            ready.clear()
        else:
            popleft = ready.popleft
            out = [popleft() for _ in range(count)]
        highest: dict[bytes, int] = {}
        for series, item in out:
            if isinstance(item, Record):
                seq = item.seq
            elif self.ordered and item.kind == "missed":
                seq = item.last_seq
            else:
                continue
            if seq > highest.get(series, 0):
                highest[series] = seq
        cursor, top = self._cursor, self._top
        overtook = self.ordered and self.overtook
        for series, seq in highest.items():
            key = series.hex()
            if seq > top.get(key, 0):
                top[key] = seq
            value = top[key]
            floor = self.floor(series) if overtook else None
            if floor is not None:
                value = min(value, floor)
            if value > cursor.get(key, 0):
                cursor[key] = value
        return out

    @property
    def overtook(self) -> bool:
        """True once records went ahead of a seq still in flight (:attr:`FollowStats.overtaken`)."""
        return bool(self._retired.overtaken) or any(tailer.counts.overtaken for tailer in self._tailers)

    def floor(self, series: bytes) -> int | None:
        """Ordered: the highest seq up to which every seq of ``series`` was handed out or reported, when that
        is below the highest handed out; None when it is not (the usual case).

        It is below only after records went ahead of a seq still in flight
        (:attr:`FollowStats.overtaken`): until that seq is handed out, a consumer
        that saves a position must save this one, or a restart would skip it.
        """
        if not self.ordered or not self.overtook:
            return None
        bound: int | None = None
        for tailer in self._tailers:
            if tailer.series == series:
                low = tailer.tracker.lowest_pending()
                if low is not None:
                    bound = low - 1
        for entry_series, item in self._ready:
            if entry_series != series:
                continue
            if isinstance(item, Record):
                first = item.seq
            elif item.kind == "missed":
                first = item.first_seq
            else:
                continue
            if bound is None or first - 1 < bound:
                bound = first - 1
        top = self._top.get(series.hex(), 0)
        return bound if bound is not None and bound < top else None

    def __iter__(self) -> Follower:
        return self

    def __next__(self) -> Record:
        while True:
            if self._queue:
                item = self._queue.popleft()
                if isinstance(item, FollowEvent):
                    if self._on_event is not None:
                        self._on_event(item)
                    continue
                return item
            if self._closed:
                raise StopIteration
            if self._stop.is_set():
                self._queue.extend(self.close())
                continue
            items = self.poll()
            self._queue.extend(items)
            if not items and self.idle:
                self._stop.wait(self.poll_interval)

    def stop(self) -> None:
        """End iteration after the records already read (safe to call from another thread)."""
        self._stop.set()

    def close(self) -> list[Item]:
        """Stop following: count whatever is still pending as missed and close the files.

        Returns the last records and events (records held back for a record still
        being assembled, final ``missed`` events); idempotent.
        """
        if self._closed:
            return []
        now = self._clock()
        per_file: list[list[Followed]] = []
        for tailer in self._tailers:
            tailer.finish(now)
            per_file.append(tailer.out)
            tailer.out = []
            tailer.close()
        self._merge(per_file)
        self._closed = True
        return [entry.item for entry in self._hand_out(None)]

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# Twin: follow() repeats Follower's keyword signature on purpose (the public function is the documented entry).
def follow(
    paths: PathArg | Sequence[PathArg],
    *,
    last: int = 0,
    from_start: bool = False,
    after: Mapping[str, int] | None = None,
    poll_interval: float = 0.1,
    grace: float = 1.0,
    stop: threading.Event | None = None,
    on_event: Callable[[FollowEvent], None] | None = None,
    ordered: bool = False,
    watch: bool = False,
) -> Follower:
    """Follow ring files as writers append to them, like ``tail -f``; returns an iterable :class:`Follower`.

    By default only records committed from now on are yielded; ``last=N`` first
    yields the newest N records of each file, ``from_start=True`` everything still
    in the files (sealed segments included), and ``after`` (a :attr:`Follower.cursor`
    saved earlier: series id -> seq) resumes each series it names after that seq,
    counting what was overwritten meanwhile as missed.  A slot that stays
    uncommitted for ``grace`` seconds while later slots are committed is skipped
    and counted (and looked at again while its writer runs).  Iteration ends when ``stop`` is set or :meth:`Follower.stop` is
    called.  Raises :class:`mmaplog.FormatError` when a file cannot be opened or
    is not a ring file; once following, a file truncated, deleted or replaced is
    reported as an event and never ends the iteration.  ``ordered`` and
    ``watch`` are described at :class:`Follower`.
    """
    return Follower(
        paths,
        last=last,
        from_start=from_start,
        after=after,
        poll_interval=poll_interval,
        grace=grace,
        stop=stop,
        on_event=on_event,
        ordered=ordered,
        watch=watch,
    )
