"""The async front's goal figures (docs/ASYNC.md), each as a ratio measured in one run.

* producer: ``log.info("order %d paid %.2f by %s", 42, 9.5, "bob")`` into the
  async handler, against an empty function called with the same arguments and
  against the direct path (a RingHandler), interleaved rounds, best of each;
  wall time and the calling thread's own CPU time (``time.thread_time_ns``: on a
  shared machine what the producer pays, without the time it was descheduled);
* sustained: records per second of producer and worker together (the clock
  stops when ``flush()`` returns), one and two producer threads, against the
  direct path with as many threads; two threads also kept on one core (Linux:
  the GIL then never moves between cores), with the scheduler's facts behind
  the figures (where the producers ran, how long the worker waited for a CPU);
* burst: p99.9 and max of each call of a 100,000-call burst, async against direct;
* GIL freedom: the speed of a CPU-bound pure-Python loop while the worker writes
  1,000,000 queued records, against the same loop with no logging at all.

Each figure goes into ``benchmark.extra_info`` (``ratio_*`` keys) and is printed;
none is asserted (timing thresholds do not belong in tests).  ``--benchmark-disable``
runs every body once on small inputs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmaplog
from bench._subjects import ARGS, Scale
from mmaplog.handlers import async_

MESSAGE = "order %d paid %.2f by %s"


def empty(*args: Any, **kwargs: Any) -> None:
    """What a call with these arguments costs when it does nothing."""


class Setup:
    """A direct logger and an async one (native where built), each over its own ring file."""

    def __init__(self, tmp: Path, records: int, capacity: int) -> None:
        size = max(4 << 20, records * 256 * 2)
        self.direct_handler = mmaplog.RingHandler(str(tmp / "direct.mmlog"), size=size)
        self.async_handler = mmaplog.AsyncHandler(mmaplog.RingHandler(str(tmp / "async.mmlog"), size=size),
                                                  capacity=capacity, flush_interval=None)
        self.direct = mmaplog.Logger("bench", handlers=[self.direct_handler])
        self.asynchronous = mmaplog.Logger("bench", handlers=[self.async_handler])
        self.direct.info("warm")
        self.asynchronous.info("warm")
        self.async_handler.flush()

    def close(self) -> None:
        self.async_handler.close()
        self.direct_handler.close()


@pytest.fixture
def setup(tmp_path: Path, scale: Scale) -> Iterator[Setup]:
    made = Setup(tmp_path, records=scale.burst * 12, capacity=max(1 << 16, scale.burst * 2))
    yield made
    made.close()


def loop(call: Callable[..., Any], n: int, clock: Callable[[], int]) -> float:
    """Nanoseconds per call of ``call(MESSAGE, *ARGS)``, by ``clock``."""
    start = clock()
    for _ in range(n):
        call(MESSAGE, *ARGS)
    return (clock() - start) / n


def record(benchmark: Any, figures: dict[str, float]) -> None:
    benchmark.extra_info.update({k: round(v, 3) for k, v in figures.items()})
    # the machine's load when the figure was taken (1-minute average): the ratios are comparable only at a low one
    benchmark.extra_info["load_1min"] = round(os.getloadavg()[0], 2)
    print()
    for key, value in figures.items():
        print(f"  {key:40s} {value:10.3f}")


def test_producer_cost(benchmark: Any, setup: Setup, scale: Scale) -> None:
    """Async producer vs an empty call and vs the direct path (goal: <= 2x empty, <= 0.7x direct)."""
    n = scale.burst
    rounds = 7 if scale.full else 1
    subjects = {"empty": empty, "direct": setup.direct.info, "async": setup.asynchronous.info}
    wall: dict[str, list[float]] = {k: [] for k in subjects}
    cpu: dict[str, list[float]] = {k: [] for k in subjects}

    def run() -> None:
        for _ in range(rounds):
            for name, call in subjects.items():
                wall[name].append(loop(call, n, time.perf_counter_ns))
                cpu[name].append(loop(call, n, time.thread_time_ns))
                if name == "async":
                    written(setup.async_handler)()  # each round starts with an empty queue

    benchmark.group = "async native"
    benchmark.pedantic(run, rounds=1, iterations=1)
    best = {f"{clock}_{name}_ns": min(values[name]) for clock, values in (("wall", wall), ("cpu", cpu))
            for name in subjects}
    record(benchmark, {
        **best,
        "ratio_async_to_empty_wall": best["wall_async_ns"] / best["wall_empty_ns"],
        "ratio_async_to_direct_wall": best["wall_async_ns"] / best["wall_direct_ns"],
        "ratio_direct_to_empty_wall": best["wall_direct_ns"] / best["wall_empty_ns"],
        "ratio_async_to_empty_cpu": best["cpu_async_ns"] / best["cpu_empty_ns"],
        "ratio_async_to_direct_cpu": best["cpu_async_ns"] / best["cpu_direct_ns"],
    })
    benchmark.extra_info["native"] = setup.async_handler.native


def written(handler: mmaplog.AsyncHandler) -> Callable[[], None]:
    """Waits until everything queued is written into the ring (without the msync that flush() adds)."""
    native = handler._native
    if native is not None:
        return lambda: native.drain(None)
    return handler.flush


def _task_fields(tid: int, name: str) -> list[str] | None:
    """The fields of /proc/self/task/<tid>/<name> (Linux), or None."""
    try:
        with open(f"/proc/self/task/{tid}/{name}") as file:
            text = file.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split() if name == "stat" else text.split()


def worker_tid() -> int | None:
    """The native worker thread of the (one) open async handler, by its name (Linux), or None."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as file:
                if file.read().strip() == "mmaplog-async":
                    return int(tid)
        except OSError:
            continue
    return None


