"""AsyncHandler: a queue in front of other handlers, drained in batches by a background worker.

The logging thread pays for a level check and a ``deque.append`` (no lock on
the common path, see :mod:`mmaplog._queue`); formatting the message and
writing it happen in the worker, which takes up to ``batch_size`` records at a
time and hands them to each inner handler's :meth:`~Handler.handle_batch`.

What this costs in safety: a record still in the queue when the process is
killed with SIGKILL (or calls ``os._exit``) is lost.  At most :attr:`pending`
records can be lost that way; :meth:`AsyncHandler.flush` before a risky
operation closes the window.  Everything queued is written at a normal exit,
when an uncaught exception ends the program and, with
``drain_on_sigterm=True``, on SIGTERM.  ``docs/ASYNC.md`` has the details and
measured figures.
"""

from __future__ import annotations

import enum
import functools
import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .. import _lifecycle, _native, _truncation
from .. import layout as L
from .._errors import ConfigError
from .._queue import _GIL, CLOSED, RUNNING, SYNC, Marker, RecordQueue
from .._record import LogRecord
from ..writer import RingWriter
from ._base import Handler, report_once
from .ring import RingHandler

if TYPE_CHECKING:
    from ._options import HandlerOptions

__all__ = ["AsyncHandler", "Overflow", "OverflowPolicy"]


class Overflow(str, enum.Enum):
    """What :class:`AsyncHandler` does with a new record when its queue is full.

    ``BLOCK`` (``"block"``, the default)
        The logging thread waits until the worker has made room: nothing is
        lost, but a thread can stall for as long as the slowest inner handler
        needs.  (The worker thread itself never waits for its own queue: a
        record an inner handler logs back into a full queue is dropped.  Nor
        does a signal handler that interrupted its thread while that thread
        waited for room: its record is dropped and counted.)
    ``DROP_NEWEST`` (``"drop_newest"``)
        The new record is discarded; the queue keeps the older ones.  The
        logging thread never waits.
    ``DROP_OLDEST`` (``"drop_oldest"``)
        The oldest queued record is discarded to make room: the queue keeps the
        most recent history.  The logging thread never waits.

    Every dropped record is counted (:attr:`AsyncHandler.dropped`), and once the
    pressure is gone the count is written through the inner handlers as a
    WARNING record ``"dropped N records ..."`` from the ``mmaplog`` logger, so
    a reader sees the gap where it happened.
    """

    BLOCK = "block"
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"


#: The overflow policy as a string, for type checkers: see :class:`Overflow`.
OverflowPolicy = Literal["block", "drop_newest", "drop_oldest"]

DEFAULT_CAPACITY = 16384
DEFAULT_BATCH_SIZE = 512
DEFAULT_FLUSH_INTERVAL = 1.0

#: Logger name of the records the handler writes about itself (drop counts).
SELF_LOGGER = "mmaplog"
_WARNING = 30
#: Under sustained pressure the drop count is still written at least this often (seconds).
_DROP_REPORT_INTERVAL = 1.0
#: close() gives up on a worker that makes no progress for this long (seconds) and counts the rest as dropped.
_STOP_STALL_TIMEOUT = 10.0

#: The native queue and GIL-free worker (mmaplog/_casync.c), where built; None: Python workers only.
_casync = _native.load("_casync")
_NATIVE_POLICIES = ("block", "drop_newest", "drop_oldest")
_UINT64_MAX = (1 << 64) - 1


def _native_writer(handlers: tuple[Handler, ...], workers: int, policy: str) -> RingWriter | None:
    """The writer the native queue can feed directly, or None when this configuration keeps the Python worker.

    Native: one worker, any overflow policy, and a single plain
    :class:`RingHandler` (no line format) over an open :class:`RingWriter`
    using the C append.  Anything else keeps the Python worker.
    """
    if _casync is None or workers != 1 or policy not in _NATIVE_POLICIES or len(handlers) != 1:
        return None
    ring = handlers[0]
    if type(ring) is not RingHandler or ring.line_format is not None:
        return None
    writer = ring.writer
    if writer is None or type(writer) is not RingWriter or writer.closed or writer._fast is None:
        return None
    return writer


