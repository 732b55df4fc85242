"""A sealed segment cut into its header: the rest of its series is still read, and the damage is counted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mmaplog


def _series(path: Path) -> list[Path]:
    with mmaplog.RingWriter(path, size=16 * 256, rotate=4) as w:
        for i in range(40):
            w.write(f"record {i}", logger="app")
    segments = sorted(path.parent.glob(path.name + ".0*"))
    assert len(segments) >= 2
    return segments


@pytest.mark.parametrize("cut", [0, 100])
def test_a_segment_cut_into_its_header_is_skipped_and_counted(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "app.mmlog"
    segments = _series(path)
    whole = mmaplog.scan(path)
    lost = [r.seq for r in mmaplog.scan(segments[0], segments=False).iter_records()]
    os.truncate(segments[0], cut)
    result = mmaplog.scan(path)
    assert result.stats.unreadable == 1 and whole.stats.unreadable == 0
    assert [r.seq for r in result.iter_records()] == [r.seq for r in whole.iter_records() if r.seq not in lost]
    with pytest.raises(mmaplog.FormatError):  # named by the caller, it is still an error
        mmaplog.scan(segments[0])


def test_stats_shows_the_unreadable_segment(tmp_path: Path) -> None:
    path = tmp_path / "app.mmlog"
    segments = _series(path)
    os.truncate(segments[0], 0)
    proc = subprocess.run([sys.executable, "-m", "mmaplog.cli.read", str(path), "--stats"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "unreadable:     1 sealed segment" in proc.stdout
