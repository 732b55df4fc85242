"""A ring file cut short by another process: the slots past the cut that can still be saved.

After a truncation, the page holding the file's new end stays mapped: stores
past the end inside that page do not fault, and a map can still read them.
Extending the file back zeroes that page's tail on some file systems (ext4;
tmpfs keeps it), so whoever extends a cut ring -- the writer at its
transitions, a repair after a fault -- first takes the valid slots there with
:func:`readable_valid` (a live map) or :func:`page_cache_tail` (a file a
killed writer left short), extends, and stores them again with
:func:`put_back`.  Nothing here touches a page wholly past the file's end.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import Any

import numpy as np

from . import _codec
from . import layout as L

__all__ = ["cut_loss", "page_cache_tail", "put_back", "readable_valid"]


def _tail_range(h: L.FileHeader, have: int) -> tuple[int, int]:
    """Ring indices (first, end) of the slots from the one the cut at ``have`` runs through to the end of
    the page holding ``have``: what a map of the file can still read without a fault."""
    page = mmap.PAGESIZE
    end = min(h.file_size, -(-have // page) * page)
    first = max(0, (have - h.data_offset) // h.slot_size)
    return first, max(first, (end - h.data_offset) // h.slot_size)


def _valid_in(raw: bytes, h: L.FileHeader, first: int) -> dict[tuple[int, int], bytes]:
    """The valid slots in ``raw`` (whole slots from ring index ``first``): (index, pos) -> the slot's bytes."""
    size = h.slot_size
    n = len(raw) // size
    if n <= 0:
        return {}
    slots = np.frombuffer(raw, dtype=L.slot_dtype(size), count=n)
    at = np.arange(first, first + n, dtype=np.uint64)
    valid = _codec.valid_slots(slots, h.slot_count, index=at)
    return {(int(i), int(p)): raw[(int(i) - first) * size : (int(i) - first + 1) * size]
            for i, p in zip(at[valid].tolist(), slots["pos"][valid].tolist())}


def readable_valid(mm: mmap.mmap, h: L.FileHeader, have: int) -> dict[tuple[int, int], bytes]:
    """The valid slots past ``have`` that the map can read without a fault.

    The page holding the file's end stays mapped after a truncation; a page
    wholly past the end would raise SIGBUS, so it is never touched.
    """
    first, end = _tail_range(h, have)
    off = h.data_offset + first * h.slot_size
    return _valid_in(mm[off : off + (end - first) * h.slot_size], h, first)


def page_cache_tail(fd: int, h: L.FileHeader, have: int) -> dict[tuple[int, int], bytes]:
    """The valid slots past the end of a file cut at ``have``, as the page cache still holds them.

    A writer killed after storing past the end inside the last partial page
    left those records in the cached page, beyond the file's size, where
    ``pread`` cannot see them; a map of that page can (until writeback zeroes
    its tail).  Only that one page is read.
    """
    first, end = _tail_range(h, have)
    if end <= first or have % mmap.PAGESIZE == 0:
        return {}
    start = h.data_offset + first * h.slot_size
    page_start = have - have % mmap.PAGESIZE
    view = mmap.mmap(fd, have - page_start, mmap.MAP_SHARED, mmap.PROT_READ, offset=page_start)
    try:
        mapped = np.frombuffer(view, dtype=np.uint8)
        # The kernel maps the whole page: its bytes past the file's end are readable, past the page they fault.
        tail = ctypes.string_at(mapped.ctypes.data + (have - page_start),
                                (end - first) * h.slot_size - (have - start))
        del mapped
    finally:
        view.close()
    return _valid_in(os.pread(fd, have - start, start) + tail, h, first)


def put_back(mm: mmap.mmap, h: L.FileHeader, have: int, saved: dict[tuple[int, int], bytes],
              gone: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Store again the slots past the cut that extending the file zeroed (ext4 does); return those put back.

    A slot is put back only while it still reads as the cut left it (its part
    below ``have`` unchanged, the rest zeros), body first and its trailer last,
    as a write commits one.
    """
    body = h.slot_size - L.SLOT_TRAILER_SIZE
    kept = set()
    for key in sorted(gone):
        off = h.data_offset + key[0] * h.slot_size
        raw = saved[key]
        cut = min(h.slot_size, max(0, have - off))  # the part of the slot below the cut was kept by the file
        now = mm[off : off + h.slot_size]
        if now[:cut] != raw[:cut] or now[cut:].strip(b"\0"):
            continue  # written again meanwhile: the newer record stays
        mm[off : off + body] = raw[:body]
        mm[off + body : off + h.slot_size] = raw[body:]
        kept.add(key)
    return kept


def cut_loss(h: L.FileHeader, have: int, survivors: Any, next_pos: int) -> int:
    """Used slots the cut at ``have`` removed: those in the cut range (up to the next position) that did not survive."""
    first = max(0, (have - h.data_offset) // h.slot_size)
    used = min(h.slot_count, max(0, next_pos - 1))
    if isinstance(survivors, set):
        kept = sum(1 for i, _ in survivors if first <= i < used)
    else:  # a boolean mask over the ring (at open)
        kept = int(np.count_nonzero(survivors[first:used]))
    return max(0, used - first) - kept
