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
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, Union

from ._tail import FollowEvent, FollowStats, Start, Tailer, live_paths
from .reader import PathArg, Record

__all__ = ["FollowEvent", "FollowStats", "Follower", "follow"]

Item = Union[Record, FollowEvent]


def _time_of(record: Record) -> int:
    return record.time_ns


class Follower(Iterator[Record]):
    """Yields the records of one or more ring files as writers commit them; made by :func:`follow`.

    Iterate it from one thread.  :meth:`poll` is the non-blocking core: one pass
    over every file, returning records and :class:`FollowEvent` objects in the
    order they happened.  Iteration calls it, sleeps ``poll_interval`` after a
    poll that found nothing, and hands events to ``on_event``.  :attr:`stats`
    counts what was shown and what was missed; :meth:`close` counts whatever is
    still pending as missed, so the totals are exact.
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
        self._stop = stop if stop is not None else threading.Event()
        self._on_event = on_event
        self._queue: deque[Item] = deque()
        self._cursor: dict[str, int] = {}
        self._closed = False
        self._progressed = False
        start = Start("oldest") if from_start else Start("last", last) if last else Start("end")
        self._tailers: list[Tailer] = []
        try:
            for path in live_paths([Path(os.fspath(p)) for p in paths]):
                self._tailers.append(Tailer(path, start, dict(after or {}), self.grace))
        except BaseException:
            for tailer in self._tailers:
                tailer.close()
            raise

    @property
    def idle(self) -> bool:
        """True when the last :meth:`poll` found nothing new: a caller looping on it should sleep."""
        return not self._progressed

    @property
    def cursor(self) -> dict[str, int]:
        """Per series (hex id), the highest seq yielded so far: pass it as ``after=`` to resume there."""
        return dict(self._cursor)

    def poll(self) -> list[Item]:
        """One non-blocking pass over every file: events, then new records merged by time."""
        if self._closed:
            return []
        now = time.monotonic()
        per_file: list[list[Record]] = []
        items: list[Item] = []
        progressed = False
        for tailer in self._tailers:
            records, moved = tailer.poll(now)
            progressed |= moved
            self._take(tailer, records, items, per_file)
        self._progressed = progressed
        self._merge(per_file, items)
        return items

    def _take(self, tailer: Tailer, records: list[Record], items: list[Item], per_file: list[list[Record]]) -> None:
        if records:
            per_file.append(records)
            key = tailer.series_key
            self._cursor[key] = max(self._cursor.get(key, 0), *(r.seq for r in records))
        items.extend(tailer.events)
        tailer.events = []

    def _merge(self, per_file: list[list[Record]], items: list[Item]) -> None:
        if len(per_file) == 1:
            items.extend(per_file[0])
        elif per_file:
            merged: Iterator[Record] = heapq.merge(*per_file, key=_time_of)
            items.extend(merged)
        total = FollowStats()
        for tailer in self._tailers:
            total.add(tailer.counts)
        self.stats = total

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
        now = time.monotonic()
        items: list[Item] = []
        per_file: list[list[Record]] = []
        for tailer in self._tailers:
            self._take(tailer, tailer.finish(now), items, per_file)
            tailer.close()
        self._merge(per_file, items)
        self._closed = True
        return items

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
) -> Follower:
    """Follow ring files as writers append to them, like ``tail -f``; returns an iterable :class:`Follower`.

    By default only records committed from now on are yielded; ``last=N`` first
    yields the newest N records of each file, ``from_start=True`` everything still
    in the files (sealed segments included), and ``after`` (a :attr:`Follower.cursor`
    saved earlier: series id -> seq) resumes each series it names after that seq,
    counting what was overwritten meanwhile as missed.  A slot that stays
    uncommitted for ``grace`` seconds while later slots are committed is skipped
    and counted.  Iteration ends when ``stop`` is set or :meth:`Follower.stop` is
    called.  Raises :class:`mmaplog.FormatError` when a file cannot be opened or
    is not a ring file; once following, a file truncated, deleted or replaced is
    reported as an event and never ends the iteration.
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
    )