def runqueue_wait_ns(tid: int | None) -> int:
    """Nanoseconds thread ``tid`` has spent runnable but waiting for a CPU (schedstat), 0 where unknown."""
    fields = _task_fields(tid, "schedstat") if tid is not None else None
    return int(fields[1]) if fields else 0


def last_cpu() -> int:
    """The CPU the calling thread last ran on (Linux; -1 elsewhere)."""
    fields = _task_fields(threading.get_native_id(), "stat")
    return int(fields[36]) if fields and len(fields) > 36 else -1


def sustained(logger: mmaplog.Logger, threads: int, per_thread: int, after: Callable[[], None],
              cpu: int | None = None, cpus: set[int] | None = None) -> float:
    """Records per second from ``threads`` threads, until ``after()`` (the async flush) returns.

    ``cpu``: each producer thread is kept on that CPU (the worker is not).  ``cpus`` collects the CPU each
    producer thread last ran on.
    """
    start_line = threading.Barrier(threads + 1)

    def produce() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        info = logger.info
        start_line.wait()
        for _ in range(per_thread):
            info(MESSAGE, *ARGS)
        if cpus is not None:
            cpus.add(last_cpu())

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start_line.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    after()
    return threads * per_thread / (time.perf_counter() - start)


def test_sustained_throughput(benchmark: Any, setup: Setup, scale: Scale) -> None:
    """Producer and worker together vs the direct path (goal: >= 1x with one thread, >= 1.5x with two)."""
    per_thread = scale.burst * 2
    rounds = 5 if scale.full else 1
    rates: dict[str, list[float]] = {}
    native = setup.async_handler._native
    waits_before = native.room_waits if native is not None else 0
    worker = worker_tid() if native is not None else None
    # one core for the "one core" layout: the two producer threads hand the GIL to each other there
    one_core = min(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else None
    queued_wait: dict[str, int] = {}
    two_cores = {"direct": 0, "async": 0}

    def run() -> None:
        for _ in range(rounds):
            for threads, cpu in ((1, None), (2, None), *(((2, one_core),) if one_core is not None else ())):
                layout = f"{threads}" if cpu is None else f"{threads}_one_core"
                for name, logger, after in (("direct", setup.direct, lambda: None),
                                            ("async", setup.asynchronous, written(setup.async_handler))):
                    ran_on: set[int] = set()
                    before = runqueue_wait_ns(worker)
                    rates.setdefault(f"{name}_{layout}", []).append(
                        sustained(logger, threads, per_thread, after, cpu, ran_on))
                    if name == "async":
                        queued_wait[layout] = queued_wait.get(layout, 0) + runqueue_wait_ns(worker) - before
                    if layout == "2":
                        two_cores[name] += len(ran_on) > 1

    benchmark.group = "async native"
    benchmark.pedantic(run, rounds=1, iterations=1)
    best = {f"records_per_s_{k}": max(v) for k, v in rates.items()}
    record(benchmark, {
        **best,
        "ratio_sustained_1_thread": best["records_per_s_async_1"] / best["records_per_s_direct_1"],
        "ratio_sustained_2_threads": best["records_per_s_async_2"] / best["records_per_s_direct_1"],
        "ratio_sustained_2_threads_vs_direct_2": best["records_per_s_async_2"] / best["records_per_s_direct_2"],
        **({"ratio_sustained_2_threads_one_core": best["records_per_s_async_2_one_core"] / best["records_per_s_direct_1"],
            "ratio_direct_2_threads_one_core_vs_1": best["records_per_s_direct_2_one_core"] / best["records_per_s_direct_1"]}
           if "records_per_s_async_2_one_core" in best else {}),
        # rounds of two threads whose producers ended on two different cores (the GIL moved between cores)
        "rounds_2_threads_on_two_cores_direct": float(two_cores["direct"]),
        "rounds_2_threads_on_two_cores_async": float(two_cores["async"]),
        # the worker's time runnable but without a CPU, per 1,000 records (all rounds of that layout)
        **{f"worker_runqueue_wait_us_per_1k_records_{layout}": wait / 1e3 / (rounds * per_thread * int(layout[0]) / 1e3)
           for layout, wait in queued_wait.items() if worker is not None},
        # how often a producer found the queue full and waited (the worker behind: the run measured the worker)
        "producer_room_waits": float(native.room_waits - waits_before) if native is not None else float("nan"),
    })


def burst(call: Callable[..., Any], calls: int) -> np.ndarray:
    durations = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        call(MESSAGE, *ARGS)
        durations[i] = clock() - start
    return durations


def test_burst_tail_latency(benchmark: Any, setup: Setup, scale: Scale) -> None:
    """p99.9 and max of a burst (goal: async p99.9 <= direct p99.9; max < 100 us with room for the burst)."""
    calls = scale.burst
    found: dict[str, float] = {}

    def run() -> None:
        for name, call in (("direct", setup.direct.info), ("async", setup.asynchronous.info)):
            durations = burst(call, calls)
            found[f"{name}_p50_ns"] = float(np.percentile(durations, 50))
            found[f"{name}_p99_ns"] = float(np.percentile(durations, 99))
            found[f"{name}_p99.9_ns"] = float(np.percentile(durations, 99.9))
            found[f"{name}_max_ns"] = float(durations.max())
        setup.async_handler.flush()

    benchmark.group = "async native"
    benchmark.pedantic(run, rounds=1, iterations=1)
    record(benchmark, {**found, "ratio_p99.9_async_to_direct": found["async_p99.9_ns"] / found["direct_p99.9_ns"]})


def spin(n: int) -> tuple[float, float]:
    """A CPU-bound pure-Python loop; returns its wall time and its thread's CPU time in seconds.

    On a loaded machine the wall time also holds the time the thread was not
    scheduled; CPU time / wall time is the share it ran, which waiting for the
    GIL lowers and which the other processes' load lowers alike with or without
    the drain.
    """
    start, cpu = time.perf_counter(), time.thread_time()
    total = 0
    for i in range(n):
        total += i * i % 7
    return time.perf_counter() - start, time.thread_time() - cpu


@pytest.mark.parametrize("worker", ["native", "python"])
def test_gil_freedom_while_draining(benchmark: Any, tmp_path: Path, scale: Scale, worker: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A pure-Python loop's speed while the worker writes 1,000,000 queued records vs no logging (goal: >= 0.9)."""
    if worker == "python":
        monkeypatch.setattr(async_, "_casync", None)
    records = 1_000_000 if scale.full else 20_000
    loop_n = 100_000 if scale.full else 20_000
    gate = threading.Event()
    gate.set()

    class GatedRing(mmaplog.RingHandler):
        """The Python worker's ring, held shut while the records are queued (the native queue has pause())."""

        def emit_batch(self, records: list[Any]) -> None:
            gate.wait()
            super().emit_batch(records)

    ring_type = mmaplog.RingHandler if worker == "native" else GatedRing
    handler = mmaplog.AsyncHandler(ring_type(str(tmp_path / "gil.mmlog"), size=records * 256 + (1 << 20)),
                                   capacity=records, flush_interval=None)
    assert handler.native == (worker == "native" and async_._casync is not None)
    log = mmaplog.Logger("bench", handlers=[handler])
    log.info("warm")
    handler.flush()
    found: dict[str, float] = {}

    def run() -> None:
        alone = [spin(loop_n) for _ in range(5)]
        native = handler._native
        if native is not None:
            native.pause(True)  # queue everything first, so the loop runs only against the drain
        gate.clear()
        for _ in range(records):
            log.info(MESSAGE, *ARGS)
        gate.set()
        if native is not None:
            native.pause(False)
        draining = []
        while handler.pending > records // 10 and len(draining) < 2000:
            draining.append(spin(loop_n))
        handler.flush()
        alone.extend(spin(loop_n) for _ in range(5))
        found["loop_alone_s"] = min(w for w, _ in alone)
        found["loop_while_draining_s"] = min(w for w, _ in draining) if draining else float("nan")
        found["loop_alone_median_s"] = float(np.median([w for w, _ in alone]))
        found["loop_while_draining_median_s"] = float(np.median([w for w, _ in draining])) if draining else float("nan")
        found["loop_ran_share_alone"] = max(c / w for w, c in alone)
        found["loop_ran_share_while_draining"] = max(c / w for w, c in draining) if draining else float("nan")
        found["loops_during_drain"] = len(draining)
        found["worker_gil_takes"] = float(native.gil_takes) if native is not None else float("nan")

    benchmark.group = "async native"
    benchmark.pedantic(run, rounds=1, iterations=1)
    handler.close()
    record(benchmark, {
        **found,
        "ratio_loop_speed_while_draining": found["loop_alone_s"] / found["loop_while_draining_s"],
        # the typical loop rather than the least disturbed one: what a thread sees on average during the drain
        "ratio_loop_speed_while_draining_median": found["loop_alone_median_s"] / found["loop_while_draining_median_s"],
        "ratio_loop_ran_share_while_draining": found["loop_ran_share_while_draining"] / found["loop_ran_share_alone"],
    })
    benchmark.extra_info["native"] = handler._native is not None
