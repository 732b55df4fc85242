"""The one-slot record's rare branches, shared by write() and the loggers' _append (both paths run them in Python)."""

from __future__ import annotations

from pathlib import Path

import pytest

import mmaplog
from mmaplog.writer import RingWriter


def _rotated_away_and_unmapped(w: RingWriter) -> object:
    old = w._map
    w._rotate(old)  # retired: still mapped
    w._rotate(w._map)  # the next rotation unmaps it
    assert old.mm.closed and w._map is not old
    return old


def test_a_store_into_a_map_unmapped_since_the_claim_is_written_again_in_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "r.mmlog"
    with RingWriter(path, 8 * 256, slot_size=256, rotate=4) as w:
        w.write("before", logger="app")
        old = _rotated_away_and_unmapped(w)
        seq = next(w._seqs)
        assert w._put_again(old, TypeError("mmap closed or invalid"), seq, b"late", 30, "app", 5, 7) == seq  # type: ignore[arg-type]
        w.flush()
    found = [r for r in mmaplog.read(path) if r.message == "late"]
    assert [(r.seq, r.level, r.logger, r.time_ns, r.thread) for r in found] == [(seq, 30, "app", 5, 7)]


def test_a_failed_store_into_the_current_map_is_raised_for_the_caller_to_count(tmp_path: Path) -> None:
    with RingWriter(tmp_path / "r.mmlog", 8 * 256, slot_size=256) as w:
        with pytest.raises(ValueError, match="boom"):
            w._put_again(w._map, ValueError("boom"), next(w._seqs), b"x", 20, "", 1, 1)
        assert w._append("ok", 20, "") != 0  # the hot path counts it instead of raising
