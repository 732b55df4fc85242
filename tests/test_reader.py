"""The reader: round trips, torn and dead slots, wrap-around, merging and bad input."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmaplog
from mmaplog import layout as L
from mmaplog.writer import RingWriter

PAYLOAD = L.slot_payload_size(L.DEFAULT_SLOT_SIZE)


def _slot_bytes(path: Path, index: int, slot_size: int = L.DEFAULT_SLOT_SIZE) -> bytes:
    with open(path, "rb") as f:
        f.seek(L.DATA_OFFSET + index * slot_size)
        return f.read(slot_size)


def _put_slot(path: Path, index: int, raw: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(L.DATA_OFFSET + index * len(raw))
        f.write(raw)


SIZES = [0, 1, PAYLOAD - 1, PAYLOAD, PAYLOAD + 1, 3 * PAYLOAD + 17, 1 << 20]


@pytest.mark.parametrize("length", SIZES)
def test_round_trip_sizes(tmp_path: Path, length: int) -> None:
    """Messages of the edge sizes (empty, one byte, one slot, many slots, 1 MiB) come back exactly."""
    path = tmp_path / "a.mmlog"
    text = "".join(chr(0x61 + (i * 7) % 26) if i % 13 else "é" for i in range(length))
    with RingWriter(path, size="8 MiB") as w:
        w.write("before")
        seq = w.write(text, level=40, logger="app.big", fields={"n": length})
        w.write("after")
    records = list(mmaplog.read(path))
    assert [r.message for r in records] == ["before", text, "after"]
    assert records[1].seq == seq and records[1].level == 40 and records[1].logger == "app.big"
    assert records[1].fields == {"n": length} and not records[1].truncated


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(st.text(max_size=700), min_size=1, max_size=20), data=st.data())
def test_round_trip_random_unicode(tmp_path: Path, messages: list[str], data: st.DataObject) -> None:
    """Random unicode messages with random fields, levels and loggers are read back exactly and in order."""
    path = tmp_path / "h.mmlog"
    if path.exists():
        path.unlink()
    expected = []
    with RingWriter(path, size=512 * 256) as w:
        for text in messages:
            level = data.draw(st.integers(0, 255))
            logger = data.draw(st.sampled_from(["", "a", "a.b.c", "ü" * 70]))
            fields = data.draw(st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=20), max_size=3))
            seq = w.write(text, level=level, logger=logger, fields=fields)
            expected.append((seq, text, level, logger, fields or {}))
    got = [(r.seq, r.message, r.level, r.logger, r.fields) for r in mmaplog.read(path)]
    assert got == expected


def test_messages_with_nul_and_control_bytes_survive(tmp_path: Path) -> None:
    """NUL bytes (also trailing ones) and control characters are data, kept exactly."""
    path = tmp_path / "a.mmlog"
    texts = ["a\0b", "end\0\0", "\0", "\x1b[31mred\x1b[0m", "tab\tnew\nline"]
    with RingWriter(path, size=64 * 256) as w:
        for t in texts:
            w.write(t)
    assert [r.message for r in mmaplog.read(path)] == texts


def test_lone_surrogates_are_written_visibly(tmp_path: Path) -> None:
    """A message with a lone surrogate is stored with a visible escape instead of failing."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        assert w.write("bad \ud800 char") == 1
    assert [r.message for r in mmaplog.read(path)] == ["bad \\ud800 char"]


def test_oversized_record_is_cut_with_a_marker(tmp_path: Path) -> None:
    """A record larger than a quarter of the ring is cut, flagged, and ends with the visible marker."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        w.write("x" * 100_000)
    (record,) = mmaplog.read(path)
    assert record.truncated and record.message.endswith(L.TRUNCATION_MARKER)
    assert len(record.message.encode()) <= 16 * PAYLOAD
    assert mmaplog.scan(path).stats.truncated == 1


def test_wrap_around_returns_exactly_the_newest(tmp_path: Path) -> None:
    """After writing 10x the capacity, the reader returns the newest records in order and counts the rest."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=32 * 256) as w:
        for i in range(320):
            w.write(f"m{i}")
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == [f"m{i}" for i in range(288, 320)]
    assert scan.stats.overwritten == 288 and scan.stats.gaps == 0 and scan.stats.invalid == 0


