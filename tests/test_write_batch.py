"""RingWriter.write_batch: same records as write() one by one, fewer copies, same commit protocol."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import mmaplog
from mmaplog import _batch
from mmaplog import writer as writer_module
from mmaplog._record import LogRecord

SLOT = 128  # small slots: 72 payload bytes, so long records are easy to make


def case_records() -> list[LogRecord]:
    """Records that take every path: one-slot, fields, traceback, long, odd text, new logger, bad level."""
    tid = threading.get_ident()
    return [
        LogRecord("app", 20, "plain %d", (1,), None, 1_000, tid),
        LogRecord("app", 30, "with fields", (), {"user": "ann", "n": 3}, 2_000, tid),
        LogRecord("app.db", 40, "with traceback", (), None, 3_000, tid, "Traceback ...\nValueError: x"),
        LogRecord("app", 20, "long " + "x" * 300, (), None, 4_000, tid),
        LogRecord("app", 20, "lone \udc80 surrogate", (), None, 5_000, tid),
        LogRecord("a" * 80, 20, "logger name too long for the table", (), None, 6_000, tid),
        LogRecord("app", 300, "level out of range", (), None, 7_000, tid),
        LogRecord("app", 20, 12345, (), None, 8_000, tid),
        LogRecord("app", 20, "empty fields", (), {}, 9_000, tid),
        LogRecord("app", 10, "plain again", (), None, 10_000, 7),
    ]


def as_tuples(path: Path) -> list[tuple[Any, ...]]:
    return [
        (r.seq, r.time_ns, r.level, r.logger, r.thread, r.message, r.fields, r.exception, r.flags)
        for r in mmaplog.read(path)
    ]


def write_each(writer: mmaplog.RingWriter, records: list[LogRecord]) -> None:
    for r in records:
        writer.write(r.message, level=r.level, logger=r.logger, fields=r.fields, time_ns=r.time_ns,
                     thread=r.thread, exception=r.exception)


def test_batch_reads_back_exactly_like_single_writes(tmp_path: Path) -> None:
    """Every kind of record written by write_batch reads back identical to the same records written by write()."""
    records = case_records() * 3
    with mmaplog.RingWriter(tmp_path / "one.mmlog", 64 * SLOT, slot_size=SLOT) as single:
        write_each(single, records)
    with mmaplog.RingWriter(tmp_path / "batch.mmlog", 64 * SLOT, slot_size=SLOT) as batch:
        assert batch.write_batch(records) == len(records)
    expected = as_tuples(tmp_path / "one.mmlog")
    assert len(expected) == len(records)
    assert as_tuples(tmp_path / "batch.mmlog") == expected


def test_batch_continues_sequence_numbers_of_single_writes(tmp_path: Path) -> None:
    """Single writes and batches share one sequence: no gap, no repeat."""
    with mmaplog.RingWriter(tmp_path / "r.mmlog", 64 * SLOT, slot_size=SLOT) as w:
        w.write("first", logger="app")
        w.write_batch([LogRecord("app", 20, "b%d", (i,), None, i, 1) for i in range(5)])
        w.write("last", logger="app")
    found = list(mmaplog.read(tmp_path / "r.mmlog"))
    assert [r.seq for r in found] == list(range(1, 8))
    assert [r.message for r in found] == ["first", "b0", "b1", "b2", "b3", "b4", "last"]


@pytest.mark.parametrize("count", [3, 8, 13, 21])
def test_batch_wraps_the_ring(tmp_path: Path, count: int) -> None:
    """A batch that runs past the ring's end (or laps it) leaves exactly the newest slots, all valid."""
    path = tmp_path / "r.mmlog"
    with mmaplog.RingWriter(path, 8 * SLOT, slot_size=SLOT) as w:
        w.write_batch([LogRecord("app", 20, "pre %d", (i,), None, i, 1) for i in range(5)])
        w.write_batch([LogRecord("app", 20, "m %d", (i,), None, 100 + i, 1) for i in range(count)])
    result = mmaplog.scan(path)
    assert result.stats.invalid == 0
    messages = [r.message for r in result.iter_records()]
    expected = ([f"pre {i}" for i in range(5)] + [f"m {i}" for i in range(count)])[-8:]
    assert messages == expected


def test_batch_rotates_into_new_files(tmp_path: Path) -> None:
    """With rotation, a batch larger than a file fills it, seals it and goes on in the next, losing nothing."""
    path = tmp_path / "r.mmlog"
    with mmaplog.RingWriter(path, 16 * SLOT, slot_size=SLOT, rotate=10) as w:
        records = [LogRecord("app", 20, "m %d", (i,), None, i, 1) for i in range(60)]
        records[15] = LogRecord("app", 20, "long " + "y" * 200, (), None, 15, 1)  # 3 slots across a file's end
        assert w.write_batch(records) == 60
    result = mmaplog.scan(path)
    assert result.stats.files >= 4 and result.stats.invalid == 0 and result.stats.lost == 0
    assert [r.message for r in result.iter_records()] == [r.message for r in records]


