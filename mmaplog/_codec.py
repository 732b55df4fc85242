"""Pure, vectorised decoding of slots: validation and record assembly, free of I/O.

Everything here takes numpy arrays or bytes handed in and returns arrays; opening
and reading files lives in :mod:`mmaplog.reader`.  Keeping the codec pure makes it
trivially testable and fuzzable.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from . import _native
from . import layout as L

__all__ = [
    "RECORD_FIELDS",
    "SOURCE_KEYS",
    "Assembled",
    "accelerator",
    "adler32_rows",
    "assemble",
    "assemble_rows",
    "collect",
    "crc32_rows",
    "decode_names",
    "drop_changed",
    "record_layout",
    "source_columns",
    "valid_slots",
]

_ADLER_MOD = 65521
#: Bytes of float32 scratch per checksum chunk: small enough to stay in cache-friendly sizes.
_CHUNK_BYTES = 4 << 20
#: Columns per block: 255 * (0 + 1 + ... + 255) < 2**24, so float32 sums of a block are exact.
_BLOCK = 256


def adler32_rows(rows: np.ndarray) -> np.ndarray:
    """Adler-32 of every row of a 2-D uint8 array, as a uint32 array (same as zlib.adler32).

    adler32 = B << 16 | A with A = 1 + sum(b_j) and B = n + sum((n - j) * b_j), both
    mod 65521.  Both sums are linear, so they come from one float32 matrix product
    per block of 256 columns: within a block every partial sum stays below 2**24,
    where float32 arithmetic is exact whatever order BLAS adds in.
    """
    count, width = rows.shape
    out = np.empty(count, dtype=np.uint32)
    if count == 0:
        return out
    # Narrow rows get one block of their own width (rounded to 8): no product over padding columns.
    block = min(_BLOCK, max(8, -(-width // 8) * 8))
    blocks = -(-width // block)
    padded = blocks * block
    # Column 0 sums the bytes of a block, column 1 weighs them by their offset inside it.
    weights = np.stack([np.ones(block, np.float32), np.arange(block, dtype=np.float32)], axis=1)
    block_start = np.arange(blocks, dtype=np.int64) * block
    step = max(1, _CHUNK_BYTES // (padded * 4))
    scratch = np.zeros((min(step, count), padded), dtype=np.float32)
    for start in range(0, count, step):
        chunk = rows[start : start + step]
        n = len(chunk)
        buf = scratch[:n]
        buf[:, :width] = chunk
        sums = (buf.reshape(n, blocks, block) @ weights).astype(np.int64)  # (n, blocks, 2)
        plain, offset = sums[..., 0], sums[..., 1]
        a = (1 + plain.sum(axis=1)) % _ADLER_MOD
        b = (width + ((width - block_start) * plain - offset).sum(axis=1)) % _ADLER_MOD
        out[start : start + n] = (b << 16) | a
    return out


def crc32_rows(raw: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """zlib.crc32 of ``raw[i, :ends[i]]`` for every row of a 2-D uint8 array, as a uint32 array.

    CRC-32 has no cheap vectorised form in numpy (a table lookup per byte and
    row): one zlib.crc32 call per row over a memoryview of the rows measures
    faster than any numpy formulation tried (bench/test_checksum.py).
    """
    count = len(raw)
    out = np.empty(count, dtype=np.uint32)
    if not count:
        return out
    rows = np.ascontiguousarray(raw)
    width = rows.shape[1]
    flat = memoryview(rows.reshape(-1))  # type: ignore[arg-type]
    crc = zlib.crc32
    starts = range(0, count * width, width)
    out[:] = [crc(flat[at : at + end]) for at, end in zip(starts, ends.tolist())]
    return out


# Twin: _cread.c slot_is_valid (and valid_mask) is the C form of this check, one slot at a time. See docs/MAP.md.
def valid_slots(
    slots: np.ndarray, slot_count: int, index: np.ndarray | None = None, *, legacy: bool = False
) -> np.ndarray:
    """Return a bool mask of the slots that are completely written and consistent.

    ``slots`` is a structured array of :func:`mmaplog.layout.slot_dtype`;
    ``index`` holds each slot's index in the ring (default ``arange``).  A slot is
    valid when it is committed (``commit`` echoes ``pos``), sits at the index its
    ``pos`` implies, its fields are in range and its check matches: CRC-32 of its
    header and used payload with zero padding, or with ``legacy`` (format 1.x
    files, :func:`mmaplog.layout.legacy_check`) adler32 of everything before the trailer.
    """
    if index is None:
        index = np.arange(len(slots), dtype=np.uint64)
    module = accelerator()
    if module is not None and len(slots):
        mask = module.valid_mask(
            _rows(slots), slots.dtype.itemsize, slot_count, np.ascontiguousarray(index, np.uint64), legacy
        )
        valid: np.ndarray = np.frombuffer(mask, dtype=np.bool_).copy()
        return valid
    slot_size = slots.dtype.itemsize
    payload = L.slot_payload_size(slot_size)
    raw = _rows(slots)
    # Header and trailer words copied out once: the tests below then read compact columns
    # instead of striding through every slot's cache lines again for each field.
    head = _header_columns(slots, raw)
    trailer = np.ascontiguousarray(raw[:, slot_size - L.SLOT_TRAILER_SIZE :]).view("<u4")
    pos = head["pos"]
    flags = head["flags"]
    length = head["length"]
    rec_len = head["rec_len"]
    msg_len = head["msg_len"]
    ok = pos != 0
    ok &= trailer[:, 1] == (pos & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    ok &= (pos - np.uint64(1)) % np.uint64(slot_count) == index.astype(np.uint64)
    ok &= head["seq"] != 0
    # No writer gets near 2**63 positions or records, so readers may hold both as int64.
    ok &= (pos < np.uint64(1 << 63)) & (head["seq"] < np.uint64(1 << 63))
    ok &= length <= payload
    ok &= (flags & ~np.uint8(L.KNOWN_FLAGS)) == 0
    first = (flags & L.FLAG_FIRST) != 0
    ok &= first == (head["part"] == 0)
    ok &= msg_len <= rec_len
    # A one-slot record holds its whole payload, and a payload without extras is all message.
    ok &= ((flags & _WHOLE) != _WHOLE) | (length == rec_len)
    ok &= ((flags & _EXTRAS) != 0) | (msg_len == rec_len)
    # Only slots that passed the cheap tests pay for the checksum.
    if not legacy:
        return _crc_valid(raw, ok, length, trailer[:, 0])
    candidates = np.flatnonzero(ok)
    if len(candidates) == len(slots):
        ok = _slot_checks(raw, None, length) == trailer[:, 0]
    elif len(candidates):
        ok[candidates] = _slot_checks(raw, candidates, length[candidates]) == trailer[candidates, 0]
    return np.asarray(ok, dtype=bool)


def _crc_valid(raw: np.ndarray, ok: np.ndarray, length: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Narrow ``ok`` (slots that passed the cheap tests) to those with zero padding and a matching CRC-32."""
    body = raw.shape[1] - L.SLOT_TRAILER_SIZE
    end = length.astype(np.int64) + L.SLOT_HEADER_SIZE
    # Zero padding, checked on 8-byte words: whole words past the end, then the word the end falls in.
    words = raw[:, : body // 8 * 8].view("<u8")
    first_free = -(-end // 8)
    columns = np.arange(words.shape[1])
    ok &= ~((words != 0) & (columns[None, :] >= first_free[:, None])).any(axis=1)  # bool temporaries only
    split = np.flatnonzero(ok & (end % 8 != 0))
    if len(split):
        partial = words[split, end[split] // 8] >> ((end[split] % 8) * 8).astype(np.uint64)
        ok[split[partial != 0]] = False
    candidates = np.flatnonzero(ok)
    if len(candidates):
        ok[candidates] = crc32_rows(raw[candidates] if len(candidates) < len(raw) else raw, end[candidates]) == (
            stored[candidates]
        )
    return np.asarray(ok, dtype=bool)


def _slot_checks(raw: np.ndarray, rows: np.ndarray | None, length: np.ndarray) -> np.ndarray:
    """The adler32 (format 1.x) of bytes [0, slot_size - 8) of ``raw[rows]`` (None: every row); ``length`` is each row's payload.

    A writer pads a payload with zeros, and zeros at the end change adler32 in a
    known way (A stays, B grows by A for each), so most rows are summed only up
    to a width that covers 90% of the payloads, once their padding beyond it is
    confirmed to be zero (one cheap 8-byte-word test).  Other rows are summed in full.
    """
    size = raw.shape[1]
    body = size - L.SLOT_TRAILER_SIZE
    count = len(length)
    out = np.empty(count, dtype=np.uint32)
    if not count:
        return out
    end = np.minimum(length.astype(np.int64) + L.SLOT_HEADER_SIZE, body)
    width = min(body, int(-(-int(np.percentile(end, 90)) // 8) * 8))
    short = end <= width
    if width < body - 32 and short.any():
        words = raw.view("<u8")
        padding = words[:, width // 8 : body // 8] if rows is None else words[rows, width // 8 : body // 8]
        short &= ~padding.any(axis=1)
    else:
        short[:] = False
    every = np.arange(count) if rows is None else rows
    if short.all():
        partial = adler32_rows(raw[:, :width] if rows is None else raw[rows, :width])
        long_rows = np.empty(0, dtype=np.intp)
    else:
        partial = adler32_rows(raw[every[short], :width])
        long_rows = np.flatnonzero(~short)
    a = (partial & np.uint32(0xFFFF)).astype(np.int64)
    b = ((partial >> np.uint32(16)).astype(np.int64) + a * (body - width)) % _ADLER_MOD
    out[short] = ((b << 16) | a).astype(np.uint32)
    if len(long_rows):
        out[long_rows] = adler32_rows(raw[every[long_rows], :body])
    return out


def drop_changed(first: np.ndarray, second: np.ndarray, slot_size: int) -> None:
    """Make every slot of ``second`` that differs from its copy in ``first`` fail the commit test.

    Both are contiguous uint8 buffers of whole slots, two reads of the same
    slots.  The seqlock reader's rule (docs/FORMAT.md): a slot that changed
    between the reads may be torn in either.  Its commit word in ``second``
    becomes the complement of its position's echo, which no valid slot carries.
    """
    count = len(second) // slot_size
    if not count:
        return
    words = slot_size // 8
    changed = np.flatnonzero(
        (first[: count * slot_size].view("<u8").reshape(count, words)
         != second[: count * slot_size].view("<u8").reshape(count, words)).any(axis=1)
    )
    if len(changed):
        pos = np.ndarray((count,), dtype="<u8", buffer=second, strides=(slot_size,))[changed]
        commit = np.ndarray((count,), dtype="<u4", buffer=second, offset=slot_size - 4, strides=(slot_size,))
        commit[changed] = ~(pos & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _rows(slots: np.ndarray) -> np.ndarray:
    """The slots as a 2-D uint8 array, one row per slot (a view when ``slots`` is contiguous)."""
    return np.ascontiguousarray(slots).view(np.uint8).reshape(len(slots), slots.dtype.itemsize)


def _header_columns(slots: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
    """The header fields of every slot as a compact structured array (one 48-byte row per slot)."""
    fields = slots.dtype.fields
    assert fields is not None
    names = [name for name, (_, offset, *_) in fields.items() if offset < L.SLOT_HEADER_SIZE]
    head_dtype = np.dtype(
        {"names": names, "formats": [fields[n][0] for n in names], "offsets": [fields[n][1] for n in names],
         "itemsize": L.SLOT_HEADER_SIZE}
    )
    if raw is None:
        raw = _rows(slots)
    return np.ascontiguousarray(raw[:, : L.SLOT_HEADER_SIZE]).view(head_dtype).reshape(len(slots))


def decode_names(table: bytes, entries: int) -> dict[int, str]:
    """Decode the logger-name table; entries with a bad check are left out."""
    names: dict[int, str] = {0: ""}
    size = L.NAME_ENTRY_SIZE
    count = max(0, min(entries, len(table) // size))
    # Only entries whose length byte is in range are looked at: most of a table is unused.
    lengths = np.frombuffer(table, dtype=np.uint8, count=count * size)[::size]
    for i in np.flatnonzero((lengths != 0) & (lengths <= L.NAME_MAX)).tolist():
        length, _reserved, check, raw = L.NAME_STRUCT.unpack_from(table, i * size)
        name = raw[:length]
        if L.name_check(name) != check:
            continue
        names[i + 1] = name.decode("utf-8", "replace")
    return names


class Assembled(NamedTuple):
    """Whole records decoded from a set of valid slots (columns, one row per record, ordered by seq)."""

    seq: np.ndarray
    time_ns: np.ndarray
    level: np.ndarray
    thread: np.ndarray
    flags: np.ndarray
    logger: np.ndarray  # object: str
    message: np.ndarray  # object: str
    fields: np.ndarray  # object: dict or None
    exception: np.ndarray  # object: str or None
    incomplete_seqs: list[int]
    duplicates: int


_EXTRAS = L.FLAG_FIELDS | L.FLAG_INLINE_LOGGER | L.FLAG_EXCEPTION
_WHOLE = L.FLAG_FIRST | L.FLAG_LAST


def _decode_fields(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return {"_invalid_fields": raw.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"_fields": value}


def _split_payload(
    payload: bytes, msg_len: int, flags: int, logger_id: int, names: dict[int, str]
) -> tuple[str, str, dict[str, Any] | None, str | None]:
    """Split one record payload into (logger, message, fields, exception)."""
    offset = 0
    if flags & L.FLAG_INLINE_LOGGER:
        n = payload[0] if payload else 0
        logger = payload[1 : 1 + n].decode("utf-8", "replace")
        offset = 1 + n
    else:
        logger = names.get(logger_id, f"<logger {logger_id}>")
    message = payload[offset : offset + msg_len].decode("utf-8", "replace")
    offset += msg_len
    exception = None
    if flags & L.FLAG_EXCEPTION and len(payload) >= offset + L.EXCEPTION_LENGTH.size:
        (n,) = L.EXCEPTION_LENGTH.unpack_from(payload, offset)
        offset += L.EXCEPTION_LENGTH.size
        exception = payload[offset : offset + n].decode("utf-8", "replace")
        offset += n
    fields = None
    if flags & L.FLAG_FIELDS:
        fields = _decode_fields(payload[offset:])
    return logger, message, fields, exception


def _logger_table(ids: np.ndarray, names: dict[int, str]) -> np.ndarray:
    """An object array mapping every logger id present in ``ids`` to its name."""
    table = np.empty(int(ids.max()) + 1 if len(ids) else 1, dtype=object)
    for ident in np.unique(ids).tolist():
        table[ident] = names.get(ident, f"<logger {ident}>")
    return table


def _decode_messages(slots: np.ndarray, sel: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Decode the payloads of one-slot records ``sel`` as UTF-8 text; also return the raw payloads.

    numpy strips trailing NUL bytes from 'S' values, so rows whose stripped length
    differs from ``length`` get their NULs back (they are part of the message).
    """
    column = slots["payload"]
    if len(sel) == len(slots) and (sel[1:] > sel[:-1]).all():
        raw = column.tolist()  # already in order: no copy of the payloads
    else:
        raw = column[sel].tolist()
    try:
        decoded = list(map(bytes.decode, raw))  # strict UTF-8 at C speed; bad bytes take the slow way
    except UnicodeDecodeError:
        decoded = [item.decode("utf-8", "replace") for item in raw]
    texts = np.empty(len(raw), dtype=object)
    texts[:] = decoded
    stripped = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    for i in np.flatnonzero(stripped != lengths).tolist():
        raw[i] = raw[i].ljust(int(lengths[i]), b"\0")[: int(lengths[i])]
        texts[i] = raw[i].decode("utf-8", "replace")
    return texts, raw


def _dedupe(seq: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, int]:
    """Indices that order rows by seq, keeping the highest pos of a repeated seq; and the repeats."""
    order = np.argsort(seq, kind="stable")  # ring data is two sorted runs: nearly linear
    ordered = seq[order]
    repeated = ordered[1:] == ordered[:-1]
    if not repeated.any():
        return order, 0
    order = np.lexsort((pos, seq))
    ordered = seq[order]
    last_of_seq = np.ones(len(order), dtype=bool)
    last_of_seq[:-1] = ordered[1:] != ordered[:-1]
    return order[last_of_seq], int(len(order) - last_of_seq.sum())


# Twin: _cread.c Collector and reorder build the same rows in C (assemble_rows below drives them). See docs/MAP.md.
def assemble(slots: np.ndarray, names: dict[int, str]) -> Assembled:
    """Assemble valid slots into records, ordered by seq: one-slot records vectorised, longer ones joined.

    ``slots`` must hold only valid slots.  A record missing any part (overwritten
    or torn) is dropped and its seq listed in ``incomplete_seqs``; a seq seen
    twice keeps the copy with the highest ``pos`` and counts the rest in ``duplicates``.
    """
    head = _header_columns(slots)
    flags = head["flags"]
    whole = (flags & _WHOLE) == _WHOLE
    single_idx = np.flatnonzero(whole)
    order, duplicates = _dedupe(head["seq"][single_idx], head["pos"][single_idx])
    sel = single_idx[order]
    in_place = len(sel) == len(head) and bool((sel[1:] > sel[:-1]).all())  # every slot, already in order
    single = {
        name: head[name].copy() if in_place else head[name][sel]
        for name in ("seq", "time_ns", "level", "thread", "flags", "length", "msg_len", "logger_id")
    }
    n = len(sel)

    ids = single["logger_id"]
    loggers = _logger_table(ids, names)[ids] if n else np.empty(0, dtype=object)
    messages, payload_rows = _decode_messages(slots, sel, single["length"])
    fields = np.full(n, None, dtype=object)
    exceptions = np.full(n, None, dtype=object)
    for i in np.flatnonzero((single["flags"] & _EXTRAS) != 0).tolist():
        raw = payload_rows[i]
        loggers[i], messages[i], fields[i], exceptions[i] = _split_payload(
            raw, int(single["msg_len"][i]), int(single["flags"][i]), int(ids[i]), names
        )

    columns = {
        "seq": [single["seq"]],
        "time_ns": [single["time_ns"]],
        "level": [single["level"]],
        "thread": [single["thread"]],
        "flags": [single["flags"]],
    }
    text: dict[str, list[np.ndarray]] = {"logger": [loggers], "message": [messages], "fields": [fields], "exception": [exceptions]}
    incomplete: list[int] = []
    multi = slots[~whole]
    if len(multi):
        heads, decoded, incomplete = _join_multi(multi, names)
        for name in columns:
            columns[name].append(heads[name])
        for k, name in enumerate(text):
            column = np.empty(len(decoded), dtype=object)
            column[:] = [row[k] for row in decoded]
            text[name].append(column)
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    merged_text = {name: np.concatenate(parts) for name, parts in text.items()}
    if len(multi):
        final = np.argsort(merged["seq"], kind="stable")
        merged = {name: col[final] for name, col in merged.items()}
        merged_text = {name: col[final] for name, col in merged_text.items()}
    return Assembled(
        seq=merged["seq"],
        time_ns=merged["time_ns"],
        level=merged["level"],
        thread=merged["thread"],
        flags=merged["flags"],
        logger=merged_text["logger"],
        message=merged_text["message"],
        fields=merged_text["fields"],
        exception=merged_text["exception"],
        incomplete_seqs=incomplete,
        duplicates=duplicates,
    )


def _join_multi(
    multi: np.ndarray, names: dict[int, str]
) -> tuple[np.ndarray, list[tuple[str, str, dict[str, Any] | None, str | None]], list[int]]:
    """Join the slots of multi-slot records; return their first slots, decoded parts and incomplete seqs."""
    order = np.lexsort((multi["pos"], multi["part"], multi["seq"]))
    multi = multi[order]
    rows: list[int] = []
    decoded: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
    incomplete: list[int] = []
    seq_col = multi["seq"].tolist()
    part_col = multi["part"].tolist()
    flag_col = multi["flags"].tolist()
    length_col = multi["length"].tolist()
    payload_col = multi["payload"].tolist()
    i = 0
    n = len(multi)
    while i < n:
        j = i
        while j < n and seq_col[j] == seq_col[i]:
            j += 1
        # Keep the newest copy of each part, then require parts 0..k with FIRST and LAST.
        parts: dict[int, int] = {}
        for k in range(i, j):
            parts[part_col[k]] = k
        count = len(parts)
        if (
            count >= 2
            and all(p in parts for p in range(count))
            and flag_col[parts[0]] & L.FLAG_FIRST
            and flag_col[parts[count - 1]] & L.FLAG_LAST
            and not any(flag_col[parts[p]] & L.FLAG_LAST for p in range(count - 1))
        ):
            idx = [parts[p] for p in range(count)]
            payload = b"".join(payload_col[k].ljust(length_col[k], b"\0")[: length_col[k]] for k in idx)
            head = multi[idx[0]]
            if len(payload) == int(head["rec_len"]):
                rows.append(idx[0])
                decoded.append(
                    _split_payload(payload, int(head["msg_len"]), int(head["flags"]), int(head["logger_id"]), names)
                )
            else:
                incomplete.append(seq_col[i])
        else:
            incomplete.append(seq_col[i])
        i = j
    return multi[rows], decoded, incomplete


# ---------------------------------------------------------------------------
# The C accelerator (mmaplog._cread): the same decoding, one pass per slot.

#: The layout constants the accelerator must have been built with.
_EXPECTED_LAYOUT = {
    "slot_header": L.SLOT_HEADER_SIZE,
    "slot_trailer": L.SLOT_TRAILER_SIZE,
    "first": L.FLAG_FIRST,
    "last": L.FLAG_LAST,
    "fields": L.FLAG_FIELDS,
    "inline_logger": L.FLAG_INLINE_LOGGER,
    "exception": L.FLAG_EXCEPTION,
    "truncated": L.FLAG_TRUNCATED,
    "known_flags": L.KNOWN_FLAGS,
    "max_slot_size": L.MAX_SLOT_SIZE,
    "slot_check": "crc32+adler32",
}
#: The record fields the accelerator fills, in its order, with the dtype each must have.
RECORD_FIELDS = (
    ("seq", "<u8"),
    ("time_ns", "<i8"),
    ("level", "u1"),
    ("thread", "<u8"),
    ("pid", "<u4"),
    ("flags", "u1"),
    ("file", "<u4"),
    ("logger", "O"),
    ("message", "O"),
    ("fields", "O"),
    ("exception", "O"),
    # The source location (format 2.1): the fields pathname, lineno and funcName as columns; None, 0, None without.
    ("pathname", "O"),
    ("lineno", "<i4"),
    ("funcName", "O"),
)
#: The field names that carry a record's source location (docs/FORMAT.md, "Source location").
SOURCE_KEYS = ("pathname", "lineno", "funcName")
_I32 = (-(1 << 31), (1 << 31) - 1)


def source_columns(rows: np.ndarray, fresh: bool = False) -> None:
    """Fill the ``pathname``, ``lineno`` and ``funcName`` columns of ``rows`` from their fields, in place.

    Only rows with fields are looked at (a file without fields costs one mask).
    A key of the wrong type (a ``lineno`` that is not an int) leaves its column
    empty; the field stays as it is.  ``fresh``: the object columns still hold
    the zeros of ``np.zeros`` and are set to None first.
    """
    if fresh:
        rows["pathname"] = None
        rows["funcName"] = None
    if not len(rows):
        return
    with_fields = np.flatnonzero(rows["flags"] & L.FLAG_FIELDS)
    if not len(with_fields):
        return
    fields, pathname, lineno, func = rows["fields"], rows["pathname"], rows["lineno"], rows["funcName"]
    low, high = _I32
    for r in with_fields.tolist():
        f = fields[r]
        if not f or ("lineno" not in f and "pathname" not in f and "funcName" not in f):
            continue
        value = f.get("pathname")
        if type(value) is str:
            pathname[r] = value
        value = f.get("lineno")
        if type(value) is int and low <= value <= high:
            lineno[r] = value
        value = f.get("funcName")
        if type(value) is str:
            func[r] = value
#: A Collector's side entry for each row: what ordering and the Python-side decoding need besides the row.
_SIDE_DTYPE = np.dtype([("pos", "<u8"), ("msg_len", "<u4"), ("logger_id", "<u2"), ("flags", "u1"), ("reserved", "u1")])
_accelerator: list[ModuleType | None] = []


def record_layout(dtype: np.dtype) -> tuple[int, ...]:
    """(itemsize, offset of each field the accelerator fills) of a record dtype; ValueError if it has other fields."""
    fields = dtype.fields
    if fields is None or list(fields) != [name for name, _ in RECORD_FIELDS]:
        raise ValueError(f"not a record dtype: {dtype}")
    for name, kind in RECORD_FIELDS:
        if fields[name][0] != np.dtype(kind):
            raise ValueError(f"record field {name} is {fields[name][0]}, expected {kind}")
    return (dtype.itemsize, *(int(fields[name][1]) for name, _ in RECORD_FIELDS))


def accelerator() -> ModuleType | None:
    """The C accelerator when it is built, turned on, built for this format, and numpy accepts its record memory."""
    if not _accelerator:
        module = _native.load("_cread")
        if module is not None and getattr(module, "LAYOUT", None) != _EXPECTED_LAYOUT:
            module = None
        if module is not None:
            # Records live in memory the accelerator owns (np.ndarray over its buffer); check numpy allows that.
            probe = np.dtype(list(RECORD_FIELDS))
            try:
                collector = module.Collector(64, 1, 0, 0, record_layout(probe), [])
                store = module.reorder(collector.rows(), np.full(1, -1))
                row = np.ndarray((1,), dtype=probe, buffer=store)
                row["message"][0] = "probe"
                ok = row["message"][0] == "probe" and row["fields"][0] is None
            except (TypeError, ValueError):
                ok = False
            module = module if ok else None
        _accelerator.append(module)
    return _accelerator[0]


def collect(
    chunks: Iterable[tuple[int, np.ndarray]],
    slot_size: int,
    slot_count: int,
    pid: int,
    file: int,
    dtype: np.dtype,
    names: dict[int, str],
    legacy: bool = False,
) -> Any:
    """Validate the slots of one ring, handed in as (first ring index, whole slots) chunks, with the accelerator.

    Returns its ``Collector``: counts of ``empty`` and ``invalid`` slots, a row
    of ``dtype`` for each one-slot record (``pid`` and ``file`` in every row) and
    the slots of longer records, for :func:`assemble_rows`.  ``names`` are the
    logger names known before reading (:func:`assemble_rows` settles them).
    ``legacy``: the file is format 1.x (adler32 checks).
    """
    module = accelerator()
    assert module is not None, "collect() needs the C accelerator"
    known: list[str | None] = [None] * (max(names) + 1 if names else 0)
    for ident, name in names.items():
        known[ident] = name
    collector = module.Collector(slot_size, slot_count, pid, file, record_layout(dtype), known, legacy)
    for start, chunk in chunks:
        collector.feed(chunk, start)
    return collector


def assemble_rows(
    collected: Any, names: dict[int, str], pid: int, file: int, dtype: np.dtype, slot_size: int
) -> tuple[np.ndarray, int, list[int], bool]:
    """The records a :func:`collect` run kept, as rows of ``dtype`` ordered by seq; also duplicates, incomplete seqs,
    and whether the rows are the collector's own, unchanged (each seq once, in order).

    The same records, order and counts as :func:`assemble` on the valid slots
    (``pid`` and ``file`` are the ones :func:`collect` was given).
    The rows live in memory the accelerator owns and are moved, not copied,
    when the ring wrapped or holds longer records.
    """
    module = accelerator()
    assert module is not None, "assemble_rows() needs the C accelerator"
    ids = collected.logger_ids()
    table: list[str | None] = [None] * (ids[-1] + 1 if ids else 1)
    for ident in ids:
        table[ident] = names.get(ident, f"<logger {ident}>")
    collected.set_loggers(table)
    side = np.frombuffer(collected, dtype=_SIDE_DTYPE)
    store = collected.rows()
    rows = np.ndarray((len(side),), dtype=dtype, buffer=store)
    if collected.extras:
        extras = np.flatnonzero((side["flags"] & _EXTRAS) != 0)
        logger, message, fields, exception = rows["logger"], rows["message"], rows["fields"], rows["exception"]
        for r in extras.tolist():
            s = side[r]
            logger[r], message[r], fields[r], exception[r] = _split_payload(
                message[r], int(s["msg_len"]), int(s["flags"]), int(s["logger_id"]), names
            )
    if collected.in_order:
        order, duplicates = np.arange(len(side)), 0
    else:
        order, duplicates = _dedupe(rows["seq"], side["pos"])
    source = order
    incomplete: list[int] = []
    multi_heads = None
    decoded: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
    if collected.multi_count:
        multi = np.frombuffer(collected.multi_slots(), dtype=L.slot_dtype(slot_size))
        multi_heads, decoded, incomplete = _join_multi(multi, names)
        final = np.argsort(np.concatenate([rows["seq"][order], multi_heads["seq"]]), kind="stable")
        source = np.concatenate([order, np.full(len(multi_heads), -1, dtype=order.dtype)])[final]
    if len(source) != len(side) or not collected.in_order:
        store = module.reorder(store, np.ascontiguousarray(source, dtype=np.int64))
        rows = np.ndarray((len(source),), dtype=dtype, buffer=store)
    if multi_heads is not None and len(multi_heads):
        at = np.flatnonzero(source < 0).tolist()
        for r, k in zip(at, (final[at] - len(order)).tolist()):
            h = multi_heads[k]
            rows[r] = (h["seq"], h["time_ns"], h["level"], h["thread"], pid, h["flags"], file, *decoded[k], None, 0,
                       None)
    return rows, duplicates, incomplete, bool(collected.in_order) and len(source) == len(side)
