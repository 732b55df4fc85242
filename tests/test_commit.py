"""The slot check (CRC-32, format 2.0), reading format 1.0 files, and the seqlock-like commit protocol.

Every reader test runs on the C reader and on the pure numpy reader.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mmaplog
from mmaplog import _codec
from mmaplog import layout as L
from mmaplog import writer as writer_module
from mmaplog._record import LogRecord
from mmaplog.reader import RingFile
from mmaplog.writer import RingWriter

DATA = Path(__file__).parent / "data"
NATIVE = _codec.accelerator() is not None


@pytest.fixture(params=["native", "pure"])
def reader_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the C reader and again with the pure numpy reader."""
    if request.param == "native":
        if not NATIVE:
            pytest.skip("the C reader is not built (or MMAPLOG_PURE_PYTHON is set)")
    else:
        monkeypatch.setattr(_codec, "_accelerator", [None])
    return str(request.param)


def _slot_offset(raw: bytes | bytearray, index: int, slot_size: int = 256) -> int:
    return L.DATA_OFFSET + index * slot_size


# --------------------------------------------------------------------------- format 1.0 files


def _v1_ring(tmp_path: Path) -> Path:
    path = tmp_path / "v1.mmlog"
    path.write_bytes(gzip.decompress((DATA / "format-1.0-ring.gz").read_bytes()))
    return path


def test_a_format_1_0_file_reads_as_its_writer_left_it(tmp_path: Path, reader_path: str) -> None:
    """A ring written by mmaplog with format 1.0 (adler32 checks) reads back whole on both readers."""
    path = _v1_ring(tmp_path)
    expected = json.loads((DATA / "format-1.0.json").read_text())
    raw = path.read_bytes()
    assert struct.unpack_from("<HH", raw, 8) == (1, 0)
    result = mmaplog.scan(path)
    got = [{"seq": r.seq, "level": r.level, "logger": r.logger, "message": r.message, "fields": r.fields,
            "exception": r.exception} for r in result.iter_records()]
    assert got == expected["records"]
    assert (result.stats.invalid, result.stats.empty, result.stats.overwritten) == (
        expected["invalid"], expected["empty"], expected["overwritten"])
    assert any(r["fields"] for r in got) and any(r["exception"] for r in got) and any(len(r["logger"]) > 60 for r in got)


def test_format_1_0_slots_keep_adler32_and_2_0_slots_take_crc32(tmp_path: Path, reader_path: str) -> None:
    """A 1.0 slot resealed with CRC-32 is invalid in a 1.0 file, and an adler32-sealed slot is invalid in a 2.0 file."""
    v1 = _v1_ring(tmp_path)
    raw = bytearray(v1.read_bytes())
    slot_size = struct.unpack_from("<I", raw, 16)[0]
    off = L.DATA_OFFSET  # a valid slot (the ring is full)
    length = struct.unpack_from("<H", raw, off + 40)[0]
    before = mmaplog.scan(v1).stats.invalid
    struct.pack_into("<I", raw, off + slot_size - 8, zlib.crc32(bytes(raw[off : off + 48 + length])))
    v1.write_bytes(bytes(raw))
    assert mmaplog.scan(v1).stats.invalid == before + 1

    v2 = tmp_path / "v2.mmlog"
    with RingWriter(v2, size=4 * 256) as w:
        w.write("crc sealed")
    raw = bytearray(v2.read_bytes())
    off = L.DATA_OFFSET
    struct.pack_into("<I", raw, off + 248, zlib.adler32(bytes(raw[off : off + 248])))
    v2.write_bytes(bytes(raw))
    assert mmaplog.scan(v2).stats.invalid == 1 and not list(mmaplog.read(v2))