def test_uncommitted_batch_reads_as_torn_never_as_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the process stops between copying the slots and committing them, none of those slots is shown."""
    path = tmp_path / "r.mmlog"
    w = mmaplog.RingWriter(path, 8 * SLOT, slot_size=SLOT)
    w._fast = None  # the Python batch path copies a run of slots, then commits them (the C path commits each at once)
    w.write_batch([LogRecord("app", 20, "old %d", (i,), None, i, 1) for i in range(8)])

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("process stopped before the commit step")

    real_trailer = _batch._trailer

    def stop_at_commit(buf: Any, offset: int, check: int, echo: int) -> None:
        if check:  # step 3, the commit (steps 1 and 2 store invalid trailers, whose check is 0)
            crash()
        real_trailer(buf, offset, check, echo)

    monkeypatch.setattr(_batch, "_trailer", stop_at_commit)  # the bodies are copied, no trailer committed
    assert w.write_batch([LogRecord("app", 20, "new %d", (i,), None, i, 1) for i in range(5)]) == 0
    monkeypatch.undo()
    assert w.dropped == 5
    result = mmaplog.scan(path)
    assert result.stats.invalid == 5
    assert [r.message for r in result.iter_records()] == ["old 5", "old 6", "old 7"]
    w.close()


def test_a_run_as_long_as_the_ring_never_leaves_it_all_uncommitted(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that overwrites the whole ring, stopped at its first commit, leaves at most one chunk unreadable: the
    records the rest of the ring holds stay readable (a kill there once left a 64-slot ring empty)."""
    path = tmp_path / "r.mmlog"
    w = mmaplog.RingWriter(path, 64 * SLOT, slot_size=SLOT)
    w._fast = None  # the Python batch path (the C path commits each slot at once)
    w.write_batch([LogRecord("app", 20, "old %d", (i,), None, i, 1) for i in range(64)])
    real_trailer = _batch._trailer

    def stop_at_commit(buf: Any, offset: int, check: int, echo: int) -> None:
        if check:
            raise RuntimeError("process stopped at the first commit")
        real_trailer(buf, offset, check, echo)

    monkeypatch.setattr(_batch, "_trailer", stop_at_commit)
    w.write_batch([LogRecord("app", 20, "new %d", (i,), None, i, 1) for i in range(64)])
    monkeypatch.undo()
    result = mmaplog.scan(path)
    old = [r.message for r in result.iter_records()]
    assert 0 < result.stats.invalid < 64
    assert old == [f"old {i}" for i in range(result.stats.invalid, 64)]
    w.close()


