"""The JSON shape of a record, shared by ``mmaplog-read -o json`` and ``mmaplog-ship --to -``.

One object per record, keys in this order: ``seq``, ``time`` (ISO-8601 UTC
with microseconds and a ``Z``), ``level`` (name), ``logger``, ``thread``,
``pid``, ``message``, then ``fields`` (object) and ``exception`` (text) when the
record has them, then ``host`` and ``process`` from the file header.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from .reader import Record, level_name

__all__ = ["iso_time", "record_json", "record_line"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_last_second: tuple[int, str] = (-1, "")


def iso_time(time_ns: int) -> str:
    """``2024-05-01T12:00:00.123456Z`` for a wall-clock time in ns since the epoch (UTC, microseconds)."""
    global _last_second
    seconds, ns = divmod(int(time_ns), 1_000_000_000)
    cached_seconds, text = _last_second
    if cached_seconds != seconds:
        try:
            text = f"{_EPOCH + _dt.timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}"
        except OverflowError:
            text = "0001-01-01T00:00:00" if seconds < 0 else "9999-12-31T23:59:59"
        _last_second = (seconds, text)
    return f"{text}.{ns // 1000:06d}Z"


def record_json(record: Record) -> dict[str, Any]:
    """The JSON object (as a dict) of one record."""
    doc: dict[str, Any] = {
        "seq": record.seq,
        "time": iso_time(record.time_ns),
        "level": level_name(record.level),
        "logger": record.logger,
        "thread": record.thread,
        "pid": record.pid,
        "message": record.message,
    }
    if record.fields:
        doc["fields"] = record.fields
    if record.exception:
        doc["exception"] = record.exception
    doc["host"] = record.host
    doc["process"] = record.process
    return doc


def record_line(record: Record) -> str:
    """One JSON line (no newline) for a record; non-ASCII stays readable, odd field values become strings."""
    return json.dumps(record_json(record), ensure_ascii=False, default=str)