def _describe(m: Any) -> tuple[Any, ...]:
    """What the native queue needs of one of the writer's maps (called under the GIL when the writer moves on)."""
    h = m.header
    guard = m.guard
    return (m.mm, m.positions, h.slot_count, h.data_offset, h.slot_size, min(m.limit, _UINT64_MAX),
            _truncation.counter(guard), guard.seen if guard is not None else 0)


class _Worker:
    """One worker thread, the queue it drains and its bookkeeping (touched only by that thread)."""

    __slots__ = ("dirty", "ident", "next_flush", "pressure_since", "queue", "reported", "thread")

    def __init__(self, queue: RecordQueue) -> None:
        self.queue = queue
        self.thread: threading.Thread | None = None
        self.ident = 0
        #: Drops already written as a warning record.
        self.reported = 0
        #: When the worker first saw drops not yet reported (None: no pressure).
        self.pressure_since: float | None = None
        #: Records handed over since the inner handlers were last flushed.
        self.dirty = False
        self.next_flush = 0.0


class AsyncHandler(Handler):
    """Queues records and writes them through ``handlers`` from a background worker thread.

    ``AsyncHandler(RingHandler("app.mmlog"), ConsoleHandler())`` returns at
    once from every log call; the worker formats and writes in batches of up
    to ``batch_size`` records.

    ``capacity`` bounds the queue (records; with several workers it is split
    between them); ``overflow`` says what happens when it is full (see
    :class:`Overflow`).  ``flush_interval`` is the longest time, in seconds,
    written records wait before the inner handlers' ``flush()`` is called
    (None: only on :meth:`flush` and :meth:`close`).  ``workers`` > 1 starts
    more threads; each logging thread is tied to one of them, so records of one
    thread keep their order (records of different threads have no order
    between them anyway), and the inner handlers must be thread-safe.
    ``drain_on_sigterm=True`` installs a SIGTERM handler (main thread only)
    that writes everything queued before the signal takes its usual effect.

    The handler owns its inner handlers: :meth:`close` closes them.
    """

    def __init__(
        self,
        *handlers: Handler,
        capacity: int = DEFAULT_CAPACITY,
        overflow: Overflow | OverflowPolicy = "block",
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float | None = DEFAULT_FLUSH_INTERVAL,
        workers: int = 1,
        level: int | str = 0,
        drain_on_sigterm: bool = False,
    ) -> None:
        self._workers: list[_Worker] = []
        self._native: Any = None
        super().__init__(level)
        if not handlers:
            raise ConfigError("AsyncHandler needs at least one handler to wrap")
        for inner in handlers:
            if not isinstance(inner, Handler):
                raise ConfigError(f"AsyncHandler wraps mmaplog handlers, not {type(inner).__name__} ({inner!r})")
        try:
            policy = Overflow(overflow)
        except ValueError:
            choices = ", ".join(repr(p.value) for p in Overflow)
            raise ConfigError(f"overflow must be one of {choices}, not {overflow!r}") from None
        workers = _whole(workers, "workers", 1)
        capacity = _whole(capacity, "capacity", workers)
        batch_size = _whole(batch_size, "batch_size", 1)
        if flush_interval is not None and (
            isinstance(flush_interval, bool) or not isinstance(flush_interval, (int, float)) or not flush_interval > 0
        ):
            raise ConfigError(f"flush_interval must be a number of seconds > 0 or None, not {flush_interval!r}")
        self._handlers = tuple(handlers)
        self._overflow = policy
        self._capacity = capacity
        self._batch_size = batch_size
        self._flush_interval = None if flush_interval is None else float(flush_interval)
        self._closed = False
        self._state_lock = threading.Lock()
        self._local = threading.local()
        self._next_lane = itertools.count()
        share = -(-capacity // workers)
        for _ in range(workers):
            worker = _Worker(RecordQueue(share, policy.value, self.level, _no_sink))
            worker.queue.sink = functools.partial(self._process, worker)
            self._workers.append(worker)
        writer = _native_writer(self._handlers, workers, policy.value)
        if writer is not None:
            self._native = _casync.Queue(  # type: ignore[union-attr]
                writer, _describe, self._native_fallback, self._native_report, self._flush_native,
                capacity, policy.value, self._flush_interval or 0.0, L.slot_payload_size(writer.slot_size),
            )
            self._native.level = self.level
            self._native.start()
            self.handle = self._native.put  # type: ignore[method-assign]
        else:
            self._bind_producer_side()
            for index, worker in enumerate(self._workers):
                self._start(worker, index)
        if drain_on_sigterm:
            try:
                _lifecycle.install_sigterm_flush()
            except ValueError:  # signal.signal outside the main thread
                raise ConfigError(
                    "drain_on_sigterm=True must be set up from the main thread (a Python rule for signal handlers)"
                ) from None
        _lifecycle.track(self)

    @classmethod
    def from_config(cls, options: HandlerOptions) -> AsyncHandler:
        """Build from a configuration table (``type = "async"``): options as keys, inner tables in ``handlers``.

        ``flush_interval = false`` means no periodic flush (TOML has no null).
        """
        inner = options.handlers("handlers")
        if not inner:
            raise options.error("handlers", "must list at least one handler to wrap")
        overflow = options.choice("overflow", [policy.value for policy in Overflow], Overflow.BLOCK.value)
        capacity = options.integer("capacity", DEFAULT_CAPACITY, minimum=1)
        batch_size = options.integer("batch_size", DEFAULT_BATCH_SIZE, minimum=1)
        workers = options.integer("workers", 1, minimum=1, maximum=capacity)
        interval = options.take("flush_interval", DEFAULT_FLUSH_INTERVAL)
        if interval is False:
            interval = None
        elif isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise options.error("flush_interval", f"must be a number of seconds > 0 or false, got {interval!r}")
        drain = options.boolean("drain_on_sigterm", False)
        level = options.level()
        options.finish()
        try:
            return cls(*inner, capacity=capacity, overflow=overflow, batch_size=batch_size, flush_interval=interval,
                       workers=workers, level=level, drain_on_sigterm=drain)
        except ConfigError as exc:
            raise options.error("", str(exc)) from None

    # ------------------------------------------------------------------ configuration
    @property
    def level(self) -> int:
        """The lowest level queued; records below it cost only the check."""
        return self._level

    @level.setter
    def level(self, value: int) -> None:
        self._level = value
        for worker in self._workers:
            worker.queue.level = value
        if self._native is not None:
            self._native.level = value

    @property
    def handlers(self) -> tuple[Handler, ...]:
        """The wrapped handlers, in the order each batch is handed to them."""
        return self._handlers

    @property
    def overflow(self) -> Overflow:
        """The policy applied when the queue is full."""
        return self._overflow

    @property
    def capacity(self) -> int:
        """The most records the queue holds (in total over all workers)."""
        return self._capacity

    @property
    def batch_size(self) -> int:
        """The most records a worker hands over in one call."""
        return self._batch_size

    @property
    def flush_interval(self) -> float | None:
        """Seconds between flushes of the inner handlers while records flow (None: never on its own)."""
        return self._flush_interval

    @property
    def workers(self) -> int:
        """Number of worker threads."""
        return len(self._workers)

    @property
    def dropped(self) -> int:
        """Records discarded by the overflow policy or because the handler was closed; exact."""
        native = self._native.dropped if self._native is not None else 0
        return native + sum(worker.queue.dropped for worker in self._workers)

    @property
    def pending(self) -> int:
        """Records accepted and not yet handed to the inner handlers: what a SIGKILL now would lose."""
        native = self._native.pending if self._native is not None else 0
        return native + sum(worker.queue.pending for worker in self._workers)

    @property
    def native(self) -> bool:
        """True while records go through the native queue and its GIL-free worker (see docs/ASYNC.md)."""
        return self._native is not None and self._native.running

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    # ------------------------------------------------------------------ producer side
    def _bind_producer_side(self) -> None:
        """Make ``handle`` the queue's own append (one worker) or a per-thread router (several)."""
        if len(self._workers) == 1:
            queue = self._workers[0].queue
            self.handle = queue.put if _GIL else queue.put_locked  # type: ignore[method-assign]
        else:
            self.handle = self._handle_routed  # type: ignore[method-assign]

    def _handle_routed(self, record: LogRecord) -> None:
        try:
            put = self._local.put
        except AttributeError:
            put = self._assign_lane()
        put(record)

    def _assign_lane(self) -> Any:
        """Tie the calling thread to one worker, round robin, so its records stay in order."""
        queue = self._workers[next(self._next_lane) % len(self._workers)].queue
        put = queue.put if _GIL else queue.put_locked
        self._local.put = put
        return put

    def _level_method(self, level: int, name: str, fallback: Callable[..., None]) -> Callable[..., None] | None:
        """A logger's level method that queues into the native queue without a LogRecord, or None (not native)."""
        if not self.native:
            return None
        return self._native.emitter(level, name, fallback)  # type: ignore[no-any-return]

    def _native_fallback(self, record: LogRecord) -> None:
        """A record the native queue did not take: written here, in order (running), else the Python queue's."""
        if self._native is not None and self._native.running:
            if record.level >= self._level:
                self._deliver([record])
            return
        queue = self._workers[0].queue
        if _GIL:
            queue.put(record)
        else:
            queue.put_locked(record)

    def _native_report(self, count: int) -> None:
        """The native worker (holding the GIL) found drops not yet written: write the warning record."""
        self._deliver([self._drop_record(count)])

    def _flush_native(self) -> None:
        for inner in self._handlers:
            try:
                inner.flush()
            except BaseException as exc:  # noqa: BLE001
                self._failed(None, exc, 0)

    def emit(self, record: LogRecord) -> None:
        """Queue one record (the same as :meth:`handle`, whose level check it passed)."""
        self.handle(record)

    def emit_batch(self, records: list[LogRecord]) -> None:
        """Queue several records in order."""
        handle = self.handle
        for record in records:
            handle(record)

    # ------------------------------------------------------------------ worker side
    def _start(self, worker: _Worker, index: int) -> None:
        thread = threading.Thread(
            target=self._run, args=(worker,), name=f"mmaplog-async-{index}",
            daemon=True,  # interpreter exit drains through the atexit hook, which runs while daemons still live
        )
        worker.thread = thread
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown": write synchronously
            worker.thread = None
            worker.queue.detach(SYNC)

    def _run(self, worker: _Worker) -> None:
        """The worker loop: take a batch, hand it over, sleep when there is nothing to do."""
        queue = worker.queue
        worker.ident = queue.consumer = threading.get_ident()
        take = queue.take
        size = self._batch_size
        interval = self._flush_interval
        worker.next_flush = time.monotonic() + (interval or 0.0)
        while True:
            batch = take(size)
            if batch:
                try:
                    if self._process(worker, batch):
                        return
                except BaseException as exc:  # noqa: BLE001 - the worker must outlive any failure
                    self._failed(batch[0] if isinstance(batch[0], LogRecord) else None, exc, len(batch))
                finally:
                    queue.in_flight = 0
                continue
            timeout = None
            if worker.dirty and interval is not None:
                timeout = worker.next_flush - time.monotonic()
                if timeout <= 0:
                    self._flush_inner(worker)
                    continue
            if worker.reported != queue.dropped:
                self._report_drops(worker, force=True)
                continue
            if queue.state != RUNNING:  # closed under this worker's feet (close() from an inner handler)
                return
            queue.sleep(timeout)

    def _process(self, worker: _Worker, batch: list[Any]) -> bool:
        """Hand a batch to the inner handlers, honouring flush/stop markers; True after a stop marker."""
        queue = worker.queue
        stop = False
        if queue.markers:
            start = 0
            for i, item in enumerate(batch):
                if type(item) is Marker:
                    if start < i:
                        self._deliver(batch[start:i])
                    start = i + 1
                    self._report_drops(worker, force=True)
                    self._flush_inner(worker)
                    queue.marker_done(item)
                    stop = stop or item.stop
            if start < len(batch):
                self._deliver(batch[start:] if start else batch)
                worker.dirty = True
        else:
            self._deliver(batch)
            worker.dirty = True
        if worker.reported != queue.dropped:
            self._report_drops(worker)
        if self._flush_interval is not None and worker.dirty and time.monotonic() >= worker.next_flush:
            self._flush_inner(worker)
        return stop

    def _deliver(self, records: list[LogRecord]) -> None:
        _guard_messages(self, records)
        for inner in self._handlers:
            try:
                inner.handle_batch(records)
            except BaseException as exc:  # noqa: BLE001 - a broken handler must not stop the others
                self._failed(records[0], exc, len(records))

    def _flush_inner(self, worker: _Worker) -> None:
        for inner in self._handlers:
            try:
                inner.flush()
            except BaseException as exc:  # noqa: BLE001
                self._failed(None, exc, 0)
        worker.dirty = False
        if self._flush_interval is not None:
            worker.next_flush = time.monotonic() + self._flush_interval

    def _report_drops(self, worker: _Worker, force: bool = False) -> None:
        """Write "dropped N records" once the pressure is gone (or at least once a second under pressure)."""
        queue = worker.queue
        dropped = queue.dropped
        new = dropped - worker.reported
        if new <= 0:
            return
        now = time.monotonic()
        if not force:
            if worker.pressure_since is None:
                worker.pressure_since = now
            if len(queue.items) > queue.capacity // 2 and now - worker.pressure_since < _DROP_REPORT_INTERVAL:
                return
        worker.reported = dropped
        worker.pressure_since = None
        self._deliver([self._drop_record(new)])
        worker.dirty = True

    def _drop_record(self, new: int) -> LogRecord:
        """The WARNING record that says ``new`` records were dropped."""
        return LogRecord(
            SELF_LOGGER,
            _WARNING,
            "dropped %d record%s: the async queue was full (capacity %d, overflow %s)",
            (new, "" if new == 1 else "s", self._capacity, self._overflow.value),
            {"dropped": new},
            time.time_ns(),
            threading.get_ident(),
        )

    def _failed(self, record: LogRecord | None, exc: BaseException, count: int) -> None:
        """An inner handler raised out of handle_batch/flush: count it, report the first of its kind."""
        self.errors += max(count, 1)
        report_once(
            self,
            f"inner:{type(exc).__name__}",
            f"AsyncHandler: an inner handler failed ({type(exc).__name__}: {exc}); "
            "the worker goes on, further failures of this kind are counted, not shown",
        )

    # ------------------------------------------------------------------ flush and close
    def drain(self, timeout: float | None = None) -> bool:
        """:meth:`flush` with a deadline: False if ``timeout`` seconds passed first (or if called from a worker)."""
        if self._closed:
            return True
        native = self._native
        if native is not None and native.running:
            done = bool(native.drain(timeout))
            if done:
                new = native.take_unreported()
                if new:
                    self._native_report(new)
                self._flush_native()
            return done
        me = threading.get_ident()
        if any(worker.ident == me for worker in self._workers):
            return False  # an inner handler flushing its own async front: waiting would be waiting for itself
        markers = []
        for worker in self._workers:
            marker = Marker()
            worker.queue.put_marker(marker)
            markers.append(marker)
        deadline = None if timeout is None else time.monotonic() + timeout
        for marker in markers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not marker.done.wait(remaining):
                return False
        return True

    def flush(self) -> None:
        """Return once every record queued before the call is handed to the inner handlers and they are flushed."""
        self.drain()

    def close(self) -> None:
        """Write everything queued, stop the workers and close the inner handlers; idempotent.

        Records logged after this are counted in :attr:`dropped`.
        """
        self._close_owned(_everything)

    def _close_owned(self, owned: Callable[[Handler], bool]) -> None:
        """:meth:`close`, closing only the inner handlers for which ``owned`` is true (reconfiguration keeps the rest)."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        native = self._native
        if native is not None and native.running:
            stopped = native.stop(None)
            if stopped:
                new = native.take_unreported()
                if new:
                    self._native_report(new)
                self._flush_native()
            for worker in self._workers:
                worker.queue.detach(CLOSED)  # records logged from now on are counted as dropped
            self._close_inner(owned)
            return
        me = threading.get_ident()
        stops = []
        for worker in self._workers:
            marker = Marker(stop=True)
            worker.queue.put_marker(marker)
            stops.append(marker)
        stalled = False
        for worker, marker in zip(self._workers, stops, strict=True):
            stalled = not self._wait_for_stop(worker, marker, me) or stalled
        for worker in self._workers:
            queue = worker.queue
            if not stalled:
                queue.detach(SYNC)  # stragglers that raced with close: write them in order
                if queue.dropped != worker.reported:
                    self._report_drops(worker, force=True)
            queue.detach(CLOSED)
        if not stalled:  # a hung inner handler would hang these too
            self._flush_inner(self._workers[0])
        self._close_inner(owned)

    def _close_inner(self, owned: Callable[[Handler], bool]) -> None:
        for inner in self._handlers:
            if not owned(inner):
                continue
            close_owned = getattr(inner, "_close_owned", None)
            try:
                if close_owned is not None:
                    close_owned(owned)
                else:
                    inner.close()
            except Exception as exc:  # noqa: BLE001
                self._failed(None, exc, 0)

    def _wait_for_stop(self, worker: _Worker, marker: Marker, me: int) -> bool:
        """Wait for a worker to reach its stop marker while it makes progress; False if it stalled."""
        thread = worker.thread
        if thread is None:
            return True
        if worker.ident == me:
            return False  # close() from inside an inner handler: the worker cannot wait for itself
        last = (-1, -1)
        stalled_since = time.monotonic()
        while not marker.done.wait(0.5):
            progress = (len(worker.queue.items), worker.queue.in_flight)
            now = time.monotonic()
            if progress != last:
                last, stalled_since = progress, now
            elif now - stalled_since > _STOP_STALL_TIMEOUT:
                report_once(
                    self,
                    "stall",
                    f"AsyncHandler: a worker made no progress for {_STOP_STALL_TIMEOUT:g} s while closing; "
                    f"its {len(worker.queue.items)} queued records are counted as dropped",
                )
                return False
        thread.join(_STOP_STALL_TIMEOUT)
        return True

    # ------------------------------------------------------------------ fork
    def _after_fork_in_child(self) -> None:
        """In a forked child: the parent's queue and threads are not ours; start afresh."""
        self._state_lock = threading.Lock()
        self._local = threading.local()
        if self._native is not None:
            # The native worker is the parent's thread: this process goes on with the Python worker.
            self._native.abandon()
            if not self._closed:
                self._bind_producer_side()
        if self._closed:
            return
        for index, worker in enumerate(self._workers):
            worker.queue.reset_after_fork()
            worker.ident = 0
            worker.reported = worker.queue.dropped
            self._start(worker, index)

    def __repr__(self) -> str:
        inner = ", ".join(type(h).__name__ for h in self._handlers)
        state = "closed" if self._closed else f"{self.pending} pending"
        return f"<AsyncHandler [{inner}] overflow={self._overflow.value} capacity={self._capacity} {state}>"


def _whole(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


#: Argument types whose str() runs no user code: a message made of these needs no guard in the worker.
_PLAIN = frozenset((str, int, float, bool, type(None)))


def _guard_messages(handler: AsyncHandler, records: list[LogRecord]) -> None:
    """Render, in the worker, every message whose ``msg`` or arguments may run user code.

    ``render_message`` already turns an ``Exception`` from an argument's
    ``__str__`` into visible text; a ``KeyboardInterrupt`` or ``SystemExit``
    raised there would instead abort the whole batch in the inner handler.
    Here such a record gets the text ``"<msg> [mmaplog: unprintable
    arguments (KeyboardInterrupt)]"`` and is written like any other, counted
    once in :attr:`Handler.errors`; the other records of the batch are not
    affected.  Records of plain values (the usual case) cost one type check
    per argument.
    """
    plain = _PLAIN
    for record in records:
        if record._message is not None:
            continue
        if type(record.msg) is str:
            for arg in record.args:
                if type(arg) not in plain:
                    break
            else:
                continue
        try:
            record.message  # noqa: B018 - renders and caches the text
        except BaseException as exc:  # noqa: BLE001 - a worker thread gets no real KeyboardInterrupt
            try:
                text = record.msg if type(record.msg) is str else object.__repr__(record.msg)
            except BaseException:  # noqa: BLE001
                text = "<unprintable message>"
            record._message = f"{text} [mmaplog: unprintable arguments ({type(exc).__name__} in their str())]"
            handler.errors += 1
            report_once(handler, f"render:{type(exc).__name__}",
                        f"AsyncHandler: rendering a message raised {type(exc).__name__}; the record is written with "
                        "a marker instead of its arguments, further cases are counted, not shown")


def _everything(handler: Handler) -> bool:
    return True


def _no_sink(items: list[Any]) -> None:
    """Placeholder until the handler installs the real sink."""