def test_a_writer_refuses_to_append_to_a_format_1_0_file_and_leaves_it_alone(tmp_path: Path) -> None:
    """Records sealed with CRC-32 in a file whose header says 1.0 would read as corrupt: the writer says so instead."""
    path = _v1_ring(tmp_path)
    before = path.read_bytes()
    with pytest.raises(mmaplog.FormatError, match=r"format 1\.0 ring written by an older mmaplog"):
        RingWriter(path, size=24 * 128, slot_size=128)
    assert path.read_bytes() == before


def test_new_files_are_format_2_1_with_a_crc32_header_check(tmp_path: Path) -> None:
    """The header says 2.1 and its check word is CRC-32 of its first 216 bytes."""
    path = tmp_path / "a.mmlog"
    RingWriter(path, size=4 * 256).close()
    raw = path.read_bytes()
    assert mmaplog.FORMAT_VERSION == (2, 1)  # 2.1: the source-location fields (docs/FORMAT.md)
    assert struct.unpack_from("<HH", raw, 8) == (2, 1)
    assert struct.unpack_from("<I", raw, 216)[0] == zlib.crc32(raw[:216])


# --------------------------------------------------------------------------- torn copies


def _two_laps(tmp_path: Path, old: str, new: str) -> tuple[Path, bytes, bytes, int]:
    """A 4-slot ring where slot 0 held ``old`` and, one lap later, holds ``new``; (path, before, after, offset)."""
    path = tmp_path / "torn.mmlog"
    with RingWriter(path, size=4 * 256) as w:
        w.write(old)
        before = path.read_bytes()
        for i in range(3):
            w.write(f"filler {i}")
        w.write(new)
    after = path.read_bytes()
    return path, before, after, L.DATA_OFFSET


def test_a_torn_copy_with_compensating_changes_is_rejected(tmp_path: Path, reader_path: str) -> None:
    """New header and trailer around old payload bytes that differ by swapped digits: adler32 would accept it."""
    old, new = b"order 21 qty 34", b"order 12 qty 43"
    path, before, after, off = _two_laps(tmp_path, old.decode(), new.decode())
    torn = bytearray(after)
    torn[off + 48 + 6 : off + 48 + len(new)] = before[off + 48 + 6 : off + 48 + len(old)]
    slot = bytes(torn[off : off + 256])
    # The image the old check would have let through, and the new check does not.
    assert zlib.adler32(slot[:248]) == zlib.adler32(after[off : off + 248])
    assert zlib.crc32(slot[: 48 + len(new)]) != struct.unpack_from("<I", slot, 248)[0]
    path.write_bytes(bytes(torn))
    result = mmaplog.scan(path)
    assert [r.message for r in result.iter_records()] == ["filler 0", "filler 1", "filler 2"]
    assert result.stats.invalid == 1


def test_random_mixes_of_old_and_new_bytes_are_never_accepted(tmp_path: Path, reader_path: str) -> None:
    """Any torn image (new header and trailer, any subset of old payload bytes, any cut point) reads as invalid."""
    rng = random.Random(5)
    old = "".join(rng.choice("0123456789 abc") for _ in range(150))
    new = "".join(rng.choice("0123456789 abc") for _ in range(150))
    _, before, after, off = _two_laps(tmp_path, old, new)
    old_slot, new_slot = before[off : off + 256], after[off : off + 256]
    images = []
    for _ in range(400):
        mix = bytearray(new_slot)
        kind = rng.randrange(3)
        if kind == 0:  # scattered old bytes
            for i in rng.sample(range(48, 248), rng.randrange(1, 12)):
                mix[i] = old_slot[i]
        elif kind == 1:  # a run of old bytes (a copy that overtook the writer)
            a = rng.randrange(8, 247)
            b = rng.randrange(a + 1, 248)
            mix[a:b] = old_slot[a:b]
        else:  # two old bytes swapped into place, and a compensating pair
            i, j = rng.sample(range(48, 48 + 150), 2)
            mix[i], mix[j] = new_slot[j], new_slot[i]
        if bytes(mix) != new_slot:
            images.append(bytes(mix))
    slots = np.frombuffer(b"".join(images), dtype=L.slot_dtype(256))
    index = np.zeros(len(slots), dtype=np.uint64)
    assert not _codec.valid_slots(slots, 4, index).any()
    whole = np.frombuffer(new_slot, dtype=L.slot_dtype(256))
    assert _codec.valid_slots(whole, 4, np.zeros(1, dtype=np.uint64)).all()


