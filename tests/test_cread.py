"""The C reader accelerator (mmaplog._cread) against the pure-Python paths: same rows, stats and JSON bytes.

Every test runs the same input through both paths in this process (the pure
path by switching the accelerator off) and compares everything a user can see:
each record field, the read statistics, and the bytes ``mmaplog-read -o json``
writes.  Inputs cover torn, corrupt and forged slots, multi-slot records,
wrapped rings, invalid UTF-8, every kind of character JSON must escape, and
empty or shrinking files.
"""

from __future__ import annotations

import math
import os
import random
import struct
import subprocess
import sys
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import mmaplog
from mmaplog import _codec, reader
from mmaplog import layout as L
from mmaplog.cli._output import JsonFormatter
from mmaplog.reader import RECORD_DTYPE, RingFile
from mmaplog.writer import RingWriter

CREAD = _codec.accelerator()
pytestmark = pytest.mark.skipif(CREAD is None, reason="the C reader accelerator is not built or is turned off")

SLOT_HEADER = struct.Struct(L.SLOT_HEADER_FORMAT)
ROOT = Path(__file__).resolve().parent.parent
#: Text that exercises every escaping rule: quotes, backslashes, C0 controls, DEL, C1, non-ASCII of 2, 3, 4 bytes.
NASTY = ['say "hi"', "back\\slash", "nul\x00byte", "tab\tnew\nline\rcr\b\f", "\x1b[31mred\x1b[0m", "del\x7f",
         "c1 \x85\x9f", "é ü ñ", "中文 日本語", "emoji 🎉 𝄞", "\u2028\u2029", "\ufeffbom", "", " ", "x" * 500]


def _pure_scan(paths: object, monkeypatch: pytest.MonkeyPatch) -> reader.Scan:
    with monkeypatch.context() as m:
        m.setattr(_codec, "_accelerator", [None])
        return mmaplog.scan(paths)  # type: ignore[arg-type]


def _pure_json(rows: np.ndarray, meta: list[tuple[str, str]]) -> bytes:
    return JsonFormatter().block(rows, meta).encode("utf-8", "backslashreplace")


def _same_rows(native: np.ndarray, pure: np.ndarray) -> None:
    assert native.dtype == pure.dtype == RECORD_DTYPE
    assert len(native) == len(pure)
    for name in RECORD_DTYPE.names or ():
        a, b = native[name], pure[name]
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
                assert type(x) is type(y) and x == y, (name, i, x, y)
        else:
            assert np.array_equal(a, b), name


def both(paths: object, monkeypatch: pytest.MonkeyPatch) -> reader.Scan:
    """Scan ``paths`` with and without the accelerator, check every visible result is the same, return the native one."""
    native = mmaplog.scan(paths)  # type: ignore[arg-type]
    pure = _pure_scan(paths, monkeypatch)
    _same_rows(native.records, pure.records)
    assert asdict(native.stats) == asdict(pure.stats)
    meta = [(f.header.hostname, f.header.process_name) for f in native.files]
    assert bytes(JsonFormatter().encoded(native.records, meta)) == _pure_json(pure.records, meta)
    return native


def _ring(path: Path, slots: int = 64, slot_size: int = 128) -> RingWriter:
    return RingWriter(path, slots * slot_size, slot_size=slot_size, prefault=False)


def _forge(slot_size: int, index: int, lap: int = 0, *, seq: int = 1, payload: bytes = b"hello", flags: int = 3,
           part: int = 0, logger: int = 0, level: int = 20, msg_len: int | None = None, rec_len: int | None = None,
           length: int | None = None, time_ns: int = 1_700_000_000_123_456_789, slot_count: int = 64,
           pos: int | None = None, legacy: bool = False) -> bytes:
    """A slot with a correct checksum and commit word: whatever its fields say, only the field checks can reject it.

    ``legacy``: the format 1.x check (adler32 of the whole body) instead of CRC-32 of the used bytes.
    """
    if pos is None:
        pos = lap * slot_count + index + 1
    length = len(payload) if length is None else length
    rec_len = len(payload) if rec_len is None else rec_len
    msg_len = rec_len if msg_len is None else msg_len
    head = SLOT_HEADER.pack(pos, seq, time_ns, 7, rec_len, msg_len, length, part, logger, level, flags)
    body = (head + payload).ljust(slot_size - 8, b"\0")[: slot_size - 8]
    check = zlib.adler32(body) if legacy else zlib.crc32(body[: SLOT_HEADER.size + length])
    return body + struct.pack("<II", check, pos & 0xFFFFFFFF)


