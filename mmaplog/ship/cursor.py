"""The shipper's cursor: per series, the last sequence number the collector acknowledged.

A series is one writer and its rotated segments (the 16-byte ``series_id`` in
every file header); its records are numbered 1, 2, ... without holes, so
(series id, last acknowledged seq) says exactly where to resume, whatever
happened to the files meanwhile (wraps, rotations, renames).

The file is JSON::

    {"format": "mmaplog-ship-cursor", "version": 1, "destination": "relp://logs:2514",
     "series": {"<32 hex digits>": {"seq": 1234, "path": "/var/log/app.mmlog", "updated": "2024-...Z"}}}

:func:`save_cursor` replaces it atomically: it writes a temporary file beside
it, fsyncs it, renames it over the cursor and fsyncs the directory, so a crash
at any point leaves either the old cursor or the new one, never a mix.
:class:`CursorLock` keeps two shippers from sharing one cursor.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .._errors import MmaplogError

__all__ = ["Cursor", "CursorError", "CursorLock", "SeriesPosition", "load_cursor", "save_cursor"]

CURSOR_FORMAT: Final = "mmaplog-ship-cursor"
CURSOR_VERSION: Final = 1
#: Series not seen for a while are forgotten beyond this many (their files are long gone).
MAX_SERIES: Final = 256


class CursorError(MmaplogError):
    """The cursor file cannot be read, written or locked; the message names the file."""


@dataclass
class SeriesPosition:
    """Where one series stands: the last acknowledged seq, and (for people) the file it came from."""

    seq: int
    path: str = ""
    updated: str = ""


@dataclass
class Cursor:
    """Last acknowledged seq per series id (16 raw bytes)."""

    series: dict[bytes, SeriesPosition] = field(default_factory=dict)
    destination: str = ""

    def positions(self) -> dict[bytes, int]:
        """The last acknowledged seq per series."""
        return {sid: pos.seq for sid, pos in self.series.items()}

    def advance(self, series_id: bytes, seq: int, path: str = "") -> bool:
        """Move a series forward to ``seq`` (never backwards); True if it moved."""
        current = self.series.get(series_id)
        if current is None:
            self.series[series_id] = SeriesPosition(seq, path, "")
            return True
        if current.seq >= seq:
            return False
        current.seq = seq
        current.updated = ""
        if path:
            current.path = path
        return True

    def to_json(self) -> dict[str, Any]:
        """The JSON document :func:`save_cursor` writes (series moved since the last save get the current time)."""
        now = _now()
        for pos in self.series.values():
            if not pos.updated:
                pos.updated = now
        newest = sorted(self.series.items(), key=lambda kv: kv[1].updated, reverse=True)[:MAX_SERIES]
        return {
            "format": CURSOR_FORMAT,
            "version": CURSOR_VERSION,
            "destination": self.destination,
            "series": {
                sid.hex(): {"seq": pos.seq, "path": pos.path, "updated": pos.updated} for sid, pos in sorted(newest)
            },
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], source: str = "cursor") -> Cursor:
        """Parse the document written by :meth:`to_json`; CursorError names what is wrong."""
        if not isinstance(doc, Mapping) or doc.get("format") != CURSOR_FORMAT:
            raise CursorError(f"{source}: not an mmaplog-ship cursor file")
        version = doc.get("version")
        if version != CURSOR_VERSION:
            raise CursorError(f"{source}: cursor version {version!r} is not supported (expected {CURSOR_VERSION})")
        raw = doc.get("series")
        if not isinstance(raw, Mapping):
            raise CursorError(f"{source}: 'series' must be an object")
        series: dict[bytes, SeriesPosition] = {}
        for key, value in raw.items():
            try:
                sid = bytes.fromhex(key)
                if len(sid) != 16:
                    raise ValueError
                seq = value["seq"]
                if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                    raise ValueError
            except (ValueError, TypeError, KeyError):
                raise CursorError(f"{source}: bad series entry {key!r}") from None
            series[sid] = SeriesPosition(seq, str(value.get("path", "")), str(value.get("updated", "")))
        return cls(series, str(doc.get("destination", "")))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_cursor(path: str | os.PathLike[str]) -> Cursor:
    """Read the cursor at ``path``; a missing file is an empty cursor (start from the beginning)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Cursor()
    except (OSError, UnicodeDecodeError) as exc:
        raise CursorError(f"{path}: cannot read cursor: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CursorError(
            f"{path}: cursor is not valid JSON ({exc}); remove it to ship from the oldest record"
        ) from None
    return Cursor.from_json(doc, str(path))


def temp_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`save_cursor` writes before renaming: a hidden file beside the cursor."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


def save_cursor(path: str | os.PathLike[str], cursor: Cursor) -> None:
    """Replace the cursor at ``path`` atomically and durably (temp file, fsync, rename, fsync directory)."""
    path = Path(path)
    data = (json.dumps(cursor.to_json(), indent=1, sort_keys=True) + "\n").encode()
    temp = temp_path(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise CursorError(f"{path}: cannot save cursor: {exc.strerror or exc}") from None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory; the rename is still atomic
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class CursorLock:
    """An exclusive advisory lock on ``<cursor>.lock``, so two shippers never share one cursor."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).with_name(Path(path).name + ".lock")
        self._fd = -1

    def acquire(self) -> None:
        """Take the lock or raise CursorError naming the file."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CursorError(f"{self.path}: cannot create lock file: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CursorError(f"{self.path}: another mmaplog-ship is using this cursor") from None
        self._fd = fd

    def release(self) -> None:
        """Release the lock (the lock file stays); idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> CursorLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