def test_wrap_around_with_multi_slot_records_counts_incomplete(tmp_path: Path) -> None:
    """A multi-slot record partly overwritten by the wrap is not shown and is counted as incomplete."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256) as w:
        w.write("y" * (3 * PAYLOAD))  # 3 slots: 0..2
        for i in range(14):
            w.write(f"m{i}")  # slots 3..15 then 0: overwrites part 0 of the big record
    scan = mmaplog.scan(path)
    assert scan.stats.incomplete == 1
    assert [r.message for r in scan.iter_records()] == [f"m{i}" for i in range(14)]


def test_every_prefix_of_a_torn_slot_is_rejected(tmp_path: Path) -> None:
    """For every cut point of a slot written over an older slot, the torn slot is never shown."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=4 * 256) as w:
        w.write("old record at slot zero", logger="old")
        for i in range(3):
            w.write(f"filler {i}")
        old = _slot_bytes(path, 0)
        w.write("new record that replaces it", logger="new", fields={"k": "v"})
        new = _slot_bytes(path, 0)
    pristine = path.read_bytes()
    assert old != new
    for cut in range(1, len(new)):
        torn = new[:cut] + old[cut:]
        path.write_bytes(pristine)
        _put_slot(path, 0, torn)
        messages = [r.message for r in mmaplog.read(path)]
        if torn == new:  # the old bytes left over equal the new ones: the slot is complete
            continue
        assert "new record that replaces it" not in messages, cut
        if torn != old:
            assert "old record at slot zero" not in messages, cut
            assert mmaplog.scan(path).stats.invalid == 1, cut
        assert messages[-3:] == ["filler 0", "filler 1", "filler 2"][-len(messages[-3:]) :]


def test_torn_slot_at_any_tear_shape_is_rejected(tmp_path: Path) -> None:
    """A slot whose new bytes land as a suffix or a middle piece (not a prefix) is rejected too."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=4 * 256) as w:
        for i in range(4):
            w.write(f"old {i}")
        old = _slot_bytes(path, 0)
        w.write("new")
        new = _slot_bytes(path, 0)
    pristine = path.read_bytes()
    for start, end in [(8, 256), (16, 200), (48, 60), (0, 248), (248, 252), (252, 256)]:
        torn = old[:start] + new[start:end] + old[end:]
        path.write_bytes(pristine)
        _put_slot(path, 0, torn)
        assert [r.message for r in mmaplog.read(path)] == ["old 1", "old 2", "old 3"], (start, end)


def test_dead_writer_hole_does_not_hide_later_records(tmp_path: Path) -> None:
    """A slot claimed by a thread that never committed leaves a counted gap; later records still show."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        w.write("before")
        next(w._seqs), next(w._map.positions)  # a writer that claimed a record and died
        w.write("after 1")
        w.write("after 2")
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["before", "after 1", "after 2"]
    assert [int(s) for s in scan.records["seq"]] == [1, 3, 4]
    assert scan.stats.gaps == 1


def test_half_written_slot_of_a_dead_writer_is_invalid(tmp_path: Path) -> None:
    """A slot whose body was copied but whose commit word never was counts as invalid, not as a record."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        w.write("one")
        w.write("two")
        w.write("three")
    raw = bytearray(_slot_bytes(path, 1))
    raw[-8:] = bytes(8)  # trailer never written
    _put_slot(path, 1, bytes(raw))
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["one", "three"]
    assert scan.stats.invalid == 1 and scan.stats.gaps == 1


def test_slot_at_the_wrong_index_is_rejected(tmp_path: Path) -> None:
    """A valid slot copied to another index is rejected: pos pins each slot to one place."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256) as w:
        w.write("first")
        w.write("second")
    _put_slot(path, 5, _slot_bytes(path, 0))
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["first", "second"]
    assert scan.stats.invalid == 1


def test_merge_several_files_by_time(tmp_path: Path) -> None:
    """Records of several writers (one file each) are merged by time."""
    a, b = tmp_path / "a.mmlog", tmp_path / "b.mmlog"
    with RingWriter(a, size=64 * 256) as wa, RingWriter(b, size=64 * 256) as wb:
        for i in range(10):
            (wa if i % 3 else wb).write(f"m{i}", time_ns=1_000_000 + i)
    records = list(mmaplog.read([a, b]))
    assert [r.message for r in records] == [f"m{i}" for i in range(10)]
    assert {r.source for r in records} == {str(a), str(b)}


def test_read_array_columns(tmp_path: Path) -> None:
    """read_array returns one structured row per record with the documented columns."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        w.write("x", level=30, logger="app", fields={"a": 1})
        w.write("y", level=10, exception="Traceback: boom")
    arr = mmaplog.read_array(path)
    assert arr.dtype.names is not None and {"seq", "time_ns", "level", "logger", "thread", "pid", "message"} <= set(arr.dtype.names)
    assert arr["level"].tolist() == [30, 10]
    assert arr["logger"].tolist() == ["app", ""]
    assert arr["pid"].tolist() == [os.getpid()] * 2
    assert arr["fields"][0] == {"a": 1} and arr["exception"][1] == "Traceback: boom"


def test_reading_a_file_while_it_is_written(tmp_path: Path) -> None:
    """A file open by a live writer reads consistently (only complete records)."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        for i in range(10):
            w.write(f"m{i}")
        assert [r.message for r in mmaplog.read(path)] == [f"m{i}" for i in range(10)]
        w.write("m10")
        assert len(list(mmaplog.read(path))) == 11


