"""The shipper's cursor (mmaplog.ship.cursor): atomic, durable, never backwards, one shipper at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmaplog.ship.cursor import (
    MAX_SERIES,
    Cursor,
    CursorError,
    CursorLock,
    load_cursor,
    save_cursor,
    temp_path,
)

A = bytes(range(16))
B = bytes(range(16, 32))


def test_round_trip(tmp_path: Path) -> None:
    """What is saved is what is loaded: positions per series, paths and destination."""
    path = tmp_path / "ship.cursor"
    cursor = Cursor(destination="relp://logs:2514")
    cursor.advance(A, 41, "/var/log/a.mmlog")
    cursor.advance(B, 7, "/var/log/b.mmlog")
    save_cursor(path, cursor)
    loaded = load_cursor(path)
    assert loaded.positions() == {A: 41, B: 7}
    assert loaded.series[A].path == "/var/log/a.mmlog"
    assert loaded.destination == "relp://logs:2514"
    assert loaded.series[A].updated.endswith("Z")
    assert not temp_path(path).exists()


def test_missing_file_is_an_empty_cursor(tmp_path: Path) -> None:
    """A cursor that was never saved means: nothing shipped yet."""
    assert load_cursor(tmp_path / "nope").positions() == {}


def test_advance_never_moves_backwards() -> None:
    """A late, smaller seq cannot move a series back (that would resend records)."""
    cursor = Cursor()
    assert cursor.advance(A, 10)
    assert not cursor.advance(A, 9)
    assert not cursor.advance(A, 10)
    assert cursor.advance(A, 11)
    assert cursor.positions() == {A: 11}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something else"}', "not an mmaplog-ship cursor"),
        ('{"format": "mmaplog-ship-cursor", "version": 99, "series": {}}', "version 99"),
        ('{"format": "mmaplog-ship-cursor", "version": 1, "series": []}', "'series' must be an object"),
        ('{"format": "mmaplog-ship-cursor", "version": 1, "series": {"zz": {"seq": 1}}}', "bad series entry"),
        ('{"format": "mmaplog-ship-cursor", "version": 1, "series": {"' + A.hex() + '": {"seq": -1}}}', "bad series"),
        ('{"format": "mmaplog-ship-cursor", "version": 1, "series": {"' + A.hex() + '": {}}}', "bad series"),
    ],
)
def test_damaged_cursor_is_a_clear_error(tmp_path: Path, text: str, match: str) -> None:
    """A cursor file that is not what it should be raises CursorError naming the file and the problem."""
    path = tmp_path / "ship.cursor"
    path.write_text(text)
    with pytest.raises(CursorError, match=match) as info:
        load_cursor(path)
    assert str(path) in str(info.value)


def test_save_fsyncs_file_then_renames_then_fsyncs_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new cursor is on disk before it replaces the old one, and the rename itself is made durable."""
    path = tmp_path / "ship.cursor"
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        calls.append("fsync dir" if os.path.isdir(target) else f"fsync {Path(target).name}")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append(f"rename {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    cursor = Cursor()
    cursor.advance(A, 1)
    save_cursor(path, cursor)
    assert calls == ["fsync .ship.cursor.tmp", "rename .ship.cursor.tmp -> ship.cursor", "fsync dir"]


def test_crash_between_write_and_rename_leaves_the_old_cursor(tmp_path: Path) -> None:
    """A shipper SIGKILLed after writing the new cursor but before renaming it leaves the old one valid."""
    path = tmp_path / "ship.cursor"
    old = Cursor()
    old.advance(A, 100)
    save_cursor(path, old)
    child = textwrap.dedent(
        f"""
        import os, signal
        from mmaplog.ship.cursor import Cursor, load_cursor, save_cursor
        cursor = load_cursor({str(path)!r})
        cursor.advance({A!r}, 200)
        def die(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = die
        save_cursor({str(path)!r}, cursor)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    # The new content was written (the crash really came between write and rename) ...
    assert json.loads(temp_path(path).read_text())["series"][A.hex()]["seq"] == 200
    # ... and the cursor is still the old one, intact.
    assert load_cursor(path).positions() == {A: 100}
    # The next save overwrites the leftover temporary file and succeeds.
    newer = load_cursor(path)
    newer.advance(A, 150)
    save_cursor(path, newer)
    assert load_cursor(path).positions() == {A: 150}
    assert not temp_path(path).exists()


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    """Saving where no file can be created raises CursorError naming the cursor."""
    path = tmp_path / "missing-dir" / "ship.cursor"
    with pytest.raises(CursorError, match="cannot save cursor"):
        save_cursor(path, Cursor())


def test_lock_keeps_a_second_shipper_out(tmp_path: Path) -> None:
    """Only one holder of a cursor's lock at a time; releasing lets the next one in."""
    path = tmp_path / "ship.cursor"
    first = CursorLock(path)
    first.acquire()
    with pytest.raises(CursorError, match="another mmaplog-ship"):
        CursorLock(path).acquire()
    first.release()
    with CursorLock(path):
        pass


def test_many_series_keep_the_most_recent(tmp_path: Path) -> None:
    """A cursor remembers at most MAX_SERIES series, dropping those updated longest ago."""
    path = tmp_path / "ship.cursor"
    cursor = Cursor()
    for i in range(MAX_SERIES + 10):
        cursor.advance(i.to_bytes(16, "big"), 1)
        cursor.series[i.to_bytes(16, "big")].updated = f"2024-01-01T00:00:{i:05d}Z"
    save_cursor(path, cursor)
    kept = load_cursor(path).positions()
    assert len(kept) == MAX_SERIES
    assert (0).to_bytes(16, "big") not in kept
    assert (MAX_SERIES + 9).to_bytes(16, "big") in kept
