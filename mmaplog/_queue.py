"""The async handler's record queue: a lock-free append for producers, whole batches for one consumer.

One :class:`RecordQueue` feeds one worker thread.  The producer side
(:meth:`RecordQueue.put`) is a level check, a length check and
``collections.deque.append``, which is atomic under the GIL, so the common
path takes no lock.  The consumer announces when it is about to sleep
(``idle``); a producer signals the wake-up event only then, so a busy worker
costs producers nothing.  The handshake, in the order each side acts::

    consumer: event.clear(); idle = True; if items: idle = False (no sleep)
              else event.wait()
    producer: items.append(x); if idle: idle = False; event.set()

Whatever the interleaving, either the producer sees ``idle`` and sets the
event (which ``wait`` then returns on, even if set before the wait starts), or
its append happened before the consumer's re-check, which then sees the
record.  Builds without a GIL (``sys._is_gil_enabled()`` is False) run the
same steps under a lock (:meth:`RecordQueue.put_locked`).

When the queue is full, the overflow policy decides (see
:class:`mmaplog.handlers.async_.Overflow`): the producer waits for room, the
new record is dropped, or the oldest queued record is dropped.  Drops are
counted exactly with a :class:`Tally` (a bump is one atomic ``next`` on an
``itertools.count``).

Flush and stop requests travel through the queue as :class:`Marker` items, so
"everything enqueued before the request" is exactly "everything in front of
the marker".  Once the consumer is gone (close, interpreter exit) the queue
stops being asynchronous: the length check always fails (``limit`` is 0) and
``idle`` stays True, so every producer, including one that passed the check
just before the switch, ends in :meth:`RecordQueue.sweep`, which hands the
records to a synchronous sink in order or counts them as dropped.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Final

__all__ = ["CLOSED", "RUNNING", "SYNC", "Marker", "RecordQueue", "Tally"]

#: Free-threaded builds (no GIL) need a lock around the producer's check-and-append.
_GIL: bool = getattr(sys, "_is_gil_enabled", lambda: True)()

#: Consumer state: a worker drains the queue.
RUNNING: Final = 0
#: No worker: records go straight to the sink, in order (after interpreter-exit shutdown).
SYNC: Final = 1
#: Closed: records are counted as dropped.
CLOSED: Final = 2

#: A producer blocked by the "block" policy re-checks the queue at least this often (seconds);
#: wake-ups normally come sooner, from the worker taking a batch.
_ROOM_RECHECK: Final = 0.25


class Marker:
    """A flush or stop request queued behind the records it must wait for."""

    __slots__ = ("done", "stop")

    def __init__(self, stop: bool = False) -> None:
        self.done = threading.Event()
        #: True: the consumer ends after handling everything in front of this marker.
        self.stop = stop


class Tally:
    """A count that producers bump without a lock and readers read exactly.

    :meth:`add` is one ``next`` on an ``itertools.count``, a single C call the
    GIL never splits.  Reading takes a value from the same count, under a lock,
    and subtracts the values earlier reads took, so nothing depends on the
    count's ``repr``.
    """

    __slots__ = ("_count", "_read_lock", "_reads")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reads = 0
        self._read_lock = threading.Lock()

    def add(self) -> None:
        """Count one."""
        next(self._count)

    @property
    def value(self) -> int:
        """How many :meth:`add` calls happened before this read."""
        with self._read_lock:
            value = next(self._count) - self._reads
            self._reads += 1
        return value

    def after_fork_in_child(self) -> None:
        """A new read lock (a reader of the parent may have held the old one at the fork)."""
        self._read_lock = threading.Lock()


class RecordQueue:
    """A bounded FIFO of records between producer threads and one consumer.

    ``policy`` is ``"block"``, ``"drop_newest"`` or ``"drop_oldest"``;
    ``sink(items)`` receives what is queued (records and markers, in order)
    synchronously once the queue is in the :data:`SYNC` state; it must call
    :meth:`marker_done` for each marker.  Only the consumer calls :meth:`take`
    and :meth:`sleep`.
    """

    __slots__ = (
        "__weakref__",
        "_blocked",
        "_drops",
        "_lock",
        "_room",
        "_sync_lock",
        "_waiting",
        "_wakeup",
        "capacity",
        "consumer",
        "idle",
        "in_flight",
        "items",
        "level",
        "limit",
        "markers",
        "policy",
        "sink",
        "state",
    )

    def __init__(self, capacity: int, policy: str, level: int, sink: Callable[[list[Any]], object]) -> None:
        self.level = level
        self.capacity = capacity
        #: The bound the producer's fast path compares with: ``capacity`` while running, 0 after.
        self.limit = capacity
        #: True while the consumer sleeps (or is gone): producers must call :meth:`wake`.
        self.idle = False
        self.items: deque[Any] = deque()
        self.policy = policy
        self.state = RUNNING
        #: Markers queued and not yet handled (the consumer only looks for them when this is > 0).
        self.markers = 0
        #: Records the consumer has taken and not yet handed over.
        self.in_flight = 0
        #: Thread id of the consumer (a consumer never blocks on its own queue).
        self.consumer = 0
        self.sink = sink
        self._wakeup = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._waiting = 0
        #: Threads waiting for room right now: a second call on one of them is re-entrant (a signal handler).
        self._blocked: set[int] = set()
        self._drops = Tally()
        # Re-entrant: a signal handler may run on a thread that holds it (see :meth:`_put_full`).
        self._lock = threading.RLock()
        self._sync_lock = threading.RLock()

    # ------------------------------------------------------------------ producer side
    def put(self, record: Any) -> None:
        """Enqueue ``record`` if its level passes (the hot path: no lock unless the queue is full)."""
        if record.level >= self.level:
            items = self.items
            if len(items) < self.limit:
                items.append(record)
                if self.idle:
                    self.wake()
                return
            self._put_full(record)

    def put_locked(self, record: Any) -> None:
        """:meth:`put` for builds without a GIL: the check, the append and the handshake under a lock."""
        if record.level >= self.level:
            with self._lock:
                items = self.items
                if len(items) < self.limit:
                    items.append(record)
                    wake = self.idle
                else:
                    wake = None
            if wake is None:
                self._put_full(record)
            elif wake:
                self.wake()

    def wake(self) -> None:
        """Wake the consumer; with no consumer left, deliver or drop what is queued."""
        if self.state != RUNNING:
            self.sweep()
            return
        self.idle = False
        self._wakeup.set()

    def _put_full(self, record: Any) -> None:
        """The queue is full (or has no consumer any more): apply the overflow policy."""
        if self.state != RUNNING:
            self.items.append(record)
            self.sweep()
            return
        policy = self.policy
        if policy == "drop_newest":
            self._count_drop()
            return
        if policy == "drop_oldest":
            self._drop_oldest(record)
        else:
            me = threading.get_ident()
            if me == self.consumer:
                # An inner handler logging into its own full queue would wait for itself forever.
                self._count_drop()
                return
            if me in self._blocked:
                # A signal handler that interrupted this thread's wait for room (or the lock around it):
                # waiting again could never end.  Take room the worker made meanwhile, else drop and count.
                if self._append_if_room(record):
                    if self.idle:
                        self.wake()
                else:
                    self._count_drop()
                return
            self._blocked.add(me)
            try:
                self._wait_for_room(record)
            finally:
                self._blocked.discard(me)
        if self.idle:
            self.wake()

    def _append_if_room(self, record: Any) -> bool:
        """Append without waiting when the queue has room (a re-entrant call on a waiting thread)."""
        with self._lock:
            if len(self.items) < self.capacity and self.state == RUNNING:
                self.items.append(record)
                return True
        return False

    def _count_drop(self) -> None:
        if _GIL:
            self._drops.add()
        else:
            with self._lock:
                self._drops.add()

    def _drop_oldest(self, record: Any) -> None:
        lock = None if _GIL else self._lock
        if lock is not None:
            lock.acquire()
        try:
            items = self.items
            markers: list[Marker] = []
            oldest = None
            try:
                while True:
                    oldest = items.popleft()
                    if type(oldest) is not Marker:
                        break
                    markers.append(oldest)  # a flush waits for it: it stays at the front
                    oldest = None
            except IndexError:  # the consumer emptied the queue meanwhile: there is room now
                pass
            if markers:
                items.extendleft(reversed(markers))
            if oldest is not None:
                self._drops.add()
            items.append(record)
        finally:
            if lock is not None:
                lock.release()

    def _wait_for_room(self, record: Any) -> None:
        """The "block" policy: wait until the consumer has made room, then append."""
        items = self.items
        with self._room:
            self._waiting += 1
            try:
                # ``_waiting`` is raised before the re-check, so a consumer that takes a batch
                # after this check sees it and notifies (see :meth:`take`).
                while len(items) >= self.capacity and self.state == RUNNING:
                    if self.idle:
                        self.wake()
                    self._room.wait(_ROOM_RECHECK)
            finally:
                self._waiting -= 1
            if _GIL or self.state != RUNNING:
                items.append(record)
            else:
                with self._lock:
                    items.append(record)
        if self.state != RUNNING:
            self.sweep()

    def put_marker(self, marker: Marker) -> None:
        """Queue a flush/stop request behind everything already queued (ignores capacity)."""
        with self._lock:
            self.markers += 1
            self.items.append(marker)
            wake = self.idle
        if wake or self.state != RUNNING:
            self.wake()

    # ------------------------------------------------------------------ consumer side
    def take(self, count: int) -> list[Any]:
        """Remove and return up to ``count`` records from the front (consumer only)."""
        items = self.items
        batch: list[Any] = []
        n = min(count, len(items))
        if n:
            append = batch.append
            popleft = items.popleft
            if _GIL:
                try:
                    for _ in range(n):
                        append(popleft())
                except IndexError:  # "drop_oldest" producers took some meanwhile
                    pass
            else:
                with self._lock:
                    for _ in range(min(n, len(items))):
                        append(popleft())
            self.in_flight = len(batch)
            if self._waiting:
                with self._room:
                    self._room.notify_all()
        return batch

    def sleep(self, timeout: float | None) -> None:
        """Wait until a producer wakes the consumer, or ``timeout`` seconds (consumer only)."""
        self._wakeup.clear()
        if _GIL:
            self.idle = True
            if self.items:  # something arrived before ``idle`` was visible: no sleep
                self.idle = False
                return
        else:
            with self._lock:
                if self.items:
                    return
                self.idle = True
        self._wakeup.wait(timeout)
        self.idle = False

    def marker_done(self, marker: Marker) -> None:
        """Mark a flush/stop request as handled (consumer or sweep)."""
        with self._lock:
            self.markers -= 1
        marker.done.set()

    # ------------------------------------------------------------------ without a consumer
    def detach(self, state: int) -> None:
        """Leave the asynchronous mode for ``state`` (:data:`SYNC` or :data:`CLOSED`) and sweep.

        From here on the fast path never succeeds (``limit`` 0) and every
        producer sees ``idle``, so nothing can stay behind in the queue.
        """
        self.state = state
        self.limit = 0
        self.idle = True
        self._wakeup.set()  # a consumer still asleep wakes up and sees it is no longer needed
        with self._room:
            self._room.notify_all()
        self.sweep()

    def sweep(self) -> None:
        """Deliver (:data:`SYNC`) or drop (:data:`CLOSED`) everything queued, in order; never raises."""
        items = self.items
        with self._sync_lock:
            while items:
                batch: list[Any] = []
                try:
                    while True:
                        batch.append(items.popleft())
                except IndexError:
                    pass
                if self.state != CLOSED:
                    try:
                        self.sink(batch)
                    except Exception:  # noqa: BLE001 - the sink reports its own failures
                        pass
                    continue
                for item in batch:
                    if type(item) is Marker:
                        self.marker_done(item)
                    else:
                        self._count_drop()

    # ------------------------------------------------------------------ figures
    @property
    def dropped(self) -> int:
        """Records dropped by the overflow policy or because the queue was closed."""
        return self._drops.value

    @property
    def pending(self) -> int:
        """Records queued or taken by the consumer and not yet handed over."""
        return max(0, len(self.items) - self.markers) + self.in_flight

    def reset_after_fork(self) -> None:
        """In a forked child: new locks and events; the parent's queued records stay the parent's."""
        self.items.clear()
        self.markers = 0
        self.in_flight = 0
        self.idle = False
        self.consumer = 0
        self._wakeup = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._waiting = 0
        self._blocked = set()
        self._lock = threading.RLock()
        self._sync_lock = threading.RLock()
        self._drops.after_fork_in_child()
