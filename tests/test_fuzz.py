"""Fuzzing the reader: property tests, a CI-sized run of tools/fuzz.py, every bit flipped, garbage tails.

The invariant (stated in ``tools/fuzz.py``): the reader returns exactly the
records whose slots pass validation, or raises ``mmaplog.FormatError``; nothing
else, no hang, no read outside the file, memory bounded by the file's size.
"""

from __future__ import annotations

import importlib.util
import os
import random
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmaplog
from mmaplog import _codec
from mmaplog import layout as L
from mmaplog.writer import RingWriter

ROOT = Path(__file__).resolve().parent.parent


def _load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mmaplog_fuzz_tool", ROOT / "tools" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --------------------------------------------------------------------------- the mutation fuzzer, CI-sized
def test_mutation_fuzzer_finds_no_violation(tmp_path: Path) -> None:
    """2000 mutated real files (fresh, wrapped, rotated, crashed, ...) all satisfy the invariant, for scan and follow."""
    seed = int.from_bytes(os.urandom(3), "little")
    fuzzer = fuzz.Fuzzer(tmp_path / "seeds", seed=seed, work_dir=tmp_path / "work")
    assert {s.name for s in fuzzer.seeds} >= {"fresh", "wrapped", "rotated", "crashed", "bigslot", "mixed"}
    summary = fuzzer.run(cases=2000, memory_every=10, cli_every=1000)
    report = "\n".join(f"case {i} ({name}; {muts}): {problem}" for i, name, muts, problem in summary.violations[:10])
    assert not summary.violations, f"seed {seed}: reproduce with tools/fuzz.py --seed {seed} --reproduce N\n{report}"
    # Not vacuous: both outcomes are common, every mutator ran, memory was measured, the CLI was run.
    assert summary.records > 1000 and summary.format_errors > 200, summary.line()
    assert {"bitflip", "header", "slot", "copy", "truncate", "extend", "zero", "names", "splice"} <= {
        k.rstrip("0123456789+fix") for k in summary.mutations
    }
    assert summary.memory_checks == 200 and summary.max_memory_ratio < fuzz.MEMORY_FACTOR
    assert summary.follow_runs > 300  # mmaplog.follow read a quarter of the cases too (those that open)
    if fuzz.cli_available():
        assert summary.cli_runs == 2


def test_fuzzer_oracle_catches_a_lying_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With slot validation switched off, the fuzzer reports violations: its oracle is not vacuous."""
    fuzzer = fuzz.Fuzzer(tmp_path / "seeds", seed=1, work_dir=tmp_path / "work", crash_seed=False)
    monkeypatch.setattr(_codec, "_accelerator", [None])  # the lie is planted in the pure validator
    monkeypatch.setattr(_codec, "valid_slots", lambda slots, count, index=None, **_: slots["pos"] != 0)
    summary = fuzzer.run(cases=150, memory_every=0)
    assert len(summary.violations) > 20
    assert any("no valid slots back it" in v[3] or "stats.invalid" in v[3] for v in summary.violations)


def test_fuzzer_oracle_catches_a_reader_that_raises_something_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader raising anything but FormatError is a violation the fuzzer names."""
    fuzzer = fuzz.Fuzzer(tmp_path / "seeds", seed=1, work_dir=tmp_path / "work", crash_seed=False)

    def broken(table: bytes, entries: int) -> dict[int, str]:
        raise IndexError("planted")

    monkeypatch.setattr(_codec, "decode_names", broken)
    summary = fuzzer.run(cases=30, memory_every=0)
    assert any("IndexError: planted" in v[3] for v in summary.violations)


def test_supervisor_records_a_worker_that_dies(tmp_path: Path) -> None:
    """The supervised tool survives a worker killed by SIGSEGV, records that case, and finishes the run."""
    seed_dir = tmp_path / "seeds"
    fuzz.make_seeds(seed_dir, crash=False)
    lines: list[str] = []
    summary = fuzz.supervise(seed_dir, 3, 25, None, cli_every=0, plant="crash:4", log=lines.append)
    assert summary.cases == 25
    assert [(v[0], v[3]) for v in summary.violations] == [(4, "worker died of signal 11 while reading this case")]
    assert summary.records + summary.format_errors == 25 - 5  # cases 0..4 belong to the worker that died


# --------------------------------------------------------------------------- every bit of a small file
def test_flipping_every_bit_is_detected_or_lands_in_documented_bytes(tmp_path: Path) -> None:
    """Each single-bit flip of a small ring raises FormatError, drops exactly the hit record, or changes nothing read.

    Covered: every bit of the header block (0..271), of the used name entries and
    one unused one, of every slot, and a sample of 32 further bytes; the tool
    (``tools/fuzz.py --bitflip``) flips every bit of the whole file.
    """
    data = fuzz.small_file(tmp_path / "small.mmlog")
    rng = random.Random(5)
    rest = [o for o in range(272, L.DATA_OFFSET) if not 4096 <= o < 4096 + 3 * 64]
    offsets = sorted({*range(272), *range(4096, 4096 + 3 * 64), *range(L.DATA_OFFSET, len(data)), *rng.sample(rest, 32)})
    flips, regions, failures = fuzz.flip_every_bit(data, tmp_path / "flips", offsets)
    assert not failures, "\n".join(failures)
    assert flips == 8 * len(offsets)
    # Every kind of region was hit, including the slots and the checked name entries.
    assert regions["slot in use (every byte checked)"] >= 7 * 64 * 8 - 64
    assert regions["name-table entry (length, check, name)"] == 8 * ((3 + len("app")) + (3 + len("db")))
    assert regions["header (magic, version, fields, check)"] == 8 * 220
    assert regions["bytes of an empty slot (pos 0) other than pos"] == 8 * 56


