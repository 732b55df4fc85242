"""The on-disk layout of an mmaplog ring file: the single owner of every byte offset.

Writer, reader, CLI and shipper import this module; nothing else knows where a
field lives.  ``docs/FORMAT.md`` is the same specification in prose and must agree
with it.

File picture (all integers little-endian, offsets in bytes)::

    0        +--------------------------------------------------+
             | fixed header (HEADER_STRUCT, checksummed)         |
    256      | mutable state (sealed marker)                     |
    4096     | logger-name table: NAME_ENTRIES x 64-byte entries |
    65536    +--------------------------------------------------+  <- DATA_OFFSET
             | slot 0        (slot_size bytes)                   |
             | slot 1                                            |
             | ...                                               |
             | slot slot_count-1                                 |
             +--------------------------------------------------+

Fixed header (offset 0, ``HEADER_STRUCT``)::

    0   8  magic            b"\\x89MMAPLOG"
    8   2  version_major    readers MUST refuse a major they do not know (this one reads 1 and 2)
    10  2  version_minor    readers MUST accept a newer minor (it only adds
                            fields whose zero value means "absent")
    12  4  data_offset      byte offset of slot 0 (65536)
    16  4  slot_size        bytes per slot, multiple of 8, 64..65536
    20  4  name_offset      byte offset of the logger-name table (4096)
    24  8  slot_count       number of slots in the ring, >= 1
    32  8  created_ns       wall-clock creation time, ns since the epoch
    40  8  created_mono_ns  time.monotonic_ns() at creation (clock anchor)
    48  4  pid              process id of the writer that created the file
    52  4  name_entries     capacity of the logger-name table
    56  16 series_id        random id shared by every segment of one series
    72  8  segment          index of this file within its series (0 first)
    80  8  first_seq        seq of the first record written into this file
    88  64 hostname         UTF-8, NUL padded
    152 64 process_name     UTF-8, NUL padded
    216 4  header_check     CRC-32 of bytes [0, 216) (format 1.x: adler32)
    220 36 reserved         zero

Mutable state (offset 256, ``STATE_STRUCT``; written after creation, so it is
outside the header checksum; a reader treats it as a hint)::

    256 8  sealed_pos       0 while live; the last slot position when sealed
    264 8  sealed_check     bitwise NOT of sealed_pos when sealed, else 0

Logger-name table entry (``NAME_STRUCT``, 64 bytes, entry *i* names logger id
*i + 1*; id 0 is the empty name)::

    0   1  length           bytes of name used (1..NAME_MAX)
    1   1  reserved         zero
    2   2  check            low 16 bits of crc32(length byte + name bytes), 1 if 0
    4   60 name             UTF-8, NUL padded

An entry is written completely before any slot that refers to it, so a slot
whose logger id has no valid entry points at a damaged entry: the reader keeps
the (checksummed) record and shows its logger as ``<logger N>``.  Logger names longer than
NAME_MAX bytes, or beyond the table's capacity, are stored in the record's
payload instead (flag ``FLAG_INLINE_LOGGER``).

Slot (``SLOT_DTYPE``; *pos* is the slot's absolute position within the file,
counted from 1; it lives at index ``(pos - 1) % slot_count``)::

    0   8  pos        u64  absolute slot position (1-based); 0 = empty slot
    8   8  seq        u64  record sequence number (1-based, contiguous per series)
    16  8  time_ns    i64  wall-clock time of the record, ns since the epoch
    24  8  thread     u64  threading.get_ident() of the writing thread
    32  4  rec_len    u32  payload bytes of the whole record (all its slots)
    36  4  msg_len    u32  bytes of the record payload that are the message
    40  2  length     u16  payload bytes used in this slot
    42  2  part       u16  index of this slot within its record (0 first)
    44  2  logger_id  u16  index into the name table (0 = empty name)
    46  1  level      u8   numeric level (stdlib numbers: 10 DEBUG .. 50 CRITICAL)
    47  1  flags      u8   FLAG_* bits below
    48  P  payload         P = slot_size - SLOT_OVERHEAD bytes, zero padded (the padding MUST be zero)
    S-8 4  check      u32  CRC-32 of bytes [0, 48 + length) (format 1.x: adler32 of [0, S-8))
    S-4 4  commit     u32  low 32 bits of pos; written last

A record's payload is, in order: the inline logger name (``u8`` length then the
bytes) when ``FLAG_INLINE_LOGGER`` is set; the UTF-8 message (``msg_len``
bytes); when ``FLAG_EXCEPTION`` is set, a ``u32`` length and the UTF-8
formatted traceback; when ``FLAG_FIELDS`` is set, the key-value fields as a
UTF-8 JSON object (the rest of the payload).  A payload longer than one slot continues in later slots of the same
seq with part 1, 2, ...; the first carries ``FLAG_FIRST``, the last
``FLAG_LAST`` (a one-slot record carries both).

Commit protocol (seqlock-like): the writer first stores an invalid trailer
(check 0, commit :func:`invalid_echo`, which echoes neither the slot's old nor
its new position), then copies bytes [0, S-8) of the slot in one copy, then
writes ``check`` and ``commit`` in one aligned 8-byte store.  A reader accepts a
slot only when ``pos != 0``, ``commit == pos & 0xFFFFFFFF``, the check matches,
the padding is zero, the field values are in range, and ``(pos - 1) %
slot_count`` is the slot's index; a reader of a live file also reads each
trailer once before and once after its copy of the body and drops the slot
unless both are equal.  A copy cut short leaves the old or the invalid commit
word behind, so a torn slot fails the commit test whatever the cut point; a
copy mixing two records that a foreign tool made fails the CRC.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final, NamedTuple

import numpy as np

__all__ = [
    "DATA_OFFSET",
    "DEFAULT_SLOT_SIZE",
    "FORMAT_VERSION",
    "HEADER_STRUCT",
    "MAGIC",
    "NAME_ENTRIES",
    "NAME_ENTRY_SIZE",
    "NAME_MAX",
    "NAME_OFFSET",
    "SLOT_DTYPE",
    "SLOT_OVERHEAD",
    "FileHeader",
    "slot_dtype",
]

MAGIC: Final = b"\x89MMAPLOG"
#: (major, minor) that writers write.  A reader refuses a newer major and reads a newer minor.
#: 2.0: slots and header are checked with CRC-32 instead of adler32 (docs/FORMAT.md, "Version history").
FORMAT_VERSION: Final = (2, 1)
#: Majors this reader reads: 1 (adler32 checks) and 2 (CRC-32 checks).
READ_MAJORS: Final = (1, 2)

#: The fixed header, the mutable state and the name table fill the first 64 KiB,
#: so slot 0 starts on a boundary that is a multiple of every common page size.
DATA_OFFSET: Final = 65536
NAME_OFFSET: Final = 4096
NAME_ENTRY_SIZE: Final = 64
NAME_MAX: Final = NAME_ENTRY_SIZE - 4
NAME_ENTRIES: Final = (DATA_OFFSET - NAME_OFFSET) // NAME_ENTRY_SIZE

#: Slot header (48 bytes) plus the trailing check and commit words (8 bytes).
SLOT_HEADER_SIZE: Final = 48
SLOT_TRAILER_SIZE: Final = 8
SLOT_OVERHEAD: Final = SLOT_HEADER_SIZE + SLOT_TRAILER_SIZE
#: 256-byte slots hold 200 payload bytes: one typical log line per slot.
DEFAULT_SLOT_SIZE: Final = 256
MIN_SLOT_SIZE: Final = 64
#: ``length`` is a u16, so one slot's payload must stay below 65536 bytes.
MAX_SLOT_SIZE: Final = 65536
#: ``part`` is a u16: a record spans at most this many slots.
MAX_PARTS: Final = 65535
#: At most 2**32 - 1 slots, so the 32-bit commit echoes of one slot's old and new positions always differ.
MAX_SLOT_COUNT: Final = (1 << 32) - 1

FLAG_FIRST: Final = 0x01
FLAG_LAST: Final = 0x02
FLAG_FIELDS: Final = 0x04
FLAG_TRUNCATED: Final = 0x08
FLAG_INLINE_LOGGER: Final = 0x10
FLAG_EXCEPTION: Final = 0x20
#: Bits a 1.0 reader understands; unknown bits in a slot make it corrupt.
KNOWN_FLAGS: Final = 0x3F

#: Appended to a message that was cut to fit the maximum record size.
TRUNCATION_MARKER: Final = " [mmaplog: message truncated]"

HEADER_STRUCT: Final = struct.Struct("<8sHHIII QqqII 16sQQ 64s64s")
HEADER_CHECK_STRUCT: Final = struct.Struct("<I")
HEADER_CHECK_OFFSET: Final = 216
STATE_OFFSET: Final = 256
STATE_STRUCT: Final = struct.Struct("<QQ")
NAME_STRUCT: Final = struct.Struct("<BBH60s")
EXCEPTION_LENGTH: Final = struct.Struct("<I")
assert HEADER_STRUCT.size == HEADER_CHECK_OFFSET
assert NAME_STRUCT.size == NAME_ENTRY_SIZE
assert STATE_OFFSET + STATE_STRUCT.size <= NAME_OFFSET

#: The slot header for struct packing; the payload follows it directly.
SLOT_HEADER_FORMAT: Final = "<QQqQIIHHHBB"
SLOT_TRAILER_STRUCT: Final = struct.Struct("<II")
assert struct.calcsize(SLOT_HEADER_FORMAT) == SLOT_HEADER_SIZE

_HEADER_FIELDS: Final = [
    ("pos", "<u8"),
    ("seq", "<u8"),
    ("time_ns", "<i8"),
    ("thread", "<u8"),
    ("rec_len", "<u4"),
    ("msg_len", "<u4"),
    ("length", "<u2"),
    ("part", "<u2"),
    ("logger_id", "<u2"),
    ("level", "u1"),
    ("flags", "u1"),
]


def slot_dtype(slot_size: int) -> np.dtype:
    """Return the numpy structured dtype of one slot of ``slot_size`` bytes."""
    payload = slot_size - SLOT_OVERHEAD
    dtype = np.dtype(
        _HEADER_FIELDS + [("payload", f"S{payload}" if payload else "V0"), ("check", "<u4"), ("commit", "<u4")]
    )
    assert dtype.itemsize == slot_size, (dtype.itemsize, slot_size)
    return dtype


SLOT_DTYPE: Final = slot_dtype(DEFAULT_SLOT_SIZE)
assert SLOT_DTYPE.itemsize == DEFAULT_SLOT_SIZE


def slot_payload_size(slot_size: int) -> int:
    """Payload bytes one slot of ``slot_size`` bytes can hold."""
    return slot_size - SLOT_OVERHEAD


def max_record_parts(slot_count: int) -> int:
    """Most slots one record may use: a quarter of the ring, within the u16 ``part``.

    Never more than the ring holds (one slot for rings of 1..7 slots), so a
    record can never overwrite its own parts; the writer cuts every record,
    inline logger name included, to ``max_record_parts * payload`` bytes.
    """
    return max(1, min(MAX_PARTS, slot_count // 4))


def legacy_check(version: tuple[int, int]) -> bool:
    """True for files whose slots and header carry adler32 checks (format 1.x); False for CRC-32 (2.x)."""
    return version[0] < 2


# Twin: _checksum.h mmaplog_crc32_update is the C form of this check (zlib's CRC-32). See docs/MAP.md.
def slot_check(body: bytes | memoryview) -> int:
    """The check word of a format 2.x slot: CRC-32 (zlib.crc32) of its header and the payload bytes it uses.

    ``body`` is the slot's bytes [0, S-8) (at least its header and used payload);
    only bytes [0, SLOT_HEADER_SIZE + length) are summed, ``length`` read from
    the header.  The rest of the payload is zero padding, required, not summed.
    """
    length = int.from_bytes(bytes(body[40:42]), "little")
    return zlib.crc32(body[: SLOT_HEADER_SIZE + length])


def legacy_slot_check(body: bytes | memoryview) -> int:
    """The check word of a format 1.x slot: adler32 of everything before the trailer (read-only support)."""
    return zlib.adler32(body)


def header_check(body: bytes | memoryview, version: tuple[int, int]) -> int:
    """The check of the fixed header's first 216 bytes: CRC-32 from format 2.0 on, adler32 before."""
    return zlib.adler32(body) if legacy_check(version) else zlib.crc32(body)


