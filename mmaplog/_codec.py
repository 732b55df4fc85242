"""Pure, vectorised decoding of slots: validation and record assembly, free of I/O.

Everything here takes numpy arrays or bytes handed in and returns arrays; opening
and reading files lives in :mod:`mmaplog.reader`.  Keeping the codec pure makes it
trivially testable and fuzzable.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import numpy as np

from . import layout as L

__all__ = ["Assembled", "adler32_rows", "assemble", "decode_names", "valid_slots"]

_ADLER_MOD = 65521
#: Rows per chunk when checksumming: bounds the temporary int32 copy to a few MiB.
_CHUNK_BYTES = 8 << 20


def adler32_rows(rows: np.ndarray) -> np.ndarray:
    """Adler-32 of every row of a 2-D uint8 array, as a uint32 array (same as zlib.adler32)."""
    count, width = rows.shape
    out = np.empty(count, dtype=np.uint32)
    if count == 0:
        return out
    # adler32 = B << 16 | A, A = 1 + sum(b), B = n + sum((n - j) * b_j), both mod 65521.
    weights = (width - np.arange(width, dtype=np.int64)).astype(np.int32 if width < 8192 else np.int64)
    step = max(1, _CHUNK_BYTES // (width * 4))
    for start in range(0, count, step):
        chunk = rows[start : start + step]
        total = chunk.sum(axis=1, dtype=np.int64)
        weighted = np.dot(chunk.astype(weights.dtype), weights).astype(np.int64)
        a = (1 + total) % _ADLER_MOD
        b = (width + weighted) % _ADLER_MOD
        out[start : start + step] = (b << 16) | a
    return out


def valid_slots(slots: np.ndarray, slot_count: int, index: np.ndarray | None = None) -> np.ndarray:
    """Return a bool mask of the slots that are completely written and consistent.

    ``slots`` is a structured array of :func:`mmaplog.layout.slot_dtype`;
    ``index`` holds each slot's index in the ring (default ``arange``).  A slot is
    valid when it is committed (``commit`` echoes ``pos``), sits at the index its
    ``pos`` implies, its fields are in range and its checksum matches.
    """
    if index is None:
        index = np.arange(len(slots), dtype=np.uint64)
    slot_size = slots.dtype.itemsize
    payload = L.slot_payload_size(slot_size)
    pos = slots["pos"]
    ok = pos != 0
    ok &= slots["commit"] == (pos & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    ok &= (pos - np.uint64(1)) % np.uint64(slot_count) == index.astype(np.uint64)
    ok &= slots["seq"] != 0
    length = slots["length"].astype(np.int64)
    ok &= length <= payload
    ok &= (slots["flags"] & ~np.uint8(L.KNOWN_FLAGS)) == 0
    first = (slots["flags"] & L.FLAG_FIRST) != 0
    ok &= first == (slots["part"] == 0)
    ok &= slots["msg_len"] <= slots["rec_len"]
    # Only slots that passed the cheap tests pay for the checksum.
    candidates = np.flatnonzero(ok)
    if len(candidates):
        raw = slots.view(np.uint8).reshape(len(slots), slot_size)
        body = raw[candidates, : slot_size - L.SLOT_TRAILER_SIZE]
        ok[candidates] = adler32_rows(body) == slots["check"][candidates]
    return ok


def decode_names(table: bytes, entries: int) -> dict[int, str]:
    """Decode the logger-name table; entries with a bad check are left out."""
    names: dict[int, str] = {0: ""}
    size = L.NAME_ENTRY_SIZE
    for i in range(min(entries, len(table) // size)):
        length, _reserved, check, raw = L.NAME_STRUCT.unpack_from(table, i * size)
        if length == 0:
            continue
        if length > L.NAME_MAX:
            continue
        name = raw[:length]
        if L.name_check(name) != check:
            continue
        names[i + 1] = name.decode("utf-8", "replace")
    return names


class Assembled(NamedTuple):
    """Whole records decoded from a set of valid slots (columns, one row per record)."""

    seq: np.ndarray
    time_ns: np.ndarray
    level: np.ndarray
    thread: np.ndarray
    flags: np.ndarray
    logger: list[str]
    message: list[str]
    fields: list[dict[str, Any] | None]
    exception: list[str | None]
    incomplete_seqs: list[int]
    duplicates: int


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


def assemble(slots: np.ndarray, names: dict[int, str]) -> Assembled:
    """Assemble valid slots into records: one-slot records vectorised, multi-slot ones joined.

    ``slots`` must hold only valid slots.  A record missing any part (overwritten
    or torn) is dropped and its seq listed in ``incomplete_seqs``; a seq seen twice keeps
    the copy with the highest ``pos`` and counts the rest in ``duplicates``.
    """
    flags = slots["flags"]
    whole = (flags & (L.FLAG_FIRST | L.FLAG_LAST)) == (L.FLAG_FIRST | L.FLAG_LAST)
    single = slots[whole]
    multi = slots[~whole]

    # Duplicate seqs can only come from a writer that resumed over a damaged ring; keep the newest.
    duplicates = 0
    if len(single):
        order = np.lexsort((single["pos"], single["seq"]))
        single = single[order]
        last_of_seq = np.ones(len(single), dtype=bool)
        last_of_seq[:-1] = single["seq"][1:] != single["seq"][:-1]
        duplicates += int(len(single) - last_of_seq.sum())
        single = single[last_of_seq]

    seqs = [single["seq"]]
    times = [single["time_ns"]]
    levels = [single["level"]]
    threads = [single["thread"]]
    flag_cols = [single["flags"]]
    loggers: list[str] = []
    messages: list[str] = []
    fields: list[dict[str, Any] | None] = []
    exceptions: list[str | None] = []

    plain = (single["flags"] & (L.FLAG_FIELDS | L.FLAG_INLINE_LOGGER)) == 0
    plain &= single["msg_len"] == single["length"]
    payload_list = single["payload"].tolist()
    msg_lens = single["msg_len"].tolist()
    lengths = single["length"].tolist()
    ids = single["logger_id"].tolist()
    flag_list = single["flags"].tolist()
    plain_list = plain.tolist()
    for i, raw in enumerate(payload_list):
        if len(raw) != lengths[i]:  # numpy strips trailing NULs from 'S' values
            raw = raw.ljust(lengths[i], b"\0")[: lengths[i]]
        if plain_list[i]:
            messages.append(raw.decode("utf-8", "replace"))
            loggers.append(names.get(ids[i], f"<logger {ids[i]}>"))
            fields.append(None)
            exceptions.append(None)
        else:
            logger, message, fld, exc = _split_payload(raw, msg_lens[i], flag_list[i], ids[i], names)
            loggers.append(logger)
            messages.append(message)
            fields.append(fld)
            exceptions.append(exc)

    incomplete: list[int] = []
    if len(multi):
        order = np.lexsort((multi["pos"], multi["part"], multi["seq"]))
        multi = multi[order]
        rows: list[int] = []
        seq_col = multi["seq"].tolist()
        part_col = multi["part"].tolist()
        flag_col = multi["flags"].tolist()
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
                chunk = multi[idx]
                payload = b"".join(
                    bytes(chunk[k]["payload"]).ljust(int(chunk[k]["length"]), b"\0")[: int(chunk[k]["length"])]
                    for k in range(count)
                )
                head = chunk[0]
                if len(payload) == int(head["rec_len"]):
                    rows.append(idx[0])
                    logger, message, fld, exc = _split_payload(
                        payload, int(head["msg_len"]), int(head["flags"]), int(head["logger_id"]), names
                    )
                    loggers.append(logger)
                    messages.append(message)
                    fields.append(fld)
                    exceptions.append(exc)
                else:
                    incomplete.append(seq_col[i])
            else:
                incomplete.append(seq_col[i])
            i = j
        heads = multi[rows]
        seqs.append(heads["seq"])
        times.append(heads["time_ns"])
        levels.append(heads["level"])
        threads.append(heads["thread"])
        flag_cols.append(heads["flags"])

    return Assembled(
        seq=np.concatenate(seqs),
        time_ns=np.concatenate(times),
        level=np.concatenate(levels),
        thread=np.concatenate(threads),
        flags=np.concatenate(flag_cols),
        logger=loggers,
        message=messages,
        fields=fields,
        exception=exceptions,
        incomplete_seqs=incomplete,
        duplicates=duplicates,
    )
