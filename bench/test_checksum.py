"""The slot check, per slot: format 2.0's CRC-32 against format 1.0's adler32, on every path that computes it.

Each group holds the two checks side by side, so the report reads as a ratio:

* ``pure write``: what the pure-Python writer computes per record (adler32 of
  the whole body before; CRC-32 of the header and message now);
* ``C validate``: the C reader's validation of a block of typical slots
  (padding test and check), ``_cread.valid_mask``;
* ``numpy validate``: the pure numpy reader's ``valid_slots`` on the same block;
* ``read I/O``: reading a ring's slots once (no live-reader rule) against
  twice with the comparison (``RingFile._read_slots_into``).

The direct logging call with the C writer is measured by ``bench/test_hot_path.py``
and ``read_array`` by ``bench/test_reader.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmaplog import _codec
from mmaplog import layout as L
from mmaplog.reader import RingFile
from mmaplog.writer import RingWriter

ROUNDS = pytest.mark.benchmark(min_time=0.0002, warmup=True)
MESSAGE = b"user 4242 logged in from 10.0.0.1 port 5555"
SLOTS = 4096


def _block(tmp_path: Path, legacy: bool) -> np.ndarray:
    """SLOTS typical one-slot records of 256 bytes, checked as format 1.0 (adler32) or 2.0 (CRC-32)."""
    path = tmp_path / "block.mmlog"
    with RingWriter(path, size=SLOTS * 256) as w:
        for i in range(SLOTS):
            w.write(f"user {i} logged in from 10.0.0.1 port 5555")
    slots: np.ndarray = np.frombuffer(path.read_bytes(), dtype=L.SLOT_DTYPE, offset=L.DATA_OFFSET, count=SLOTS).copy()
    if legacy:
        raw = slots.view(np.uint8).reshape(SLOTS, 256)
        slots["check"] = [zlib.adler32(row[:248].tobytes()) for row in raw]
    return slots


@ROUNDS
@pytest.mark.parametrize("check", ["adler32 (1.0)", "crc32 (2.0)"])
def test_pure_writer_check(benchmark: Any, check: str) -> None:
    """The check the pure-Python writer computes for one record of a 256-byte slot."""
    benchmark.group = "checksum: pure write, per slot"
    body = (b"\x01" * L.SLOT_HEADER_SIZE + MESSAGE).ljust(248, b"\0")
    used = L.SLOT_HEADER_SIZE + len(MESSAGE)
    adler32, crc32 = zlib.adler32, zlib.crc32
    if check.startswith("adler"):
        benchmark(lambda: adler32(body))  # the same lambda call on both sides: only the check differs
    else:
        benchmark(lambda: crc32(body[:used]))


@ROUNDS
@pytest.mark.parametrize("check", ["adler32 (1.0)", "crc32 (2.0)"])
def test_c_validation(benchmark: Any, tmp_path: Path, check: str) -> None:
    """The C reader validating a block of typical slots (the per-slot cost is the time / SLOTS)."""
    module = _codec.accelerator()
    if module is None:
        pytest.skip("the C reader is not built (or MMAPLOG_PURE_PYTHON is set)")
    legacy = check.startswith("adler")
    slots = _block(tmp_path, legacy)
    benchmark.group = "checksum: C validate, 4096 slots"
    benchmark.extra_info["slots"] = SLOTS
    index = np.arange(SLOTS, dtype=np.uint64)
    mask = benchmark(module.valid_mask, slots.view(np.uint8), 256, SLOTS, index, legacy)
    assert bytes(mask) == b"\1" * SLOTS


@ROUNDS
@pytest.mark.parametrize("check", ["adler32 (1.0)", "crc32 (2.0)"])
def test_numpy_validation(benchmark: Any, tmp_path: Path, check: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure numpy reader validating the same block."""
    legacy = check.startswith("adler")
    slots = _block(tmp_path, legacy)
    monkeypatch.setattr(_codec, "_accelerator", [None])
    benchmark.group = "checksum: numpy validate, 4096 slots"
    benchmark.extra_info["slots"] = SLOTS
    valid = benchmark(_codec.valid_slots, slots, SLOTS, None, legacy=legacy)
    assert valid.all()


@ROUNDS
@pytest.mark.parametrize("reads", ["once", "twice (live-reader rule)"])
def test_read_io(benchmark: Any, tmp_path: Path, reads: str) -> None:
    """Reading 16 MiB of slots in 1 MiB chunks: once, or twice with the comparison of the two copies."""
    path = tmp_path / "io.mmlog"
    with RingWriter(path, size="16 MiB") as w:
        for i in range(65536):
            w.write(f"user {i} logged in from 10.0.0.1 port 5555")
    benchmark.group = "checksum: read I/O, 16 MiB"
    with RingFile(path) as ring:
        if reads == "once":
            ring._read_slots_into = ring._read_into  # type: ignore[method-assign]

        def read_all() -> None:
            for _ in ring.chunks():
                pass

        benchmark(read_all)