# --------------------------------------------------------------------------- the commit protocol


@given(pos=st.integers(1, (1 << 63) - 1),
       slot_count=st.one_of(st.integers(1, 64), st.sampled_from([1 << 31, (1 << 31) + 1, (1 << 32) - 1, (1 << 32) - 2]),
                            st.integers(1, L.MAX_SLOT_COUNT)))
def test_the_invalid_trailer_echoes_neither_the_old_nor_the_new_position(pos: int, slot_count: int) -> None:
    """While a slot is written its commit word matches neither position its pos field can hold meanwhile."""
    echo = L.invalid_echo(pos, slot_count)
    assert echo != pos & 0xFFFFFFFF
    assert echo != (pos - slot_count) & 0xFFFFFFFF


def test_a_slot_holding_the_invalid_trailer_is_never_valid(tmp_path: Path, reader_path: str) -> None:
    """A writer stopped after its first step (or mid-body): old body, new body or a mix under the invalid trailer."""
    _, before, after, off = _two_laps(tmp_path, "the old record", "the new record, longer")
    old_slot, new_slot = before[off : off + 256], after[off : off + 256]
    pos = struct.unpack_from("<Q", new_slot)[0]
    invalid = struct.pack("<II", 0, L.invalid_echo(pos, 4))
    images = [old_slot[:248] + invalid, new_slot[:248] + invalid, new_slot[:100] + old_slot[100:248] + invalid,
              old_slot[:8] + new_slot[8:248] + invalid]
    slots = np.frombuffer(b"".join(images), dtype=L.slot_dtype(256))
    assert not _codec.valid_slots(slots, 4, np.zeros(len(images), dtype=np.uint64)).any()