def test_batch_and_single_writes_from_threads_lose_nothing(tmp_path: Path) -> None:
    """Batches from two threads and single writes from two more interleave without loss or duplicates."""
    path = tmp_path / "r.mmlog"
    per = 2000
    with mmaplog.RingWriter(path, 16 * per * SLOT, slot_size=SLOT) as w:

        def batches(t: int) -> None:
            records = [LogRecord("app", 20, "%d %d", (t, i), None, i, t) for i in range(per)]
            for start in range(0, per, 50):
                w.write_batch(records[start : start + 50])

        def singles(t: int) -> None:
            for i in range(per):
                w.write(f"{t} {i}", logger="app", thread=t, time_ns=i)

        threads = [threading.Thread(target=f, args=(t,)) for t, f in enumerate([batches, batches, singles, singles])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    result = mmaplog.scan(path)
    assert result.stats.invalid == 0 and result.stats.lost == 0
    by_thread: dict[int, list[int]] = {}
    for r in result.iter_records():
        t, i = map(int, r.message.split())
        by_thread.setdefault(t, []).append(i)
    assert dict(by_thread.items()) == {t: list(range(per)) for t in range(4)}


@pytest.mark.parametrize("rotate", [0, 3])
def test_a_batch_into_an_empty_file_keeps_its_first_record(tmp_path: Path, rotate: int) -> None:
    """A run whose first slot is the file's position 1 is committed there, not taken for the tail of a run at 0.

    The pure path's run tracker started with "last position 0", so a batch whose first record took position 1
    (a new ring, or a new file after a rotation) stored it into the wrong slot: lost, and counted as written.
    """
    path = tmp_path / "r.mmlog"
    with mmaplog.RingWriter(path, 16 * SLOT, slot_size=SLOT, rotate=rotate) as w:
        assert w.write_batch([LogRecord("", 20, "b%d", (i,), None, i, 1) for i in range(3)]) == 3
        counters = (w.dropped, w.errors)
    assert [r.message for r in mmaplog.read(path)] == ["b0", "b1", "b2"]
    assert counters == (0, 0)


def test_a_batch_into_the_new_file_after_a_move_keeps_its_first_record(tmp_path: Path) -> None:
    """The live file moved away: the next check starts a new file at the path, and a batch is its first write."""
    path = tmp_path / "r.mmlog"
    with mmaplog.RingWriter(path, 16 * SLOT, slot_size=SLOT, rotate=3) as w:
        w.write("before", logger="app")
        os.rename(path, tmp_path / "moved.mmlog")
        w.flush()  # notices the move: a new, empty file at the path
        assert path.exists()
        assert w.write_batch([LogRecord("app", 20, "b%d", (i,), None, i, 1) for i in range(3)]) == 3
        counters = (w.dropped, w.errors)
    assert [r.message for r in mmaplog.read(path, segments=False)] == ["b0", "b1", "b2"]
    assert counters == (0, 0)


@pytest.mark.parametrize("seed", range(6))
def test_threads_batching_into_a_rotating_ring_lose_nothing(tmp_path: Path, seed: int,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    """Threads mixing batches (one-slot and longer records, several loggers) and single writes into small files
    that rotate every few calls: every record acknowledged reads back exactly once, nothing counted as lost,
    nothing reported (the live-file check once met a descriptor closed by a rotation on another thread)."""
    import random

    rnd = random.Random(seed)
    path = tmp_path / "r.mmlog"
    loggers = ["", "app", "app.db", "ünïcode.名前"]
    threads_n, per = 3, 80
    acked: list[set[str]] = [set() for _ in range(threads_n)]
    plans = [[(f"t{t} r{i} " + "x" * rnd.choice([0, 10, 60, 150]), rnd.choice(loggers), rnd.random() < 0.7)
              for i in range(per)] for t in range(threads_n)]
    start = threading.Barrier(threads_n)
    with mmaplog.RingWriter(path, 16 * SLOT, slot_size=SLOT, rotate=10_000) as w:

        def work(t: int) -> None:
            start.wait()
            batch: list[LogRecord] = []
            for text, logger, batched in plans[t] + [("", "", False)]:
                if batched:
                    batch.append(LogRecord(logger, 20, text, (), None, 1, t))
                    if len(batch) < 4:
                        continue
                if batch:
                    if w.write_batch(batch) == len(batch):
                        acked[t].update(r.message for r in batch)
                    batch = []
                if text and not batched and w.write(text, logger=logger):
                    acked[t].add(text)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        counters = (w.dropped, w.errors)
    shown = [r.message for r in mmaplog.read(path)]
    assert counters == (0, 0)
    assert capfd.readouterr().err == ""
    assert sorted(shown) == sorted(set().union(*acked))
    assert len(shown) == threads_n * per


def test_batch_without_gil_takes_the_claim_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a build without a GIL the batch holds the writer's claim lock (and does not deadlock on slow records)."""
    monkeypatch.setattr(writer_module, "_GIL", False)
    monkeypatch.setattr(_batch, "_GIL", False)
    path = tmp_path / "r.mmlog"
    w = mmaplog.RingWriter(path, 64 * SLOT, slot_size=SLOT)
    held: list[bool] = []

    class Probe(LogRecord):
        __slots__ = ()

        @property
        def message(self) -> str:  # type: ignore[override]
            # Held (by this thread) when another thread cannot take it.
            taken: list[bool] = []

            def try_lock() -> None:
                taken.append(w._claim_lock.acquire(blocking=False))
                if taken[0]:
                    w._claim_lock.release()

            other = threading.Thread(target=try_lock)
            other.start()
            other.join()
            held.append(not taken[0])
            return "probe"

    assert w.write_batch([Probe("app", 20, ""), *case_records()]) == 11
    assert held == [True]
    w.close()
    assert len(list(mmaplog.read(path))) == 11


SIGKILL_WRITER = '''
import sys, os, mmaplog
from mmaplog._record import LogRecord
w = mmaplog.RingWriter(sys.argv[1], 64 * 128, slot_size=128)
i = 0
while True:
    w.write_batch([LogRecord("app", 20, "m %d %s", (i + k, "z" * ((i + k) % 60)), None, i + k, 1) for k in range(97)])
    i += 97
    os.write(1, b".")  # one byte per batch written
'''


def test_sigkill_during_batches_never_shows_a_torn_record(tmp_path: Path) -> None:
    """Killing a process in the middle of writing batches leaves only whole, correct records behind."""
    path = tmp_path / "r.mmlog"
    for batches in (1, 7, 20, 33, 50):
        command = [sys.executable, "-c", textwrap.dedent(SIGKILL_WRITER), str(path)]
        child = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert child.stdout is not None
        assert len(child.stdout.read(batches)) == batches  # the kill lands while a later batch is being written
        child.send_signal(signal.SIGKILL)
        child.wait()
        records = list(mmaplog.read(path))
        assert records, "the child wrote nothing"
        for r in records:
            i = int(r.message.split()[1])
            assert r.message == f"m {i} " + "z" * (i % 60)
            assert r.time_ns == i
        numbers = [r.time_ns for r in records]
        assert numbers == sorted(numbers)
        os.unlink(path)
