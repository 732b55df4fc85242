"""The shipping loop: read items from the rings, send them, move the cursor as they are confirmed.

Invariants:

* The cursor only moves over items the sink confirmed, in the order they were
  read, so a restart resends at most what was not yet saved.
* At most ``window`` items are ever beyond the saved cursor (sent and not
  confirmed, or confirmed and not yet saved), so a shipper killed at any moment
  resends at most ``window`` records.
* Items the sink could not confirm before a connection failed are kept in
  memory and sent first on the next connection; the cursor never moves back.
"""

from __future__ import annotations

import random
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from ._sinks import Sink, SinkClosed, SinkUnavailable
from ._source import Item, RingSource
from .cursor import Cursor, save_cursor

__all__ = ["Backoff", "ShipStats", "Shipper", "StopSignal"]


class StopSignal:
    """SIGTERM and SIGINT ask the shipper to stop; a second one asks it to stop at once.

    The handlers only set flags and wake :meth:`wait` (and any select on
    :attr:`fd`) through a self-pipe, so no work happens inside a signal handler.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.requested = 0
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._signals = signals
        self._previous: dict[int, object] = {}
        self._previous_fd = -1

    @property
    def fd(self) -> int:
        """Readable when a stop was requested."""
        return self._reader.fileno()

    def install(self) -> None:
        """Install the handlers (main thread only)."""
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for number in self._signals:
            self._previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        """Put the previous handlers back."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        self._previous.clear()
        signal.set_wakeup_fd(self._previous_fd)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.requested += 1

    def request(self) -> None:
        """Ask for a stop from code (tests, a closed destination)."""
        self.requested += 1
        try:
            self._writer.send(b"\0")
        except OSError:
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until a stop is requested; True if one was."""
        if not self.requested and timeout > 0:
            select.select([self._reader], [], [], timeout)
        self._drain()
        return bool(self.requested)

    def _drain(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except OSError:
            pass


class Backoff:
    """Exponential backoff with jitter: each delay is a random point in the upper half of ``base * 2**n`` (capped)."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt; grows with every call until :meth:`reset`."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from the base delay (after a connection that delivered something)."""
        self.attempts = 0


@dataclass
class ShipStats:
    """What a run did."""

    shipped: int = 0
    lost: int = 0
    gaps: int = 0
    reconnects: int = 0
    unconfirmed_at_exit: int = 0
    #: Seqs a live writer had claimed but not committed when the run ended (not lost: the cursor stays before them).
    in_flight: int = 0
    gave_up: bool = False
    closed: bool = False


class Shipper:
    """Moves items from a :class:`RingSource` to a sink, keeping the cursor (see the module docstring)."""

    def __init__(
        self,
        source: RingSource,
        sink: Sink,
        *,
        cursor: Cursor | None,
        cursor_path: Path | None,
        window: int,
        stop: StopSignal,
        once: bool = False,
        poll_interval: float = 0.2,
        retry_for: float | None = None,
        drain_timeout: float = 10.0,
        save_interval: float = 1.0,
        report: Callable[[str], None] | None = None,
        progress: TextIO | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.cursor = cursor
        self.cursor_path = cursor_path
        self.window = window
        self.stop = stop
        self.once = once
        self.poll_interval = poll_interval
        self.retry_for = retry_for
        self.drain_timeout = drain_timeout
        self.save_interval = save_interval
        self._report = report or _report
        self.progress = progress
        self.backoff = backoff or Backoff()
        self.stats = ShipStats()
        self._backlog: deque[Item] = deque()
        self._unsaved = 0
        self._last_save = time.monotonic()
        self._reported_gaps: set[tuple[bytes, int]] = set()
        self._reported_problems: set[tuple[str, str]] = set()
        self._down_since: float | None = None
        self._down_reported = 0.0
        self._source_dry = False
        self._next_poll = 0.0
        self._caught_up: float | None = None
        self._progress_at = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0
        self._status = ""

    # ------------------------------------------------------------------ main loop
    def run(self) -> ShipStats:
        """Ship until stopped (or, with ``once``, until everything that exists is delivered)."""
        try:
            while not self.stop.requested:
                if not self.sink.connected and not self._connect():
                    if self.stats.gave_up:
                        break
                    continue
                self._fill()
                sent = self._send()
                if self.once and self._source_dry and not self._backlog and not self.sink.in_flight:
                    break
                busy = sent or (self._backlog and self.sink.can_send() and self._room())
                wait = 0.0 if busy else (self.poll_interval if not self.sink.in_flight else 0.05)
                self._pump(wait)
                self._maybe_save()
                self._show_progress()
            self._finish()
        except SinkClosed:
            self.stats.closed = True
            self._save()
        finally:
            self._end_progress()
        return self.stats

    def _room(self) -> bool:
        """True while fewer than ``window`` items are beyond the saved cursor."""
        if self.cursor is None:
            return True
        return self.sink.in_flight + self._unsaved < self.window

    def report(self, message: str) -> None:
        """One line on stderr (clearing the progress line first)."""
        if self.progress is not None and self._progress_at:
            try:
                self.progress.write("\r\x1b[2K")
            except (OSError, ValueError):
                pass
        self._report(message)
        self._progress_at = 0.0

    def _fill(self) -> None:
        """Read more items when the backlog runs low; a source that had little is asked again only after a pause.

        With ``once``, reading ends when every file has been read to its end
        (however many polls and batches that takes: a poll is bounded in slots
        and bytes, not a sign of being done) and nothing is still in flight;
        seqs a live writer has claimed but not committed are given twice the
        grace period, then left for the next run (they are not lost).
        """
        now = time.monotonic()
        if len(self._backlog) >= self.window or now < self._next_poll or self._source_dry:
            return
        limit = max(self.window, 4096)
        items = self.source.poll(limit=limit)
        if not items:
            self._next_poll = now + (self.poll_interval if not self.once else min(self.poll_interval, 0.05))
        if self.once and not items and self.source.drained:
            if self._caught_up is None:
                self._caught_up = now
            if not self.source.waiting or now - self._caught_up > 2 * self.source.grace + 1.0:
                self._source_dry = True
        elif items:
            self._caught_up = None
        for path, reason in self.source.problems.items():
            if (path, reason) not in self._reported_problems:
                self._reported_problems.add((path, reason))
                self.report(f"{path}: {reason}")
        for item in items:
            if item.gap is not None:
                self._note_gap(item)
        self._backlog.extend(items)

    def _note_gap(self, item: Item) -> None:
        gap = item.gap
        assert gap is not None
        key = (gap.series, gap.first_seq)
        if key not in self._reported_gaps:
            self._reported_gaps.add(key)
            self.stats.lost += gap.count
            self.stats.gaps += 1
            self.report(gap.describe())

    def _send(self) -> int:
        """Hand the sink as many backlog items as its window and the cursor's window allow, in one batch."""
        count = min(len(self._backlog), self.sink.room())
        if self.cursor is not None:
            count = min(count, self.window - self.sink.in_flight - self._unsaved)
        if count <= 0:
            return 0
        backlog = self._backlog
        batch = [backlog.popleft() for _ in range(count)]
        self.sink.send_many(batch)
        return count

    def _pump(self, timeout: float) -> None:
        try:
            delivered = self.sink.pump(timeout, self.stop.fd)
        except SinkUnavailable as exc:
            self._confirm(exc.delivered)
            self._requeue()
            self._went_down(str(exc))
            return
        self._confirm(delivered)

    def _confirm(self, items: list[Item]) -> None:
        if not items:
            return
        self.backoff.reset()
        self.stats.shipped += sum(1 for item in items if item.record is not None)
        if self.cursor is not None:
            # Per series, the furthest item delivered (and where it came from): one advance each, same result
            # as one per item, since the cursor only moves forward.
            furthest: dict[bytes, Item] = {}
            for item in items:
                seen = furthest.get(item.series)
                if seen is None or item.seq > seen.seq:
                    furthest[item.series] = item
            for series, item in furthest.items():
                path = item.record.source if item.record is not None else (item.gap.path if item.gap else "")
                self.cursor.advance(series, item.seq, path)
            self._unsaved += len(items)

    def _requeue(self) -> None:
        unconfirmed = self.sink.take_unconfirmed()
        self._backlog.extendleft(reversed(unconfirmed))

    # ------------------------------------------------------------------ connection
    def _connect(self) -> bool:
        try:
            self.sink.connect()
        except SinkUnavailable as exc:
            self._went_down(str(exc))
            return False
        if self._down_since is not None:
            outage = time.monotonic() - self._down_since
            self.report(f"{self.sink.name}: connected again after {outage:.1f} s")
            self.stats.reconnects += 1
        self._down_since = None
        return True

    def _went_down(self, reason: str) -> None:
        """Note the failure, then wait out the backoff (a stop request cuts the wait short)."""
        if self.stats.gave_up:
            return
        now = time.monotonic()
        delay = self.backoff.next_delay()
        if self._down_since is None:
            self._down_since = now
            self._down_reported = now
            self.report(f"{self.sink.name}: {reason}; retrying in {delay:.1f} s (the cursor stays where it is)")
        elif now - self._down_reported >= 60:
            self._down_reported = now
            self.report(f"{self.sink.name}: still unavailable after {now - self._down_since:.0f} s: {reason}")
        if self.retry_for is not None and now - self._down_since >= self.retry_for:
            self.report(f"{self.sink.name}: giving up after {now - self._down_since:.0f} s")
            self.stats.gave_up = True
            return
        self._status = f"{self.sink.name} unavailable, retrying in {delay:.1f} s"
        self._show_progress(force=True)
        self.stop.wait(delay)
        self._status = ""

    # ------------------------------------------------------------------ cursor
    def _maybe_save(self) -> None:
        if self.cursor is None or not self._unsaved:
            return
        if self._unsaved * 2 >= self.window or time.monotonic() - self._last_save >= self.save_interval:
            self._save()

    def _save(self) -> None:
        if self.cursor is None or self.cursor_path is None or not self._unsaved:
            return
        save_cursor(self.cursor_path, self.cursor)
        self._unsaved = 0
        self._last_save = time.monotonic()

    def _finish(self) -> None:
        """Stop taking new records, wait for what is in flight (up to ``drain_timeout``), close, save."""
        deadline = time.monotonic() + self.drain_timeout
        if self.sink.connected:
            try:
                while self.sink.in_flight and time.monotonic() < deadline and self.stop.requested < 2:
                    delivered = self.sink.pump(min(0.2, max(0.0, deadline - time.monotonic())))
                    self._confirm(delivered)
            except SinkUnavailable as exc:
                self._confirm(exc.delivered)
            self._confirm(self.sink.close(max(0.0, min(2.0, deadline - time.monotonic()))))
        self.stats.unconfirmed_at_exit = len(self.sink.take_unconfirmed())
        self.stats.in_flight = self.source.in_flight()
        self._save()

    # ------------------------------------------------------------------ progress
    def _show_progress(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._progress_at < 0.5:
            return
        self._progress_at = now
        mark_time, mark_count = self._rate_mark
        if now - mark_time >= 1.0:
            self._rate = (self.stats.shipped - mark_count) / (now - mark_time)
            self._rate_mark = (now, self.stats.shipped)
        line = f"shipped {self.stats.shipped:,} records, {self._rate:,.0f}/s, lag {self.source.lag():,}"
        if self.stats.lost:
            line += f", lost {self.stats.lost:,}"
        if self._status:
            line += f" ({self._status})"
        try:
            self.progress.write(f"\r\x1b[2K{line}")
            self.progress.flush()
        except (OSError, ValueError):
            self.progress = None

    def _end_progress(self) -> None:
        if self.progress is not None and self._progress_at:
            self._show_progress(force=True)
            try:
                self.progress.write("\n")
                self.progress.flush()
            except (OSError, ValueError):
                pass


def _report(message: str) -> None:
    try:
        sys.stderr.write(f"mmaplog-ship: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass

