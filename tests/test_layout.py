"""The layout module: header encoding, validation order and the slot dtype."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from mmaplog import layout as L
from mmaplog._codec import adler32_rows


def _header(**changes: object) -> L.FileHeader:
    base = L.FileHeader(
        version=L.FORMAT_VERSION,
        data_offset=L.DATA_OFFSET,
        slot_size=256,
        name_offset=L.NAME_OFFSET,
        slot_count=16,
        created_ns=1,
        created_mono_ns=2,
        pid=3,
        name_entries=L.NAME_ENTRIES,
        series_id=b"s" * 16,
        segment=0,
        first_seq=1,
        hostname="host",
        process_name="proc",
    )
    return base._replace(**changes)


def test_header_round_trip() -> None:
    """An encoded header decodes to the same values."""
    header = _header(hostname="höst", process_name="p" * 10)
    raw = L.encode_header(header)
    assert L.decode_header(raw, header.file_size) == header


def test_slot_dtype_matches_slot_size_for_every_legal_size() -> None:
    """The structured dtype is exactly one slot long and puts the trailer last."""
    for size in range(L.MIN_SLOT_SIZE, 4096, 8):
        dtype = L.slot_dtype(size)
        assert dtype.itemsize == size
        assert dtype.fields["commit"][1] == size - 4
        assert dtype.fields["check"][1] == size - 8
        assert dtype.fields["payload"][1] == L.SLOT_HEADER_SIZE


def test_slot_header_format_agrees_with_dtype() -> None:
    """struct packing (writer) and the numpy dtype (reader) place every field at the same offset."""
    packed = struct.pack(L.SLOT_HEADER_FORMAT, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    row = np.frombuffer(packed + bytes(L.DEFAULT_SLOT_SIZE - len(packed)), dtype=L.SLOT_DTYPE)[0]
    names = ["pos", "seq", "time_ns", "thread", "rec_len", "msg_len", "length", "part", "logger_id", "level", "flags"]
    assert [int(row[n]) for n in names] == list(range(1, 12))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not an mmaplog file"),
        (b"\x89MMAPLO", "not an mmaplog file"),
        (b"NOTMAPLG" + bytes(300), "bad magic"),
        (b"\x89mmaplog" + bytes(300), "bad magic"),
        (L.MAGIC + bytes(20), "truncated header"),
    ],
)
def test_bad_magic_and_short_headers_are_rejected(raw: bytes, reason: str) -> None:
    """Wrong or short magic is reported before anything else is looked at."""
    with pytest.raises(L.HeaderError, match=reason):
        L.decode_header(raw, 1 << 20)


@pytest.mark.parametrize("major", [0, 3, 255])
def test_unknown_major_version_is_refused(major: int) -> None:
    """A reader refuses a major version it does not know, naming the version."""
    raw = bytearray(L.encode_header(_header(version=(major, 0))))
    with pytest.raises(L.HeaderError, match=f"format version {major}.0 is not supported"):
        L.decode_header(bytes(raw), 1 << 30)


def test_newer_minor_version_is_read() -> None:
    """A newer minor only adds fields whose zero value means absent, so it is read."""
    header = _header(version=(1, 7))
    assert L.decode_header(L.encode_header(header), header.file_size).version == (1, 7)


def test_header_checksum_detects_every_single_bit_flip() -> None:
    """Flipping any bit of the checksummed header is detected (or the magic/version check fires first)."""
    raw = L.encode_header(_header())
    for bit in range(len(raw) * 8):
        damaged = bytearray(raw)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(L.HeaderError):
            L.decode_header(bytes(damaged), 1 << 30)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"slot_size": 0}, "bad slot size 0"),
        ({"slot_size": 100}, "bad slot size 100"),
        ({"slot_size": 1 << 20}, "bad slot size"),
        ({"slot_count": 0}, "bad slot count 0"),
        ({"slot_count": 1 << 50}, "bad slot count"),
        ({"name_entries": 1 << 20}, "name table"),
        ({"name_offset": 3}, "bad name table offset"),
        ({"data_offset": 1 << 31}, "bad data offset"),
    ],
)
def test_absurd_geometry_is_rejected(changes: dict[str, int], reason: str) -> None:
    """Header values out of range are reported with the value, even with a valid checksum."""
    raw = L.encode_header(_header(**changes))
    with pytest.raises(L.HeaderError, match=reason):
        L.decode_header(raw, 1 << 40)


def test_header_pointing_past_the_end_is_truncation() -> None:
    """Slots declared beyond the file's end are reported as a truncated file."""
    header = _header()
    with pytest.raises(L.HeaderError, match="truncated file"):
        L.decode_header(L.encode_header(header), header.file_size - 1)


def test_vectorised_adler32_equals_zlib() -> None:
    """The numpy checksum the reader uses is bit-for-bit zlib.adler32, for several widths."""
    rng = np.random.default_rng(7)
    for width in (1, 7, 248, 4088, 9000):
        rows = rng.integers(0, 256, size=(50, width), dtype=np.uint8)
        rows[0] = 255
        rows[1] = 0
        expected = [zlib.adler32(r.tobytes()) for r in rows]
        assert adler32_rows(rows).tolist() == expected
