"""Following one path: the slot-by-slot engine behind :func:`mmaplog.follow`.

A :class:`Tailer` keeps the next slot position it expects in the current file,
reads only the slots ahead of it with ``pread``, skips holes left by writers
that died mid-write, re-synchronises when the writer laps it, and moves on to
the next segment when the writer rotates.  :class:`mmaplog.Follower` merges
several tailers.

A tailer shows records as they arrive, or, when ``ordered``, strictly in seq
order: a record waits behind a missing seq until that seq arrives or is
declared missed after the grace period, so every seq up to the last one handed
out was either shown or reported in a ``missed`` event.
"""

from __future__ import annotations

import bisect
import heapq
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from itertools import repeat
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from . import _codec
from ._errors import FormatError
from ._seqtrack import Cause, SeqTracker
from .reader import Record, RingFile, expand_paths, writer_alive

__all__ = ["EventKind", "FollowEvent", "FollowStats", "Followed", "Start", "Tailer", "live_paths", "writer_alive"]

EventKind = Literal["missed", "invalid", "incomplete", "rotated", "truncated", "deleted", "replaced", "unreadable"]

#: Bytes read per ``pread`` at most (bounds memory whatever the slot size).
_READ_BYTES = 8 << 20
#: Bytes of slots one file may consume per poll before the follower turns to the next file.
_POLL_BYTES = 64 << 20
#: Bytes read ahead when idle (at least a few slots): an idle poll costs a few KiB of I/O.
_IDLE_BYTES = 16 << 10
#: Records an ordered tailer holds back behind a missing seq at most; it reads no further until the seq is resolved.
_HOLD_MAX = 1 << 16
#: Slots a sealed file is asked about per ``lseek`` pair when the follower looks for the end of a hole.
_HOLE_SPAN = 1 << 24
#: Skipped positions looked at again at most (per file followed).
_REVISIT_MAX = 1024
#: Causes of missing records, the one explaining most first.
_BLAME_ORDER: tuple[Cause, ...] = ("overwritten", "invalid", "incomplete", "missing")
_SEGMENT_SUFFIX = re.compile(r"^(.*)\.([0-9]{6})$")

_CAUSE_TEXT: dict[str, str] = {
    "overwritten": "overwritten or rotated away before they were read",
    "invalid": "their slots stayed uncommitted or failed validation",
    "incomplete": "some of their slots never arrived",
    "missing": "taken by a writer but never committed",
}


@dataclass(frozen=True)
class FollowEvent:
    """Something a follower noticed besides records: loss it counted, or a change to a file.

    ``kind`` is ``missed`` (``count`` records, seq ``first_seq..last_seq``, will
    not be shown), ``invalid`` (a slot skipped), ``incomplete`` (multi-slot
    records dropped), ``rotated`` (the writer moved on to a new segment;
    informational), or ``truncated``, ``deleted``, ``replaced``, ``unreadable``
    (the file changed under the follower, which goes on with what exists).
    ``series`` is the id of the writer's series the event is about; for
    ``missed``, ``cause`` says why the records are gone: ``overwritten``
    (lapped or rotated away unread), ``invalid`` (their slots stayed
    uncommitted or failed validation), ``incomplete`` (parts never arrived) or
    ``missing`` (taken by a writer but never committed).
    """

    kind: EventKind
    source: str
    message: str
    count: int = 0
    first_seq: int = 0
    last_seq: int = 0
    series: bytes = b""
    cause: str = ""

    @property
    def warning(self) -> bool:
        """True for everything a person watching the log should hear about (all but ``rotated``)."""
        return self.kind != "rotated"

    def __str__(self) -> str:
        return self.message


