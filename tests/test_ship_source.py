"""The shipper's ring reader (mmaplog.ship._source): order, exactly-once, gaps with exact counts, rotation."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

import mmaplog
from mmaplog import RingWriter, _tail
from mmaplog import layout as L
from mmaplog.reader import RingFile
from mmaplog.ship._source import Item, RingSource


class FakeClock:
    """A monotonic clock the test moves by hand, so grace periods pass without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(source: RingSource, limit: int = 100_000) -> list[Item]:
    """Poll until a poll returns nothing."""
    items: list[Item] = []
    while True:
        got = source.poll(limit)
        if not got:
            return items
        items += got


def seqs(items: list[Item]) -> list[int]:
    return [i.record.seq for i in items if i.record is not None]


def commit_slot(path: Path, pos: int, seq: int, message: str, level: int = 20) -> None:
    """Write one committed single-slot record at position ``pos`` the way the writer would."""
    with RingFile(path) as ring:
        h = ring.header
    data = message.encode()
    payload_size = L.slot_payload_size(h.slot_size)
    body = struct.pack(f"{L.SLOT_HEADER_FORMAT}{payload_size}s", pos, seq, time.time_ns(), 1, len(data), len(data),
                       len(data), 0, 0, level, L.FLAG_FIRST | L.FLAG_LAST, data)  # fmt: skip
    slot = body + L.SLOT_TRAILER_STRUCT.pack(L.slot_check(body), pos & 0xFFFFFFFF)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, slot, h.data_offset + (pos - 1) % h.slot_count * h.slot_size)
    finally:
        os.close(fd)


def test_everything_in_order_exactly_once_across_wraps(tmp_path: Path) -> None:
    """Records written across several wraps of a small ring, read between writes, come out in order, once each."""
    path = tmp_path / "a.mmlog"
    source = RingSource([path], grace=0, clock=FakeClock())
    got: list[Item] = []
    with RingWriter(path, size=16 * 256) as w:
        for i in range(1, 101):
            w.write(f"m{i}", fields={"i": i} if i % 3 == 0 else None)
            if i % 7 == 0:
                got += drain(source)
    got += drain(source)
    assert seqs(got) == list(range(1, 101))
    assert [i.record.message for i in got] == [f"m{n}" for n in range(1, 101)]
    assert got[2].record.fields == {"i": 3}
    assert all(i.gap is None for i in got)


def test_resume_after_a_position(tmp_path: Path) -> None:
    """A series with a known position starts right after it."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        for i in range(20):
            w.write(f"m{i}")
        series = w.header.series_id
    items = drain(RingSource([path], positions={series: 12}))
    assert seqs(items) == list(range(13, 21))


def test_lapped_reader_gets_a_gap_with_the_exact_count(tmp_path: Path) -> None:
    """When the writer overwrote records after the position, one gap reports exactly how many."""
    path = tmp_path / "a.mmlog"
    clock = FakeClock()
    with RingWriter(path, size=16 * 256) as w:
        for i in range(100):
            w.write(f"m{i}")
        series = w.header.series_id
    source = RingSource([path], positions={series: 10}, grace=1.0, clock=clock)
    items = drain(source)  # the writer is gone: the overwritten records are reported at once
    gaps = [i.gap for i in items if i.gap is not None]
    assert len(gaps) == 1
    assert (gaps[0].first_seq, gaps[0].last_seq, gaps[0].count, gaps[0].cause) == (11, 84, 74, "overwritten")
    assert "74 records overwritten before they could be shipped" in gaps[0].describe()
    assert items[0].gap is gaps[0] and items[0].seq == 84
    assert seqs(items) == list(range(85, 101))


def test_new_series_reports_what_was_overwritten_before_it_was_seen(tmp_path: Path) -> None:
    """Starting from the oldest record of a lapped ring, the records already gone are one gap."""
    path = tmp_path / "a.mmlog"
    clock = FakeClock()
    with RingWriter(path, size=16 * 256) as w:
        for i in range(50):
            w.write(f"m{i}")
    source = RingSource([path], grace=1.0, clock=clock)
    items = drain(source)
    assert items[0].gap is not None and (items[0].gap.count, items[0].gap.cause) == (34, "overwritten")
    assert seqs(items) == list(range(35, 51))


def test_start_at_end_ships_only_new_records(tmp_path: Path) -> None:
    """With start='end' a series first seen ships only what is written afterwards."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        for i in range(10):
            w.write(f"old {i}")
        source = RingSource([path], start="end")
        assert source.poll() == []
        w.write("new")
        items = drain(source)
    assert [i.record.message for i in items] == ["new"]


