"""AsyncHandler's native queue (mmaplog/_casync.c): same records as the Python worker, same contract.

The native queue takes over when the only inner handler is a plain RingHandler;
the Python worker stays the reference.  These tests compare the two on disk
(after decoding), and check the policies, drop counts, flush/close, fork, exit
and SIGKILL with the native worker, and that it does not take the GIL for plain
records.
"""

from __future__ import annotations

import math
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmaplog
from mmaplog.handlers import async_
from mmaplog.handlers.async_ import AsyncHandler

pytestmark = pytest.mark.skipif(async_._casync is None, reason="the native queue is not built or is turned off")

WAIT = 30.0
ROOT = Path(__file__).resolve().parents[1]


def records(path: Path) -> list[tuple[Any, ...]]:
    """What a reader sees of each record, minus what differs between two runs (time, seq, pid, source)."""
    return [(r.level, r.logger, r.message, r.fields, r.exception, r.thread) for r in mmaplog.read(str(path))]


def native_handler(path: Path, **options: Any) -> AsyncHandler:
    handler = AsyncHandler(mmaplog.RingHandler(str(path), size="4MB"), **options)
    assert handler.native
    return handler


def warm(handler: AsyncHandler, name: str = "app") -> None:
    """Register ``name`` in the ring (its first record goes through the writer's Python path) and wait for it."""
    handler.handle(mmaplog.LogRecord(name, 10, "warm", (), None, 0, 0))
    handler.flush()


