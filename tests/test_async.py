"""AsyncHandler: queueing, batching, overflow policies, flush/close, exit-time drain and crash loss."""

from __future__ import annotations

import array
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmaplog
from mmaplog import _queue
from mmaplog._record import LogRecord
from mmaplog.handlers import async_
from mmaplog.handlers._base import Handler
from mmaplog.handlers.async_ import AsyncHandler, Overflow

WAIT = 30.0  # generous upper bound for waits that normally end in milliseconds


def rec(i: int, logger: str = "app", level: int = 20) -> LogRecord:
    """A record whose message is ``r <i>``."""
    return LogRecord(logger, level, "r %d", (i,), None, 0, threading.get_ident())


class Collect(Handler):
    """Keeps every record it gets; optionally holds each batch until ``gate`` opens."""

    def __init__(self, gate: threading.Event | None = None, level: int = 0) -> None:
        super().__init__(level)
        self.records: list[LogRecord] = []
        self.gate = gate
        self.entered = threading.Event()
        self.flushes = 0
        self.flushed_count = 0
        self.closes = 0
        self.lock = threading.Lock()

    def emit(self, record: LogRecord) -> None:
        self.emit_batch([record])

    def emit_batch(self, records: list[LogRecord]) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT), "test gate never opened"
        with self.lock:
            self.records.extend(records)

    def flush(self) -> None:
        with self.lock:
            self.flushes += 1
            self.flushed_count = len(self.records)

    def close(self) -> None:
        self.closes += 1

    def messages(self) -> list[str]:
        return [r.message for r in self.records]


class Numbers(Handler):
    """Stores only ``args[0]`` of each record, compactly, for million-record tests."""

    def __init__(self) -> None:
        super().__init__()
        self.values = array.array("q")

        self.warnings: list[LogRecord] = []

    def emit(self, record: LogRecord) -> None:
        self.emit_batch([record])

    def emit_batch(self, records: list[LogRecord]) -> None:
        self.values.extend([r.args[0] for r in records if r.logger == "app"])
        self.warnings.extend([r for r in records if r.logger == "mmaplog"])


@pytest.fixture
def handlers() -> Any:
    """Close every AsyncHandler a test creates, even when the test fails."""
    made: list[AsyncHandler] = []

    def make(*inner: Handler, **options: Any) -> AsyncHandler:
        handler = AsyncHandler(*inner, **options)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


def run_threads(count: int, target: Any) -> None:
    threads = [threading.Thread(target=target, args=(t,)) for t in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 4)
        assert not thread.is_alive()


# ---------------------------------------------------------------------- basics and configuration
def test_records_arrive_in_order_with_deferred_formatting(handlers: Any) -> None:
    """Records reach the inner handler in order, and the message is formatted there, not by the caller."""
    inner = Collect()
    handler = handlers(inner)
    records = [rec(i) for i in range(1000)]
    for r in records:
        handler.handle(r)
        assert r._message is None or r in inner.records  # the caller never formats
    handler.flush()
    assert inner.messages() == [f"r {i}" for i in range(1000)]
    assert handler.pending == 0 and handler.dropped == 0


def test_level_is_checked_before_queueing_and_can_change(handlers: Any) -> None:
    """Records below the handler's level are not queued; a new level applies at once."""
    inner = Collect()
    handler = handlers(inner, level="WARNING")
    handler.handle(rec(1, level=20))
    handler.handle(rec(2, level=30))
    handler.level = 10
    handler.handle(rec(3, level=10))
    handler.flush()
    assert inner.messages() == ["r 2", "r 3"]
    assert handler.level == 10


def test_inner_handler_levels_apply(handlers: Any) -> None:
    """Each inner handler keeps filtering by its own level."""
    everything, errors_only = Collect(), Collect(level=40)
    handler = handlers(everything, errors_only)
    for level in (10, 20, 40, 50):
        handler.handle(rec(level, level=level))
    handler.flush()
    assert everything.messages() == ["r 10", "r 20", "r 40", "r 50"]
    assert errors_only.messages() == ["r 40", "r 50"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"overflow": "drop_random"}, "'drop_random'"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": 2, "workers": 3}, "capacity"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"workers": 0}, "workers"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"flush_interval": "1s"}, "flush_interval"),
    ],
)
def test_bad_options_raise_config_error_naming_them(options: dict[str, Any], named: str) -> None:
    """A bad option raises ConfigError whose one-line message names the option or value."""
    with pytest.raises(mmaplog.ConfigError) as info:
        AsyncHandler(Collect(), **options)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_needs_handlers_to_wrap() -> None:
    """An AsyncHandler without inner handlers, or with something that is not a Handler, is refused."""
    with pytest.raises(mmaplog.ConfigError, match="at least one handler"):
        AsyncHandler()
    with pytest.raises(mmaplog.ConfigError, match="not str"):
        AsyncHandler("app.mmlog")  # type: ignore[arg-type]