def test_in_flight_record_is_waited_for_and_keeps_order(tmp_path: Path) -> None:
    """A record claimed but not yet committed holds back later ones until it arrives; nothing is reported lost."""
    path = tmp_path / "a.mmlog"
    clock = FakeClock()
    with RingWriter(path, size=64 * 256) as w:
        w.write("one")
        seq, pos = next(w._seqs), next(w._map.positions)  # claimed by a slow thread
        w.write("three")
        w.write("four")
        source = RingSource([path], grace=1.0, clock=clock)
        assert seqs(source.poll()) == [1]
        clock.now += 0.5
        assert source.poll() == []
        commit_slot(path, pos, seq, "two")
        items = drain(source)
    assert [i.record.message for i in items] == ["two", "three", "four"]
    assert not source.waiting


def test_dead_writer_hole_becomes_a_gap_of_one(tmp_path: Path) -> None:
    """A record claimed by a writer thread that never committed it is in flight while the writer lives, and one
    lost record once the writer is gone (its file no longer locked)."""
    path = tmp_path / "a.mmlog"
    clock = FakeClock()
    with RingWriter(path, size=64 * 256) as w:
        w.write("one")
        next(w._seqs), next(w._map.positions)
        w.write("three")
        source = RingSource([path], grace=1.0, clock=clock)
        assert seqs(source.poll()) == [1]
        clock.now += 100
        assert source.poll() == [] and source.waiting and source.in_flight() == 1
    items = drain(source)
    gap = items[0].gap
    assert gap is not None and (gap.first_seq, gap.count, gap.cause) == (2, 1, "unfinished")
    assert gap.describe().startswith("1 record never finished by the writer")
    assert seqs(items) == [3]


