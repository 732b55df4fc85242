"""Throughput: records per second from 1, 2, 4 and 8 threads into one logger, and cost per record by ring size.

Thread benchmarks time one round of a fixed number of records split between
threads that are already started and wait at a barrier, so thread start-up is
not measured; ``extra_info["records"]`` lets the report turn a round's time
into records per second.  The ring-size benchmarks time one three-argument
INFO call into rings from 1 MiB to 1 GiB: the cost must not grow with the ring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from bench._subjects import ALL_RING_SIZES, ARGS, PLAIN, Scale, Subject, make_mmaplog_direct

THREADS = [1, 2, 4, 8]


class _Crew:
    """``threads`` started threads that each make ``calls`` logging calls when released, then wait again."""

    def __init__(self, call: Callable[..., Any], args: tuple[Any, ...], threads: int, calls: int) -> None:
        self._start = threading.Barrier(threads + 1)
        self._done = threading.Barrier(threads + 1)
        self._stop = False
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._work, args=(call, args, calls), daemon=True) for _ in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self, call: Callable[..., Any], args: tuple[Any, ...], calls: int) -> None:
        while True:
            self._start.wait()
            if self._stop:
                return
            try:
                for _ in range(calls):
                    call(*args)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
            self._done.wait()

    def round(self) -> None:
        """Release every thread for one round and wait until all have finished it."""
        self._start.wait()
        self._done.wait()

    def stop(self) -> None:
        self._stop = True
        self._start.wait()
        for thread in self._threads:
            thread.join(timeout=60)


@pytest.mark.parametrize("name", ["mmaplog-direct", "mmaplog-async", "stdlib-file"])
@pytest.mark.parametrize("threads", THREADS)
def test_threads(benchmark: Any, subject_factory: Callable[..., Subject], scale: Scale, name: str, threads: int) -> None:
    """A fixed number of three-argument INFO records logged by 1, 2, 4 or 8 threads at once into one logger."""
    subject = subject_factory(name, **({"capacity": 1 << 16} if name == "mmaplog-async" else {}))
    per_thread = scale.thread_records // threads
    crew = _Crew(subject.info, (subject.message, *ARGS), threads, per_thread)
    benchmark.group = f"threads: {name}"
    benchmark.extra_info.update(subject=name, threads=threads, records=per_thread * threads)

    def one_round() -> None:
        crew.round()
        subject.flush()  # a queued record counts once it is written

    try:
        # More rounds where a round is short: the median of a few 0.3 s rounds on a shared machine is noise.
        rounds = (5 if name.startswith("stdlib") else 15) if scale.full else 1
        benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=1 if scale.full else 0)
    finally:
        crew.stop()
    assert not crew.errors, crew.errors
    benchmark.extra_info.update(subject.stats())
    last = subject.last()
    assert last is not None and last.endswith(PLAIN), last


@pytest.mark.benchmark(min_time=0.0002, warmup=True)
@pytest.mark.parametrize("size", ALL_RING_SIZES)
def test_ring_size(benchmark: Any, tmp_path: Any, scale: Scale, size: str) -> None:
    """One three-argument INFO call into rings of 1 MiB to 1 GiB (small rings wrap many times during the run)."""
    if size not in scale.ring_sizes:
        pytest.skip(f"a {size} ring is created only in the full run (--bench-scale=full)")
    subject = make_mmaplog_direct(tmp_path, size=size)
    benchmark.group = "ring size: mmaplog-direct"
    benchmark.extra_info.update(subject="mmaplog-direct", ring=size)
    try:
        benchmark(subject.info, subject.message, *ARGS)
        assert subject.stats()["dropped"] == 0
        if size in ("1 MiB", "16 MiB"):  # reading a 1 GiB ring back would dwarf the benchmark
            assert subject.last() == PLAIN
    finally:
        subject.close()
