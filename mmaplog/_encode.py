"""The bytes of a record's slots: text and fields as UTF-8, a record fitted to the ring, the commit of one slot.

Pure functions of their arguments (no writer state); the writer, its batches and
its repair use them.  The slot layout itself is :mod:`mmaplog.layout`'s.
"""

from __future__ import annotations

import json
import mmap
import zlib
from collections.abc import Mapping
from typing import Any

from . import layout as L

__all__ = ["HEAD", "MASK32", "WHOLE", "commit", "crc32", "cut_utf8", "encode_fields", "encode_text", "fit", "trailer"]

#: The commit word's mask: a slot's trailer echoes the low 32 bits of its position.
MASK32 = 0xFFFFFFFF
#: Bytes of a slot's header (what the check covers before the payload).
HEAD = L.SLOT_HEADER_SIZE
#: The flags of a record that fills one slot.
WHOLE = L.FLAG_FIRST | L.FLAG_LAST
#: Store a slot's trailer (check, commit word) into a buffer: ``trailer(buf, offset, check, commit)``.
trailer = L.SLOT_TRAILER_STRUCT.pack_into
crc32 = zlib.crc32
_MASK32, _HEAD, _trailer, _crc32 = MASK32, HEAD, trailer, crc32


def commit(mm: mmap.mmap, off: int, body_len: int, body: bytes, used: int, pos: int, count: int) -> None:
    """The commit protocol of one slot (docs/FORMAT.md); the one-slot hot paths inline it.

    1. the trailer becomes invalid: check 0, commit :func:`mmaplog.layout.invalid_echo`,
       an echo of neither the old nor the new position, so no state of the body
       between the steps passes a reader's commit test;
    2. the body (header, payload, zero padding) in one copy;
    3. the trailer: CRC-32 of the header and the ``used - 48`` payload bytes, and the position's echo.

    A reader that reads the trailer before and after its copy of the body and
    finds it unchanged (and valid) has a whole slot.  The pure-Python path has no
    memory fences: it relies on each step being a separate memcpy into the map,
    which CPython does not reorder, and on the CPU making stores visible in program
    order (x86-64's TSO).  On weakly ordered CPUs (AArch64) the C append orders the
    steps with release fences; there this path leaves a live reader's torn copy to
    the CRC alone.  Crash safety does not depend on the order: after the process
    dies, every store it made is in the page cache.
    """
    _trailer(mm, off + body_len, 0, L.invalid_echo(pos, count))
    mm[off : off + body_len] = body
    _trailer(mm, off + body_len, _crc32(body[:used]), pos & _MASK32)

def encode_text(value: Any) -> bytes:
    """UTF-8 bytes of any value; unencodable characters (lone surrogates) become visible escapes."""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception as exc:  # noqa: BLE001 - a broken __str__ must not stop logging
            value = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    text: str = value
    return text.encode("utf-8", "backslashreplace")

def _json_default(value: Any) -> str:
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"

def encode_fields(fields: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(dict(fields), ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError):
        text = json.dumps({str(k): _json_default(v) for k, v in dict(fields).items()}, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")

def fit(data: bytes, extra: bytes, prefix: bytes, flags: int, max_payload: int) -> tuple[bytes, bytes, bytes, int]:
    """Cut a record to at most ``max_payload`` bytes, visibly; return (prefix, message, extra, flags).

    ``prefix`` is the inline logger name (length byte and name) or empty.  A record
    that does not fit gets ``FLAG_TRUNCATED`` and its message ends with the marker;
    the fields and traceback are dropped when they would take more than half the
    room.  In rings too small for that (fewer than 8 slots, or 64..80-byte slots),
    the inline logger name is cut to leave room for the marker, and where the
    marker alone does not fit, the message is cut with the flag alone saying so.
    The result never exceeds ``max_payload``, so a record never overwrites itself.
    """
    if len(prefix) + len(data) + len(extra) <= max_payload:
        return prefix, data, extra, flags
    flags |= L.FLAG_TRUNCATED
    marker = L.TRUNCATION_MARKER.encode()
    if len(prefix) + len(extra) + len(marker) > max_payload // 2:
        extra = b""
        flags &= ~(L.FLAG_FIELDS | L.FLAG_EXCEPTION)
    if prefix and len(prefix) + len(marker) > max_payload:
        name_room = max_payload - 1 - len(marker)
        if name_room < 0:  # no room for the marker: the name gets half, the message the rest
            name_room, marker = (max_payload - 1) // 2, b""
        name = _cut_utf8(prefix[1:], name_room)
        prefix = bytes([len(name)]) + name
    room = max_payload - len(prefix) - len(extra)
    if room < len(marker):
        marker = b""
    return prefix, _cut_utf8(data, room - len(marker)) + marker, extra, flags

def cut_utf8(data: bytes, limit: int) -> bytes:
    """Cut ``data`` to at most ``limit`` bytes without splitting a UTF-8 character."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


_cut_utf8 = cut_utf8