def _put(path: Path, index: int, raw: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(L.DATA_OFFSET + index * len(raw))
        f.write(raw)


# --------------------------------------------------------------------------- whole files


def test_layout_and_record_dtype_agree_with_the_accelerator() -> None:
    """The accelerator was built for this format and fills exactly RECORD_DTYPE's fields."""
    assert CREAD is not None and CREAD.LAYOUT == _codec._EXPECTED_LAYOUT
    assert _codec.record_layout(RECORD_DTYPE)[0] == RECORD_DTYPE.itemsize


def test_empty_ring_and_fresh_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ring nobody wrote to reads as no records and all slots empty, both ways."""
    path = tmp_path / "a.mmlog"
    _ring(path).close()
    result = both(path, monkeypatch)
    assert len(result.records) == 0 and result.stats.empty == 64


def test_messages_that_need_escaping_and_every_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quotes, backslashes, controls, DEL, C1, non-ASCII and lone surrogates come back and print the same."""
    path = tmp_path / "a.mmlog"
    with _ring(path, 512, 256) as w:
        for i, text in enumerate(NASTY + ["lone \ud800 surrogate", "\udfff"]):
            w.write(text, level=[0, 5, 10, 20, 30, 40, 50, 7, 255][i % 9], logger=["", "app", "é.x", 'q"x'][i % 4])
    result = both(path, monkeypatch)
    assert len(result.records) == len(NASTY) + 2


def test_fields_exceptions_long_loggers_and_multi_slot_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records with fields, tracebacks, inline logger names and several slots are assembled alike."""
    path = tmp_path / "a.mmlog"
    with _ring(path, 256, 128) as w:
        for i in range(60):
            w.write(
                NASTY[i % len(NASTY)] * (1 + i % 4),
                logger="l" * (70 + i) if i % 5 == 0 else f"app.{i % 3}",
                fields={"n": i, "f": math.nan if i % 7 == 0 else 0.5, "s": NASTY[i % len(NASTY)]} if i % 2 else None,
                exception=f"Traceback\n  line {i}\nValueError: \x1b{i}" if i % 3 == 0 else None,
            )
        w.write("", fields={})
        w.write("x", exception="")
    result = both(path, monkeypatch)
    assert len(result.records) == 62
    assert (result.records["fields"] != None).sum() > 20  # noqa: E711 - numpy elementwise comparison


def test_wrapped_ring_with_records_torn_by_the_wrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ring written round several times (one- and multi-slot records) keeps the same newest records and counts."""
    path = tmp_path / "a.mmlog"
    with _ring(path, 32, 128) as w:
        for i in range(300):
            w.write(f"record {i} " + "z" * (i % 200), logger=f"w{i % 4}")
    result = both(path, monkeypatch)
    assert result.stats.overwritten > 0 and result.stats.incomplete >= 0


def test_several_files_and_segments_merge_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotated segments of one series and files of two series are ordered and merged alike."""
    with RingWriter(tmp_path / "a.mmlog", 16 * 128, slot_size=128, rotate=3, prefault=False) as w:
        for i in range(100):
            w.write(f"a{i}" + "y" * (i % 150))
    with _ring(tmp_path / "b.mmlog") as w:
        for i in range(40):
            w.write(f"b{i}")
    result = both([tmp_path / "a.mmlog", tmp_path / "b.mmlog"], monkeypatch)
    assert len(result.files) > 2


def test_torn_corrupt_and_misplaced_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit flips, zeroed commit words, slots copied to the wrong index and torn copies are rejected alike."""
    path = tmp_path / "a.mmlog"
    with _ring(path, 64, 128) as w:
        for i in range(200):
            w.write(f"m{i} " + "q" * (i % 90))
    rng = random.Random(7)
    raw = bytearray(path.read_bytes())
    for _ in range(40):
        slot = rng.randrange(64)
        at = L.DATA_OFFSET + slot * 128 + rng.randrange(128)
        raw[at] ^= 1 << rng.randrange(8)
    raw[L.DATA_OFFSET + 5 * 128 + 124 : L.DATA_OFFSET + 6 * 128] = b"\0\0\0\0"  # commit word gone
    raw[L.DATA_OFFSET + 9 * 128 : L.DATA_OFFSET + 10 * 128] = raw[L.DATA_OFFSET + 3 * 128 : L.DATA_OFFSET + 4 * 128]
    raw[L.DATA_OFFSET + 11 * 128 + 60 : L.DATA_OFFSET + 11 * 128 + 70] = b"\xff" * 10  # torn mid-copy
    path.write_bytes(bytes(raw))
    result = both(path, monkeypatch)
    assert result.stats.invalid > 0


def test_forged_slots_with_valid_checksums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slots whose checksum is right but whose fields lie are judged by the same field rules both ways."""
    path = tmp_path / "a.mmlog"
    _ring(path).close()
    size = 128
    forged = [
        _forge(size, 0, seq=1),
        _forge(size, 1, seq=2, payload=b"\xff\xfe bad utf-8 \xc3\x28 \xed\xa0\x80 \xf0\x9f"),
        _forge(size, 2, seq=3, flags=0x40 | 3),  # unknown flag
        _forge(size, 3, seq=4, part=1),  # FIRST with part 1
        _forge(size, 4, seq=5, msg_len=2),  # no extras but msg_len != rec_len
        _forge(size, 5, seq=6, length=100, rec_len=100, payload=b"x" * 100),  # longer than the payload
        _forge(size, 6, seq=0),  # seq 0
        _forge(size, 7, seq=1 << 63),  # seq past 2**63
        _forge(size, 8, seq=9, pos=9 + 64 * 3),  # a later lap at the right index
        _forge(size, 9, seq=10, pos=3),  # pos of another index
        _forge(size, 10, seq=11, logger=4000, level=255),  # logger without a name entry
        _forge(size, 11, seq=12, payload=b"a\0\0", time_ns=-1),  # trailing NULs are message bytes
        _forge(size, 12, seq=12, payload=b"dup of seq 12, higher pos"),
        _forge(size, 13, seq=14, payload=b"", time_ns=-(1 << 63)),
        _forge(size, 14, seq=15, time_ns=(1 << 63) - 1, payload=b"\x05\x00\x00\x00abcde", flags=3 | 0x20, msg_len=0),
        _forge(size, 15, seq=16, flags=3 | 0x04, msg_len=1, payload=b"m{\"k\": [1, 2]}"),
        _forge(size, 16, seq=17, flags=3 | 0x04, msg_len=1, payload=b"m{not json"),
        _forge(size, 17, seq=18, flags=3 | 0x10, msg_len=1, payload=b"\x03abcm"),
        _forge(size, 18, seq=19, flags=3 | 0x10, msg_len=0, payload=b"\xff"),  # inline logger longer than payload
        _forge(size, 19, seq=20, flags=1, rec_len=10, payload=b"first"),  # first part of a record never finished
        _forge(size, 20, seq=21, flags=1, rec_len=10, payload=b"01234"),
        _forge(size, 21, seq=21, flags=2, part=1, rec_len=10, payload=b"56789"),
        _forge(size, 22, seq=21, flags=2, part=1, rec_len=10, payload=b"abcde"),  # a newer copy of part 1
        _forge(size, 23, seq=23, flags=3),
        _forge(size, 24, seq=23, flags=1, rec_len=6, payload=b"abc"),  # a seq both one-slot and multi-slot
        _forge(size, 25, seq=23, flags=2, part=1, rec_len=6, payload=b"def"),
        _forge(size, 26, seq=27, flags=3 | 0x04, msg_len=6, payload=b"hello"),  # message longer than the record
    ]
    for index, raw in enumerate(forged):
        _put(path, index, raw)
    result = both(path, monkeypatch)
    assert result.stats.invalid >= 6 and result.stats.duplicates >= 1


def test_randomly_forged_rings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rings of random forged slots (random fields, flags, laps, seqs, payloads) read alike, seed after seed."""
    size, count = 96, 64
    for seed in range(25):
        rng = random.Random(seed)
        path = tmp_path / f"r{seed}.mmlog"
        _ring(path, count, size).close()
        for index in range(count):
            if rng.random() < 0.15:
                continue
            payload = bytes(rng.choice([0x41, 0x00, 0xC3, 0xA9, 0xFF, 0x22, 0x5C, 0x0A, 0x7F]) for _ in range(rng.randrange(41)))
            flags = rng.choice([3, 3, 3, 1, 2, 0, 3 | 0x04, 3 | 0x10, 3 | 0x20, 3 | 0x08, 1 | 0x04])
            rec = len(payload) if flags & 3 == 3 else rng.randrange(80)
            raw = _forge(
                size, index, lap=rng.choice([0, 0, 1, 2]), seq=rng.randrange(1, 40), payload=payload, flags=flags,
                part=0 if flags & 1 else rng.randrange(3), logger=rng.choice([0, 1, 2, 70]),
                level=rng.randrange(256), rec_len=rec, msg_len=rng.randrange(rec + 2) if flags & 0x34 else rec,
                time_ns=rng.randrange(-(1 << 63), 1 << 63), slot_count=count,
            )
            if rng.random() < 0.1:
                raw = raw[:-8] + bytes(8)  # uncommitted
            _put(path, index, raw)
        both(path, monkeypatch)


def test_a_file_that_shrinks_after_opening_reads_as_empty_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slots past the file's current end, and a partial last slot, count as empty on both paths."""
    path = tmp_path / "a.mmlog"
    with _ring(path, 64, 128) as w:
        for i in range(64):
            w.write(f"m{i}")
    pristine = path.read_bytes()
    results = []
    for accelerated in (True, False):
        path.write_bytes(pristine)
        ring = RingFile(path)
        os.truncate(path, L.DATA_OFFSET + 20 * 128 + 50)
        with monkeypatch.context() as m:
            if not accelerated:
                m.setattr(_codec, "_accelerator", [None])
            results.append(reader._read_file(ring, 0)[:3])
        ring.close()
    (rows_a, stats_a, inc_a), (rows_b, stats_b, inc_b) = results
    _same_rows(rows_a, rows_b)
    assert asdict(stats_a) == asdict(stats_b) and inc_a == inc_b
    assert stats_a.empty == 44 and len(rows_a) == 20


# --------------------------------------------------------------------------- JSON lines from any rows


def _rows(messages: list[object], **columns: object) -> np.ndarray:
    rows = np.zeros(len(messages), dtype=RECORD_DTYPE)
    rows["message"] = np.array(messages + [None], dtype=object)[:-1]
    rows["logger"] = "app"
    for name, value in columns.items():
        column = np.empty(len(messages), dtype=object) if RECORD_DTYPE[name].hasobject else None
        if column is not None:
            column[:] = value  # type: ignore[call-overload]
            rows[name] = column
        else:
            rows[name] = value
    return rows


def test_json_of_every_character_class_and_time() -> None:
    """Every code point class, every level and extreme times print the same JSON bytes as the pure formatter."""
    chars = [chr(c) for c in range(0x250)] + ["\ud800", "\udbff\udc00", "\udfff", "\U0010ffff", "\u0600"]
    messages: list[object] = [*chars, "".join(chars), *NASTY]
    n = len(messages)
    times = [-(1 << 63), (1 << 63) - 1, -1, 0, 1, 999, -999_999_999, 951_782_400_000_000_000, 4_107_542_399_999_999_999]
    rows = _rows(
        messages,
        level=np.arange(n) % 256,
        time_ns=np.resize(np.array(times, dtype=np.int64), n),
        seq=np.arange(n, dtype=np.uint64) * 0x0123456789ABCDEF,
        thread=np.arange(n, dtype=np.uint64) * 0xFFFFFFFFFFFF,
        pid=np.arange(n, dtype=np.uint32) * 77777,
        file=np.arange(n) % 2,
        logger=[chars[i % len(chars)] * 3 for i in range(n)],
    )
    meta = [("hôst\x1b", 'pro"c\\'), ("", "\ud800")]
    assert bytes(JsonFormatter().encoded(rows, meta)) == _pure_json(rows, meta)


def test_json_fields_and_exceptions() -> None:
    """Fields (falsy, NaN, nested, non-ASCII) and exceptions (empty, multi-line) print the same."""
    fields = [None, {}, {"a": 1}, {"nan": math.nan, "inf": -math.inf, "l": [math.nan, {"x": "\x7f\ud800"}]}, {"é": "ü"}]
    exceptions = [None, "", "Traceback\n  boom\x1b", "\x85"]
    n = 20
    rows = _rows(
        [f"m{i}" for i in range(n)],
        fields=[fields[i % len(fields)] for i in range(n)],
        exception=[exceptions[i % len(exceptions)] for i in range(n)],
    )
    assert bytes(JsonFormatter().encoded(rows, [("h", "p")])) == _pure_json(rows, [("h", "p")])


def test_json_of_rows_the_pure_formatter_must_judge() -> None:
    """Rows holding a non-str message, a non-str exception or a file index past the meta fail the same way."""
    cases = [_rows([b"bytes"]), _rows(["m"], exception=[42]), _rows(["m"], file=3), _rows(["m"], logger=[None])]
    for rows in cases:
        errors: list[type[BaseException] | None] = []
        for accelerated in (True, False):
            try:
                if accelerated:
                    JsonFormatter().encoded(rows, [("h", "p")])
                else:
                    _pure_json(rows, [("h", "p")])
            except Exception as exc:  # noqa: BLE001 - the exception type is what is compared
                errors.append(type(exc))
            else:
                errors.append(None)
        assert errors[0] is not None and errors[0] == errors[1]
    sliced = _rows([f"m{i}" for i in range(10)])[::3]  # not contiguous: copied first
    assert bytes(JsonFormatter().encoded(sliced, [("h", "p")])) == _pure_json(sliced, [("h", "p")])


def test_cli_json_matches_the_pure_python_process(tmp_path: Path) -> None:
    """``mmaplog-read -o json`` prints the same bytes with the accelerator and with MMAPLOG_PURE_PYTHON=1."""
    path = tmp_path / "a.mmlog"
    with _ring(path, 128, 128) as w:
        for i in range(300):
            w.write(NASTY[i % len(NASTY)] + f" {i}", level=10 * (i % 6), logger=f"app.{i % 5}",
                    fields={"i": i} if i % 4 == 0 else None)
    outputs = []
    for pure in ("0", "1"):
        env = {**os.environ, "MMAPLOG_PURE_PYTHON": pure}
        done = subprocess.run([sys.executable, "-m", "mmaplog.cli.read", "-o", "json", str(path)], capture_output=True,
                              env=env, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") > 50


# --------------------------------------------------------------------------- the C API on its own


@pytest.mark.parametrize("legacy", [False, True], ids=["crc32", "adler32"])
def test_checksum_equals_zlib_for_every_slot_shape(legacy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slots whose check word is zlib.crc32 of the used bytes (format 1.x: zlib.adler32 of the body) pass and one off
    fails: zero or non-zero padding (refused by 2.x, summed by 1.x), largest slots; both paths agree."""
    assert CREAD is not None
    rng = random.Random(3)
    for size in (64, 128, 256, 4096, 65536):
        slots = []
        for kind in range(6):
            payload_size = size - 56
            length = payload_size if kind == 5 else rng.randrange(payload_size + 1)
            fill = (lambda: 0xFF) if kind == 0 else (lambda: rng.randrange(256))
            payload = bytes(fill() for _ in range(length))
            head = SLOT_HEADER.pack(kind + 1, kind + 1, 5, 7, length, length, length, 0, 0, 20, 3)
            body = bytearray((head + payload).ljust(size - 8, b"\0"))
            if kind == 4 and length < payload_size:
                body[-1] = 1  # padding that is not zero, as a writer never leaves it
            used = bytes(body[: SLOT_HEADER.size + length])
            check = (zlib.adler32(bytes(body)) if legacy else zlib.crc32(used)) + (kind == 3)  # kind 3: one off
            slots.append(bytes(body) + struct.pack("<II", check & 0xFFFFFFFF, kind + 1))
            if kind == 4:
                dirty = length < payload_size
        raw = b"".join(slots)
        mask = CREAD.valid_mask(raw, size, 64, np.arange(6, dtype=np.uint64), legacy)
        expected = [1, 1, 1, 0, int(legacy or not dirty), 1]
        assert list(mask) == expected, size
        with monkeypatch.context() as m:
            m.setattr(_codec, "_accelerator", [None])
            pure = _codec.valid_slots(np.frombuffer(raw, dtype=L.slot_dtype(size)), 64, legacy=legacy)
        assert list(pure.astype(int)) == expected, size


def test_crc32_equals_zlib_for_every_length() -> None:
    """The C CRC-32 (carry-less multiplication for 64 bytes and more, tables for the rest) is zlib.crc32 at every
    length a 4 KiB slot can use, 48..4088 bytes; a check one off fails at every length."""
    assert CREAD is not None
    size = 4096
    rng = random.Random(8)
    noise = bytes(rng.randrange(256) for _ in range(size))
    rows = []
    for length in range(size - 56 + 1):
        head = SLOT_HEADER.pack(length + 1, length + 1, 5, 7, length, length, length, 0, 0, 20, 3)
        used = head + noise[:length]
        rows.append((used + bytes(size - 8 - len(used)), zlib.crc32(used), length + 1))
    raw = b"".join(body + struct.pack("<II", check, pos & 0xFFFFFFFF) for body, check, pos in rows)
    index = np.arange(len(rows), dtype=np.uint64)
    assert bytes(CREAD.valid_mask(raw, size, len(rows), index)) == b"\1" * len(rows)
    raw = b"".join(body + struct.pack("<II", check ^ 1, pos & 0xFFFFFFFF) for body, check, pos in rows)
    assert bytes(CREAD.valid_mask(raw, size, len(rows), index)) == bytes(len(rows))


def test_validity_masks_agree_on_forged_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """valid_slots gives the same mask with and without the accelerator, for any ring index given."""
    size, count = 96, 64
    rng = random.Random(11)
    def forged(i: int) -> bytes:
        kind = rng.random()
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(45)))
        if kind < 0.1:
            return bytes(size)
        if kind < 0.6:  # well formed, at this or another lap
            return _forge(size, i % count, lap=rng.choice([0, 1, 5]), seq=rng.randrange(1, 9), payload=payload,
                          slot_count=count)
        return _forge(size, i % count, lap=rng.choice([0, 1]), seq=rng.randrange(0, 9), flags=rng.choice([3, 1, 2, 0x43]),
                      part=rng.randrange(2), payload=payload, msg_len=rng.randrange(50), rec_len=rng.randrange(50),
                      slot_count=count)

    slots = np.frombuffer(b"".join(forged(i) for i in range(400)), dtype=L.slot_dtype(size))
    valid = []
    for index in (np.arange(400, dtype=np.uint64) % count, None, np.arange(400, dtype=np.int64) + 3):
        native = _codec.valid_slots(slots, count, index=index)
        with monkeypatch.context() as m:
            m.setattr(_codec, "_accelerator", [None])
            pure = _codec.valid_slots(slots, count, index=index)
        assert np.array_equal(native, pure) and native.flags.writeable
        valid.append(int(native.sum()))
    assert 100 < valid[0] < 400 and valid[1] < valid[0]


def test_records_keep_their_objects_alive_and_release_them(tmp_path: Path) -> None:
    """Rows outlive the reader's intermediates, views keep them alive, and dropping the last view frees the text."""
    path = tmp_path / "a.mmlog"
    with _ring(path) as w:
        w.write("only message")
    rows = mmaplog.read_array(path)
    messages = rows["message"]
    text = messages[0]
    held = sys.getrefcount(text)
    del rows
    after = sys.getrefcount(text)
    assert after == held and messages[0] == "only message"
    messages[0] = "replaced"
    released = sys.getrefcount(text)
    assert released == held - 1
    copied = messages.copy()
    del messages
    assert copied[0] == "replaced"


def test_c_entry_points_refuse_bad_arguments() -> None:
    """Buffers that do not hold whole slots, out-of-ring indexes, repeated rows and bad layouts are refused."""
    assert CREAD is not None
    layout = _codec.record_layout(RECORD_DTYPE)
    collector = CREAD.Collector(64, 4, 1, 0, layout, [])
    with pytest.raises(ValueError):
        collector.feed(bytes(100), 0)
    with pytest.raises(ValueError):
        collector.feed(bytes(64 * 2), 3)
    collector.feed(_forge(64, 0, seq=1, slot_count=4) + bytes(64), 0)
    assert (collector.count, collector.empty, collector.invalid) == (1, 1, 0)
    with pytest.raises(IndexError):
        collector.set_loggers([])
    collector.set_loggers(["root"])
    with pytest.raises(RuntimeError):
        collector.feed(bytes(64), 2)
    with pytest.raises(ValueError):
        CREAD.reorder(collector.rows(), np.array([0, 0], dtype=np.int64))
    with pytest.raises(ValueError):
        CREAD.reorder(collector.rows(), np.array([1], dtype=np.int64))
    junk = b"\xff" * (66 * 1000)
    del junk  # freed memory full of ones, likely handed out again: placeholder rows must still be zeros
    placeholders = np.ndarray((1000,), dtype=RECORD_DTYPE, buffer=CREAD.reorder(collector.rows(), np.full(1000, -1)))
    assert not placeholders["seq"].any() and not placeholders["thread"].any() and not placeholders["level"].any()
    assert set(placeholders["message"].tolist()) == {None}
    bad = list(layout)
    bad[2] = bad[1] + 4  # time_ns overlapping seq
    with pytest.raises(ValueError):
        CREAD.Collector(64, 4, 1, 0, tuple(bad), [])
    with pytest.raises(ValueError):
        CREAD.Collector(60, 4, 1, 0, layout, [])
