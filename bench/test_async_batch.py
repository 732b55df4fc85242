"""AsyncHandler benchmarks: the producer's cost per call, and writing a batch into a ring.

Run with ``python -m pytest bench/test_async_batch.py --benchmark-only --benchmark-columns=min,median,rounds``
(add ``-s`` to see the SIGKILL loss figures).

Producer side: :meth:`AsyncHandler.handle` against an empty Python function
(the yardstick: the target is at most ~4x) and ``queue.Queue.put_nowait``.
The worker is held inside a batch while the producer is measured, so the
figures are the append path alone, not GIL contention with a running worker.

Batch side: 512 one-slot records into a ring, three ways: one
:meth:`RingWriter.write` per record, :meth:`RingWriter.write_batch`
(struct-packed bodies joined and copied in one slice, trailers committed with
one strided numpy store), and a fully numpy-assembled batch (structured array
filled column by column, checksums combined from per-message adler32 values),
kept here because it lost: it is the variant the batch design was measured
against.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmaplog
from mmaplog import layout as L
from mmaplog._record import LogRecord
from mmaplog.handlers._base import Handler

BATCH = 512
CALLS = 2_000  # short rounds: a 4 ms scheduler tick on a busy machine spoils fewer of them


def empty(record: Any) -> None:
    """The yardstick: an empty Python function call."""


class Held(Handler):
    """Holds the worker inside its first batch until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def emit(self, record: LogRecord) -> None:
        self.release.wait()


@pytest.fixture
def busy_handler() -> Iterator[mmaplog.AsyncHandler]:
    """An AsyncHandler whose worker is busy (held), with room for every call of the benchmark."""
    held = Held()
    handler = mmaplog.AsyncHandler(held, capacity=1 << 26, overflow="drop_newest")
    handler.handle(LogRecord("app", 20, "first"))
    yield handler
    held.release.set()
    handler.close()


def run_calls(call: Any, record: LogRecord) -> None:
    for _ in itertools.repeat(None, CALLS):
        call(record)


def test_empty_function_call(benchmark: Any) -> None:
    """Baseline: CALLS empty function calls."""
    benchmark(run_calls, empty, LogRecord("app", 20, "x"))


def test_async_handle_producer(benchmark: Any, busy_handler: mmaplog.AsyncHandler) -> None:
    """AsyncHandler.handle while the worker is busy: level check, length check, deque append."""
    benchmark(run_calls, busy_handler.handle, LogRecord("app", 20, "x"))


def test_stdlib_queue_put_nowait(benchmark: Any) -> None:
    """queue.Queue.put_nowait: a lock and a condition per call."""
    q: queue.Queue[LogRecord] = queue.Queue()
    benchmark(run_calls, q.put_nowait, LogRecord("app", 20, "x"))


def test_async_handle_waking_an_idle_worker(benchmark: Any) -> None:
    """One record at a time into an idle handler: each call pays the wake-up (the slow-trickle case)."""

    class Nothing(Handler):
        def emit(self, record: LogRecord) -> None:
            pass

    handler = mmaplog.AsyncHandler(Nothing(), flush_interval=None)
    record = LogRecord("app", 20, "x")
    queue_ = handler._workers[0].queue
    pause = threading.Event()

    def until_asleep() -> None:  # not timed: let the worker fall asleep again (without holding the GIL)
        while not queue_.idle:
            pause.wait(0.0001)

    benchmark.pedantic(handler.handle, args=(record,), setup=until_asleep, rounds=2000)
    handler.close()


# ---------------------------------------------------------------------- batch into a ring
@pytest.fixture
def ring(tmp_path: Path) -> Iterator[mmaplog.RingWriter]:
    writer = mmaplog.RingWriter(tmp_path / "bench.mmlog", "16 MiB")
    writer.write("first", logger="app")
    yield writer
    writer.close()


def batch_records() -> list[LogRecord]:
    now, tid = time.time_ns(), threading.get_ident()
    records = [LogRecord("app", 20, "request %d handled in %d ms by worker-%d", (i, i * 3, i % 7), None, now + i, tid)
               for i in range(BATCH)]
    for r in records:
        _ = r.message  # formatting is the same in every variant: leave it out of the comparison
    return records


def per_record(writer: mmaplog.RingWriter, records: list[LogRecord]) -> None:
    write = writer.write
    for r in records:
        write(r.message, level=r.level, logger=r.logger, fields=r.fields, time_ns=r.time_ns, thread=r.thread,
              exception=r.exception)