@pytest.fixture
def python_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AsyncHandlers made inside use the Python worker."""
    monkeypatch.setattr(async_, "_casync", None)
    yield


def wait_for(condition: Any, timeout: float = WAIT) -> bool:
    """Poll ``condition`` until it holds (an event would be better, but the worker is not a Python thread)."""
    event = threading.Event()
    deadline = timeout
    step = 0.001
    while deadline > 0:
        if condition():
            return True
        event.wait(step)
        deadline -= step
        step = min(step * 2, 0.05)
    return bool(condition())


# ---------------------------------------------------------------------- which configurations go native

def test_a_single_ring_handler_goes_native_and_others_keep_the_python_worker(tmp_path: Path) -> None:
    ring = mmaplog.RingHandler(str(tmp_path / "a.mmlog"), size="1MB")
    assert AsyncHandler(ring).native
    for policy in ("drop_newest", "drop_oldest"):
        every = AsyncHandler(mmaplog.RingHandler(str(tmp_path / f"{policy}.mmlog"), size="1MB"), overflow=policy)
        assert every.native
        every.close()
    for options in ({"workers": 2},):
        handler = AsyncHandler(mmaplog.RingHandler(str(tmp_path / f"{len(options)}{options}.mmlog"), size="1MB"),
                               **options)
        assert not handler.native
        handler.close()
    two = AsyncHandler(mmaplog.RingHandler(str(tmp_path / "b.mmlog"), size="1MB"),
                       mmaplog.RingHandler(str(tmp_path / "c.mmlog"), size="1MB"))
    assert not two.native
    two.close()
    formatted = AsyncHandler(mmaplog.RingHandler(str(tmp_path / "d.mmlog"), size="1MB", format="{level} {message}"))
    assert not formatted.native
    formatted.close()


# ---------------------------------------------------------------------- differential: native vs Python worker

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
scalars = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), texts,
                    st.booleans(), st.none(), st.lists(st.integers(), max_size=3))
calls = st.lists(
    st.tuples(
        st.sampled_from(["plain", "%d", "%s", "%.2f", "%f", "%r", "%5d", "%x", "%s %s", "long", "fields", "exc",
                         "bad"]),
        st.lists(scalars, min_size=0, max_size=3),
        st.sampled_from(["app", "app.db", "other", "ünï"]),
        st.sampled_from(["debug", "info", "warning", "error"]),
    ),
    min_size=1, max_size=25,
)


def play(log_for: Any, script: list[tuple[str, list[Any], str, str]]) -> None:
    """Log ``script`` (kind, arguments, logger, level) through loggers made by ``log_for(name)``."""
    for kind, args, name, level in script:
        method = getattr(log_for(name), level)
        if kind == "plain":
            method("plain message")
        elif kind == "long":
            method("x" * 500 + " %s", *(args[:1] or ["end"]))
        elif kind == "fields":
            method("with fields %s", "a", order=len(args), tags=[str(a) for a in args])
        elif kind == "exc":
            try:
                raise ValueError(f"boom {len(args)}")
            except ValueError:
                method("failed", exc_info=True)
        elif kind == "bad":
            method("%d needs an int", "not an int")
        else:
            count = kind.count("%")
            values = (args + [1, 2, 3])[:count]
            method(kind, *values)


@pytest.mark.parametrize("policy", ["block", "drop_oldest"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=calls)
def test_native_and_python_workers_write_the_same_records(tmp_path_factory: pytest.TempPathFactory, policy: str,
                                                          script: list[tuple[str, list[Any], str, str]]) -> None:
    folder = tmp_path_factory.mktemp("diff")
    written = []
    for native in (True, False):
        path = folder / f"{native}.mmlog"
        saved = async_._casync
        if not native:
            async_._casync = None
        try:
            handler = AsyncHandler(mmaplog.RingHandler(str(path), size="1MB"), overflow=policy)
        finally:
            async_._casync = saved
        assert handler.native is native
        loggers: dict[str, mmaplog.Logger] = {}

        def log_for(name: str, loggers: dict[str, mmaplog.Logger] = loggers, handler: AsyncHandler = handler) -> Any:
            if name not in loggers:
                loggers[name] = mmaplog.Logger(name, handlers=[handler], level="DEBUG")
            return loggers[name]

        play(log_for, script)
        handler.close()
        written.append(records(path))
    assert written[0] == written[1]
    assert len(written[0]) == len(script)


def test_floats_format_as_python_does(tmp_path: Path) -> None:
    """The C formatter's %f and %.Nf against Python's own % for awkward values (both paths run it)."""
    values = [0.0, -0.0, 0.5, 1.5, 2.5, 1e16, 1e-7, 123456789.125, math.pi, -math.e, 9.995, 1e300, float("inf"),
              float("nan"), 5e-324]
    path = tmp_path / "f.mmlog"
    handler = native_handler(path)
    log = mmaplog.Logger("app", handlers=[handler])
    for value in values:
        for fmt in ("%f", "%.0f", "%.2f", "%.10f"):
            log.info(fmt, value)
    handler.close()
    expected = [fmt % value for value in values for fmt in ("%f", "%.0f", "%.2f", "%.10f")]
    assert [r[2] for r in records(path)] == expected


def test_fixed_point_floats_match_python_on_a_large_sample(tmp_path: Path) -> None:
    """The producer's integer-arithmetic %.Nf against Python's own %, ties and near-ties included."""
    rng = random.Random(14)
    values: list[float] = []
    for _ in range(6000):
        p = rng.randrange(0, 8)
        values.append(rng.randrange(-10**9, 10**9) / 10**p)  # decimals as typed: prices, measures
        values.append((rng.randrange(-10**6, 10**6) + 0.5) / 10**p)  # exact ties and their neighbours
        values.append(struct.unpack("<d", rng.randbytes(8))[0])  # any bit pattern
        values.append(rng.uniform(-1e12, 1e12))
        values.append(math.ldexp(rng.random(), rng.randrange(-60, 45)))
    values += [0.125, 0.375, 2.5, 3.5, -2.5, 1.005, 1.015, 2.675, 1e-300, -1e-300, 1099511627775.5, 2.0**40]
    path = tmp_path / "fx.mmlog"
    handler = AsyncHandler(mmaplog.RingHandler(str(path), size="64MB"), capacity=1 << 16)
    assert handler.native
    log = mmaplog.Logger("app", handlers=[handler])
    expected = []
    for i, value in enumerate(values):
        fmt = f"%.{i % 14}f" if i % 15 else "%f"
        log.info(fmt, value)
        expected.append(fmt % value)
    handler.close()
    got = [r[2] for r in records(path)]
    mismatches = [(values[i], e, g) for i, (e, g) in enumerate(zip(expected, got, strict=True)) if e != g]
    assert not mismatches[:10]


def test_records_from_handle_keep_their_time_and_thread(tmp_path: Path) -> None:
    path = tmp_path / "h.mmlog"
    handler = native_handler(path)
    handler.handle(mmaplog.LogRecord("app", 30, "n=%d", (7,), None, 123456789, 42))
    handler.close()
    [record] = list(mmaplog.read(str(path)))
    assert (record.message, record.level, record.time_ns, record.thread) == ("n=7", 30, 123456789, 42)


# ---------------------------------------------------------------------- policies and drop counts

def test_queued_and_direct_records_share_the_writers_counters(tmp_path: Path) -> None:
    """The queue claims seq and slot from the writer's own counters: records the writer takes directly in between
    go on from where the queue left them, and the writer's counters go on after the queue's claims."""
    path = tmp_path / "s.mmlog"
    ring = mmaplog.RingHandler(str(path), size="1MB")
    handler = AsyncHandler(ring, flush_interval=None)
    assert handler.native
    log = mmaplog.Logger("app", handlers=[handler])
    direct = mmaplog.Logger("app", handlers=[ring])
    warm(handler)
    expected = []
    for i in range(300):
        if i % 7 == 3:
            direct.info("direct %d", i)  # the writer's own path, with the GIL, between two queued records
            expected.append(f"direct {i}")
        else:
            log.info("queued %d", i)
            expected.append(f"queued {i}")
    handler.flush()
    seqs = ring.writer._seqs
    nxt = next(seqs)
    handler.close()
    got = list(mmaplog.read(str(path)))[1:]
    assert [r.message for r in got] == expected
    assert [r.seq for r in got] == list(range(got[0].seq, got[0].seq + 300))
    assert nxt == got[-1].seq + 1


@pytest.mark.parametrize("extra", [1, 37])
def test_drop_newest_counts_exactly_and_writes_the_drop_record(tmp_path: Path, extra: int) -> None:
    path = tmp_path / "d.mmlog"
    handler = native_handler(path, capacity=64, overflow="drop_newest", flush_interval=None)
    log = mmaplog.Logger("app", handlers=[handler])
    warm(handler)
    handler._native.pause(True)
    for i in range(64 + extra):
        log.info("r %d", i)
    assert handler.dropped == extra
    assert handler.pending == 64
    handler._native.pause(False)
    handler.flush()
    handler.close()
    got = list(mmaplog.read(str(path)))[1:]
    assert [r.message for r in got[:64]] == [f"r {i}" for i in range(64)]
    warning = got[64]
    assert warning.logger == "mmaplog" and warning.level == 30 and warning.fields == {"dropped": extra}
    assert warning.message.startswith(f"dropped {extra} record")
    assert len(got) == 65


@pytest.mark.parametrize("extra", [1, 37])
def test_drop_oldest_keeps_the_newest_counts_exactly_and_writes_the_drop_record(tmp_path: Path, extra: int) -> None:
    path = tmp_path / "o.mmlog"
    ring = mmaplog.RingHandler(str(path), size="128KB")
    handler = AsyncHandler(ring, capacity=64, overflow="drop_oldest", flush_interval=None)
    assert handler.native
    log = mmaplog.Logger("app", handlers=[handler])
    warm(handler)
    slots = ring.writer.slot_count
    fill = mmaplog.Logger("fill", handlers=[handler])
    for i in range(2 * slots):  # every slot holds a record of the lap before
        fill.info("fill %d", i)
        if i % 32 == 31:
            handler.flush()
    handler.flush()
    assert handler.dropped == 0
    handler._native.pause(True)
    for i in range(64 + extra):
        log.info("r %d", i)
    assert handler.dropped == extra
    assert handler.pending == 64
    handler._native.pause(False)
    handler.flush()
    handler.close()
    everything = list(mmaplog.read(str(path)))
    got = [r for r in everything if r.logger != "fill"]
    assert [r.message for r in got[:64]] == [f"r {i}" for i in range(extra, 64 + extra)]
    warning = got[64]
    assert warning.logger == "mmaplog" and warning.level == 30 and warning.fields == {"dropped": extra}
    assert warning.message.startswith(f"dropped {extra} record") and "drop_oldest" in warning.message
    assert len(got) == 65
    # the dropped records' slots hold no record: neither theirs nor the one of the lap before
    assert len(everything) == slots - extra


class GatedRing(mmaplog.RingHandler):
    """A ring whose Python worker holds its first batch until ``gate`` opens (a slowed drain)."""

    def __init__(self, path: str, gate: threading.Event, entered: threading.Event) -> None:
        super().__init__(path, size="1MB")
        self.gate = gate
        self.entered = entered

    def emit_batch(self, records: list[Any]) -> None:
        self.entered.set()
        self.gate.wait(WAIT)
        super().emit_batch(records)


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_policies_under_a_slowed_drain_match_the_python_worker(tmp_path: Path, policy: str) -> None:
    """Record 0 in the worker's hands, then 40 more into a queue of 8: both workers keep and drop the same ones."""
    kept = {"drop_newest": list(range(9)), "drop_oldest": [0, *range(33, 41)]}[policy]
    found = []
    for native in (True, False):
        path = tmp_path / f"{native}.mmlog"
        gate, entered = threading.Event(), threading.Event()
        if native:
            handler = native_handler(path, capacity=8, overflow=policy, flush_interval=None)
        else:
            saved = async_._casync
            async_._casync = None
            try:
                handler = AsyncHandler(GatedRing(str(path), gate, entered), capacity=8, overflow=policy,
                                       batch_size=1, flush_interval=None)
            finally:
                async_._casync = saved
        log = mmaplog.Logger("app", handlers=[handler])
        log.info("r %d", 0)
        if native:
            handler.flush()  # record 0 written: the worker is past it, as the Python worker holding it
            handler._native.pause(True)
        else:
            assert entered.wait(WAIT)
        for i in range(1, 41):
            log.info("r %d", i)
        assert handler.dropped == 32
        if native:
            handler._native.pause(False)
        gate.set()
        handler.flush()
        handler.close()
        got = records(path)
        warnings = [r[:5] for r in got if r[1] == "mmaplog"]  # written by each worker's own thread, when it can
        found.append(([r for r in got if r[1] == "app"], warnings))
        assert [m for _, name, m, *_ in got if name == "app"] == [f"r {i}" for i in kept]
        assert len(warnings) == 1 and warnings[0][3] == {"dropped": 32}
    assert found[0] == found[1]