def test_a_slot_rewritten_between_the_two_reads_is_dropped(tmp_path: Path, reader_path: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The seqlock rule: a slot whose trailer changed while it was copied is not shown, even when whole."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=4 * 256) as w:
        for i in range(4):
            w.write(f"first lap {i}")
    with RingWriter(path, size=4 * 256) as w:
        w.write("second lap, slot 0")  # the rewrite the reader will meet between its reads
    rewritten = path.read_bytes()[L.DATA_OFFSET : L.DATA_OFFSET + 256]
    with RingWriter(path, size=4 * 256) as w:
        pass
    raw = bytearray(path.read_bytes())
    raw[L.DATA_OFFSET : L.DATA_OFFSET + 256] = _first_lap_slot(tmp_path)
    path.write_bytes(bytes(raw))

    calls = []
    original = RingFile._read_into

    def read_into(self: RingFile, buf: np.ndarray, offset: int) -> int:
        calls.append(offset)
        if len(calls) == 2:  # between the first and the second read: the writer commits slot 0 again
            with open(path, "r+b") as f:
                f.seek(L.DATA_OFFSET)
                f.write(rewritten)
        return original(self, buf, offset)

    monkeypatch.setattr(RingFile, "_read_into", read_into)
    result = mmaplog.scan(path)
    assert [r.message for r in result.iter_records()] == ["first lap 1", "first lap 2", "first lap 3"]
    assert result.stats.invalid == 1
    monkeypatch.undo()
    assert [r.message for r in mmaplog.read(path)][-1] == "second lap, slot 0"  # whole once it stays put


def _first_lap_slot(tmp_path: Path) -> bytes:
    path = tmp_path / "first.mmlog"
    with RingWriter(path, size=4 * 256) as w:
        w.write("first lap 0")
    return path.read_bytes()[L.DATA_OFFSET : L.DATA_OFFSET + 256]


_LIVE_WRITER = textwrap.dedent(
    """
    import hashlib, os, sys
    import mmaplog
    w = mmaplog.RingWriter(sys.argv[1], size=4 * 65536, slot_size=65536)
    os.write(int(sys.argv[2]), b"go")
    seq = 0
    while True:
        want = seq + 1
        seq = w.write(hashlib.sha256(str(want).encode()).hexdigest() * 1000)
    """
)


@pytest.mark.parametrize("writer_env", ["native", "pure"])
def test_a_live_reader_never_shows_a_torn_record(tmp_path: Path, reader_path: str, writer_env: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer process laps a ring of four 64 KiB slots flat out (each copy takes microseconds) while the
    reader reads it again and again, with the CRC switched off in the reader: only the commit protocol
    stands between it and a torn copy."""
    import hashlib

    path = tmp_path / "live.mmlog"
    env = dict(os.environ)
    if writer_env == "pure":
        env["MMAPLOG_PURE_PYTHON"] = "1"
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _LIVE_WRITER, str(path), str(write_fd)], pass_fds=(write_fd,),
                            env=env)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            assert pipe.read(2) == b"go"
        monkeypatch.setattr(_codec, "_accelerator", [None])  # the pure validation, where the CRC can be bypassed
        monkeypatch.setattr(_codec, "crc32_rows", lambda raw, ends: _stored_checks(raw))
        shown = reads = 0
        with RingFile(path) as ring:
            # At least 400 reads and 100 whole records: on a loaded machine most reads may catch every slot
            # mid-copy, so the count of reads is not fixed; the cap only stops a reader that never sees one.
            while (reads < 400 or shown < 100) and reads < 100_000:
                reads += 1
                slots = ring.slots()
                valid = _codec.valid_slots(slots, ring.header.slot_count)
                for s in slots[valid]:
                    seq = int(s["seq"])
                    text = hashlib.sha256(str(seq).encode()).hexdigest() * 1000
                    assert bytes(s["payload"])[: int(s["length"])] == text.encode(), seq
                    shown += 1
        assert proc.poll() is None and shown > 100
    finally:
        proc.kill()
        proc.wait()


def _stored_checks(raw: np.ndarray) -> np.ndarray:
    """Every row's own check word: a validation that trusts it (to test what the commit protocol alone gives)."""
    return np.ascontiguousarray(raw[:, raw.shape[1] - 8 : raw.shape[1] - 4]).view("<u4")[:, 0]


# --------------------------------------------------------------------------- writers agree byte for byte


@pytest.mark.skipif(writer_module._cwrite is None, reason="the C accelerator is not built (or MMAPLOG_PURE_PYTHON is set)")
def test_c_and_python_writers_write_identical_bytes(tmp_path: Path) -> None:
    """The C batch append and the Python batch path write the same slots for the same records, checks included."""
    records = [LogRecord("app" if i % 2 else "", 10 + i % 40, text, (), None, 1_700_000_000_000_000_000 + i, 77)
               for i, text in enumerate(["", "a", "é ü 中文 🙂", "x" * 200, "\0nul", "tab\tnew\nline"] * 4)]
    files = []
    for kind in ("c", "py"):
        path = tmp_path / f"{kind}.mmlog"
        with RingWriter(path, size=16 * 256) as w:
            w.write("register", logger="app", time_ns=1, thread=1)
            if kind == "c":
                assert w.write_batch(records) == len(records)
            else:
                assert RingWriter._write_batch(w, records) == len(records)
        files.append(path.read_bytes()[L.DATA_OFFSET :])
    assert files[0] == files[1]
    slots = np.frombuffer(files[0], dtype=L.SLOT_DTYPE)
    assert _codec.valid_slots(slots, 16).all()
