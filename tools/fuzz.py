#!/usr/bin/env python3
"""Mutation fuzzer for the mmaplog reader.

Invariant (any violation is a bug in mmaplog, and this tool reports it):

    For any bytes on disk, ``mmaplog.scan`` / ``mmaplog.read_array`` either
    return records that all pass validation -- exactly the records an
    independent, slot-by-slot reference decoder written from ``docs/FORMAT.md``
    finds, with the same content and the same count of invalid slots -- or
    raise ``mmaplog.FormatError`` exactly when the reference rejects a header.
    Nothing else: no other exception, no hang (every case runs under a time
    limit, and a supervisor restarts a worker that crashes or stops making
    progress), no read outside the file (every ``pread`` it asks for lies within
    the file, it never maps a file, it leaks no descriptor), and memory bounded
    by the file's size (tracemalloc peak at most ``MEMORY_FACTOR`` times the
    bytes read plus ``MEMORY_SLACK``).  ``mmaplog-read`` on the same input exits
    0, or prints one line on stderr and exits 2, and agrees with the API on
    which of the two.

Inputs start from real files made by :class:`mmaplog.RingWriter`: fresh,
wrapped, rotated (live file plus sealed segments), reopened, crashed mid-write
(a writer child killed by SIGKILL), with multi-slot records, fields,
tracebacks, inline logger names and large slots.  Each case applies one to
three mutations: bit flips, byte stores, truncation, extension, zeroed ranges,
header field rewrites with the header check recomputed (so the geometry
checks run), slot field rewrites with the slot check and commit recomputed (so
record assembly runs on forged but checksum-valid slots), name-table
rewrites, sealed-state rewrites, slots copied around, and splices of another
seed's bytes.  Case *i* of seed *s* is a pure function of (s, i) and the seed
files, so any finding is reproduced with ``--reproduce I``.

Usage::

    python tools/fuzz.py --cases 100000            # supervised, reports figures
    python tools/fuzz.py --seconds 3600 --seed 7 --save DIR
    python tools/fuzz.py --bitflip                 # flip every bit of a small file
    python tools/fuzz.py --reproduce 1234 --seed 7 --seed-dir DIR

Exit status: 0 when no violation was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import mmap
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import mmaplog
from mmaplog import layout as L
from mmaplog.writer import RingWriter

__all__ = [
    "Case",
    "Fuzzer",
    "Outcome",
    "RefFile",
    "Summary",
    "check_bytes",
    "make_seeds",
    "reference_decode",
    "reference_names",
]

#: A case's reader call may allocate at most this many times the bytes of its files ...
MEMORY_FACTOR = 48
#: ... plus this much (numpy scratch buffers, interpreter noise).
MEMORY_SLACK = 8 << 20
#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT = 20.0

# --------------------------------------------------------------------------- reference decoder
# Written from docs/FORMAT.md with struct and zlib only: it shares no code with the reader.

_HEADER = struct.Struct("<8sHHIIIQqqII16sQQ64s64s")
_SLOT_HEAD = struct.Struct("<QQqQIIHHHBB")
_NAME = struct.Struct("<BBH60s")
_MAGIC = b"\x89MMAPLOG"
_FIRST, _LAST, _FIELDS, _INLINE, _EXC = 0x01, 0x02, 0x04, 0x10, 0x20
_KNOWN = 0x3F


class RefHeaderError(Exception):
    """The reference decoder rejects this file's header."""


class RefSlot(NamedTuple):
    index: int
    pos: int
    seq: int
    time_ns: int
    thread: int
    rec_len: int
    msg_len: int
    length: int
    part: int
    logger_id: int
    level: int
    flags: int
    payload: bytes


@dataclasses.dataclass
class RefFile:
    """What the reference decoder finds in one file."""

    series_id: bytes
    pid: int
    slot_count: int
    names: dict[int, str]
    valid: list[RefSlot]
    empty: int
    invalid: int


def _ref_header(data: bytes) -> tuple[Any, ...]:
    size = len(data)
    if size < 8 or data[:8] != _MAGIC:
        raise RefHeaderError("magic")
    if size < 220:
        raise RefHeaderError("short header")
    f = _HEADER.unpack_from(data)
    if f[1] not in (1, 2):
        raise RefHeaderError("major")
    if _ref_check(f[1], data[:216]) != struct.unpack_from("<I", data, 216)[0]:
        raise RefHeaderError("check")
    data_offset, slot_size, name_offset, slot_count, name_entries = f[3], f[4], f[5], f[6], f[10]
    if slot_size % 8 or not 64 <= slot_size <= 65536:
        raise RefHeaderError("slot size")
    if not 1 <= slot_count <= (1 << 32) - 1:
        raise RefHeaderError("slot count")
    if name_offset < 272 or name_offset % 8 or name_offset + name_entries * 64 > data_offset:
        raise RefHeaderError("name table")
    if data_offset % 8 or data_offset > 1 << 30:
        raise RefHeaderError("data offset")
    # A file shorter than it declares is read for the slots it holds (docs/FORMAT.md, "A file cut short").
    return f


def _ref_check(major: int, data: bytes) -> int:
    """Format 1.x checks are adler32, 2.x CRC-32 (zlib's)."""
    return zlib.adler32(data) if major == 1 else zlib.crc32(data)


def _ref_slot_check_ok(major: int, slot: bytes, length: int, check: int) -> bool:
    """1.x: adler32 of everything before the trailer.  2.x: CRC-32 of header and used payload, zero padding."""
    body = len(slot) - 8
    if major == 1:
        return check == zlib.adler32(slot[:body])
    return slot[48 + length : body] == bytes(body - 48 - length) and check == zlib.crc32(slot[: 48 + length])