@dataclass
class FollowStats:
    """Running counts of a :class:`Follower`; ``records + missed`` accounts for every seq after the start."""

    #: Records yielded.
    records: int = 0
    #: Records that existed (their seq was taken) but will not be yielded.
    missed: int = 0
    #: Of ``missed``: overwritten by the writer (it lapped the follower) or rotated away unread.
    overwritten: int = 0
    #: Slots skipped because they stayed uncommitted, torn or corrupt past the grace period.
    invalid: int = 0
    #: Multi-slot records dropped because some of their parts never arrived.
    incomplete: int = 0
    #: Times a writer lapped the follower.
    laps: int = 0
    #: Moves to a writer's next segment file.
    rotations: int = 0
    #: Files found truncated, deleted, replaced or unreadable.
    warnings: int = 0
    #: Seqs still in flight when following stopped: a live writer may yet commit them, so they are not missed.
    pending: int = 0
    #: Ordered: records shown ahead of a seq still in flight, because too many were held back behind it
    #: (the seq is shown when it arrives; the cursor stays below it until then).
    overtaken: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (for JSON or logging)."""
        return {f.name: getattr(self, f.name) for f in dataclass_fields(self)}

    def add(self, other: FollowStats) -> None:
        """Add another follower's (or file's) counts to these."""
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)


class Followed(NamedTuple):
    """A record or an event, with the id of the series (one writer and its segments) it belongs to."""

    series: bytes
    item: Record | FollowEvent


class Start(NamedTuple):
    """A start policy: ``end``, ``oldest`` (everything kept), ``last`` N records, or ``after`` a seq."""

    kind: Literal["end", "oldest", "last", "after"]
    value: int = 0


def _survey(ring: RingFile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, seqs and part numbers of every valid slot of the newest lap (read in bounded chunks)."""
    h = ring.header
    step = max(1, _READ_BYTES // h.slot_size)
    pos_parts, seq_parts, part_parts = [], [], []
    for start, slots in ring.slot_chunks(chunk_bytes=step * h.slot_size):
        index = np.arange(start, start + len(slots), dtype=np.uint64)
        ok = _codec.valid_slots(slots, h.slot_count, index=index, legacy=ring.legacy)
        pos_parts.append(slots["pos"][ok].astype(np.int64))
        seq_parts.append(slots["seq"][ok].astype(np.int64))
        part_parts.append(slots["part"][ok])
    if not pos_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint16)
    pos, seq, part = np.concatenate(pos_parts), np.concatenate(seq_parts), np.concatenate(part_parts)
    if len(pos):
        # A slot left over from an older lap is a hole of this one (taken, never rewritten).
        newest = pos > pos.max() - h.slot_count
        pos, seq, part = pos[newest], seq[newest], part[newest]
    return pos, seq, part


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Tailer:
    """Follows one path: the writer's live file, then each segment it rotates into."""

    def __init__(
        self, path: Path, start: Start, after: Mapping[str, int], grace: float, ordered: bool = False
    ) -> None:
        self.path = path
        self.source = str(path)
        self.grace = grace
        self.ordered = ordered
        #: Records released and events noticed, in the order they happened (the caller takes them).
        self.out: list[Followed] = []
        #: The highest seq read from the current series (shown or not yet).
        self.newest = 0
        self.counts = FollowStats()
        self._after = after
        self._warned: set[tuple[str, object]] = set()
        self._window = 0  # set per file by _open
        self._lap_margin = 0
        self._fresh: list[np.ndarray] = []
        self._holes: dict[int, list[float]] = {}
        #: Positions of the current file skipped as holes while a writer held it: looked at again on every poll,
        #: since a thread preempted mid-write commits there later (bounded; dropped once the ring laps them).
        self._revisit: set[int] = set()
        self._partials: dict[int, list[float]] = {}
        self._holdback: list[Record] = []
        #: Ordered mode: records accepted but waiting behind a pending seq.
        self._waiting: list[Record] = []
        self._budget = 0
        self._starved = False
        self._cause: Cause = "missing"
        #: No writer held the path at the start of this poll: what is not in the files by now never will be.
        self._dead = False
        #: The last :meth:`_advance` stopped because nothing more was committed (not for a budget or a hole).
        self._drained = False
        self.series = b""  # set per file by _open
        live = RingFile(path)
        try:
            self._begin(live, start)
        except BaseException:
            live.close()
            raise

    # ------------------------------------------------------------------ starting
    def _begin(self, live: RingFile, start: Start) -> None:
        """Choose the file, the slot position and the first seq to show."""
        key = live.header.series_id.hex()
        if key in self._after:
            start = Start("after", int(self._after[key]))
        if start.kind == "oldest":
            self._open_at(self._first_segment(live, None), None)
            return
        if start.kind == "after":
            min_seq = start.value + 1
            self._blame("overwritten")  # whatever is gone since the cursor was overwritten meanwhile
        else:
            _pos, seq, _part = _survey(live)
            newest = int(seq.max()) if len(seq) else live.header.first_seq - 1
            min_seq = newest + 1 if start.kind == "end" else max(1, newest - start.value + 1)
        # Records of the last N already overwritten before we started are not "missed"; those after a cursor are.
        self._open_at(self._first_segment(live, min_seq), min_seq, clamp=start.kind == "last")

    def _sealed_segments(self, live: RingFile) -> list[RingFile]:
        """The sealed segments beside the live file that belong to its series, oldest first."""
        found = []
        for candidate in expand_paths(self.path)[:-1]:
            try:
                ring = RingFile(candidate)
            except FormatError:
                continue
            h = ring.header
            if h.series_id == live.header.series_id and h.segment < live.header.segment:
                found.append(ring)
            else:
                ring.close()
        found.sort(key=lambda r: r.header.segment)
        return found

    def _first_segment(self, live: RingFile, seq: int | None) -> RingFile:
        """The file to start in: the oldest that may hold ``seq`` (the oldest of all for None)."""
        if seq is not None and live.header.first_seq <= seq:
            return live
        segments = self._sealed_segments(live)
        chosen = live
        if segments:
            if seq is None:
                chosen = segments[0]
            else:
                holding = [r for r in segments if r.header.first_seq <= seq]
                chosen = holding[-1] if holding else segments[0]
        for ring in [*segments, live]:
            if ring is not chosen:
                ring.close()
        return chosen

    def _open_at(self, ring: RingFile, min_seq: int | None, clamp: bool = False) -> None:
        """Start reading ``ring`` at the first slot of seq ``min_seq`` or later (the oldest kept for None).

        Every seq from the first one shown on is accounted for; with ``clamp`` (or
        None) the first is the oldest whole record still present, if that is later.
        """
        pos, seq, part = _survey(ring)
        if min_seq is None or clamp:
            heads = seq[part == 0]
            oldest = int(heads.min()) if len(heads) else ring.header.first_seq
            min_seq = oldest if min_seq is None else max(min_seq, oldest)
        later = pos[seq >= min_seq]
        first = int(later.min()) if len(later) else (int(pos.max()) + 1 if len(pos) else 1)
        earlier = pos[seq < min_seq]
        if len(later) and len(earlier):
            # A slot between the last older record and the first wanted one is a hole now, but may be a
            # wanted record in flight: start at it, so it is waited for like any hole, not passed by.
            first = min(first, int(earlier.max()) + 1)
        self._open(ring, first, SeqTracker(min_seq))

    def _open(self, ring: RingFile, pos: int, tracker: SeqTracker) -> None:
        self.ring = ring
        self.names = dict(ring.names)
        self.pos = max(1, pos)
        if ring.header.series_id != self.series:
            self.newest = tracker.max_seq
        self.tracker = tracker
        self.series = ring.header.series_id
        self._pending = np.empty(0, dtype=ring.dtype)
        self._holes.clear()
        self._revisit.clear()
        self._lap_margin = 0
        self._window = max(4, _IDLE_BYTES // ring.header.slot_size)

    def _blame(self, cause: Cause) -> None:
        """Note the likeliest cause of records found missing next; a lap explains more than a bad slot."""
        if _BLAME_ORDER.index(cause) < _BLAME_ORDER.index(self._cause):
            self._cause = cause

    @property
    def series_key(self) -> str:
        """The series id as hex: the key of :attr:`Follower.cursor`."""
        return self.series.hex()

    @property
    def drained(self) -> bool:
        """True when the last poll read the current file to its end (records held back may still wait: see waiting)."""
        return self._drained and not self.out

    @property
    def waiting(self) -> bool:
        """True while a slot, a record part or a seq is given time to arrive (a later poll may show more)."""
        return bool(self._holes or self._partials or self._holdback or self._waiting or self.tracker.waiting)

    def _emit(self, event: FollowEvent) -> None:
        self.out.append(Followed(self.series, replace(event, series=self.series)))

    # ------------------------------------------------------------------ polling
    def poll(self, now: float, limit: int | None = None) -> bool:
        """Read what is new into :attr:`out` (about ``limit`` slots at most); True if anything moved."""
        # Slots to consume at most; records held back count against it, so they cannot pile up unbounded.
        held = len(self._waiting) + len(self._holdback)
        room = (1 << 62) if limit is None else limit
        # Looked at before reading: a writer gone by now left everything it will ever write.
        self._dead = not writer_alive(self.path)
        if self._dead and held:
            room = 1 << 62  # records wait for a seq only reading to the end can settle: read on (within _HOLD_MAX)
        if self.ordered:
            # Held records bound the reading by _HOLD_MAX in all, not by one poll's limit: a record committed
            # segments late is waited for while the ones after it are read.
            room = min(room, _HOLD_MAX - held)
        else:
            room -= held
        self._budget = max(0, room)
        self._starved = False
        self.tracker.tick()
        for entry in self._holes.values():
            entry[1] += 1
        for entry in self._partials.values():
            entry[1] += 1
        progressed = False
        try:
            if self._revisit:
                self._look_again()
            for _ in range(64):  # bounded: a poll follows at most a few segment changes
                moved = self._advance(now)
                progressed |= moved
                self._release(self._assemble(now), now)
                if not self._switch_if_due(now, moved):
                    break
                progressed = True
            if self._dead and self._drained and self.tracker.waiting | bool(self._partials):
                # Every file read to its end and no writer left: what is still missing never will be.
                self._abandon_partials(now, force=True)
                self._release([], now, final=True)
                progressed = True
            self._check_file()
        except FormatError as exc:
            self._warn("unreadable", self.ring.inode, f"read failed ({exc.reason}); retrying")
        return progressed

    def _read_window(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read ``count`` slots from the expected position on: (slots, expected positions, ring indexes)."""
        n = self.ring.header.slot_count
        first = (self.pos - 1) % n
        head = min(count, n - first)
        slots = self.ring.slots(first, head)
        if head < count:
            slots = np.concatenate([slots, self.ring.slots(0, count - head)])
        expected = np.arange(self.pos, self.pos + count, dtype=np.uint64)
        index = (expected - np.uint64(1)) % np.uint64(n)
        return slots, expected, index

    def _advance(self, now: float) -> bool:
        """Consume committed slots in position order, handling laps and holes.  True if pos moved."""
        ring = self.ring
        n = ring.header.slot_count
        sealed = ring.sealed()
        budget = max(1, _POLL_BYTES // ring.header.slot_size)
        room = given = self._budget
        min_window = max(4, _IDLE_BYTES // ring.header.slot_size)
        max_window = max(min_window, _READ_BYTES // ring.header.slot_size)
        moved = False
        self._drained = False
        while budget > 0 and room > 0:
            count = min(self._window, n, budget, room)
            if sealed:
                count = min(count, n - self.pos + 1)
                if count <= 0:
                    self._drained = True
                    break
            slots, expected, index = self._read_window(count)
            valid = _codec.valid_slots(slots, n, index=index, legacy=ring.legacy)
            got = slots["pos"]
            good = valid & (got == expected)
            stop = count if good.all() else int(np.argmin(good))
            if stop:
                self._fresh.append(slots[:stop])
                self.pos += stop
                budget -= stop
                room -= stop
                moved = True
                self._lap_margin = 0
            if stop == count:
                self._window = min(max_window, self._window * 2)
                continue
            self._window = max(min_window, self._window // 2)
            if valid[stop] and got[stop] > expected[stop]:
                self._resync()
                budget -= n  # a survey reads the whole ring: a writer faster than us cannot keep us here
                moved = True
                continue
            # The expected slot is not committed.  If the writer committed later slots (or
            # sealed the file), it is a hole: wait out the grace period, then skip it.
            later = np.flatnonzero((valid & (got >= expected))[stop + 1 :])
            if sealed:
                beyond = count
            elif len(later):
                beyond = stop + 1 + int(later[-1])
            else:
                self._drained = True
                break
            for offset in np.flatnonzero(~good[stop:beyond]).tolist():
                self._holes.setdefault(self.pos + offset, [now, 1])
            since, polls = self._holes[self.pos]
            if self._dead or (polls >= 2 and now - since >= self.grace):
                if sealed and not valid[stop] and not slots[stop : stop + 1].view(np.uint8).any():
                    # An empty slot of a sealed file, waited for like any hole: if it lies in a hole of a sparse
                    # file, no slot up to the next allocated extent was ever written.  Jump there (an lseek pair
                    # per span, not a window read per slot).
                    end = self._hole_end(self.pos)
                    if end > self.pos + 1:
                        self.pos = end
                        moved = True
                        continue
                self._skip_hole()
                budget -= 1
                room -= 1
                moved = True
                continue
            break
        for hole in [p for p in self._holes if p < self.pos]:
            del self._holes[hole]
        self._budget = room
        # Cut short by the budget (not merely full of held-back records: those wait for time, not for reading).
        self._starved = self._starved or (given > 0 and room <= 0)
        return moved

    def _hole_end(self, pos: int) -> int:
        """The first position at or after ``pos`` whose slot is in an allocated extent of the (sealed) file.

        ``pos`` itself when its slot is allocated (or the filesystem cannot tell
        holes apart); one past the last slot when only holes follow.  The file is
        asked about bounded spans, so a terabyte of hole costs a few lseek calls.
        """
        n = self.ring.header.slot_count
        index = pos - 1
        while index < n:
            extents = self.ring.extents(index, min(_HOLE_SPAN, n - index))
            if extents:
                return max(pos, extents[0][0] + 1)
            index += _HOLE_SPAN
        return n + 1

    def _look_again(self) -> None:
        """Read the skipped positions again: a slot committed there since is consumed after all."""
        n = self.ring.header.slot_count
        for p in sorted(self._revisit):
            if self.pos - p >= n:  # the ring lapped it: that slot holds a later position now
                self._revisit.discard(p)
                continue
            slot = self.ring.slots((p - 1) % n, 1)
            index = np.asarray([(p - 1) % n], dtype=np.uint64)
            if len(slot) and _codec.valid_slots(slot, n, index=index, legacy=self.ring.legacy)[0] and int(slot["pos"][0]) == p:
                self._revisit.discard(p)
                self._fresh.append(slot)

    def _skip_hole(self) -> None:
        del self._holes[self.pos]
        if not self._dead:
            if len(self._revisit) >= _REVISIT_MAX:
                self._revisit.discard(min(self._revisit))
            self._revisit.add(self.pos)
        self.counts.invalid += 1
        self._blame("invalid")
        if self.ordered:
            self.tracker.ripe += 1  # the seq its slot held was waited for already: do not hold records twice
        self._emit(
            FollowEvent(
                "invalid",
                self.source,
                f"{self.source}: skipped slot position {self.pos}: it stayed uncommitted or invalid "
                f"while later slots were committed (a writer that died mid-write?)",
                count=1,
            )
        )
        self.pos += 1

    def _resync(self) -> None:
        """The writer lapped us: continue from the oldest position still in the ring."""
        pos, _seq, _part = _survey(self.ring)
        n = self.ring.header.slot_count
        target = self.pos + 1
        if len(pos):
            target = max(target, min(int(pos.min()) + self._lap_margin, int(pos.max())))
        # Lapped again before making progress: the writer overwrites faster than we survey, so start a
        # quarter, then half a ring ahead of the oldest slot (gone by the time we read it anyway).
        self._lap_margin = min(n // 2, max(1, n // 4, self._lap_margin * 2))
        self.pos = target
        self._holes.clear()
        self.counts.laps += 1
        self._blame("overwritten")

    def _assemble(self, now: float) -> list[Record]:
        """Turn the slots consumed so far into whole records; keep the parts of unfinished ones."""
        if not self._fresh and not self._partials:
            return []
        slots = np.concatenate([self._pending, *self._fresh])
        self._fresh = []
        slots = slots[slots["seq"] >= np.uint64(max(0, self.tracker.min_seq))]
        if not len(slots):
            self._pending = slots
            return []
        ids = np.unique(slots["logger_id"]).tolist()
        if any(i not in self.names for i in ids):
            self.names = self.ring.read_names()
        asm = _codec.assemble(slots, self.names)
        if len(asm.seq):
            self.newest = max(self.newest, int(asm.seq.max()))
        unfinished = set(asm.incomplete_seqs)
        if unfinished:
            keep = np.isin(slots["seq"], np.fromiter(unfinished, dtype=np.uint64, count=len(unfinished)))
            self._pending = slots[keep]
        else:
            self._pending = slots[:0]
        for seq in unfinished:
            self._partials.setdefault(int(seq), [now, 1])
        for seq in [s for s in self._partials if s not in unfinished]:
            del self._partials[seq]
        # A poll cut short by its budget has not looked for the missing parts: only the hopeless go.
        # A record whose parts are still coming belongs to a thread of a live writer: it is waited for.
        self._abandon_partials(
            now, force=False, hopeless=frozenset() if self._revisit else _gapped(self._pending),
            patient=self._starved or not self._dead,
        )
        h = self.ring.header
        order = None if _ascending(asm.seq) else np.argsort(asm.seq, kind="stable")

        def column(values: np.ndarray) -> list[object]:
            return (values if order is None else values[order]).tolist()  # type: ignore[no-any-return]

        fields = [f if f else {} for f in column(asm.fields)]
        rows = zip(
            column(asm.seq), column(asm.time_ns), column(asm.level), column(asm.logger), column(asm.thread),
            repeat(h.pid), column(asm.message), fields, column(asm.exception), repeat(h.hostname),
            repeat(h.process_name), repeat(self.source), column(asm.flags),
        )  # fmt: skip
        return [_record(row) for row in rows]

    def _abandon_partials(
        self,
        now: float,
        force: bool,
        silent: bool = False,
        hopeless: frozenset[int] = frozenset(),
        patient: bool = False,
    ) -> None:
        """Drop unfinished records that cannot complete, or whose parts did not arrive within the grace period."""
        dead = [
            s
            for s, (since, polls) in self._partials.items()
            if force or s in hopeless or (not patient and polls >= 2 and now - since >= self.grace)
        ]
        if not dead:
            return
        for seq in dead:
            del self._partials[seq]
        self._pending = self._pending[~np.isin(self._pending["seq"], np.asarray(dead, dtype=np.uint64))]
        if silent:
            return
        self.counts.incomplete += len(dead)
        self._blame("incomplete")
        if self.ordered:
            self.tracker.ripe += len(dead)  # waited for already
        self._emit(
            FollowEvent(
                "incomplete",
                self.source,
                f"{self.source}: dropped {_plural(len(dead), 'incomplete record')} "
                f"(seq {_seq_list(dead)}): some of their slots never arrived",
                count=len(dead),
                first_seq=min(dead),
                last_seq=max(dead),
            )
        )

    def _release(self, ready: list[Record], now: float, force: bool = False, final: bool = False) -> None:
        """Show records in seq order, holding back those newer than a record still being assembled.

        Unordered, a record is shown as soon as it is whole; ordered, it also
        waits behind any seq still pending, and the ``missed`` events of seqs
        given up on take their place in the stream.
        """
        if self._holdback:
            ready = self._holdback + ready
            ready.sort(key=_seq_of)
        if self._partials:
            limit = min(self._partials)
            cut = next((i for i, r in enumerate(ready) if r.seq > limit), len(ready))
            ready, self._holdback = ready[:cut], ready[cut:]
        else:
            self._holdback = []
        accepted = []
        tracker = self.tracker
        first = tracker.max_seq + 1
        if ready and ready[0].seq == first and [r.seq for r in ready] == list(range(first, first + len(ready))):
            # The steady state: exactly the next seqs in a row, nothing skipped or repeated: accept them whole.
            tracker.max_seq = ready[-1].seq
            accepted, ready = ready, []
        for record in ready:
            show, recounted = self.tracker.accept(record.seq, now, self._cause)
            if recounted is not None and self.ordered:
                continue  # already reported missed, and later seqs handed out: too late to show
            if show:
                accepted.append(record)
                if recounted is not None:
                    self.counts.missed -= 1
                    self.counts.overwritten -= recounted == "overwritten"
        if accepted:
            self._cause = "missing"
            self.tracker.ripe = 0  # a skipped slot not explained by the seqs skipped now explains nothing later
        missed = self._count_missed(now, force, final)
        if not self.ordered:
            self._show(accepted)
            for event in missed:
                self._emit(event)
            return
        # The waiting list stays sorted: merge the new records in (usually all newer: an append), never re-sort it.
        accepted.sort(key=_seq_of)
        if not accepted:
            waiting = self._waiting
        elif not self._waiting or accepted[0].seq > self._waiting[-1].seq:
            waiting = self._waiting + accepted
        else:
            waiting = list(heapq.merge(self._waiting, accepted, key=_seq_of))
        bound = self.tracker.lowest_pending()
        if force or len(waiting) >= _HOLD_MAX // 2:
            # Closing, or so many held back behind a seq still in flight that waiting longer would stop the
            # reading: show them (the seq stays pending and is shown when it arrives).  Not silently: they are
            # counted, and the follower's cursor stays below the pending seq (Follower.floor), so a consumer
            # resuming from it reads the pending seq again rather than skip it.
            if bound is not None and not force:
                self.counts.overtaken += len(waiting) - bisect.bisect_right(waiting, bound, key=_seq_of)
            bound = None
        cut = len(waiting) if bound is None else bisect.bisect_right(waiting, bound, key=_seq_of)
        shown, self._waiting = waiting[:cut], waiting[cut:]
        # Gaps and records in seq order: everything below a gap is out before it.
        for event in missed:
            before = next((i for i, r in enumerate(shown) if r.seq > event.first_seq), len(shown))
            self._show(shown[:before])
            shown = shown[before:]
            self._emit(event)
        self._show(shown)

    def _show(self, records: list[Record]) -> None:
        self.counts.records += len(records)
        self.out.extend(map(_tuple_new, repeat(Followed), zip(repeat(self.series), records)))

    def _count_missed(self, now: float, force: bool, final: bool = False) -> list[FollowEvent]:
        """Count the seqs that can no longer appear (:meth:`SeqTracker.due`) as missed; their events, in seq order."""
        events = []
        for entry in sorted(self.tracker.due(now, self.grace, force, final), key=lambda e: e.lo):
            count = entry.hi - entry.lo
            self.counts.missed += count
            if entry.cause == "overwritten":
                self.counts.overwritten += count
            span = f"seq {entry.lo}" if count == 1 else f"seq {entry.lo}..{entry.hi - 1}"
            events.append(
                FollowEvent(
                    "missed",
                    self.source,
                    f"{self.source}: missed {_plural(count, 'record')} ({span}): {_CAUSE_TEXT[entry.cause]}",
                    count=count,
                    first_seq=entry.lo,
                    last_seq=entry.hi - 1,
                    cause=entry.cause,
                )
            )
        return events

    def finish(self, now: float) -> None:
        """Stop following; what was held back goes to :attr:`out`.

        Seqs that can no longer appear count as missed; those a live writer may
        still commit count as :attr:`FollowStats.pending`, not as loss.
        """
        final = not writer_alive(self.path)
        if final:
            self._abandon_partials(now, force=True)
        else:
            self._abandon_partials(now, force=True, silent=True)
        self._release([], now, force=True, final=final)
        self.counts.pending += self.tracker.abandon()

    # ------------------------------------------------------------------ files changing
    def _warn(self, kind: EventKind, key: object, message: str) -> None:
        if (kind, key) in self._warned:
            return
        self._warned.add((kind, key))
        self.counts.warnings += 1
        self._emit(FollowEvent(kind, self.source, f"{self.source}: {message}"))

    def _check_file(self) -> None:
        try:
            size = self.ring.size()
        except OSError:
            return
        if size < self.ring.header.file_size:
            self._warn("truncated", self.ring.inode, f"truncated to {size} bytes; reading what remains")

    def _switch_if_due(self, now: float, moved: bool) -> bool:
        """Move to the next file when this one is finished (sealed and read) or was replaced and drained."""
        ring = self.ring
        current = _inode(self.path)
        if current is None:
            self._warn("deleted", ring.inode, "deleted; still reading the open file")
            return False
        if current == ring.inode:
            return False
        sealed = ring.sealed()
        if sealed:
            if self.pos <= ring.header.slot_count:
                return False
        elif moved:
            return False  # replaced, not rotated: drain what the old file still gets first
        nxt = self._next_file()
        if nxt is None:
            return False
        # Parts of a record cut off by rotation are written again, whole, in the next segment.
        self._abandon_partials(now, force=True, silent=sealed)
        ring.close()
        if nxt.header.series_id == self.series:
            self.counts.rotations += 1
            self._emit(
                FollowEvent("rotated", self.source, f"{self.source}: continuing in segment {nxt.header.segment}")
            )
            self._open(nxt, 1, self.tracker)
        else:
            self._release([], now, force=True, final=True)  # the old series ends here
            key = nxt.header.series_id.hex()
            self._open_at(nxt, int(self._after[key]) + 1 if key in self._after else None)
        return True

    def _next_file(self) -> RingFile | None:
        """The file that continues the current one: the next segment of its series, or a replacement."""
        h = self.ring.header
        try:
            live = RingFile(self.path)
        except FormatError as exc:
            self._warn("unreadable", _inode(self.path), f"the new file is unreadable ({exc.reason}); waiting")
            return None
        lh = live.header
        if lh.series_id != h.series_id:
            self._warn("replaced", live.inode, "replaced by a different log (a new writer); following it")
            return live
        if lh.segment <= h.segment:  # sealed, but the new segment is not in place yet
            live.close()
            return None
        if lh.segment == h.segment + 1:
            return live
        # Behind by more than one rotation: continue with the next segment, by its name (cheap), or else with
        # the oldest sealed segment still there (every segment opened: only after segments were removed).
        try:
            following = RingFile(f"{self.path}.{h.segment + 1:06d}")
        except FormatError:
            following = None
        if following is not None:
            fh = following.header
            if fh.series_id == h.series_id and fh.segment == h.segment + 1:
                live.close()
                return following
            following.close()
        newer = [r for r in self._sealed_segments(live) if r.header.segment > h.segment]
        for ring in newer[1:]:
            ring.close()
        if newer:
            live.close()
            nxt = newer[0]
        else:
            nxt = live
        if nxt.header.segment > h.segment + 1:
            self._blame("overwritten")  # the segments in between were removed unread
        return nxt

    def close(self) -> None:
        self.ring.close()


_RECORD_FIELDS = tuple(f.name for f in dataclass_fields(Record))
_new = object.__new__
_tuple_new = tuple.__new__


def _record(row: tuple[object, ...]) -> Record:
    """A :class:`Record` from its field values in declaration order, without the frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` per field, three times the cost): the same object."""
    record: Record = _new(Record)
    record.__dict__.update(zip(_RECORD_FIELDS, row))
    return record


def _ascending(seq: np.ndarray) -> bool:
    return len(seq) < 2 or bool((seq[1:] > seq[:-1]).all())


def _gapped(slots: np.ndarray) -> frozenset[int]:
    """Seqs of unfinished records that lack a part below one they have: those parts' slots are behind us.

    One thread writes the parts of a record at increasing positions and the
    follower consumes positions in order, so only a record holding exactly parts
    0..k can still complete.
    """
    if not len(slots):
        return frozenset()
    parts: dict[int, set[int]] = {}
    for seq, part in zip(slots["seq"].tolist(), slots["part"].tolist()):
        parts.setdefault(seq, set()).add(part)
    return frozenset(seq for seq, have in parts.items() if max(have) + 1 != len(have))


def _seq_of(record: Record) -> int:
    return record.seq


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _seq_list(seqs: Sequence[int]) -> str:
    shown = ", ".join(str(s) for s in sorted(seqs)[:5])
    return shown + (", ..." if len(seqs) > 5 else "")


def live_paths(paths: Sequence[Path]) -> list[Path]:
    """Drop paths that are sealed segments of another given path (an ``app.mmlog*`` glob gives both)."""
    given = {str(p) for p in paths}
    out: list[Path] = []
    for path in paths:
        match = _SEGMENT_SUFFIX.match(str(path))
        if (match and match.group(1) in given) or path in out:
            continue
        out.append(path)
    return out