def test_limit_splits_the_stream_without_loss(tmp_path: Path) -> None:
    """Polls limited to a few items hand out everything, in order, over several calls."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=4096 * 256) as w:
        for i in range(1000):
            w.write(f"m{i}")
    source = RingSource([path])
    got: list[Item] = []
    while True:
        batch = source.poll(limit=37)
        assert len(batch) <= 37
        if not batch:
            break
        got += batch
    assert seqs(got) == list(range(1, 1001))


def test_follows_rotation_into_new_segments(tmp_path: Path) -> None:
    """With rotation, records in sealed segments and in the new live file all come out once, in order."""
    path = tmp_path / "a.mmlog"
    source = RingSource([path], grace=0)
    got: list[Item] = []
    with RingWriter(path, size=16 * 256, rotate=20) as w:
        got += drain(source)
        for i in range(1, 201):
            w.write(f"m{i}")
            if i % 11 == 0:
                got += drain(source)
    got += drain(source)
    assert seqs(got) == list(range(1, 201))
    assert len({i.series for i in got}) == 1


def test_two_series_each_keep_their_order(tmp_path: Path) -> None:
    """Two files (two writers) are interleaved by time, each series in its own seq order."""
    a, b = tmp_path / "a.mmlog", tmp_path / "b.mmlog"
    with RingWriter(a, size=64 * 256) as wa, RingWriter(b, size=64 * 256) as wb:
        for i in range(30):
            (wa if i % 2 else wb).write(f"m{i}")
    items = drain(RingSource([a, b]))
    assert len(items) == 30
    by_series: dict[bytes, list[int]] = {}
    for item in items:
        by_series.setdefault(item.series, []).append(item.seq)
    assert sorted(len(v) for v in by_series.values()) == [15, 15]
    assert all(v == sorted(v) == list(range(1, 16)) for v in by_series.values())
    times = [i.record.time_ns for i in items]
    assert times == sorted(times)


@pytest.mark.parametrize("slot_size", [64, 256])
def test_multi_slot_records(tmp_path: Path, slot_size: int) -> None:
    """Records spanning several slots are assembled whole."""
    path = tmp_path / "a.mmlog"
    messages = ["x" * n for n in (1, 300, 1000, 5000)]
    with RingWriter(path, size=4096 * slot_size, slot_size=slot_size) as w:
        for m in messages:
            w.write(m)
    assert [i.record.message for i in drain(RingSource([path]))] == messages


def test_glob_pattern_picks_up_files_created_later(tmp_path: Path) -> None:
    """A pattern is matched on every poll, so a process that starts later gets its file shipped too."""
    source = RingSource([tmp_path / "app-*.mmlog"])
    assert source.poll() == []
    with RingWriter(tmp_path / "app-1.mmlog", size=64 * 256) as w:
        w.write("from process 1")
    assert [i.record.message for i in drain(source)] == ["from process 1"]
    with RingWriter(tmp_path / "app-2.mmlog", size=64 * 256) as w:
        w.write("from process 2")
    assert [i.record.message for i in drain(source)] == ["from process 2"]


def test_segments_rotated_away_unread_are_a_gap(tmp_path: Path) -> None:
    """Records in segments the writer deleted (rotate=K) before they were read are one gap with the exact count."""
    path = tmp_path / "a.mmlog"
    clock = FakeClock()
    with RingWriter(path, size=16 * 256, rotate=2) as w:
        for i in range(1, 101):
            w.write(f"m{i}")
    kept = sorted(int(s) for s in mmaplog.read_array(path)["seq"])
    source = RingSource([path], grace=1.0, clock=clock)
    items = drain(source)
    gap = items[0].gap
    assert gap is not None
    assert (gap.first_seq, gap.last_seq, gap.cause) == (1, kept[0] - 1, "overwritten")
    assert seqs(items) == kept == list(range(kept[0], 101))


def test_records_that_overtake_a_seq_in_flight_never_move_the_cursor_past_it(tmp_path: Path, monkeypatch) -> None:
    """Past the hold bound, records go ahead of a seq still in flight: they are counted, and no item moves the
    cursor past the late seq until it is handed out, so a restart from any cursor saved meanwhile still ships it."""
    monkeypatch.setattr(_tail, "_HOLD_MAX", 64)  # white-box: the real bound is 65,536 held-back records
    path = tmp_path / "a.mmlog"
    clock = FakeClock()
    with RingWriter(path, size=1024 * 256) as w:
        w.write("one")
        seq, pos = next(w._seqs), next(w._map.positions)  # claimed by a slow thread
        for i in range(3, 201):
            w.write(f"r{i}")
        source = RingSource([path], grace=1.0, clock=clock)
        before: list[Item] = []
        for _ in range(100):
            before += source.poll(limit=16)
            clock.now += 0.6
            if len(before) == 199:
                break
        # Everything but the late seq came out, ahead of it; none of it moves the cursor past seq 1.
        assert sorted(seqs(before)) == [1, *range(3, 201)]
        assert max(item.seq for item in before) == 1
        assert source._follower.stats.overtaken > 0 and source.in_flight() == 1
        series = before[0].series
        # A restart from the cursor saved now ships the late record once it is committed.
        restarted = RingSource([path], positions={series: max(item.seq for item in before)}, grace=1.0, clock=clock)
        commit_slot(path, pos, seq, "two")
        after = drain(source)
        again = drain(restarted)
    assert seqs(after) == [2]
    assert after[-1].seq == 200  # handed out at last: the cursor may move to the highest seq shipped
    assert 2 in seqs(again)
    assert not source.waiting