def reference_names(table: bytes, entries: int) -> dict[int, str]:
    """The logger names of a name table: entries whose length is 1..60 and whose check matches."""
    names = {0: ""}
    for i in range(min(entries, len(table) // 64)):
        if not table[64 * i]:
            continue
        length, _reserved, check, raw = _NAME.unpack_from(table, 64 * i)
        if 1 <= length <= 60 and check == ((zlib.crc32(bytes([length]) + raw[:length]) & 0xFFFF) or 1):
            names[i + 1] = raw[:length].decode("utf-8", "replace")
    return names


def reference_decode(data: bytes) -> RefFile:
    """Decode one file slot by slot, by the letter of docs/FORMAT.md; raises RefHeaderError."""
    f = _ref_header(data)
    data_offset, slot_size, name_offset, slot_count, pid, name_entries, series = f[3], f[4], f[5], f[6], f[9], f[10], f[11]
    names = reference_names(data[name_offset : name_offset + 64 * name_entries], name_entries)
    valid: list[RefSlot] = []
    invalid = 0
    room = slot_size - 56
    # Slots past the end of a file cut short are empty: only the ones the data holds (whole or cut) are looked at.
    held = min(slot_count, max(0, -(-(len(data) - data_offset) // slot_size)))
    empty = slot_count - held
    for index in range(held):
        off = data_offset + index * slot_size
        slot = data[off : off + slot_size]
        if len(slot) < slot_size:  # past the end of a file cut short, or cut through: empty
            empty += 1
            continue
        head = _SLOT_HEAD.unpack_from(slot)
        pos, seq, _t, _th, rec_len, msg_len, length, part, _lid, _lvl, flags = head
        check, commit = struct.unpack_from("<II", slot, slot_size - 8)
        if pos == 0:
            empty += 1
            continue
        ok = (
            commit == pos & 0xFFFFFFFF
            and (pos - 1) % slot_count == index
            and seq != 0
            and pos < 1 << 63
            and seq < 1 << 63
            and length <= room
            and not flags & ~_KNOWN
            and bool(flags & _FIRST) == (part == 0)
            and msg_len <= rec_len
            and (flags & (_FIRST | _LAST) != _FIRST | _LAST or length == rec_len)
            and (flags & (_FIELDS | _INLINE | _EXC) or msg_len == rec_len)
            and _ref_slot_check_ok(f[1], slot, length, check)
        )
        if ok:
            valid.append(RefSlot(index, *head, slot[48 : 48 + length]))
        else:
            invalid += 1
    return RefFile(series, pid, slot_count, names, valid, empty, invalid)


def _ref_split(payload: bytes, head: RefSlot, names: dict[int, str]) -> tuple[Any, ...]:
    offset = 0
    if head.flags & _INLINE:
        n = payload[0] if payload else 0
        logger = payload[1 : 1 + n].decode("utf-8", "replace")
        offset = 1 + n
    else:
        logger = names.get(head.logger_id, f"<logger {head.logger_id}>")
    message = payload[offset : offset + head.msg_len].decode("utf-8", "replace")
    offset += head.msg_len
    exception = None
    if head.flags & _EXC and len(payload) >= offset + 4:
        (n,) = struct.unpack_from("<I", payload, offset)
        exception = payload[offset + 4 : offset + 4 + n].decode("utf-8", "replace")
        offset += 4 + n
    fields: Any = {}
    if head.flags & _FIELDS:
        text = payload[offset:].decode("utf-8", "replace")
        try:
            value = json.loads(text)
        except ValueError:
            fields = {"_invalid_fields": text}
        else:
            fields = value if isinstance(value, dict) else {"_fields": value}
    return (head.seq, head.time_ns, head.level, head.thread, head.flags, logger, message, fields, exception)


def reference_records(files: list[RefFile], any_copy: bool = False) -> dict[tuple[bytes, int], list[tuple[Any, ...]]]:
    """Every complete record of a set of files, keyed by (series, seq): the candidates a reader may show.

    A record is complete (FORMAT.md) when parts 0..k are valid, part 0 is FIRST,
    part k is LAST, no other part is LAST and the lengths add up to ``rec_len``;
    of several copies of a seq (or of a part) the one with the highest ``pos``
    counts.  With ``any_copy`` (a follower, which shows the first copy it meets)
    every valid copy is a candidate: each one-slot copy, and the chains made of
    the newest and of the oldest copies of the parts.
    """
    out: dict[tuple[bytes, int], list[tuple[Any, ...]]] = {}
    for rf in files:
        singles: dict[int, list[RefSlot]] = {}
        parts_by_seq: dict[int, dict[int, list[RefSlot]]] = {}
        for s in sorted(rf.valid, key=lambda s: s.pos):
            if s.flags & _FIRST and s.flags & _LAST:
                singles.setdefault(s.seq, []).append(s)
            else:
                parts_by_seq.setdefault(s.seq, {}).setdefault(s.part, []).append(s)
        for seq, copies in singles.items():
            for s in copies if any_copy else copies[-1:]:
                out.setdefault((rf.series_id, seq), []).append(_ref_split(s.payload, s, rf.names))
        for seq, parts in parts_by_seq.items():
            k = len(parts)
            if k < 2 or any(p not in parts for p in range(k)):
                continue
            for pick in (-1, 0) if any_copy else (-1,):
                chain = [parts[p][pick] for p in range(k)]
                if not chain[0].flags & _FIRST or not chain[-1].flags & _LAST:
                    continue
                if any(s.flags & _LAST for s in chain[:-1]):
                    continue
                payload = b"".join(s.payload for s in chain)
                if len(payload) != chain[0].rec_len:
                    continue
                out.setdefault((rf.series_id, seq), []).append(_ref_split(payload, chain[0], rf.names))
    return out


# --------------------------------------------------------------------------- seeds
class Seed(NamedTuple):
    """A set of files as one writer left them; ``live`` is the path a user would read."""

    name: str
    files: dict[str, bytes]
    live: str


_CRASH_CHILD = textwrap.dedent(
    """
    import os, sys, threading
    import mmaplog
    w = mmaplog.RingWriter(sys.argv[1], size=64 * 128, slot_size=128)
    fd = int(sys.argv[2])
    def work(t):
        i = 0
        while True:
            w.write(f"t{t} record {i} " + "xyz" * (i % 90), logger=f"worker.{t}",
                    fields={"i": i} if i % 3 == 0 else None)
            if t == 0 and i == 500:
                os.write(fd, b"go")
            i += 1
    for t in range(3):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


def _crashed(path: Path) -> None:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_CHILD, str(path), str(write_fd)], pass_fds=(write_fd,))
    os.close(write_fd)
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        got = pipe.read(2)
    proc.kill()
    proc.wait()
    if got != b"go":
        raise RuntimeError("crash seed: the writer child died before it wrote anything")


def _write_mix(w: RingWriter, rng: random.Random, count: int) -> None:
    long_name = "service." + "inline-logger-name-" * 4
    for i in range(count):
        kind = rng.randrange(8)
        logger = rng.choice(["", "app", "app.db", long_name, "ü.naïve", f"n{i % 7}"])
        text = rng.choice(["hello", "a\0b", "ünïcödé ✓", "\x1b[31mred\x1b[0m", "x" * rng.randrange(0, 900), ""])
        fields = {"i": i, "k": [1, 2.5, None], "s": "v\u2028"} if kind in (1, 5) else None
        exc = "Traceback (most recent call last):\n  boom\nValueError: x" if kind in (2, 5) else None
        w.write(f"{i}:{text}", level=rng.choice([10, 20, 30, 40, 50, 5, 255]), logger=logger, fields=fields, exception=exc)


def _as_format_1_0(data: bytes) -> bytes:
    """A 2.0 ring rewritten as format 1.0: version 1.0, adler32 over the header and over each committed slot's body."""
    buf = bytearray(data)
    buf[8:12] = struct.pack("<HH", 1, 0)
    buf[216:220] = struct.pack("<I", zlib.adler32(bytes(buf[:216])))
    f = _HEADER.unpack_from(buf)
    data_offset, slot_size, slot_count = f[3], f[4], f[6]
    for index in range(slot_count):
        off = data_offset + index * slot_size
        pos = struct.unpack_from("<Q", buf, off)[0]
        if pos and struct.unpack_from("<I", buf, off + slot_size - 4)[0] == pos & 0xFFFFFFFF:
            buf[off + slot_size - 8 : off + slot_size - 4] = struct.pack("<I", zlib.adler32(bytes(buf[off : off + slot_size - 8])))
    return bytes(buf)


def make_seeds(directory: Path, crash: bool = True) -> list[Seed]:
    """Create the real files the fuzzer starts from (in ``directory``) and return their bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    seeds: list[Seed] = []

    def grab(name: str, live: Path) -> None:
        files = {p.name: p.read_bytes() for p in mmaplog.reader.expand_paths(live)}
        seeds.append(Seed(name, files, live.name))

    p = directory / "fresh.mmlog"
    with RingWriter(p, size=32 * 256) as w:
        for i in range(5):
            w.write(f"fresh {i}", logger="app")
    grab("fresh", p)

    p = directory / "empty.mmlog"
    RingWriter(p, size=8 * 64, slot_size=64).close()
    grab("empty", p)

    p = directory / "wrapped.mmlog"
    with RingWriter(p, size=24 * 128, slot_size=128) as w:
        _write_mix(w, rng, 60)
    grab("wrapped", p)

    p = directory / "mixed.mmlog"
    with RingWriter(p, size=64 * 256) as w:
        _write_mix(w, rng, 25)
    grab("mixed", p)

    legacy = directory / "legacy.mmlog"  # the mixed ring as format 1.0 (adler32) would hold it
    legacy.write_bytes(_as_format_1_0(p.read_bytes()))
    grab("legacy", legacy)

    p = directory / "rotated.mmlog"
    with RingWriter(p, size=16 * 64, slot_size=64, rotate=3) as w:
        for i in range(40):
            w.write(f"r{i}" + "." * (i % 20), logger="rot" if i % 2 else "")
    grab("rotated", p)

    p = directory / "reopened.mmlog"
    with RingWriter(p, size=16 * 128, slot_size=128) as w:
        _write_mix(w, rng, 6)
    with RingWriter(p, size=16 * 128, slot_size=128) as w:
        _write_mix(w, rng, 6)
    grab("reopened", p)

    p = directory / "tiny.mmlog"
    with RingWriter(p, size=64, slot_size=64) as w:
        w.write("one slot ring, record cut to fit")
    grab("tiny", p)

    p = directory / "bigslot.mmlog"
    with RingWriter(p, size=6 * 8192, slot_size=8192) as w:
        w.write("\xff" * 4000 + "ÿ" * 2000, logger="big")
        w.write("z" * 20000, fields={"big": True})
        w.write("short")
    grab("bigslot", p)

    if crash:
        p = directory / "crashed.mmlog"
        _crashed(p)
        grab("crashed", p)
    return seeds


# --------------------------------------------------------------------------- mutations
Mutator = Callable[[bytearray, random.Random, "Seed", "list[bytes]"], str]

_INTERESTING = [0, 1, 2, 7, 8, 63, 64, 65, 255, 256, 4095, 4096, 65535, 65536, 65537, (1 << 31) - 1, 1 << 31,
                (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


def _geometry(buf: bytes) -> tuple[int, int, int, int, int] | None:
    """(data_offset, slot_size, slot_count, name_offset, name_entries) if the header parses loosely."""
    if len(buf) < 220 or buf[:8] != _MAGIC:
        return None
    f = _HEADER.unpack_from(buf)
    if not 64 <= f[4] <= 65536 or f[4] % 8 or not 1 <= f[6] < 1 << 32:
        return None
    return f[3], f[4], f[6], f[5], f[10]


def _interesting(rng: random.Random, bits: int) -> int:
    if rng.random() < 0.6:
        value = rng.choice(_INTERESTING) + rng.choice([0, 0, 0, -1, 1])
    else:
        value = rng.getrandbits(bits)
    return value % (1 << bits)


def _region_offset(buf: bytearray, rng: random.Random) -> int:
    """A byte offset biased toward the bytes that matter: header, used names, slots."""
    geo = _geometry(buf)
    roll = rng.random()
    if geo is None or roll < 0.25:
        return rng.randrange(min(len(buf), 300)) if roll < 0.2 or geo is None else rng.randrange(len(buf))
    data_offset, slot_size, slot_count, name_offset, _ = geo
    if roll < 0.35:
        return min(len(buf) - 1, name_offset + rng.randrange(64 * 12))
    end = min(len(buf), data_offset + slot_size * slot_count)
    if end <= data_offset:
        return rng.randrange(len(buf))
    return rng.randrange(data_offset, end)


def m_bitflip(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    n = rng.choice([1, 1, 1, 2, 3, 8])
    for _ in range(n):
        off = _region_offset(buf, rng)
        buf[off] ^= 1 << rng.randrange(8)
    return f"bitflip x{n}"


def m_store(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    off = _region_offset(buf, rng)
    width = rng.choice([1, 2, 4, 8])
    value = _interesting(rng, 8 * width).to_bytes(width, "little")
    buf[off : off + width] = value[: max(0, len(buf) - off)]
    return f"store{width}"


def m_truncate(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    geo = _geometry(buf)
    marks = [0, 1, 7, 8, 100, 219, 220, 256, 272, 4096, 65535, 65536, len(buf) - 1]
    if geo:
        marks += [geo[0] + geo[1] * k + d for k in range(min(geo[2], 4) + 1) for d in (-1, 0, 1, 8)]
        marks.append(geo[0] + geo[1] * geo[2] - 1)
    cut = rng.choice(marks) if rng.random() < 0.7 else rng.randrange(len(buf) + 1)
    cut = max(0, min(cut, len(buf)))
    del buf[cut:]
    return "truncate"


def m_extend(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    n = rng.choice([1, 8, 64, 256, 4096, rng.randrange(1, 20000)])
    kind = rng.randrange(3)
    buf.extend(bytes(n) if kind == 0 else os.urandom(n) if kind == 1 else (bytes(buf[-256:]) * (n // 256 + 1))[:n])
    return "extend"


def m_zero(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    if not buf:
        return "zero(empty)"
    off = _region_offset(buf, rng)
    n = rng.choice([1, 4, 8, 48, 64, 256, 4096, rng.randrange(1, len(buf) + 1)])
    buf[off : off + n] = bytes(len(buf[off : off + n]))
    return "zero"


_HEADER_FIELDS = [(8, 2), (10, 2), (12, 4), (16, 4), (20, 4), (24, 8), (32, 8), (40, 8), (48, 4), (52, 4), (56, 16),
                  (72, 8), (80, 8), (88, 64), (152, 64)]


def m_header_field(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    if len(buf) < 220:
        return "header(short)"
    off, width = rng.choice(_HEADER_FIELDS)
    if width > 8:
        buf[off : off + width] = os.urandom(width) if rng.random() < 0.5 else bytes(width)
    else:
        buf[off : off + width] = _interesting(rng, 8 * width).to_bytes(width, "little")
    if rng.random() < 0.95:
        buf[216:220] = struct.pack("<I", _ref_check(_major(buf), bytes(buf[:216])))
    return f"header@{off}"


def _slot_offsets(buf: bytearray) -> tuple[int, int, list[int]] | None:
    geo = _geometry(buf)
    if geo is None:
        return None
    data_offset, slot_size, slot_count, _, _ = geo
    count = max(0, min(slot_count, (len(buf) - data_offset) // slot_size))
    if count == 0:
        return None
    return slot_size, slot_count, [data_offset + i * slot_size for i in range(count)]


def _major(buf: bytearray) -> int:
    """The file's major version as the checks see it (1: adler32, anything else: CRC-32)."""
    return 1 if len(buf) >= 10 and struct.unpack_from("<H", buf, 8)[0] == 1 else 2


def _reseal(buf: bytearray, off: int, size: int, commit: bool = True) -> None:
    if _major(buf) == 1:
        check = zlib.adler32(bytes(buf[off : off + size - 8]))
    else:
        length = min(struct.unpack_from("<H", buf, off + 40)[0], size - 56)
        check = zlib.crc32(bytes(buf[off : off + 48 + length]))
    buf[off + size - 8 : off + size - 4] = struct.pack("<I", check)
    if commit:
        buf[off + size - 4 : off + size] = struct.pack("<I", struct.unpack_from("<Q", buf, off)[0] & 0xFFFFFFFF)


_SLOT_FIELDS = [(0, 8), (8, 8), (16, 8), (24, 8), (32, 4), (36, 4), (40, 2), (42, 2), (44, 2), (46, 1), (47, 1)]


def m_slot_field(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    found = _slot_offsets(buf)
    if found is None:
        return "slot(none)"
    size, count, offsets = found
    used = [o for o in offsets if struct.unpack_from("<Q", buf, o)[0]] or offsets
    off = rng.choice(used)
    what = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        if rng.random() < 0.2:
            p = off + 48 + rng.randrange(size - 56)
            buf[p] = rng.randrange(256)
            what.append("payload")
            continue
        field, width = rng.choice(_SLOT_FIELDS)
        if field == 47:
            value = rng.randrange(256) if rng.random() < 0.3 else buf[off + 47] ^ rng.choice([1, 2, 4, 8, 16, 32])
        elif field == 0 and rng.random() < 0.5:  # a pos that still lands on this index
            index = (off - offsets[0]) // size
            value = index + 1 + count * rng.randrange(0, 5)
        else:
            value = _interesting(rng, 8 * width)
        buf[off + field : off + field + width] = value.to_bytes(width, "little")
        what.append(f"@{field}")
    _reseal(buf, off, size, commit=rng.random() < 0.95)
    return "slot" + "".join(what)


def m_copy_slot(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    found = _slot_offsets(buf)
    if found is None:
        return "copy(none)"
    size, count, offsets = found
    src, dst = rng.choice(offsets), rng.choice(offsets)
    buf[dst : dst + size] = buf[src : src + size]
    if rng.random() < 0.7:  # re-aim the copy so it passes the index check
        index = (dst - offsets[0]) // size
        old = struct.unpack_from("<Q", buf, dst)[0]
        lap = max(0, (old - 1) // count) + rng.choice([0, 1, -1])
        buf[dst : dst + 8] = struct.pack("<Q", (max(0, lap) * count + index + 1) % (1 << 64))
        _reseal(buf, dst, size)
        return "copy+fix"
    return "copy"


def m_names(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    geo = _geometry(buf)
    if geo is None:
        return "names(none)"
    _, _, _, name_offset, entries = geo
    i = rng.randrange(max(1, min(entries, 12)))
    off = name_offset + 64 * i
    if off + 64 > len(buf):
        return "names(past end)"
    raw = rng.choice([b"", b"x", os.urandom(rng.randrange(1, 61)), "ü".encode() * 30, b"\xff\xfe"])
    length = len(raw) if rng.random() < 0.9 else rng.randrange(256)
    check = L.name_check(raw[:length]) if rng.random() < 0.9 else rng.randrange(65536)
    buf[off : off + 64] = _NAME.pack(length & 0xFF, rng.choice([0, 0, 0, 7]), check, raw.ljust(60, b"\0")[:60])
    return "names"


def m_state(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    if len(buf) < 272:
        return "state(short)"
    pos = _interesting(rng, 64)
    check = ~pos & 0xFFFFFFFFFFFFFFFF if rng.random() < 0.7 else _interesting(rng, 64)
    buf[256:272] = struct.pack("<QQ", pos, check)
    return "state"


def m_splice(buf: bytearray, rng: random.Random, seed: Seed, pool: list[bytes]) -> str:
    other = rng.choice(pool)
    if not other or not buf:
        return "splice(empty)"
    n = rng.choice([64, 256, 4096, rng.randrange(1, len(other) + 1)])
    src = rng.randrange(len(other))
    dst = rng.randrange(len(buf))
    piece = other[src : src + n]
    buf[dst : dst + len(piece)] = piece
    return "splice"


MUTATORS: list[tuple[Mutator, int]] = [
    (m_bitflip, 20),
    (m_store, 8),
    (m_truncate, 6),
    (m_extend, 4),
    (m_zero, 6),
    (m_header_field, 12),
    (m_slot_field, 22),
    (m_copy_slot, 10),
    (m_names, 6),
    (m_state, 3),
    (m_splice, 3),
]


# --------------------------------------------------------------------------- one case
class Case(NamedTuple):
    """One fuzz input: the files to write and what was done to them."""

    index: int
    seed: str
    files: dict[str, bytes]
    live: str
    mutations: list[str]


class Outcome(NamedTuple):
    """What one case did: ``kind`` is "records" or "format_error"; ``violation`` is None when all is well."""

    kind: str
    records: int
    invalid: int
    violation: str | None
    peak: int = -1


class _Timeout(BaseException):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Guard:
    """Wraps ``os.pread`` and ``mmap.mmap`` while the reader runs: reads stay inside the files, nothing is mapped."""

    def __init__(self, sizes: dict[int, int]) -> None:
        self.sizes = sizes
        self.problems: list[str] = []

    def __enter__(self) -> _Guard:
        self._pread, self._mmap = os.pread, mmap.mmap
        guard = self

        def pread(fd: int, size: int, offset: int) -> bytes:
            st_size = os.fstat(fd).st_size
            if offset < 0 or size < 0 or (offset + size > st_size and not (offset == 0 and size <= 220)):
                guard.problems.append(f"pread({size} bytes at {offset}) outside a file of {st_size} bytes")
            return guard._pread(fd, size, offset)

        def no_mmap(*args: Any, **kwargs: Any) -> Any:
            guard.problems.append("the reader mapped a file")
            return guard._mmap(*args, **kwargs)

        os.pread = pread  # type: ignore[assignment]
        mmap.mmap = no_mmap  # type: ignore[assignment,misc]
        return self

    def __exit__(self, *exc: object) -> None:
        os.pread = self._pread  # type: ignore[assignment]
        mmap.mmap = self._mmap  # type: ignore[misc]


def _reader_rows(result: mmaplog.reader.Scan) -> list[tuple[tuple[bytes, int], tuple[Any, ...]]]:
    out = []
    for row in result.records:
        series = result.files[int(row["file"])].header.series_id
        fields = row["fields"] or {}
        out.append(
            (
                (series, int(row["seq"])),
                (int(row["seq"]), int(row["time_ns"]), int(row["level"]), int(row["thread"]), int(row["flags"]),
                 row["logger"], row["message"], fields, row["exception"]),
            )
        )
    return out


def check_files(directory: Path, files: dict[str, bytes], live: str, *, memory: bool = False, follow: bool = False,
                timeout: float = CASE_TIMEOUT) -> Outcome:
    """Write ``files`` into ``directory``, read ``live`` with the reader and check the invariant.

    With ``follow``, :func:`mmaplog.follow` reads the same files too: it may
    raise FormatError only when it opens them, and may show only records the
    reference decoder finds complete.
    """
    for old in directory.iterdir():
        old.unlink()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    live_path = directory / live
    ordered = [p.name for p in mmaplog.reader.expand_paths(live_path) if p.name in files]
    refs: list[RefFile] = []
    ref_error = None
    skipped = 0
    for name in ordered:
        try:
            refs.append(reference_decode(files[name]))
        except RefHeaderError as exc:
            if name != live:  # a sealed segment found beside the named file: skipped and counted, not an error
                skipped += 1
                continue
            ref_error = f"{name}: {exc}"
            break
    total = sum(len(files[n]) for n in ordered)

    fds = _open_fds()
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    peak = -1
    result = None
    error: BaseException | None = None
    try:
        with _Guard({}) as guard:
            if memory:
                tracemalloc.start()
            try:
                result = mmaplog.scan(live_path)
            finally:
                if memory:
                    peak = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
    except _Timeout:
        return Outcome("hang", 0, 0, f"reader did not return within {timeout} s")
    except mmaplog.FormatError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        return Outcome("crash", 0, 0, f"reader raised {type(exc).__name__}: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
    problems = list(guard.problems)
    if _open_fds() != fds:
        problems.append(f"descriptor leak: {fds} open before, {_open_fds()} after")
    if memory and peak > MEMORY_FACTOR * total + MEMORY_SLACK:
        problems.append(f"memory: peak {peak} bytes for {total} bytes of files")
    if error is not None:
        if "\n" in str(error):
            problems.append(f"FormatError message spans lines: {error!r}")
        if ref_error is None:
            problems.append(f"reader raised FormatError ({error}) but the reference decodes every header")
        return Outcome("format_error", 0, 0, "; ".join(problems) or None, peak)
    assert result is not None
    if ref_error is not None:
        problems.append(f"reader returned records but the reference rejects a header ({ref_error})")
        return Outcome("records", len(result.records), 0, "; ".join(problems), peak)
    if result.stats.unreadable != skipped:
        problems.append(f"reader skipped {result.stats.unreadable} unreadable segments, the reference {skipped}")
    expected = reference_records(refs)
    got = _reader_rows(result)
    seen = set()
    for key, content in got:
        if key in seen:
            problems.append(f"record {key[1]} shown twice")
        seen.add(key)
        candidates = expected.get(key)
        if candidates is None:
            problems.append(f"record {key[1]} shown but no valid slots back it: {content!r:.200}")
        elif repr(content) not in {repr(c) for c in candidates}:
            problems.append(f"record {key[1]} differs from its slots: got {content!r:.200}, want {candidates[0]!r:.200}")
    missing = set(expected) - seen
    if missing:
        problems.append(f"{len(missing)} complete record(s) not shown, e.g. seq {sorted(missing)[0][1]}")
    invalid = sum(r.invalid for r in refs)
    empty = sum(r.empty for r in refs)
    if result.stats.invalid != invalid:
        problems.append(f"stats.invalid is {result.stats.invalid}, the reference counts {invalid}")
    if result.stats.empty != empty:
        problems.append(f"stats.empty is {result.stats.empty}, the reference counts {empty}")
    if result.stats.records != len(result.records):
        problems.append("stats.records differs from the number of records returned")
    if follow:
        problem = _check_follow(live_path, reference_records(refs, any_copy=True), timeout)
        if problem:
            problems.append(problem)
    return Outcome("records", len(result.records), result.stats.invalid, "; ".join(problems[:5]) or None, peak)


def _check_follow(live_path: Path, expected: dict[tuple[bytes, int], list[tuple[Any, ...]]], timeout: float) -> str | None:
    """Follow the files from the start (two polls and a close): only valid records, no exception after opening."""
    by_seq: dict[int, set[str]] = {}
    for (_series, seq), candidates in expected.items():
        by_seq.setdefault(seq, set()).update(repr(c) for c in candidates)
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        try:
            follower = mmaplog.follow(live_path, from_start=True, poll_interval=0.001, grace=0.0)
        except mmaplog.FormatError:
            return None
        items = follower.poll() + follower.poll() + follower.close()
    except _Timeout:
        return f"follow did not return within {timeout} s"
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        return f"follow raised {type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
    for item in items:
        if isinstance(item, mmaplog.Record):
            content = (item.seq, item.time_ns, item.level, item.thread, item.flags, item.logger, item.message,
                       item.fields or {}, item.exception)
            if repr(content) not in by_seq.get(item.seq, set()):
                return f"follow showed record {item.seq} that no valid slots back: {content!r:.200}"
    return None


def check_bytes(directory: Path, data: bytes, name: str = "case.mmlog", **kwargs: Any) -> Outcome:
    """Check the invariant for one file's bytes."""
    return check_files(directory, {name: data}, name, **kwargs)


def cli_available() -> bool:
    """True when ``mmaplog.cli.read`` can be run."""
    try:
        return importlib.util.find_spec("mmaplog.cli.read") is not None
    except ImportError:
        return False


def check_cli(path: Path, api: Outcome, timeout: float = 60.0) -> str | None:
    """Run ``mmaplog-read`` (text, then ``-o json``) on ``path`` and check it against the API's ``api`` outcome.

    Exit 0 with records shown, 1 when there were none, or 2 with exactly one
    line on stderr exactly when the API raised FormatError; never a traceback,
    a signal or a hang; every ``-o json`` line parses as a JSON object.
    """
    for mode in ("text", "json"):
        cmd = [sys.executable, "-m", "mmaplog.cli.read", str(path)] + (["-o", "json"] if mode == "json" else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"mmaplog-read ({mode}) did not finish within {timeout} s"
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode < 0:
            return f"mmaplog-read ({mode}) died of signal {-proc.returncode}"
        if "Traceback" in err:
            return f"mmaplog-read ({mode}) printed a traceback: {err[-300:]!r}"
        if proc.returncode == 2:
            if len(err.strip().splitlines()) != 1:
                return f"mmaplog-read exit 2 with {len(err.splitlines())} stderr lines: {err[:300]!r}"
            if api.kind != "format_error":
                return f"mmaplog-read exit 2 but the API read the file: {err.strip()!r}"
            return None
        if api.kind == "format_error":
            return f"mmaplog-read ({mode}) exit {proc.returncode} but the API raised FormatError"
        if proc.returncode not in (0, 1) or (proc.returncode == 1) != (api.records == 0):
            return f"mmaplog-read ({mode}) exit {proc.returncode} for {api.records} records: {err[:300]!r}"
        if mode == "json":
            lines = [ln for ln in proc.stdout.decode("utf-8").split("\n") if ln]  # not splitlines: U+2028 is data
            try:
                docs = [json.loads(line) for line in lines]
            except ValueError as exc:
                return f"mmaplog-read -o json printed invalid JSON ({exc})"
            if len(docs) != api.records or not all(isinstance(d, dict) for d in docs):
                return f"mmaplog-read -o json printed {len(docs)} lines for {api.records} records"
    return None


# --------------------------------------------------------------------------- the fuzzer
@dataclasses.dataclass
class Summary:
    """Figures of a run."""

    cases: int = 0
    records: int = 0
    format_errors: int = 0
    cli_runs: int = 0
    follow_runs: int = 0
    memory_checks: int = 0
    max_memory_ratio: float = 0.0
    violations: list[tuple[int, str, list[str], str]] = dataclasses.field(default_factory=list)
    mutations: Counter[str] = dataclasses.field(default_factory=Counter)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.cases} cases in {self.seconds:.1f} s: {self.records} read, {self.format_errors} FormatError, "
                f"{len(self.violations)} violations; {self.cli_runs} CLI runs; {self.follow_runs} follow runs; "
                f"{self.memory_checks} memory checks "
                f"(peak {self.max_memory_ratio:.1f}x file size)")


class Fuzzer:
    """Generates cases from seed files and checks each against the invariant."""

    def __init__(self, seed_dir: Path, seed: int = 0, work_dir: Path | None = None, crash_seed: bool = True) -> None:
        self.seed = seed
        self.seed_dir = seed_dir
        if not any(seed_dir.glob("*.mmlog")):
            make_seeds(seed_dir, crash=crash_seed)
        self.seeds = _load_seeds(seed_dir)
        self.pool = [data for s in self.seeds for data in s.files.values()]
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="mmaplog-fuzz-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._mutators = [m for m, _ in MUTATORS]
        self._weights = [w for _, w in MUTATORS]

    def case(self, index: int) -> Case:
        """Case ``index``: a pure function of (seed, index) and the seed files."""
        rng = random.Random(f"{self.seed}/{index}")
        seed = rng.choice(self.seeds)
        files = dict(seed.files)
        target = rng.choice(sorted(files))
        buf = bytearray(files[target])
        done = []
        for mutator in rng.choices(self._mutators, self._weights, k=rng.choice([1, 1, 1, 2, 3])):
            if not buf:
                break
            done.append(mutator(buf, rng, seed, self.pool))
        files[target] = bytes(buf)
        return Case(index, seed.name, files, seed.live, [f"{target}: {d}" for d in done])

    def run(self, cases: int | None = None, seconds: float | None = None, start: int = 0, *,
            cli_every: int = 0, memory_every: int = 16, follow_every: int = 4,
            progress: Callable[[int], None] | None = None,
            save: Path | None = None) -> Summary:
        """Run cases ``start, start+1, ...`` until ``cases`` are done or ``seconds`` have passed."""
        summary = Summary()
        began = time.monotonic()
        use_cli = cli_every > 0 and cli_available()
        index = start
        while True:
            if cases is not None and summary.cases >= cases:
                break
            if seconds is not None and time.monotonic() - began >= seconds:
                break
            if progress:
                progress(index)
            case = self.case(index)
            memory = memory_every > 0 and index % memory_every == 0
            follow = follow_every > 0 and index % follow_every == 1
            outcome = check_files(self.work_dir, case.files, case.live, memory=memory, follow=follow)
            summary.follow_runs += follow and outcome.kind == "records"
            problems = [outcome.violation] if outcome.violation else []
            if use_cli and index % cli_every == 0:
                summary.cli_runs += 1
                cli_problem = check_cli(self.work_dir / case.live, outcome)
                if cli_problem:
                    problems.append(cli_problem)
            summary.cases += 1
            summary.mutations.update(m.split(": ", 1)[1].split("(")[0].split("@")[0].split(" ")[0] for m in case.mutations)
            if outcome.kind == "format_error":
                summary.format_errors += 1
            elif outcome.kind == "records":
                summary.records += 1
            if memory and outcome.peak >= 0:
                summary.memory_checks += 1
                total = sum(len(b) for b in case.files.values())
                summary.max_memory_ratio = max(summary.max_memory_ratio, outcome.peak / max(total, L.DATA_OFFSET))
            if problems:
                summary.violations.append((index, case.seed, case.mutations, "; ".join(problems)))
                if save is not None:
                    _save(save, case)
            index += 1
        summary.seconds = time.monotonic() - began
        return summary


def _load_seeds(seed_dir: Path) -> list[Seed]:
    seeds = []
    for live in sorted(seed_dir.glob("*.mmlog")):
        files = {p.name: p.read_bytes() for p in mmaplog.reader.expand_paths(live)}
        seeds.append(Seed(live.stem, files, live.name))
    return seeds


def _save(directory: Path, case: Case) -> Path:
    target = directory / f"case-{case.index}"
    target.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():
        (target / name).write_bytes(data)
    (target / "MUTATIONS").write_text(f"seed file set: {case.seed}\nlive: {case.live}\n" + "\n".join(case.mutations) + "\n")
    return target


# --------------------------------------------------------------------------- every bit of a small file
class FlipExpectation(NamedTuple):
    """What flipping one bit must do: raise, drop some records, or change nothing that is read."""

    region: str
    kind: str  # "format_error" | "same" | "records"
    records: tuple[tuple[int, str, str], ...] = ()
    invalid: int = 0


def small_file(path: Path) -> bytes:
    """A small real ring: 8 slots of 64 bytes, one multi-slot record, two named loggers, one empty slot."""
    if path.exists():
        path.unlink()
    with RingWriter(path, size=8 * 64, slot_size=64) as w:
        w.write("one", logger="app")
        w.write("two-slot record!", logger="db")  # 16 bytes: two 8-byte slots
        w.write("three", logger="app", level=40)
        w.write("4", logger="")
        w.write("five")
        w.write("six", logger="db")
    return path.read_bytes()


def _decoded(result: mmaplog.reader.Scan) -> tuple[tuple[int, str, str], ...]:
    return tuple((int(r["seq"]), r["logger"], r["message"]) for r in result.records)


def flip_expectation(data: bytes, offset: int, bit: int, base: mmaplog.reader.Scan) -> FlipExpectation:
    """The precise outcome the format promises for flipping bit ``bit`` of byte ``offset`` of ``data``."""
    f = _HEADER.unpack_from(data)
    data_offset, slot_size, name_offset, slot_count, name_entries = f[3], f[4], f[5], f[6], f[10]
    records = _decoded(base)
    if offset < 220:
        return FlipExpectation("header (magic, version, fields, check)", "format_error")
    if offset < 256:
        return FlipExpectation("reserved header bytes 220..255", "same", records, base.stats.invalid)
    if offset < 272:
        return FlipExpectation("sealed state 256..271 (a hint)", "same", records, base.stats.invalid)
    if offset < name_offset:
        return FlipExpectation("unused bytes 272..name table", "same", records, base.stats.invalid)
    if offset < name_offset + 64 * name_entries:
        entry, within = divmod(offset - name_offset, 64)
        length = data[name_offset + 64 * entry]
        if length == 0:
            return FlipExpectation("unused name-table entry", "same", records, base.stats.invalid)
        if within == 1:
            return FlipExpectation("name-table entry reserved byte", "same", records, base.stats.invalid)
        if within >= 4 + length:
            return FlipExpectation("name-table entry bytes past its length", "same", records, base.stats.invalid)
        name = data[name_offset + 64 * entry + 4 : name_offset + 64 * entry + 4 + length].decode()
        changed = tuple((s, f"<logger {entry + 1}>" if lg == name else lg, m) for s, lg, m in records)
        return FlipExpectation("name-table entry (length, check, name)", "records", changed, base.stats.invalid)
    if offset < data_offset:
        return FlipExpectation("unused bytes between name table and slots", "same", records, base.stats.invalid)
    if offset < data_offset + slot_size * slot_count:
        index, within = divmod(offset - data_offset, slot_size)
        slot_off = data_offset + index * slot_size
        pos, seq = struct.unpack_from("<QQ", data, slot_off)
        if pos == 0:
            if within < 8:
                return FlipExpectation("pos of an empty slot", "records", records, base.stats.invalid + 1)
            return FlipExpectation("bytes of an empty slot (pos 0) other than pos", "same", records, base.stats.invalid)
        kept = tuple(r for r in records if r[0] != seq)
        if within < 8 and pos ^ (1 << (8 * within + bit)) == 0:
            # pos cleared: the slot reads as empty; its record is gone and counted as lost (gap/overwritten).
            return FlipExpectation("slot in use: pos flipped to 0", "records", kept, base.stats.invalid)
        return FlipExpectation("slot in use (every byte checked)", "records", kept, base.stats.invalid + 1)
    return FlipExpectation("bytes after the last slot", "same", records, base.stats.invalid)


def flip_every_bit(data: bytes, directory: Path, offsets: Iterator[int] | range | None = None) -> tuple[int, Counter[str], list[str]]:
    """Flip each bit of ``data`` (at ``offsets``) one at a time; return (flips, per-region counts, failures)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "flip.mmlog"
    path.write_bytes(data)
    base = mmaplog.scan(path)
    buf = bytearray(data)
    regions: Counter[str] = Counter()
    failures: list[str] = []
    flips = 0
    fd = os.open(path, os.O_RDWR)
    try:
        for offset in offsets if offsets is not None else range(len(data)):
            for bit in range(8):
                want = flip_expectation(data, offset, bit, base)
                flipped = buf[offset] ^ (1 << bit)
                os.pwrite(fd, bytes([flipped]), offset)
                flips += 1
                regions[want.region] += 1
                try:
                    got = mmaplog.scan(path)
                except mmaplog.FormatError:
                    got = None
                finally:
                    os.pwrite(fd, bytes([buf[offset]]), offset)
                if want.kind == "format_error":
                    ok = got is None
                else:
                    ok = got is not None and _decoded(got) == want.records and got.stats.invalid == want.invalid
                if not ok and len(failures) < 20:
                    shown = "FormatError" if got is None else f"{_decoded(got)} invalid={got.stats.invalid}"
                    failures.append(f"byte {offset} bit {bit} ({want.region}): want {want.kind} {want.records} "
                                    f"invalid={want.invalid}, got {shown}")
    finally:
        os.close(fd)
    return flips, regions, failures


# --------------------------------------------------------------------------- supervisor
def _worker_main(args: argparse.Namespace) -> int:
    fuzzer = Fuzzer(Path(args.seed_dir), args.seed, Path(args.work_dir))
    out = sys.stdout

    plant_kind, _, plant_at = (args.plant or "").partition(":")

    def progress(index: int) -> None:
        out.write(f"case {index}\n")
        out.flush()
        if plant_at and index == int(plant_at):  # self-test of the supervisor: die or hang on purpose
            if plant_kind == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
            threading_event().wait()

    summary = fuzzer.run(cases=args.cases, seconds=args.seconds, start=args.start, cli_every=args.cli_every,
                         memory_every=args.memory_every, progress=progress,
                         save=Path(args.save) if args.save else None)
    for index, seed, mutations, problem in summary.violations:
        out.write("violation " + json.dumps([index, seed, mutations, problem]) + "\n")
    figures = {name: getattr(summary, name) for name in ("cases", "records", "format_errors", "cli_runs", "follow_runs",
                                                          "memory_checks", "max_memory_ratio")}
    figures["mutations"] = dict(summary.mutations)
    out.write("summary " + json.dumps(figures) + "\n")
    out.flush()
    return 0


def threading_event() -> Any:
    import threading

    return threading.Event()


def supervise(seed_dir: Path, seed: int, cases: int | None, seconds: float | None, *, cli_every: int = 500,
              memory_every: int = 16, save: Path | None = None, hang_after: float = 60.0,
              log: Callable[[str], None] = print, plant: str | None = None) -> Summary:
    """Run the fuzzer in worker processes, restarting a worker that dies or hangs and recording that case."""
    total = Summary()
    began = time.monotonic()
    index = 0
    work_dir = Path(tempfile.mkdtemp(prefix="mmaplog-fuzz-"))
    while True:
        remaining_cases = None if cases is None else cases - total.cases
        remaining_time = None if seconds is None else seconds - (time.monotonic() - began)
        if (remaining_cases is not None and remaining_cases <= 0) or (remaining_time is not None and remaining_time <= 0):
            break
        cmd = [sys.executable, __file__, "--worker", "--seed-dir", str(seed_dir), "--seed", str(seed),
               "--start", str(index), "--work-dir", str(work_dir), "--cli-every", str(cli_every),
               "--memory-every", str(memory_every)]
        if remaining_cases is not None:
            cmd += ["--cases", str(remaining_cases)]
        if remaining_time is not None:
            cmd += ["--seconds", str(remaining_time)]
        if save is not None:
            cmd += ["--save", str(save)]
        if plant is not None:
            cmd += ["--plant", plant]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        current = index
        finished = False
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        last = time.monotonic()
        while True:
            if not sel.select(timeout=1.0):
                if time.monotonic() - last > hang_after:
                    proc.kill()
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            last = time.monotonic()
            if line.startswith("case "):
                current = int(line.split()[1])
            elif line.startswith("violation "):
                total.violations.append(tuple(json.loads(line[len("violation "):])))  # type: ignore[arg-type]
            elif line.startswith("summary "):
                part = json.loads(line[len("summary "):])
                for name in ("cases", "records", "format_errors", "cli_runs", "follow_runs", "memory_checks"):
                    setattr(total, name, getattr(total, name) + part[name])
                total.max_memory_ratio = max(total.max_memory_ratio, part["max_memory_ratio"])
                total.mutations.update(part["mutations"])
                finished = True
        sel.close()
        code = proc.wait()
        if finished and code == 0:
            break
        # The worker died or hung in case `current`: record it, save it, go on after it.
        why = f"worker died of signal {-code}" if code < 0 else f"worker exited {code}" if code else "worker hung"
        fuzzer = Fuzzer(seed_dir, seed, work_dir)
        case = fuzzer.case(current)
        total.violations.append((current, case.seed, case.mutations, f"{why} while reading this case"))
        total.cases += current - index + 1
        if save is not None:
            _save(save, case)
        log(f"case {current}: {why}")
        index = current + 1
    total.seconds = time.monotonic() - began
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, help="number of cases to run")
    parser.add_argument("--seconds", type=float, help="run for this long")
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(3), "little"), help="run seed")
    parser.add_argument("--seed-dir", help="directory of seed files (created when empty)")
    parser.add_argument("--save", help="directory to save violating cases into")
    parser.add_argument("--cli-every", type=int, default=500, help="run mmaplog-read on every Nth case (0: never)")
    parser.add_argument("--memory-every", type=int, default=16, help="measure memory on every Nth case")
    parser.add_argument("--bitflip", action="store_true", help="flip every bit of a small real file")
    parser.add_argument("--reproduce", type=int, help="run one case and print what it does")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    parser.add_argument("--plant", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args)
    if args.bitflip:
        with tempfile.TemporaryDirectory() as tmp:
            data = small_file(Path(tmp) / "small.mmlog")
            began = time.monotonic()
            flips, regions, failures = flip_every_bit(data, Path(tmp) / "flips")
            print(f"{flips} single-bit flips of a {len(data)}-byte file in {time.monotonic() - began:.1f} s")
            for region, count in regions.most_common():
                print(f"  {count:8d}  {region}")
            for failure in failures:
                print("FAIL", failure)
            return 1 if failures else 0
    seed_dir = Path(args.seed_dir) if args.seed_dir else Path(tempfile.mkdtemp(prefix="mmaplog-seeds-"))
    if args.reproduce is not None:
        fuzzer = Fuzzer(seed_dir, args.seed)
        case = fuzzer.case(args.reproduce)
        print(f"case {case.index} from seed set {case.seed!r}: {case.mutations}")
        outcome = check_files(fuzzer.work_dir, case.files, case.live, memory=True, follow=True)
        print(outcome)
        if cli_available():
            print("cli:", check_cli(fuzzer.work_dir / case.live, outcome) or "ok")
        print(f"files left in {fuzzer.work_dir}")
        return 1 if outcome.violation else 0
    if args.cases is None and args.seconds is None:
        args.cases = 10_000
    if not any(seed_dir.glob("*.mmlog")):
        make_seeds(seed_dir)
    print(f"seed {args.seed}, seed files in {seed_dir}")
    summary = supervise(seed_dir, args.seed, args.cases, args.seconds, cli_every=args.cli_every,
                        memory_every=args.memory_every, save=Path(args.save) if args.save else None)
    print(summary.line())
    print("mutations:", dict(summary.mutations.most_common()))
    for index, seed, mutations, problem in summary.violations[:50]:
        print(f"VIOLATION case {index} ({seed}; {mutations}): {problem}")
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
