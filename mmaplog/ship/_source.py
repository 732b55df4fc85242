"""The shipper's view of the rings: an ordered :class:`mmaplog.Follower`, its items as :class:`Item` and :class:`Gap`.

The follower does the work (reading only new slots, waiting ``grace`` seconds
for records in flight, following rotation, re-matching glob patterns); this
module only names a start policy in the shipper's terms, keys positions by
series id, and turns ``missed`` events into :class:`Gap` reports.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..follow import Follower, FollowEvent, Start
from ..reader import Record

__all__ = ["Gap", "Item", "RingSource"]

_item_new = tuple.__new__


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if start not in ("oldest", "end"):
            raise ValueError(f"start must be 'oldest' or 'end', not {start!r}")
        self.grace = grace
        self._positions = dict(positions or {})
        self._follower = Follower(
            list(paths),
            after={series.hex(): seq for series, seq in self._positions.items()},
            grace=grace,
            ordered=True,
            watch=True,
            start=Start("after", 0) if start == "oldest" else Start("end"),
            clock=clock,
        )
        #: Per series, the highest seq handed out (kept once records went ahead of a seq in flight).
        self._top: dict[bytes, int] = {}
        #: Per series, where its records come from (path, host, process, pid), for gap reports.
        self._origins: dict[bytes, tuple[str, str, str, int]] = {}

    @property
    def problems(self) -> dict[str, str]:
        """Files that cannot be read (path -> reason), for the caller to report; a path leaves when it reads again."""
        return self._follower.problems

    def poll(self, limit: int = 8192) -> list[Item]:
        """Read what is new and return up to ``limit`` items (records and gaps) in seq order per series."""
        out: list[Item] = []
        append = out.append
        last: dict[bytes, Record] = {}
        taken = self._follower.take(limit)
        for series, entry in taken:
            if isinstance(entry, Record):
                last[series] = entry
                append(_item_new(Item, (series, entry.seq, entry, None)))
            elif entry.kind == "missed":
                append(Item(series, entry.last_seq, gap=self._gap(series, entry)))
        for series, record in last.items():
            self._origins[series] = (record.source, record.host, record.process, record.pid)
        if self._follower.overtook:
            out = self._floored(out)
        return out

    def _floored(self, items: list[Item]) -> list[Item]:
        """Records went ahead of a seq still in flight: each item moves the cursor only as far as is safe.

        An item's ``seq`` becomes the highest seq handed out so far, but never
        past the follower's floor (below the seq in flight), so a cursor saved
        meanwhile makes a restart read the late record rather than skip it.
        """
        out = []
        floors: dict[bytes, int | None] = {}
        for item in items:
            if item.series not in floors:
                floors[item.series] = self._follower.floor(item.series)
            top = max(self._top.get(item.series, 0), item.seq)
            self._top[item.series] = top
            floor = floors[item.series]
            out.append(item._replace(seq=top if floor is None else min(top, floor)))
        return out

    def _gap(self, series: bytes, event: FollowEvent) -> Gap:
        origin = self._follower.origin(series) or self._origins.get(series) or (event.source, "", "", 0)
        cause = "overwritten" if event.cause == "overwritten" else "unfinished"
        return Gap(series, event.first_seq, event.last_seq, *origin, cause=cause)

    @property
    def waiting(self) -> bool:
        """True while a missing record or slot is given time to appear (a later poll may hand out more)."""
        return self._follower.waiting

    @property
    def drained(self) -> bool:
        """True when the last poll read every file to its end and handed out everything it read."""
        return self._follower.drained

    def in_flight(self) -> int:
        """Seqs claimed by a live writer and not yet seen (not lost: a later run ships them)."""
        return self._follower.in_flight()

    def lag(self) -> int:
        """Records written but not yet handed out, summed over the series seen."""
        return self._follower.lag()

    def positions(self) -> dict[bytes, int]:
        """The last seq handed out per series."""
        handed = {bytes.fromhex(key): seq for key, seq in self._follower.cursor.items()}
        return {**self._positions, **handed}

    def close(self) -> None:
        """Close every open file."""
        self._follower.close()