def test_name_check_catches_every_single_bit_flip_of_any_name() -> None:
    """The name-table check differs after any one-bit change of a name of 1..60 bytes or of its length byte."""
    rng = random.Random(3)
    for length in range(1, L.NAME_MAX + 1):
        name = bytes(rng.randrange(256) for _ in range(length))
        check = L.name_check(name)
        for bit in range(8 * length):
            flipped = bytearray(name)
            flipped[bit // 8] ^= 1 << (bit % 8)
            assert L.name_check(bytes(flipped)) != check, (length, bit)
        assert L.name_check(name + b"\0") != check, length  # length grown into the NUL padding


# --------------------------------------------------------------------------- garbage after a record boundary
def test_garbage_from_a_record_boundary_leaves_exactly_the_records_before_it(tmp_path: Path) -> None:
    """Garbage written from any record's first slot (+0..14 bytes) to the end of the file hides only that record and later ones."""
    path = tmp_path / "a.mmlog"
    payload = L.slot_payload_size(128)
    expected: list[tuple[int, str, str, dict[str, object]]] = []
    with RingWriter(path, size=128 * 128, slot_size=128) as w:
        for i in range(60):
            text = f"record {i} " + "x" * (i * 13 % (3 * payload))
            fields = {"i": i} if i % 4 == 0 else None
            seq = w.write(text, logger=f"l{i % 3}", fields=fields)
            expected.append((seq, f"l{i % 3}", text, fields or {}))
    pristine = path.read_bytes()
    assert [(r.seq, r.logger, r.message, r.fields) for r in mmaplog.read(path)] == expected
    with mmaplog.reader.RingFile(path) as ring:
        slots = ring.slots()
    first_slot = {int(s): i for i, (s, part) in enumerate(zip(slots["seq"], slots["part"])) if s and part == 0}
    used = int((slots["pos"] != 0).sum())
    boundaries = [first_slot[seq] for seq, *_ in expected] + [used]  # and the end of the last record
    assert boundaries == sorted(boundaries) and used < len(slots)  # written in order, no wrap
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    for trial in range(400):
        k = rng.randrange(len(boundaries))
        cut = L.DATA_OFFSET + boundaries[k] * 128 + rng.randrange(15)
        garbage = os.urandom(len(pristine) - cut + rng.choice([0, 0, 1, 64, 5000]))
        path.write_bytes(pristine[:cut] + garbage)
        got = [(r.seq, r.logger, r.message, r.fields) for r in mmaplog.read(path)]
        assert got == expected[:k], (trial, k, cut)


# --------------------------------------------------------------------------- property tests of the codec
@SETTINGS
@given(
    width=st.sampled_from([1, 7, 8, 255, 256, 257, 4095, 4104, 8184, 8192, 16376, 65528]) | st.integers(1, 3000),
    rows=st.integers(1, 5),
    fill=st.sampled_from(["random", "ff", "zero", "ramp"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_adler32_rows_equals_zlib(width: int, rows: int, fill: str, seed: int) -> None:
    """The vectorised checksum equals zlib.adler32 for every width up to the largest slot, worst-case bytes included."""
    gen = np.random.default_rng(seed)
    if fill == "random":
        arr = gen.integers(0, 256, size=(rows, width), dtype=np.uint8)
    elif fill == "ff":
        arr = np.full((rows, width), 255, dtype=np.uint8)
    elif fill == "zero":
        arr = np.zeros((rows, width), dtype=np.uint8)
    else:
        arr = (np.arange(rows * width) % 256).astype(np.uint8).reshape(rows, width)
    assert _codec.adler32_rows(arr).tolist() == [zlib.adler32(r.tobytes()) for r in arr]


def _header(slot_size: int, slot_count: int) -> bytes:
    header = L.FileHeader(
        version=L.FORMAT_VERSION, data_offset=L.DATA_OFFSET, slot_size=slot_size, name_offset=L.NAME_OFFSET,
        slot_count=slot_count, created_ns=1, created_mono_ns=2, pid=3, name_entries=L.NAME_ENTRIES,
        series_id=b"s" * 16, segment=0, first_seq=1, hostname="h", process_name="p",
    )
    raw = bytearray(L.encode_header(header).ljust(L.DATA_OFFSET, b"\0"))
    for ident, name in ((1, b"app"), (2, b"db.pool"), (3, "ü".encode())):
        off = L.NAME_OFFSET + (ident - 1) * L.NAME_ENTRY_SIZE
        raw[off : off + 64] = L.NAME_STRUCT.pack(len(name), 0, L.name_check(name), name)
    return bytes(raw)


_FLAGS = st.sampled_from([3, 1, 2, 0, 3 | 4, 1 | 4, 2 | 4, 3 | 16, 1 | 16, 3 | 32, 3 | 8, 3 | 4 | 16 | 32]) | st.integers(0, 255)


@st.composite
def _slots(draw: st.DrawFn, slot_size: int, slot_count: int) -> bytes:
    room = slot_size - L.SLOT_OVERHEAD
    out = bytearray()
    for index in range(slot_count):
        kind = draw(st.sampled_from(["forged", "forged", "forged", "empty", "random"]))
        if kind == "empty":
            out += bytes(slot_size)
            continue
        if kind == "random":
            out += draw(st.binary(min_size=slot_size, max_size=slot_size))
            continue
        length = draw(st.integers(0, room) | st.sampled_from([room + 1, 65535]))
        pos = index + 1 + slot_count * draw(st.integers(0, 3)) if draw(st.integers(0, 9)) else draw(st.integers(0, 2**64 - 1))
        seq = draw(st.integers(1, 6))
        rec_len = draw(st.sampled_from([length, length, 2 * length, 3 * room]) | st.integers(0, 4 * room))
        msg_len = draw(st.sampled_from([rec_len, rec_len, 0, length // 2]) | st.integers(0, rec_len + 1))
        part = draw(st.integers(0, 3))
        flags = draw(_FLAGS)
        head = struct.pack(L.SLOT_HEADER_FORMAT, pos, seq, draw(st.integers(-(2**63), 2**63 - 1)), 7, rec_len, msg_len,
                           min(length, 65535), part, draw(st.integers(0, 5)), draw(st.integers(0, 255)), flags)
        body = head + draw(st.binary(min_size=min(length, room), max_size=min(length, room))).ljust(room, b"\0")
        check = L.slot_check(body) if draw(st.integers(0, 9)) else draw(st.integers(0, 2**32 - 1))
        out += body + struct.pack("<II", check, pos & 0xFFFFFFFF)
    return bytes(out)


@settings(SETTINGS, max_examples=250)
@given(data=st.data(), slot_size=st.sampled_from([64, 72, 128]), slot_count=st.integers(1, 10))
def test_any_slot_contents_read_exactly_as_the_reference_decoder(tmp_path: Path, data: st.DataObject, slot_size: int,
                                                                  slot_count: int) -> None:
    """Forged checksum-valid slots with arbitrary fields: the reader shows exactly the complete records, counts the rest."""
    raw = _header(slot_size, slot_count) + data.draw(_slots(slot_size, slot_count))
    directory = tmp_path / "h"
    directory.mkdir(exist_ok=True)
    outcome = fuzz.check_bytes(directory, raw, memory=False)
    assert outcome.kind == "records" and outcome.violation is None, outcome


@SETTINGS
@given(entries=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 3), st.binary(max_size=60), st.booleans()),
                        max_size=12), tail=st.binary(max_size=70))
def test_name_table_decoding_equals_the_reference(entries: list[tuple[int, int, bytes, bool]], tail: bytes) -> None:
    """Any name table (valid, damaged, truncated mid-entry) decodes to the entries the format says are valid."""
    table = b""
    for length, reserved, name, good in entries:
        check = L.name_check(name[:length]) if good else zlib.crc32(name) & 0xFFFF
        table += L.NAME_STRUCT.pack(length, reserved, check, name.ljust(60, b"\0"))
    table += tail
    count = len(entries) + 2
    assert _codec.decode_names(table, count) == fuzz.reference_names(table, count)


@SETTINGS
@given(raw=st.binary(max_size=300), size=st.integers(0, 1 << 40), fix_magic=st.booleans(), fix_check=st.booleans(),
       major=st.sampled_from([1, 2]))
def test_header_decoding_raises_only_header_error(raw: bytes, size: int, fix_magic: bool, fix_check: bool,
                                                  major: int) -> None:
    """Any 300 bytes with any file size: decode_header returns a header or raises HeaderError, agreeing with the reference."""
    buf = bytearray(raw)
    if fix_magic:
        buf[:10] = L.MAGIC + struct.pack("<H", major) + b"\x00"
    if fix_check and len(buf) >= 220:
        buf[216:220] = struct.pack("<I", L.header_check(bytes(buf[:216]), (major, 0)))
    data = bytes(buf)
    as_file = data + bytes(max(0, size - len(data))) if size < 1 << 20 else None  # the reference wants the whole file
    try:
        header = L.decode_header(data, size)
    except L.HeaderError as exc:
        assert exc.reason and "\n" not in exc.reason
        if as_file is not None:
            with pytest.raises(fuzz.RefHeaderError):
                fuzz._ref_header(as_file)
        return
    assert header.file_size <= size
    if as_file is not None:
        fuzz._ref_header(as_file)


# --------------------------------------------------------------------------- regressions the fuzzer found
def test_failed_open_does_not_close_another_descriptor_later(tmp_path: Path) -> None:
    """A file rejected at open must not have its descriptor number closed again when the object is collected."""
    import gc

    bad = tmp_path / "bad.mmlog"
    bad.write_bytes(L.MAGIC + b"garbage" * 100)
    with pytest.raises(mmaplog.FormatError) as info:
        mmaplog.reader.RingFile(bad)
    read_fd, write_fd = os.pipe()  # likely reuses the number the failed open had
    try:
        del info
        gc.collect()
        assert os.write(write_fd, b"x") == 1 and os.read(read_fd, 1) == b"x"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_single_slot_record_with_inconsistent_lengths_is_invalid(tmp_path: Path) -> None:
    """A checksum-valid one-slot record whose rec_len or msg_len disagrees with its length is not shown."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256) as w:
        w.write("kept")
        w.write("forged one")
        w.write("forged two")
    raw = bytearray(path.read_bytes())
    for index, field, value in ((1, 32, 99), (2, 36, 3)):  # rec_len too big; msg_len short of a plain payload
        off = L.DATA_OFFSET + index * 256
        raw[off + field : off + field + 4] = struct.pack("<I", value)
        raw[off + 248 : off + 252] = struct.pack("<I", L.slot_check(bytes(raw[off : off + 248])))
    path.write_bytes(bytes(raw))
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["kept"]
    assert scan.stats.invalid == 2


def test_positions_past_two_to_the_63_are_invalid_and_cannot_stall_a_follower(tmp_path: Path) -> None:
    """A forged checksum-valid slot at pos >= 2**63 is invalid for every reader; follow on it returns at once."""
    import subprocess
    import textwrap

    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64, slot_size=64) as w:  # one slot: every pos lands on index 0
        w.write("x")
    raw = bytearray(path.read_bytes())
    off, pos = L.DATA_OFFSET, (1 << 63) + 1
    raw[off : off + 8] = struct.pack("<Q", pos)
    raw[off + 56 : off + 64] = struct.pack("<II", L.slot_check(bytes(raw[off : off + 56])), pos & 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    assert mmaplog.scan(path).stats.invalid == 1
    code = textwrap.dedent(
        """
        import sys, mmaplog
        f = mmaplog.follow(sys.argv[1], from_start=True, grace=0.0)
        items = f.poll() + f.poll() + f.close()
        print(sum(isinstance(i, mmaplog.Record) for i in items))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr


def test_a_seq_that_is_both_a_one_slot_and_a_multi_slot_record_is_shown_once(tmp_path: Path) -> None:
    """A forged one-slot copy of a multi-slot record's seq in the same file: one record shown, one duplicate counted."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 64, slot_size=64) as w:
        w.write("a")
        w.write("a record of two slots")  # seq 2 in slots 1..3 (8 payload bytes per slot)
        w.write("c")  # seq 3, slot 4
    raw = bytearray(path.read_bytes())
    off = L.DATA_OFFSET + 4 * 64
    raw[off + 8 : off + 16] = struct.pack("<Q", 2)  # "c" now claims seq 2 as well
    raw[off + 56 : off + 60] = struct.pack("<I", L.slot_check(bytes(raw[off : off + 56])))
    path.write_bytes(bytes(raw))
    scan = mmaplog.scan(path)
    assert [int(s) for s in scan.records["seq"]] == [1, 2] and scan.stats.duplicates == 1
