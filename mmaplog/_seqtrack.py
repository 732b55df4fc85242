"""Accounting for the sequence numbers of one series while following it: shown, pending or missed."""

from __future__ import annotations

from collections import deque
from typing import Literal

__all__ = ["Cause", "SeqTracker"]

Cause = Literal["overwritten", "invalid", "incomplete", "missing"]
#: Recently counted gaps remembered, so a record arriving after it was counted missed is un-counted.
_FINAL_MEMORY = 32


class _Range:
    """Seqs ``lo..hi-1`` skipped over: when first seen, polls seen since, and the likely cause."""

    __slots__ = ("cause", "hi", "lo", "polls", "since")

    def __init__(self, lo: int, hi: int, since: float, cause: Cause) -> None:
        self.lo, self.hi, self.since, self.cause = lo, hi, since, cause
        self.polls = 0

    def without(self, seq: int) -> list[_Range]:
        """This range split around ``seq``."""
        parts = []
        for lo, hi in ((self.lo, seq), (seq + 1, self.hi)):
            if lo < hi:
                part = _Range(lo, hi, self.since, self.cause)
                part.polls = self.polls
                parts.append(part)
        return parts


class SeqTracker:
    """Accounts for every sequence number of one series: shown, pending (may still arrive) or missed.

    Records are numbered 1, 2, ... contiguously per series, so a seq skipped over
    is a record not (yet) seen.  Threads commit out of order (a seq claimed just
    before a rotation can land segments later), so a skipped seq stays pending
    until it arrives or provably never can (see :meth:`due`).
    """

    def __init__(self, min_seq: int) -> None:
        self.min_seq = min_seq
        self.max_seq = min_seq - 1
        #: Seqs known lost already (their slot was waited for and skipped): the next ones skipped over are due at once.
        self.ripe = 0
        self._pending: list[_Range] = []
        #: Ranges recently counted as missed, so a straggler can be un-counted.
        self._final: deque[_Range] = deque(maxlen=_FINAL_MEMORY)

    def accept(self, seq: int, now: float, cause: Cause) -> tuple[bool, Cause | None]:
        """Note that ``seq`` is about to be shown: (show it?, the cause it was already counted missed under)."""
        if seq < self.min_seq:
            return False, None
        if seq > self.max_seq:
            if seq > self.max_seq + 1:
                self._skip(self.max_seq + 1, seq, now, cause)
            self.max_seq = seq
            return True, None
        for i, entry in enumerate(self._pending):
            if entry.lo <= seq < entry.hi:
                self._pending[i : i + 1] = entry.without(seq)
                return True, None
        for entry in self._final:
            if entry.lo <= seq < entry.hi:
                self._final.remove(entry)
                self._final.extend(entry.without(seq))
                return True, entry.cause
        return False, None  # a duplicate: already shown

    def _skip(self, lo: int, hi: int, now: float, cause: Cause) -> None:
        """Note seqs ``lo..hi-1`` as pending; the first :attr:`ripe` of them are due without a further wait."""
        ripe = min(self.ripe, hi - lo)
        if ripe:
            self.ripe -= ripe
            entry = _Range(lo, lo + ripe, float("-inf"), cause)
            entry.polls = 1
            self._pending.append(entry)
            lo += ripe
        if lo < hi:
            self._pending.append(_Range(lo, hi, now, cause))

    @property
    def waiting(self) -> bool:
        """True while some seq is pending (may still arrive)."""
        return bool(self._pending)

    def pending_count(self) -> int:
        """How many seqs are pending."""
        return sum(entry.hi - entry.lo for entry in self._pending)

    def lowest_pending(self) -> int | None:
        """The lowest seq still pending, if any: an ordered follower shows nothing from it on."""
        return min((entry.lo for entry in self._pending), default=None)

    def tick(self) -> None:
        """Count one more poll for every pending range."""
        for entry in self._pending:
            entry.polls += 1

    def due(self, now: float, grace: float, force: bool = False, final: bool = False) -> list[_Range]:
        """Ranges that can no longer appear; they now count as missed.

        A seq counts as missed only when it provably cannot appear any more:
        with ``final`` (no writer can still commit it: the writer is gone and
        everything it left was read) every pending seq is; otherwise only seqs
        skipped over because the writer overwrote slots or segments unread
        (cause ``overwritten``), once the grace period passed and a later poll
        looked for them again (at once with ``force``).  A seq merely committed
        late -- a thread that claimed it before a rotation may write it many
        segments further on -- stays pending however long that takes.
        """
        out, keep = [], []
        for entry in self._pending:
            lapped = entry.cause == "overwritten" and (force or (entry.polls >= 1 and now - entry.since >= grace))
            if final or lapped:
                out.append(entry)
                self._final.append(entry)
            else:
                keep.append(entry)
        self._pending = keep
        return out

    def abandon(self) -> int:
        """Stop tracking the seqs still pending (following ends); returns how many there were."""
        count = sum(entry.hi - entry.lo for entry in self._pending)
        self._pending = []
        return count
