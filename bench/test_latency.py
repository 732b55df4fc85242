"""Latency distribution: every call of a burst timed on its own with ``time.perf_counter_ns``.

A burst of ``scale.burst`` three-argument INFO calls (100,000 in the full run)
goes into each logger as fast as one thread can make them; the per-call p50,
p99, p99.9 and max (nanoseconds, timer cost included) go into
``benchmark.extra_info``.  The empty function's burst shows what the timer
itself costs.  The benchmark's own time is the whole burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from bench._subjects import ARGS, PLAIN, Scale, Subject

PERCENTILES = {"p50": 50.0, "p99": 99.0, "p99.9": 99.9, "max": 100.0}


def timed_burst(call: Callable[..., Any], args: tuple[Any, ...], calls: int) -> np.ndarray:
    """Make ``calls`` calls of ``call(*args)`` and return each one's duration in nanoseconds."""
    durations = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        call(*args)
        durations[i] = clock() - start
    return durations


def summarise(durations: np.ndarray) -> dict[str, float]:
    """The percentiles of a burst, in nanoseconds."""
    values = np.percentile(durations, list(PERCENTILES.values()))
    out = {f"latency_{name}_ns": float(v) for name, v in zip(PERCENTILES, values)}
    out["latency_mean_ns"] = float(durations.mean())
    return out


@pytest.mark.parametrize("name", ["noop", "mmaplog-direct", "mmaplog-async", "stdlib-file", "picologging"])
def test_burst_latency(benchmark: Any, subject_factory: Callable[..., Subject], scale: Scale, name: str) -> None:
    """Per-call latency percentiles of a burst of three-argument INFO calls into one logger."""
    subject = subject_factory(name)
    args = (subject.message, *ARGS)
    benchmark.group = "latency burst"
    benchmark.extra_info.update(subject=name, calls=scale.burst)
    durations = benchmark.pedantic(timed_burst, args=(subject.info, args, scale.burst), rounds=1, iterations=1)
    assert len(durations) == scale.burst and (durations >= 0).all()
    benchmark.extra_info.update(summarise(durations))
    benchmark.extra_info.update(subject.stats())
    if name != "noop":
        last = subject.last()
        assert last is not None and last.endswith(PLAIN), last