def invalid_echo(pos: int, slot_count: int) -> int:
    """The commit word a slot carries while record position ``pos`` is written into it.

    The echo of position ``pos + (slot_count | 1)``: it is neither ``pos`` nor
    the slot's previous position ``pos - slot_count`` modulo 2**32 (``slot_count
    | 1`` is odd and below 2**32, so neither it nor its double is 0 mod 2**32),
    so a reader never accepts the slot while it holds this trailer, whatever
    state its body is in.
    """
    return (pos + (slot_count | 1)) & 0xFFFFFFFF


def name_check(name: bytes) -> int:
    """The check value of a name-table entry: low 16 bits of CRC-32 over the length byte and the name.

    CRC-32 (not adler32, whose low half is a plain byte sum blind to reordering
    and to NUL padding) catches every single-bit flip of a name of up to 60
    bytes, and any other change but for a 1 in 65536 chance; the length byte is
    covered too.  Never 0, so an all-zero entry never checks.
    """
    return (zlib.crc32(bytes([len(name) & 0xFF]) + name) & 0xFFFF) or 1


class FileHeader(NamedTuple):
    """The decoded fixed header of a ring file."""

    version: tuple[int, int]
    data_offset: int
    slot_size: int
    name_offset: int
    slot_count: int
    created_ns: int
    created_mono_ns: int
    pid: int
    name_entries: int
    series_id: bytes
    segment: int
    first_seq: int
    hostname: str
    process_name: str

    @property
    def file_size(self) -> int:
        """Bytes the file must have to hold every slot the header declares."""
        return self.data_offset + self.slot_size * self.slot_count


