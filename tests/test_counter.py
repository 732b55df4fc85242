"""The writer's counters: next() hands out every value once, across threads; peek() reads the next one exactly."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from mmaplog import _counter
from mmaplog._counter import peek

#: Both kinds of counter: the C accelerator's (where built) and the pure-Python range iterator.
KINDS = [pytest.param(_counter.counter, id="default"), pytest.param(_counter._range_counter, id="range")]


@pytest.mark.parametrize("counter", KINDS)
@pytest.mark.parametrize("start", [0, 1, 12345, sys.maxsize - 5, sys.maxsize, 1 << 63, (1 << 64) - 5])
def test_peek_is_the_value_next_takes(counter: Any, start: int) -> None:
    c = counter(start)
    for _ in range(3):
        value = peek(c)
        assert value == next(c)
    assert peek(c) == start + 3


@pytest.mark.parametrize(("start", "last"), [(sys.maxsize - 2, sys.maxsize - 1), ((1 << 64) - 4, (1 << 64) - 3),
                                           ((1 << 64) - 1, None)])
@pytest.mark.parametrize("counter", KINDS)
def test_a_counter_runs_out_where_its_docstring_says(counter: Any, start: int, last: int | None) -> None:
    c = counter(start)
    assert list(c)[-1:] == ([] if last is None else [last])
    assert peek(c) == (last + 1 if last is not None else (1 << 64) - 2)
    with pytest.raises(StopIteration):
        next(c)


@pytest.mark.parametrize("counter", KINDS)
def test_threads_take_every_value_once_and_peek_sees_them_all(counter: Any) -> None:
    c = counter(1)
    per, threads = 20_000, 4
    taken: list[list[int]] = [[] for _ in range(threads)]
    go = threading.Barrier(threads)

    def take(out: list[int]) -> None:
        go.wait()
        add = out.append
        for _ in range(per):
            add(next(c))

    workers = [threading.Thread(target=take, args=(out,)) for out in taken]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    values = sorted(v for out in taken for v in out)
    assert values == list(range(1, per * threads + 1))
    assert peek(c) == per * threads + 1


def test_the_writer_counts_with_them(tmp_path: object) -> None:
    from pathlib import Path

    from mmaplog.writer import RingWriter

    with RingWriter(Path(str(tmp_path)) / "r.mmlog", 16 * 256, slot_size=256) as w:
        seq, pos = peek(w._seqs), peek(w._map.positions)
        assert w.write("one") == seq
        assert (peek(w._seqs), peek(w._map.positions)) == (seq + 1, pos + 1)


def test_the_c_append_takes_its_values_from_the_c_counter() -> None:
    """Where the C accelerator is built, the writer's counters are its own type (the C append steps them in place)."""
    if _counter._NATIVE is None:
        pytest.skip("the C accelerator is not in use")
    c = _counter.counter(7)
    assert type(c) is _counter._NATIVE and repr(c) == "Counter(7)"
    assert (next(c), peek(c)) == (7, 8)