def numpy_assembled(writer: mmaplog.RingWriter, records: list[LogRecord]) -> None:
    """Build the whole batch as a structured array, column by column, and copy it in (one-slot records only)."""
    m = writer._map
    mm, _, count, base, size, body_len, _, _, positions = m.hot
    n = len(records)
    names = writer._names
    encoded = [r.message.encode() for r in records]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    seqs = np.array(list(itertools.islice(writer._seqs, n)), dtype=np.uint64)
    pos = np.array(list(itertools.islice(positions, n)), dtype=np.uint64)
    slots = np.zeros(n, dtype=L.slot_dtype(size))
    slots["pos"], slots["seq"] = pos, seqs
    slots["time_ns"] = np.array([r.time_ns for r in records], dtype=np.int64)
    slots["thread"] = np.array([r.thread for r in records], dtype=np.uint64)
    slots["rec_len"] = slots["msg_len"] = slots["length"] = lengths
    slots["logger_id"] = np.array([names[r.logger] for r in records], dtype=np.uint16)
    slots["level"] = np.array([r.level for r in records], dtype=np.uint8)
    slots["flags"] = L.FLAG_FIRST | L.FLAG_LAST
    slots["payload"] = encoded
    # The format 2.x check: CRC-32 of each slot's header and message (the padding is zero, not summed).
    rows = slots.view(np.uint8).reshape(n, size)
    checks = np.array([zlib.crc32(rows[i, : L.SLOT_HEADER_SIZE + int(lengths[i])]) for i in range(n)], dtype=np.uint64)
    trailers = checks | ((pos & np.uint64(0xFFFFFFFF)) << np.uint64(32))
    first = int(pos[0] - 1) % count
    split = min(n, count - first)
    flat = memoryview(slots).cast("B")
    for start, stop, slot in ((0, split, first), (split, n, 0)):
        if start < stop:
            off = base + slot * size
            mm[off : off + (stop - start) * size] = flat[start * size : stop * size]
            view = np.ndarray((stop - start,), dtype="<u8", buffer=mm, offset=off + body_len, strides=(size,))
            view[:] = trailers[start:stop]
            del view


@pytest.mark.parametrize("variant", ["per_record", "write_batch", "numpy_assembled"])
def test_batch_into_ring(benchmark: Any, ring: mmaplog.RingWriter, variant: str) -> None:
    """512 one-slot records into a 16 MiB ring (divide the time by 512 for the cost per record)."""
    records = batch_records()
    run = {
        "per_record": lambda: per_record(ring, records),
        "write_batch": lambda: ring.write_batch(records),
        "numpy_assembled": lambda: numpy_assembled(ring, records),
    }[variant]
    benchmark(run)
    result = mmaplog.scan(ring.path)
    assert result.stats.invalid == 0 and result.records.size > 0


# ---------------------------------------------------------------------- the SIGKILL loss window
LOSS_CHILD = """
import sys, mmaplog
from mmaplog._record import LogRecord
n, capacity = int(sys.argv[2]), int(sys.argv[3])
handler = mmaplog.AsyncHandler(mmaplog.RingHandler(sys.argv[1], size=64 << 20), capacity=capacity)
log = mmaplog.Logger("app", handlers=[handler])
for i in range(n):
    log.info("request %d handled in %d ms", i, i % 97)
print(handler.pending, flush=True)
import threading; threading.Event().wait()
"""


@pytest.mark.parametrize("capacity", [1024, 16384])
def test_sigkill_loss_right_after_a_burst(benchmark: Any, scale: Any, tmp_path: Path, capacity: int) -> None:
    """A burst through Logger -> AsyncHandler -> RingHandler in a child, SIGKILL as soon as its last call returns.

    Prints (and keeps in ``extra_info``) the queue depth the child saw when its
    last call returned and how many records the ring is missing: the loss
    window is what was still queued.  The time measured is one whole run.
    """
    import subprocess
    import sys

    n = 100_000 if scale.full else 5_000
    path = tmp_path / "loss.mmlog"
    losses: list[tuple[int, int]] = []

    def run() -> None:
        child = subprocess.Popen([sys.executable, "-c", LOSS_CHILD, str(path), str(n), str(capacity)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        pending = int(child.stdout.readline())
        child.kill()
        child.wait()
        lost = n - len(mmaplog.read_array(path))
        losses.append((pending, lost))
        path.unlink()

    benchmark.pedantic(run, rounds=5 if scale.full else 1, iterations=1)
    benchmark.extra_info.update(records=n, capacity=capacity, pending_and_lost=losses)
    print(f"\ncapacity {capacity}, {n} records: (pending when the burst returned, lost after SIGKILL) = {losses}")
    assert all(lost <= pending for pending, lost in losses)