def encode_header(header: FileHeader) -> bytes:
    """Encode the fixed header including its check word (220 bytes)."""
    body = HEADER_STRUCT.pack(
        MAGIC,
        header.version[0],
        header.version[1],
        header.data_offset,
        header.slot_size,
        header.name_offset,
        header.slot_count,
        header.created_ns,
        header.created_mono_ns,
        header.pid,
        header.name_entries,
        header.series_id,
        header.segment,
        header.first_seq,
        header.hostname.encode("utf-8", "replace")[:64],
        header.process_name.encode("utf-8", "replace")[:64],
    )
    return body + HEADER_CHECK_STRUCT.pack(header_check(body, header.version))


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


class HeaderError(ValueError):
    """A header that cannot be decoded; ``reason`` is a short human phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_header(raw: bytes, file_size: int) -> FileHeader:
    """Decode and validate the fixed header, checking in a fixed order.

    Order: size, magic, major version, checksum, geometry against the file size.
    Raises :class:`HeaderError` with a one-line reason on the first failure.
    """
    need = HEADER_CHECK_OFFSET + HEADER_CHECK_STRUCT.size
    if len(raw) < len(MAGIC) or file_size < len(MAGIC):
        raise HeaderError(f"not an mmaplog file (only {file_size} bytes)")
    if raw[: len(MAGIC)] != MAGIC:
        raise HeaderError("not an mmaplog file (bad magic)")
    if len(raw) < need:
        raise HeaderError(f"truncated header: expected {need} bytes, got {len(raw)} (file not fully written?)")
    fields = HEADER_STRUCT.unpack_from(raw)
    major, minor = fields[1], fields[2]
    if major not in READ_MAJORS:
        raise HeaderError(
            f"format version {major}.{minor} is not supported (this reader reads "
            f"{', '.join(f'{m}.x' for m in READ_MAJORS)})"
        )
    (stored,) = HEADER_CHECK_STRUCT.unpack_from(raw, HEADER_CHECK_OFFSET)
    if header_check(raw[:HEADER_CHECK_OFFSET], (major, minor)) != stored:
        raise HeaderError("corrupt header (checksum mismatch)")
    header = FileHeader(
        version=(major, minor),
        data_offset=fields[3],
        slot_size=fields[4],
        name_offset=fields[5],
        slot_count=fields[6],
        created_ns=fields[7],
        created_mono_ns=fields[8],
        pid=fields[9],
        name_entries=fields[10],
        series_id=fields[11],
        segment=fields[12],
        first_seq=fields[13],
        hostname=_text(fields[14]),
        process_name=_text(fields[15]),
    )
    validate_geometry(header, file_size)
    return header


def validate_geometry(header: FileHeader, file_size: int) -> None:
    """Reject a header whose numbers are absurd or point past the file's end."""
    if not (MIN_SLOT_SIZE <= header.slot_size <= MAX_SLOT_SIZE) or header.slot_size % 8:
        raise HeaderError(f"bad slot size {header.slot_size} (must be a multiple of 8 in {MIN_SLOT_SIZE}..{MAX_SLOT_SIZE})")
    if not (1 <= header.slot_count <= MAX_SLOT_COUNT):
        raise HeaderError(f"bad slot count {header.slot_count}")
    if header.name_offset < STATE_OFFSET + STATE_STRUCT.size or header.name_offset % 8:
        raise HeaderError(f"bad name table offset {header.name_offset}")
    if header.name_offset + header.name_entries * NAME_ENTRY_SIZE > header.data_offset:
        raise HeaderError(f"name table ({header.name_entries} entries) overlaps the slots")
    if header.data_offset % 8 or header.data_offset > (1 << 30):
        raise HeaderError(f"bad data offset {header.data_offset}")
    if header.file_size > file_size:
        raise HeaderError(
            f"truncated file: header declares {header.file_size} bytes, file has {file_size} (file not fully written?)"
        )
