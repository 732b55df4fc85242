"""read, follow and ship --once agree on every interleaving of writer threads, record sizes and rotations.

A test drives a real :class:`mmaplog.RingWriter` the way its threads do: each
"thread" takes a seq, and writes its record (taking slot positions, rotating
when the file is full) at some later step chosen by hypothesis, so a record can
land several segments after the records around it, or never (a thread that
died after taking its seq).  The writer is then closed, and ``read``,
``follow`` (ordered, from seq 1) and the shipper's ``--once`` loop must each
deliver every record on disk exactly once and report the same number lost.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmaplog
from mmaplog import RingWriter
from mmaplog.follow import Follower, Record, Start
from mmaplog.ship._shipper import Shipper, StopSignal
from mmaplog.ship._sinks import JsonLinesSink
from mmaplog.ship._source import RingSource

SLOT = 256
#: Payload sizes: one, two and three slots.
SIZES = (10, 180, 300, 500)


def _message(seq: int, size: int) -> str:
    return f"s{seq} " + "m" * size


# A script: per step, ("claim", thread) takes a seq for the thread if it has none, ("write", thread) writes the
# thread's record if it has one; threads holding a seq at the end either write it then or die without writing.
_steps = st.lists(st.tuples(st.sampled_from(["claim", "write"]), st.integers(0, 5)), min_size=1, max_size=160)


def _build(path: Path, steps: list[tuple[str, int]], sizes: list[int], slots: int, rotate: int,
           dying: set[int]) -> None:
    """Write the file(s) the script describes (the writer closed at the end)."""
    writer = RingWriter(path, slots * SLOT, slot_size=SLOT, rotate=rotate)
    held: dict[int, int] = {}
    count = 0

    def write(seq: int) -> None:
        size = sizes[seq % len(sizes)]
        writer._write_record(seq, _message(seq, size).encode(), b"", 0, 20, f"app.t{seq % 3}", None, None)

    try:
        for action, thread in steps:
            if action == "claim" and thread not in held:
                held[thread] = next(writer._seqs)
                count += 1
            elif action == "write" and thread in held:
                write(held.pop(thread))
        for thread, seq in sorted(held.items()):
            if thread not in dying:
                write(seq)
    finally:
        writer.close()


def _follow_all(path: Path) -> tuple[list[int], int]:
    follower = Follower(path, start=Start("after", 0), ordered=True, grace=0.0)
    got: list[int] = []
    for _ in range(10_000):
        items = follower.poll()
        got += [item.seq for item in items if isinstance(item, Record)]
        if not items and not follower.waiting:
            break
    got += [item.seq for item in follower.close() if isinstance(item, Record)]
    return got, follower.stats.missed


def _ship_once(path: Path) -> tuple[list[int], int]:
    out = io.BytesIO()
    source = RingSource([path], grace=0.0)
    stop = StopSignal()
    try:
        shipper = Shipper(source, JsonLinesSink(out), cursor=None, cursor_path=None, window=7, stop=stop, once=True,
                          poll_interval=0.01, report=lambda message: None)
        stats = shipper.run()
    finally:
        source.close()
    lines = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    shipped = [line["seq"] for line in lines if "seq" in line]  # the others are gap reports
    assert stats.shipped == len(shipped)
    return shipped, stats.lost


@settings(max_examples=int(os.environ.get("MMAPLOG_PROPERTY_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    steps=_steps,
    sizes=st.lists(st.sampled_from(SIZES), min_size=1, max_size=7),
    layout=st.sampled_from([(16, 1000), (16, 2), (8, 1000), (32, 0), (16, 0)]),
    dying=st.sets(st.integers(0, 5), max_size=2),
)
def test_read_follow_and_ship_once_deliver_the_same_records_and_losses(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]], sizes: list[int],
    layout: tuple[int, int], dying: set[int],
) -> None:
    """Every record on disk comes out exactly once through each of the three; the losses they report agree."""
    slots, rotate = layout
    path = tmp_path_factory.mktemp("prop") / "app.mmlog"
    _build(path, steps, sizes, slots, rotate, dying)
    result = mmaplog.scan(path)
    on_disk = [int(s) for s in result.records["seq"]]
    assert len(set(on_disk)) == len(on_disk)
    for r in result.iter_records():
        assert r.message.startswith(f"s{r.seq} m")  # its own record (cut to the ring's maximum, maybe)
    followed, follow_lost = _follow_all(path)
    shipped, ship_lost = _ship_once(path)
    assert sorted(followed) == sorted(on_disk) and len(set(followed)) == len(followed)
    assert sorted(shipped) == sorted(on_disk) and len(set(shipped)) == len(shipped)
    assert result.stats.pending == 0  # no writer is left: nothing is in flight
    assert follow_lost == ship_lost == result.stats.lost