def test_overflow_accepts_enum_and_string(handlers: Any) -> None:
    """The policy can be given as an Overflow member or its string; the property returns the member."""
    assert handlers(Collect(), overflow=Overflow.DROP_OLDEST).overflow is Overflow.DROP_OLDEST
    assert handlers(Collect(), overflow="drop_newest").overflow is Overflow.DROP_NEWEST
    assert Overflow.BLOCK == "block"


# ---------------------------------------------------------------------- many producers, "block"
def test_million_records_from_eight_threads_block_policy(handlers: Any) -> None:
    """1,000,000 records from 8 threads with "block" and a small queue: each arrives once, per-thread order kept."""
    per_thread = 125_000
    inner = Numbers()
    handler = handlers(inner, capacity=1024, overflow="block")
    handle = handler.handle

    def produce(t: int) -> None:
        base = t * per_thread
        for i in range(base, base + per_thread):
            handle(LogRecord("app", 20, "", (i,)))

    run_threads(8, produce)
    handler.flush()
    values = np.frombuffer(inner.values, dtype=np.int64)
    assert len(values) == 8 * per_thread
    assert handler.dropped == 0
    for t in range(8):
        mine = values[values // per_thread == t]
        assert np.array_equal(mine, np.arange(t * per_thread, (t + 1) * per_thread))


def test_block_policy_makes_the_producer_wait_and_loses_nothing(handlers: Any) -> None:
    """With "block" a full queue holds the producer until the worker makes room; nothing is dropped."""
    gate = threading.Event()
    inner = Collect(gate)
    handler = handlers(inner, capacity=4, overflow="block")
    handler.handle(rec(0))
    assert inner.entered.wait(WAIT)  # the worker holds record 0; the queue is empty
    producer = threading.Thread(target=lambda: [handler.handle(rec(i)) for i in range(1, 11)])
    producer.start()
    assert _poll(lambda: handler.pending == 5)  # record 0 in the worker's hands, 4 queued
    producer.join(0.3)
    assert producer.is_alive() and handler.pending == 5  # the 5th waits for room instead of going in
    gate.set()
    producer.join(WAIT)
    assert not producer.is_alive()
    handler.flush()
    assert inner.messages() == [f"r {i}" for i in range(11)]
    assert handler.dropped == 0


# ---------------------------------------------------------------------- drop policies
@pytest.mark.parametrize(
    ("policy", "kept"),
    [("drop_newest", [0, 1, 2, 3, 4]), ("drop_oldest", [0, 17, 18, 19, 20])],
)
def test_drop_policy_drops_the_right_records_and_reports_them(handlers: Any, policy: str, kept: list[int]) -> None:
    """A full queue drops exactly the records its policy names, counts them and writes one warning."""
    gate = threading.Event()
    inner = Collect(gate)
    handler = handlers(inner, capacity=4, overflow=policy)
    handler.handle(rec(0))
    assert inner.entered.wait(WAIT)  # record 0 is in the worker's hands
    for i in range(1, 21):
        handler.handle(rec(i))  # never blocks
    assert handler.dropped == 16
    assert handler.pending == 5
    gate.set()
    handler.flush()
    plain = [r for r in inner.records if r.logger != "mmaplog"]
    assert [r.args[0] for r in plain] == kept
    warnings = [r for r in inner.records if r.logger == "mmaplog"]
    assert len(warnings) == 1
    (warning,) = warnings
    assert warning.level == 30
    assert "dropped 16 records" in warning.message
    assert warning.fields == {"dropped": 16}
    assert inner.records.index(warning) > inner.records.index(plain[0])
    assert handler.dropped == 16


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_drop_count_is_exact_under_concurrent_producers(handlers: Any, policy: str) -> None:
    """With 4 threads racing into a tiny queue, delivered + dropped equals what was logged, exactly."""
    inner = Numbers()
    handler = handlers(inner, capacity=8, overflow=policy, batch_size=3)
    per_thread = 20_000

    def produce(t: int) -> None:
        for i in range(t * per_thread, (t + 1) * per_thread):
            handler.handle(LogRecord("app", 20, "", (i,)))

    run_threads(4, produce)
    handler.flush()
    values = np.frombuffer(inner.values, dtype=np.int64)
    assert len(values) + handler.dropped == 4 * per_thread
    assert len(np.unique(values)) == len(values)
    assert sum(r.fields["dropped"] for r in inner.warnings) == handler.dropped  # type: ignore[index]


def test_drop_warning_waits_for_the_pressure_to_end(handlers: Any) -> None:
    """The warning is not written while the queue is still more than half full."""
    gate = threading.Event()
    inner = Collect(gate)
    handler = handlers(inner, capacity=8, overflow="drop_newest", batch_size=1)
    handler.handle(rec(0))
    assert inner.entered.wait(WAIT)
    for i in range(1, 12):
        handler.handle(rec(i))
    gate.set()
    handler.flush()
    order = [r.logger for r in inner.records]
    # Records 0..8 then the warning: with one record per batch, the queue was more than
    # half full until records 1..4 were taken, so the warning cannot come before record 4.
    assert order.index("mmaplog") > 4
    assert order.count("mmaplog") == 1


def test_drop_oldest_keeps_a_pending_flush(handlers: Any) -> None:
    """A flush queued behind records survives "drop_oldest" evictions, and the queue stays bounded."""
    gate = threading.Event()
    inner = Collect(gate)
    handler = handlers(inner, capacity=4, overflow="drop_oldest")
    handler.handle(rec(0))
    assert inner.entered.wait(WAIT)
    for i in range(1, 5):
        handler.handle(rec(i))
    flusher = threading.Thread(target=handler.flush)
    flusher.start()
    assert _poll(lambda: handler._workers[0].queue.markers == 1)
    for i in range(5, 40):
        handler.handle(rec(i))
        assert len(handler._workers[0].queue.items) <= 5  # 4 records and the flush marker
    gate.set()
    flusher.join(WAIT)
    assert not flusher.is_alive()
    handler.flush()
    numbers = [r.args[0] for r in inner.records if r.logger != "mmaplog"]
    assert numbers == [0, 36, 37, 38, 39]
    assert handler.dropped == 35


def _poll(condition: Any, timeout: float = WAIT) -> bool:
    """Wait for ``condition()`` to become true (a real condition, with a deadline)."""
    done = threading.Event()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        done.wait(0.001)
    return bool(condition())


# ---------------------------------------------------------------------- flush and close
def test_flush_covers_everything_logged_before_it_under_concurrent_producers(handlers: Any) -> None:
    """While 4 threads keep logging, each flush returns only after every earlier record was handed over and flushed."""
    inner = Collect()
    handler = handlers(inner, capacity=256)
    last = [-1] * 4
    stop = threading.Event()

    def produce(t: int) -> None:
        i = 0
        while not stop.is_set():
            handler.handle(LogRecord("app", 20, "", (t, i)))
            last[t] = i
            i += 1

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(25):
            before = list(last)
            handler.flush()
            with inner.lock:
                flushed = inner.records[: inner.flushed_count]
            counts = [0] * 4
            for r in flushed:
                counts[r.args[0]] += 1
            for t in range(4):
                assert counts[t] >= before[t] + 1  # records 0..before[t] of thread t were flushed
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    handler.flush()
    for t in range(4):
        mine = [r.args[1] for r in inner.records if r.args[0] == t]
        assert mine == list(range(len(mine)))


def test_close_drains_closes_inner_handlers_once_and_is_idempotent(handlers: Any) -> None:
    """close() writes what is queued, closes the inner handlers once, and a second close does nothing."""
    gate = threading.Event()
    inner = Collect(gate)
    handler = handlers(inner)
    for i in range(100):
        handler.handle(rec(i))
    assert handler.pending == 100
    gate.set()
    handler.close()
    handler.close()
    assert inner.messages() == [f"r {i}" for i in range(100)]
    assert inner.closes == 1
    assert handler.closed
    assert all(w.thread is not None and not w.thread.is_alive() for w in handler._workers)


def test_records_after_close_are_counted_as_dropped(handlers: Any) -> None:
    """A record logged after close() is not written but counted; flush() after close returns."""
    inner = Collect()
    handler = handlers(inner)
    handler.close()
    handler.handle(rec(1))
    handler.flush()
    assert inner.records == []
    assert handler.dropped == 1


def test_idle_worker_sleeps_and_wakes_for_the_next_record(handlers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle worker blocks in one wait (no polling loop) and a new record wakes it without a flush."""
    sleeps = []
    original = _queue.RecordQueue.sleep

    def counting_sleep(self: _queue.RecordQueue, timeout: float | None) -> None:
        sleeps.append(timeout)
        original(self, timeout)

    monkeypatch.setattr(_queue.RecordQueue, "sleep", counting_sleep)
    inner = Collect()
    handler = handlers(inner, flush_interval=None)
    assert _poll(lambda: handler._workers[0].queue.idle)
    threading.Event().wait(0.2)
    assert sleeps == [None]  # one untimed wait in all that time
    handler.handle(rec(1))
    assert inner.entered.wait(WAIT)
    assert _poll(lambda: len(sleeps) == 2 and handler._workers[0].queue.idle)


def test_flush_interval_flushes_inner_handlers_on_its_own(handlers: Any) -> None:
    """With a flush interval, records written are followed by an inner flush without anyone calling flush()."""
    inner = Collect()
    handler = handlers(inner, flush_interval=0.05)
    handler.handle(rec(1))
    assert _poll(lambda: inner.flushed_count == 1)


# ---------------------------------------------------------------------- failures
class Failing(Handler):
    """Raises on every record whose number is divisible by 3."""

    def emit(self, record: LogRecord) -> None:
        if record.args[0] % 3 == 0:
            raise RuntimeError(f"cannot write {record.args[0]}")


class BrokenBatch(Handler):
    """A handler whose batch method itself raises (bypassing Handler's protection)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def emit(self, record: LogRecord) -> None:
        raise AssertionError("not used")

    def handle_batch(self, records: Any) -> None:
        self.calls += 1
        raise OSError("disk on fire")


def test_inner_handler_failure_does_not_stop_the_worker(handlers: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Failing inner handlers are counted and reported once; the others get every record and the worker goes on."""
    failing, broken, good = Failing(), BrokenBatch(), Collect()
    handler = handlers(failing, broken, good, batch_size=10)
    for i in range(30):
        handler.handle(rec(i))
    handler.flush()
    for i in range(30, 60):
        handler.handle(rec(i))
    handler.flush()
    assert good.messages() == [f"r {i}" for i in range(60)]
    assert failing.errors == 20
    assert broken.calls >= 6
    assert handler.errors == 60  # every record of every failed batch
    err = capsys.readouterr().err
    assert err.count("disk on fire") == 1
    assert err.count("cannot write") == 1
    assert all(w.thread is not None and w.thread.is_alive() for w in handler._workers)


def test_worker_logging_into_its_own_full_queue_does_not_deadlock(handlers: Any) -> None:
    """An inner handler that logs back into a full "block" queue has that record dropped, not waited for."""
    inner = Collect()
    handler: AsyncHandler

    class Echo(Handler):
        def emit(self, record: LogRecord) -> None:
            if record.logger == "app":
                for i in range(10):
                    handler.handle(rec(1000 + i, logger="echo"))

    handler = handlers(Echo(), inner, capacity=4, overflow="block", batch_size=1)
    handler.handle(rec(0))
    handler.flush()
    handler.flush()
    echoed = [r for r in inner.records if r.logger == "echo"]
    assert len(echoed) + handler.dropped == 10
    assert handler.dropped >= 6


# ---------------------------------------------------------------------- several workers, no GIL
def test_several_workers_keep_each_threads_order(handlers: Any) -> None:
    """With 3 workers, records of each producer thread still arrive in order and none is lost."""
    inner = Collect()
    handler = handlers(inner, workers=3, capacity=300)
    assert handler.workers == 3

    def produce(t: int) -> None:
        for i in range(5000):
            handler.handle(LogRecord("app", 20, "", (t, i)))

    run_threads(6, produce)
    handler.flush()
    assert len(inner.records) == 30_000
    for t in range(6):
        assert [r.args[1] for r in inner.records if r.args[0] == t] == list(range(5000))


def test_lock_fallback_for_builds_without_gil(handlers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The locked producer path (used when the GIL is off) delivers everything in order and counts drops."""
    monkeypatch.setattr(_queue, "_GIL", False)
    monkeypatch.setattr(async_, "_GIL", False)
    inner = Numbers()
    handler = handlers(inner, capacity=64)
    assert handler.handle.__func__ is _queue.RecordQueue.put_locked  # type: ignore[attr-defined]

    def produce(t: int) -> None:
        for i in range(t * 20_000, (t + 1) * 20_000):
            handler.handle(LogRecord("app", 20, "", (i,)))

    run_threads(4, produce)
    handler.flush()
    values = np.frombuffer(inner.values, dtype=np.int64)
    assert len(values) == 80_000
    for t in range(4):
        assert np.array_equal(values[values // 20_000 == t], np.arange(t * 20_000, (t + 1) * 20_000))
    gate = threading.Event()
    gated = Collect(gate)
    dropping = handlers(gated, capacity=2, overflow="drop_oldest")
    dropping.handle(rec(0))
    assert gated.entered.wait(WAIT)
    for i in range(1, 10):
        dropping.handle(rec(i))
    assert dropping.dropped == 7
    gate.set()
    dropping.flush()
    assert [r.args[0] for r in gated.records if r.logger == "app"] == [0, 8, 9]


_FORKED_CHILD = textwrap.dedent(
    """
    import json, os, sys, threading, warnings
    from mmaplog._record import LogRecord
    from mmaplog.handlers._base import Handler
    from mmaplog.handlers.async_ import AsyncHandler

    # This script forks a process that runs the handler's worker thread, which is exactly what it checks;
    # Python 3.12+ warns about any fork of a multi-threaded process.
    warnings.simplefilter("ignore", DeprecationWarning)

    class Collect(Handler):
        def __init__(self):
            super().__init__()
            self.records, self.gate, self.entered = [], threading.Event(), threading.Event()
        def emit(self, record):
            self.emit_batch([record])
        def emit_batch(self, records):
            self.entered.set()
            if self.gate is not None:
                self.gate.wait(30)
            self.records.extend(records)

    def rec(i):
        return LogRecord("app", 20, "r %d", (i,), None, 0, threading.get_ident())

    inner = Collect()
    handler = AsyncHandler(inner)
    handler.handle(rec(0))
    assert inner.entered.wait(30)
    handler.handle(rec(1))  # queued in the parent at fork time
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            inner.records.clear()
            inner.gate = None
            for i in range(100, 110):
                handler.handle(rec(i))
            if handler.drain(30) and [r.args[0] for r in inner.records] == list(range(100, 110)):
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    inner.gate.set()
    handler.flush()
    print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status), "parent": [r.args[0] for r in inner.records]}))
    handler.close()
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_working_handler() -> None:
    """After fork the child has its own worker: its records arrive, the parent's queued ones are not repeated.

    The fork happens in a child interpreter: forking a process with threads (the pytest process runs the
    handlers' workers) is deprecated from Python 3.12 on.
    """
    proc = subprocess.run([sys.executable, "-c", _FORKED_CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"child_exit": 0, "parent": [0, 1]}


# ---------------------------------------------------------------------- with the ring handler, from configuration
def test_records_through_a_ring_handler_keep_every_column_and_order(tmp_path: Path, handlers: Any) -> None:
    """Through a RingHandler, records keep time, thread, level, fields and traceback; seq follows the order written."""
    path = tmp_path / "app.mmlog"
    handler = handlers(mmaplog.RingHandler(path, size=1 << 20), batch_size=7)
    sent = []
    for i in range(100):
        fields = {"i": i} if i % 10 == 0 else None
        exception = "Traceback: boom" if i % 25 == 0 else None
        record = LogRecord("app.worker", 20 + i % 3 * 10, "n=%d", (i,), fields, 1_000_000 + i, 4242 + i % 2, exception)
        sent.append(record)
        handler.handle(record)
    handler.flush()
    got = list(mmaplog.read(path))
    assert [r.message for r in got] == [f"n={i}" for i in range(100)]
    assert [r.seq for r in got] == list(range(1, 101))
    assert [(r.time_ns, r.thread, r.level, r.logger) for r in got] == [
        (s.time_ns, s.thread, s.level, s.logger) for s in sent
    ]
    assert [r.fields or None for r in got] == [s.fields for s in sent]
    assert [r.exception for r in got] == [s.exception for s in sent]


def test_configure_builds_an_async_handler(tmp_path: Path) -> None:
    """``type = "async"`` in a configuration wraps the nested handlers with the given options."""
    from mmaplog.config import configure
    from mmaplog.logger import LoggerTree

    path = tmp_path / "app.mmlog"
    root = configure(
        {"level": "DEBUG", "handlers": [{"type": "async", "capacity": 64, "overflow": "drop_oldest",
                                          "flush_interval": False, "handlers": [{"type": "ring", "path": str(path)}]}]},
        tree=LoggerTree(),
    )
    (handler,) = root.own_handlers
    assert isinstance(handler, AsyncHandler)
    assert (handler.capacity, handler.overflow, handler.flush_interval) == (64, Overflow.DROP_OLDEST, None)
    root.info("configured %s", "async")
    handler.close()
    assert [r.message for r in mmaplog.read(path)] == ["configured async"]


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"overflow": "sometimes"}, "handlers[0].overflow"),
        ({"capacity": 0}, "handlers[0].capacity"),
        ({"flush_interval": -1}, "handlers[0].flush_interval"),
        ({"colour": "red"}, "handlers[0].colour"),
    ],
)
def test_configure_names_the_bad_async_key(table: dict[str, Any], named: str) -> None:
    """A bad key in an async handler's table is reported with its full name."""
    from mmaplog.config import configure
    from mmaplog.logger import LoggerTree

    spec = {"type": "async", "handlers": [{"type": "console"}], **table}
    with pytest.raises(mmaplog.ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        configure({"handlers": [spec]}, tree=LoggerTree())


# ---------------------------------------------------------------------- child processes: exit drain and SIGKILL
RING_SINK = '''
import os, sys, threading, signal
import mmaplog
from mmaplog._record import LogRecord
from mmaplog.handlers.async_ import AsyncHandler

class GatedRing(mmaplog.RingHandler):
    """A RingHandler whose batches first wait until gate() is true."""
    def __init__(self, path, gate):
        super().__init__(path, size=8 << 20)
        self.gate = gate
    def emit_batch(self, records):
        pause = threading.Event()
        while not self.gate():
            pause.wait(0.001)
        super().emit_batch(records)
'''


def run_child(tmp_path: Path, body: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(RING_SINK + textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "ring.mmlog"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )


def ring_numbers(tmp_path: Path) -> list[int]:
    return [int(r.message.split()[1]) for r in mmaplog.read(tmp_path / "ring.mmlog") if r.logger == "app"]


EXIT_CHILD = '''
N = 5000
main = threading.main_thread()
# The worker writes nothing while the main thread runs: everything is still queued at exit.
handler = AsyncHandler(GatedRing(sys.argv[1], gate=lambda: not main.is_alive()), capacity=N)
for i in range(N):
    handler.handle(LogRecord("app", 20, "r %d", (i,)))
print("pending", handler.pending, flush=True)
if sys.argv[2] == "exception":
    raise RuntimeError("uncaught on purpose")
'''


@pytest.mark.parametrize("ending", ["normal", "exception"])
def test_everything_queued_is_written_at_interpreter_exit(tmp_path: Path, ending: str) -> None:
    """At a normal exit and when an uncaught exception ends the program, every queued record is written."""
    child = run_child(tmp_path, EXIT_CHILD, ending)
    out, err = child.communicate(timeout=120)
    assert out.split() == ["pending", "5000"]
    if ending == "exception":
        assert child.returncode == 1 and "RuntimeError: uncaught on purpose" in err
    else:
        assert child.returncode == 0, err
    assert ring_numbers(tmp_path) == list(range(5000))


def test_non_daemon_threads_still_logging_at_exit_are_drained(tmp_path: Path) -> None:
    """Records from a non-daemon thread that outlives the main thread are written too (it ends before the drain)."""
    child = run_child(tmp_path, '''
        handler = AsyncHandler(GatedRing(sys.argv[1], gate=lambda: True))
        started = threading.Event()
        def late():
            started.set()
            for i in range(3000):
                handler.handle(LogRecord("app", 20, "r %d", (i,)))
        threading.Thread(target=late).start()
        started.wait()
    ''')
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert ring_numbers(tmp_path) == list(range(3000))


SIGTERM_CHILD = '''
N = 5000
r, w = os.pipe()
os.set_blocking(w, False)
signal.set_wakeup_fd(w)  # written by the interpreter when a signal arrives
received = threading.Event()
threading.Thread(target=lambda: (os.read(r, 1), received.set()), daemon=True).start()
# The worker writes nothing until SIGTERM has arrived: only a drain on SIGTERM can save the records.
handler = AsyncHandler(GatedRing(sys.argv[1], gate=received.is_set), capacity=N, drain_on_sigterm=sys.argv[2] == "on")
for i in range(N):
    handler.handle(LogRecord("app", 20, "r %d", (i,)))
print("pending", handler.pending, flush=True)
threading.Event().wait()
'''


def test_sigterm_drains_the_queue_when_asked(tmp_path: Path) -> None:
    """With drain_on_sigterm, SIGTERM writes every queued record, then the process still dies of SIGTERM."""
    child = run_child(tmp_path, SIGTERM_CHILD, "on")
    assert child.stdout is not None
    assert child.stdout.readline().split() == ["pending", "5000"]
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGTERM, err
    assert ring_numbers(tmp_path) == list(range(5000))


def test_sigterm_without_the_option_loses_the_queue(tmp_path: Path) -> None:
    """Without drain_on_sigterm, SIGTERM ends the process at once (the control case for the test above)."""
    child = run_child(tmp_path, SIGTERM_CHILD, "off")
    assert child.stdout is not None
    assert child.stdout.readline().split() == ["pending", "5000"]
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=120)
    assert child.returncode == -signal.SIGTERM
    assert ring_numbers(tmp_path) == []


def test_drain_on_sigterm_outside_main_thread_is_a_config_error() -> None:
    """Asking for the SIGTERM drain from another thread fails with a clear ConfigError."""
    errors: list[BaseException] = []

    def build() -> None:
        try:
            AsyncHandler(Collect(), drain_on_sigterm=True).close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    thread.join(WAIT)
    assert len(errors) == 1 and isinstance(errors[0], mmaplog.ConfigError)
    assert "main thread" in str(errors[0])


SIGKILL_CHILD = '''
N = int(sys.argv[2])
mode = sys.argv[3]
hold = threading.Event()
hold.set()
handler = AsyncHandler(GatedRing(sys.argv[1], gate=hold.is_set), capacity=N, batch_size=256)
half = N // 2
for i in range(half):
    handler.handle(LogRecord("app", 20, "r %d", (i,)))
if mode == "held":
    handler.flush()
    hold.clear()  # the first half is written; the worker now holds back the second
for i in range(half, N):
    handler.handle(LogRecord("app", 20, "r %d", (i,)))
if mode == "flushed":
    handler.flush()
print("enqueued", N, "pending", handler.pending, flush=True)
threading.Event().wait()
'''


@pytest.mark.parametrize("mode", ["held", "running", "flushed"])
def test_sigkill_loses_at_most_what_was_queued(tmp_path: Path, mode: str) -> None:
    """After SIGKILL the ring holds every record but at most the reported queue depth; none after a flush."""
    n = 20_000
    child = run_child(tmp_path, SIGKILL_CHILD, str(n), mode)
    assert child.stdout is not None
    words = child.stdout.readline().split()
    assert words[:2] == ["enqueued", str(n)], child.stderr.read() if child.stderr else ""
    pending = int(words[3])
    child.kill()
    child.communicate(timeout=120)
    found = ring_numbers(tmp_path)
    lost = n - len(found)
    assert found == list(range(len(found)))  # a prefix: what was written is in order and complete
    assert lost <= pending
    if mode == "held":
        assert pending == n - n // 2 and lost == pending
    if mode == "flushed":
        assert pending == 0 and lost == 0


def test_demo_shows_burst_and_trickle(tmp_path: Path) -> None:
    """tools/demo.py prints every burst and trickle record through both the direct and the async handler."""
    demo = Path(__file__).resolve().parent.parent / "tools" / "demo.py"
    proc = subprocess.run([sys.executable, str(demo), str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for kind, count in (("burst", 5), ("trickle", 3)):
        for i in range(1, count + 1):
            assert f"  direct  {kind} record {i}" in lines
            assert f"  async   {kind} record {i}" in lines
    assert any("still queued when the burst's last call returned" in line for line in lines)
    # Each handler prints the records in the order they were logged.
    async_lines = [line for line in lines if line.startswith("  async ")]
    assert async_lines == [f"  async   burst record {i}" for i in range(1, 6)] + [
        f"  async   trickle record {i}" for i in range(1, 4)
    ]


def test_close_gives_up_on_a_hung_inner_handler(handlers: Any, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """close() returns even when an inner handler hangs: the records still queued are counted as dropped."""
    monkeypatch.setattr(async_, "_STOP_STALL_TIMEOUT", 0.3)
    gate = threading.Event()
    inner = Collect(gate)
    handler = handlers(inner)
    handler.handle(rec(0))
    assert inner.entered.wait(WAIT)
    for i in range(1, 6):
        handler.handle(rec(i))
    handler.close()
    assert handler.dropped == 5
    assert inner.closes == 1
    assert "made no progress" in capsys.readouterr().err
    gate.set()


def test_close_from_inside_an_inner_handler_does_not_deadlock(handlers: Any) -> None:
    """An inner handler that closes its own async front returns; the worker then ends."""
    handler: AsyncHandler
    done = threading.Event()

    class Closer(Handler):
        def emit(self, record: LogRecord) -> None:
            handler.close()
            done.set()

    handler = handlers(Closer())
    handler.handle(rec(0))
    assert done.wait(WAIT)
    worker = handler._workers[0].thread
    assert worker is not None
    worker.join(WAIT)
    assert not worker.is_alive() and handler.closed


def test_exit_hook_is_installed_on_first_construction_not_at_import() -> None:
    """Importing mmaplog registers no atexit hook; creating the first AsyncHandler does."""
    code = textwrap.dedent('''
        import atexit
        import logging  # the standard library's own exit hook, registered when it is imported
        before = atexit._ncallbacks()
        import mmaplog
        from mmaplog.testing import CapturingHandler
        after_import = atexit._ncallbacks()
        handler = mmaplog.AsyncHandler(CapturingHandler())
        print(before, after_import, atexit._ncallbacks())
    ''')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    before, after_import, after_handler = map(int, proc.stdout.split())
    assert after_import == before
    assert after_handler > after_import


# ---------------------------------------------------------------------- logging from signal handlers
_SIGNAL_STORM = textwrap.dedent(
    """
    import faulthandler, itertools, json, os, signal, sys, time
    import mmaplog
    from mmaplog import AsyncHandler, ConsoleHandler, FileHandler, Logger, RingHandler

    faulthandler.dump_traceback_later(50, exit=True)      # a hang ends the process with a traceback
    kind, policy, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
    path = os.path.join(tmp, "signal.mmlog")

    class Slow(mmaplog.Handler):                          # a slow sink keeps the small queue full
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
        def emit(self, record):
            time.sleep(0.0001)
            self.inner.handle(record)
        def close(self):
            self.inner.close()

    stream = None
    if kind == "async":
        front = AsyncHandler(Slow(RingHandler(path, size="16 MiB")), capacity=8, overflow=policy, batch_size=4)
    elif kind == "ring":
        front = RingHandler(path, size="16 MiB")
    elif kind == "file":
        front = FileHandler(os.path.join(tmp, "signal.log"), format="{message}")
    else:
        stream = open(os.path.join(tmp, "signal.log"), "w")
        front = ConsoleHandler(stream, format="{message}", colour=False)
    log = Logger("app", handlers=[front])
    counts = {"main": 0, "signal": 0}
    raised = []
    ids = itertools.count()

    depth = [0]

    def on_alarm(signum, frame):
        # A handler runs inside another when the timer fires again meanwhile; on a starved CPU that nests
        # until RecursionError whatever the handler does, so one level at a time (it still interrupts the
        # main thread anywhere in its logging calls).  Each record takes its id before logging.
        if depth[0]:
            return
        depth[0] += 1
        try:
            log.warning("from signal %d", next(ids))
            counts["signal"] += 1
        except BaseException as exc:
            raised.append(repr(exc))
        finally:
            depth[0] -= 1

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        while counts["signal"] < 300 and counts["main"] < 50_000:
            log.info("main %d", counts["main"])
            counts["main"] += 1
    except BaseException as exc:
        raised.append(repr(exc))
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    front.close()
    if stream is not None:
        stream.close()
    if kind in ("async", "ring"):
        found = [r.message for r in mmaplog.read(path) if r.logger == "app"]
    else:
        found = open(os.path.join(tmp, "signal.log")).read().splitlines()
    print(json.dumps({**counts, "raised": raised, "found": len(found), "unique": len(set(found)),
                      "dropped": getattr(front, "dropped", 0), "errors": front.errors}))
    """
)


@pytest.mark.parametrize(("kind", "policy"), [("async", "block"), ("async", "drop_newest"),
                                              ("async", "drop_oldest"), ("ring", ""), ("file", ""),
                                              ("console", "")])
def test_logging_from_a_signal_handler_never_raises_nor_hangs(tmp_path: Path, kind: str, policy: str) -> None:
    """A SIGALRM handler logs every 0.5 ms while the main thread logs flat out: no call raises, none hangs,
    and every record is written once or counted (dropped by the queue, or failed in a console write)."""
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_STORM, kind, policy or "block", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.splitlines()[-1])
    assert res["raised"] == []
    assert res["signal"] > 0 and res["main"] > 0
    assert res["unique"] == res["found"]
    assert res["found"] + res["dropped"] + res["errors"] == res["main"] + res["signal"]
    if kind in ("ring", "file"):
        assert res["found"] == res["main"] + res["signal"]


_REENTRANT_WAIT = textwrap.dedent(
    """
    import faulthandler, json, signal, sys, threading
    from mmaplog import AsyncHandler, Logger
    from mmaplog.testing import CapturingHandler

    faulthandler.dump_traceback_later(50, exit=True)
    gate, in_handler = threading.Event(), threading.Event()

    class Gated(CapturingHandler):
        def emit_batch(self, records):
            gate.wait(30)
            super().emit_batch(records)

    inner = Gated()
    front = AsyncHandler(inner, capacity=2, batch_size=1)
    queue = front._workers[0].queue
    log = Logger("app", handlers=[front])
    outcome = []

    def on_usr1(signum, frame):
        try:
            log.warning("from the signal handler")
            outcome.append("returned")
        except BaseException as exc:
            outcome.append(repr(exc))
        in_handler.set()

    signal.signal(signal.SIGUSR1, on_usr1)
    main = threading.main_thread().ident

    def interrupter():
        # Wait (bounded) until the main thread waits for room in the full queue, then interrupt it there.
        for _ in range(30_000):
            if queue._waiting:
                break
            gate.wait(0.001)
        signal.pthread_kill(main, signal.SIGUSR1)
        in_handler.wait(30)
        gate.set()

    for i in range(3):                 # one in the worker's hands, two queued: full
        log.info("r %d", i)
    helper = threading.Thread(target=interrupter)
    helper.start()
    log.info("blocked until there is room")
    helper.join()
    front.close()
    print(json.dumps({"outcome": outcome, "dropped": front.dropped,
                      "messages": [r.message for r in inner.records if r.logger == "app"]}))
    """
)


def test_a_signal_handler_interrupting_a_wait_for_room_drops_and_counts_its_record() -> None:
    """The main thread waits for room ("block"); a signal handler on it logs: it returns at once, its record counted."""
    proc = subprocess.run([sys.executable, "-c", _REENTRANT_WAIT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.splitlines()[-1])
    assert res["outcome"] == ["returned"]
    assert res["dropped"] == 1
    assert res["messages"] == ["r 0", "r 1", "r 2", "blocked until there is room"]


# ---------------------------------------------------------------------- user code raising BaseException in the worker
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("pure", [False, True])
def test_a_base_exception_from_str_marks_only_its_own_record(tmp_path: Path, handlers: Any,
                                                              exc_type: type[BaseException], pure: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An argument whose __str__ raises KeyboardInterrupt/SystemExit in the worker: its record is kept with a
    marker, the 100 others of the batch are written, one error is counted."""

    class Bad:
        def __str__(self) -> str:
            raise exc_type

    path = tmp_path / "app.mmlog"
    ring = mmaplog.RingHandler(path, size=1 << 20)
    if pure:
        monkeypatch.setattr(ring, "_write_batch", None)  # the per-record Python path
    gate = threading.Event()
    held = Collect(gate)
    front = handlers(ring, held, batch_size=512)
    log = mmaplog.Logger("app", handlers=[front])
    log.info("first")
    assert held.entered.wait(WAIT)
    for i in range(50):
        log.info("rec %d", i)
    log.info("bad %s", Bad())
    for i in range(50, 100):
        log.info("rec %d", i)
    gate.set()
    front.flush()
    messages = [r.message for r in mmaplog.read(path)]
    marker = f"bad %s [mmaplog: unprintable arguments ({exc_type.__name__} in their str())]"
    assert messages == ["first"] + [f"rec {i}" for i in range(50)] + [marker] + [f"rec {i}" for i in range(50, 100)]
    assert front.errors == 1 and ring.errors == 0
    assert len(held.records) == 102