def test_drop_oldest_under_concurrent_producers_and_a_live_worker(tmp_path: Path) -> None:
    """Four threads into a tiny queue while the worker drains: written + dropped is exact, each thread's records
    keep their order, and every drop is accounted for by the warnings."""
    path = tmp_path / "live.mmlog"
    handler = AsyncHandler(mmaplog.RingHandler(str(path), size="16MB"), capacity=8, overflow="drop_oldest")
    assert handler.native
    log = mmaplog.Logger("app", handlers=[handler])
    warm(handler)
    per_thread = 5000
    threads = [threading.Thread(target=lambda t=t: [log.info("t%d %d", t, i) for i in range(per_thread)])
               for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    handler.flush()
    dropped = handler.dropped
    handler.close()
    got = list(mmaplog.read(str(path)))[1:]
    plain = [r for r in got if r.logger == "app"]
    assert len(plain) + dropped == 4 * per_thread
    assert sum(r.fields["dropped"] for r in got if r.logger == "mmaplog") == dropped
    for t in range(4):
        mine = [int(r.message.split()[1]) for r in plain if r.message.startswith(f"t{t} ")]
        assert mine == sorted(mine) and len(set(mine)) == len(mine)


def test_block_makes_the_producer_wait_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.mmlog"
    handler = native_handler(path, capacity=16, overflow="block")
    log = mmaplog.Logger("app", handlers=[handler])
    warm(handler)
    handler._native.pause(True)
    done = threading.Event()

    def produce() -> None:
        for i in range(40):
            log.info("r %d", i)
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    assert wait_for(lambda: handler._native.waiters == 1), "the producer never waited for room"
    assert not done.is_set() and handler.pending == 16
    handler._native.pause(False)
    assert done.wait(WAIT)
    thread.join(WAIT)
    handler.close()
    assert [r[2] for r in records(path)][1:] == [f"r {i}" for i in range(40)]
    assert handler.dropped == 0


def test_exact_drop_count_with_concurrent_producers(tmp_path: Path) -> None:
    path = tmp_path / "c.mmlog"
    handler = native_handler(path, capacity=100, overflow="drop_newest", flush_interval=None)
    log = mmaplog.Logger("app", handlers=[handler])
    warm(handler)
    handler._native.pause(True)
    threads = [threading.Thread(target=lambda t=t: [log.info("t%d %d", t, i) for i in range(500)]) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert handler.dropped == 2000 - 100
    handler._native.pause(False)
    handler.close()
    got = list(mmaplog.read(str(path)))[1:]
    assert len(got) == 101 and got[-1].fields == {"dropped": 1900}
    for t in range(4):  # each thread's records keep their order
        mine = [int(r.message.split()[1]) for r in got[:-1] if r.message.startswith(f"t{t} ")]
        assert mine == sorted(mine)


def test_records_after_close_are_counted_as_dropped(tmp_path: Path) -> None:
    handler = native_handler(tmp_path / "x.mmlog")
    log = mmaplog.Logger("app", handlers=[handler])
    log.info("before")
    handler.close()
    log.info("after %d", 1)
    handler.handle(mmaplog.LogRecord("app", 20, "after", (), None, 0, 0))
    assert handler.dropped == 2
    assert [r[2] for r in records(tmp_path / "x.mmlog")] == ["before"]


def race_close(path: Path) -> tuple[int, int, list[Any]]:
    """Four threads log while close() runs; returns (calls made, dropped, records in the ring)."""
    handler = AsyncHandler(mmaplog.RingHandler(str(path), size="64MB"), capacity=1 << 12)
    log = mmaplog.Logger("app", handlers=[handler])
    warm(handler)
    started = threading.Barrier(5)
    stop = threading.Event()
    counts = [0] * 4

    def produce(slot: int) -> None:
        started.wait()
        while not stop.is_set():
            log.info("t%d %d", slot, counts[slot])
            counts[slot] += 1

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    assert wait_for(lambda: sum(counts) > 2000)
    handler.close()
    stop.set()
    for thread in threads:
        thread.join(WAIT)
    return sum(counts), handler.dropped, list(mmaplog.read(str(path)))


def test_close_racing_producers_loses_nothing_silently(tmp_path: Path) -> None:
    """Every call made while close() runs is either in the ring or counted as dropped."""
    for attempt in range(3):
        calls, dropped, got = race_close(tmp_path / f"race{attempt}.mmlog")
        # The ring may have wrapped: the last seq counts what was written.
        warnings = [r for r in got if r.logger == "mmaplog"]  # "dropped N records": calls that found it closing
        assert sum(r.fields["dropped"] for r in warnings) <= dropped
        assert got[-1].seq - 1 - len(warnings) + dropped == calls


def test_flush_covers_every_record_logged_before_it(tmp_path: Path) -> None:
    path = tmp_path / "f.mmlog"
    handler = native_handler(path, capacity=1 << 14)
    log = mmaplog.Logger("app", handlers=[handler])
    for round_ in range(5):
        for i in range(1000):
            log.info("r %d %d", round_, i)
        handler.flush()
        assert handler.pending == 0
        assert len(records(path)) == 1000 * (round_ + 1)
    handler.close()


def test_the_worker_does_not_take_the_gil_for_plain_records(tmp_path: Path) -> None:
    handler = native_handler(tmp_path / "g.mmlog", capacity=1 << 14, flush_interval=None)
    log = mmaplog.Logger("app", handlers=[handler])
    for i in range(20000):
        log.info("order %d paid %.2f by %s", i, 9.5, "bob")
    handler.flush()
    assert handler._native.gil_takes == 0
    handler.close()


def test_rotation_keeps_every_record_in_order(tmp_path: Path) -> None:
    path = tmp_path / "r.mmlog"
    handler = AsyncHandler(mmaplog.RingHandler(str(path), size="64KB", rotate=20), capacity=4096)
    assert handler.native
    log = mmaplog.Logger("app", handlers=[handler])
    n = 3000  # 256-byte slots, 64 KB files: about a dozen rotations
    for i in range(n):
        log.info("r %d", i)
    handler.close()
    assert len(list(tmp_path.glob("r.mmlog.*"))) >= 10  # it did rotate
    got = list(mmaplog.read(str(path)))  # the whole series
    assert [r.message for r in got] == [f"r {i}" for i in range(n)]
    assert [r.seq for r in got] == list(range(1, n + 1))


# ---------------------------------------------------------------------- processes: exit, fork, SIGKILL

def run(body: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(body), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_everything_queued_is_written_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "e.mmlog"
    child = run("""
        import sys, mmaplog
        handler = mmaplog.AsyncHandler(mmaplog.RingHandler(sys.argv[1], size="16MB"), capacity=100000)
        assert handler.native
        log = mmaplog.Logger("app", handlers=[handler])
        for i in range(20000):
            log.info("r %d", i)
    """, str(path))
    _, err = child.communicate(timeout=WAIT * 2)
    assert child.returncode == 0, err
    assert [r[2] for r in records(path)] == [f"r {i}" for i in range(20000)]


def test_forked_and_multiprocessing_children_log_through_their_own_files(tmp_path: Path) -> None:
    child = run("""
        import multiprocessing, os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a process with threads (3.12+)
        import mmaplog
        folder = sys.argv[1]
        handler = mmaplog.AsyncHandler(mmaplog.RingHandler(folder + "/{pid}.mmlog", size="1MB"))
        assert handler.native
        log = mmaplog.Logger("app", handlers=[handler])
        log.info("parent before")

        def work(tag):
            assert not handler.native  # the parent's worker thread is not in this process
            for i in range(100):
                log.info("%s %d", tag, i)

        pid = os.fork()
        if pid == 0:
            work("forked")
            handler.close()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        ctx = multiprocessing.get_context("fork")
        proc = ctx.Process(target=work, args=("mp",))
        proc.start()
        proc.join()
        assert proc.exitcode == 0
        log.info("parent after")
        print(pid, proc.pid, os.getpid())
    """, str(tmp_path))
    out, err = child.communicate(timeout=WAIT * 2)
    assert child.returncode == 0, err
    forked, mp, parent = out.split()
    assert [r[2] for r in records(tmp_path / f"{parent}.mmlog")] == ["parent before", "parent after"]
    assert [r[2] for r in records(tmp_path / f"{forked}.mmlog")] == [f"forked {i}" for i in range(100)]
    assert [r[2] for r in records(tmp_path / f"{mp}.mmlog")] == [f"mp {i}" for i in range(100)]


def test_sigkill_loses_at_most_what_was_pending(tmp_path: Path) -> None:
    path = tmp_path / "k.mmlog"
    child = run("""
        import sys, mmaplog
        handler = mmaplog.AsyncHandler(mmaplog.RingHandler(sys.argv[1], size="8MB"), capacity=50000)
        log = mmaplog.Logger("app", handlers=[handler])
        n = 0
        for n in range(1, 30001):
            log.info("r %d", n)
        handler._native.pause(True)  # the worker stops writing: what is pending now is what SIGKILL loses
        for m in range(n + 1, n + 1001):
            log.info("r %d", m)
        print(n + 1000, handler.pending, flush=True)
        sys.stdin.read()
    """, str(path), stdin=subprocess.PIPE)
    assert child.stdout is not None
    logged, pending = map(int, child.stdout.readline().split())
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=WAIT)
    got = [int(r[2].split()[1]) for r in records(path)]
    assert pending >= 1000
    assert len(got) >= logged - pending
    assert got == list(range(1, len(got) + 1))  # no holes in what survived: a prefix of the calls


def test_pure_python_keeps_the_python_worker(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import sys, mmaplog; h = mmaplog.AsyncHandler(mmaplog.RingHandler(sys.argv[1])); "
         "print(h.native); h.close()", str(tmp_path / "p.mmlog")],
        env=dict(os.environ, PYTHONPATH=str(ROOT), MMAPLOG_PURE_PYTHON="1"), capture_output=True, text=True,
        timeout=WAIT)
    assert child.stdout.strip() == "False", child.stderr


@pytest.mark.parametrize("pid", ["-{pid}", ""])
def test_a_ring_fed_by_the_native_queue_is_released_when_reconfigured_away(tmp_path: Path, pid: str) -> None:
    """async -> sync on another ring -> async on the first ring again, in one process.

    The native queue held a buffer export of the first ring's mapping after it stopped, so closing the ring
    could not unmap it, mmap's own duplicate of the descriptor stayed open, and with it the ring's lock: the third
    configuration was refused ("already open for writing by another writer") on the process's own file.
    """
    def table(ring: str, use_async: bool) -> dict[str, Any]:
        handler: dict[str, Any] = {"type": "ring", "path": str(tmp_path / f"{ring}{pid}.mmlog"), "size": "1 MiB"}
        return {"level": "INFO", "handlers": [{"type": "async", "handlers": [handler]} if use_async else handler]}

    log = mmaplog.get_logger("app.reload")
    try:
        mmaplog.configure(table("B", True))
        assert any(isinstance(h, AsyncHandler) and h.native for h in _tracked_async())
        log.info("first %d", 1)
        mmaplog.configure(table("A", False))
        log.info("second %d", 2)
        mmaplog.configure(table("B", True))  # raised ConfigError
        log.info("third %d", 3)
    finally:
        mmaplog.configure({"handlers": []})
    b = tmp_path / f"B{pid.replace('{pid}', str(os.getpid()))}.mmlog"
    assert [r.message for r in mmaplog.read(b)] == ["first 1", "third 3"]


def _tracked_async() -> list[AsyncHandler]:
    from mmaplog import _lifecycle

    return [h for h in list(_lifecycle._tracked) if isinstance(h, AsyncHandler)]