def test_logger_prefix_filter_is_dotted(tmp_path: Path) -> None:
    """The logger filter keeps a dotted prefix and its children only."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        for name in ["app", "app.db", "app.db.pool", "app.dbx", "other"]:
            w.write(name, logger=name)
    assert [r.logger for r in mmaplog.read(path, logger="app.db")] == ["app.db", "app.db.pool"]
    assert [r.logger for r in mmaplog.read(path, min_level="INFO", logger="app")] == ["app", "app.db", "app.db.pool", "app.dbx"]


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.mmlog"
    with RingWriter(good, size=16 * 256) as w:
        w.write("hello")
    raw = good.read_bytes()
    cases: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "not an mmaplog file"),
        "text": (b"hello world, just text\n" * 10, "bad magic"),
        "truncated_header": (raw[:100], "truncated header"),
        # (A file cut past its header is read for what it holds: tests/test_short_file.py.)
        "newer_major": (raw[:8] + struct.pack("<HH", 3, 0) + raw[12:], "format version 3.0 is not supported"),
        "corrupt_header": (raw[:100] + b"\xff" + raw[101:], "checksum mismatch"),
    }
    header = mmaplog.scan(good).files[0].header
    for name, change, reason in [
        ("slot_size_zero", {"slot_size": 0}, "bad slot size 0"),
    ]:
        cases[name] = (L.encode_header(header._replace(**change)) + raw[220:], reason)
    out = {}
    for name, (content, reason) in cases.items():
        p = tmp_path / f"{name}.mmlog"
        p.write_bytes(content)
        out[name] = (p, reason)
    return out


def test_bad_input_raises_format_error_naming_the_file(tmp_path: Path) -> None:
    """Every kind of bad file raises FormatError with the path and a one-line reason."""
    for name, (path, reason) in _bad_files(tmp_path).items():
        with pytest.raises(mmaplog.FormatError) as info:
            mmaplog.read_array(path)
        message = str(info.value)
        assert message.startswith(str(path)) and reason in message and "\n" not in message, (name, message)


def test_missing_file_and_directory_raise_format_error(tmp_path: Path) -> None:
    """A missing path or a directory raises FormatError, not OSError."""
    with pytest.raises(mmaplog.FormatError, match="No such file"):
        mmaplog.read_array(tmp_path / "nope.mmlog")
    with pytest.raises(mmaplog.FormatError):
        mmaplog.read_array(tmp_path)


def test_extra_bytes_after_the_ring_are_ignored(tmp_path: Path) -> None:
    """Trailing garbage past the declared slots does not change what is read."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256) as w:
        w.write("only")
    with open(path, "ab") as f:
        f.write(os.urandom(5000))
    assert [r.message for r in mmaplog.read(path)] == ["only"]


def test_segments_are_found_beside_the_live_file(tmp_path: Path) -> None:
    """Reading the live path also reads its sealed segments, in seq order, and only of the same series."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256, rotate=5) as w:
        for i in range(40):
            w.write(f"m{i}")
    stranger = tmp_path / "other.mmlog"
    with RingWriter(stranger, size=16 * 256) as w:
        w.write("not mine")
    shutil.copy(stranger, tmp_path / "a.mmlog.000099")
    messages = [r.message for r in mmaplog.read(path)]
    assert messages[: 40] == [f"m{i}" for i in range(40)]
    assert mmaplog.scan(path, segments=False).stats.files == 1


def test_reader_validity_mask_rejects_unknown_flags() -> None:
    """A slot with flag bits this version does not know is invalid even with a good checksum."""
    import zlib

    from mmaplog._codec import valid_slots

    slot = np.zeros(1, dtype=L.SLOT_DTYPE)
    slot["pos"] = 1
    slot["seq"] = 1
    slot["flags"] = L.FLAG_FIRST | L.FLAG_LAST | 0x80
    raw = slot.view(np.uint8)
    slot["check"] = zlib.crc32(raw[: L.SLOT_HEADER_SIZE].tobytes())
    slot["commit"] = 1
    assert not valid_slots(slot, 16)[0]
    slot["flags"] = L.FLAG_FIRST | L.FLAG_LAST
    slot["check"] = zlib.crc32(slot.view(np.uint8)[: L.SLOT_HEADER_SIZE].tobytes())
    assert valid_slots(slot, 16)[0]
