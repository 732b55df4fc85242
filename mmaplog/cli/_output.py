"""Rendering records for ``mmaplog-read``: text lines, JSON lines and CSV, in bulk.

Every formatter takes a block of rows of :data:`mmaplog.reader.RECORD_DTYPE`
and the (host, process) of each file a row's ``file`` column points at, and
returns one string for the whole block, so a million records cost one Python
loop of f-strings and nothing heavier.  Text and CSV escape control characters
(C0, DEL, C1) in everything that comes from the file, so a log line cannot
move the cursor or hide lines on a terminal; JSON is always valid JSON.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import re
from json.encoder import encode_basestring
from typing import Any, Sequence

import numpy as np

from ..reader import level_name

__all__ = ["CsvFormatter", "Formatter", "JsonFormatter", "Meta", "TextFormatter", "escape", "iso_times"]

#: (host, process) of each file, indexed by a row's ``file`` column.
Meta = Sequence[tuple[str, str]]

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: What json's encoder leaves raw but a terminal might act on (DEL, C1) or UTF-8 cannot carry (lone surrogates).
_JSON_RAW = re.compile("[\x7f-\x9f\ud800-\udfff]")

_LEVEL_COLORS = {5: "2", 10: "2", 20: "32", 30: "33", 40: "31", 50: "1;31"}
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def escape(text: str) -> str:
    """``text`` with every C0 control, DEL and C1 control shown as an escape (``\\n``, ``\\x1b``)."""
    return text if text.isprintable() else _CONTROL.sub(_escape_char, text)


def _json_escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_string(text: str) -> str:
    """``text`` as a JSON string literal; non-ASCII stays readable, controls and lone surrogates are escaped."""
    encoded: str = encode_basestring(text)
    return encoded if text.isprintable() else _JSON_RAW.sub(_json_escape_char, encoded)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities turned into strings (JSON has no spelling for them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_value(value: Any) -> str:
    """Any value decoded from a record's fields as compact JSON text."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"))
    return _JSON_RAW.sub(_json_escape_char, text)


def iso_times(time_ns: np.ndarray, utc: bool) -> list[str]:
    """ISO-8601 times with microseconds: ``...Z`` in UTC, else local time with its UTC offset (vectorised)."""
    us = time_ns.astype(np.int64) // 1000
    if utc or not len(us):
        return [f"{t}Z" for t in np.datetime_as_string(us.astype("datetime64[us]"), unit="us").tolist()]
    # The local offset changes at most every quarter hour: look it up once per quarter hour present.
    quarters, inverse = np.unique(us // 900_000_000, return_inverse=True)
    offsets = np.array([_utc_offset(int(q) * 900) for q in quarters.tolist()], dtype=np.int64)
    local = us + offsets[inverse.reshape(-1)] * 1_000_000
    stamps = np.datetime_as_string(local.astype("datetime64[us]"), unit="us").tolist()
    zones = [_zone_text(int(o)) for o in offsets.tolist()]
    if len(zones) == 1:
        zone = zones[0]
        return [f"{t}{zone}" for t in stamps]
    return [f"{t}{zones[k]}" for t, k in zip(stamps, inverse.reshape(-1).tolist())]


def _utc_offset(seconds: int) -> int:
    """The local time zone's offset from UTC in seconds at ``seconds`` since the epoch."""
    try:
        offset = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).astimezone().utcoffset()
    except (OverflowError, OSError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset is not None else 0


def _zone_text(offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    minutes = abs(offset) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _field_value(value: Any) -> str:
    """A bare word stays as it is (logfmt style); anything else is written as JSON."""
    if isinstance(value, str) and value and value.isprintable() and not any(c in value for c in ' "=\\'):
        return value
    return escape(json_value(value))


def _fields_text(fields: dict[str, Any]) -> str:
    return " ".join(f"{escape(str(key)) or '-'}={_field_value(value)}" for key, value in fields.items())


def _exception_text(exception: str) -> str:
    return "".join(f"\n    {escape(line)}" for line in exception.rstrip("\n").split("\n"))


class Formatter:
    """Renders blocks of records; subclasses write :meth:`block` (and :meth:`header` if they have one)."""

    def header(self) -> str:
        """Text to write once before the first record."""
        return ""

    def block(self, rows: np.ndarray, meta: Meta) -> str:
        """All of ``rows`` as one string ending in a newline (empty for no rows)."""
        raise NotImplementedError


class TextFormatter(Formatter):
    """``2024-05-01T14:03:02.123456+02:00 INFO     app.db [thread] message key=value``, exceptions indented below."""

    def __init__(self, utc: bool = False, color: bool = False) -> None:
        self.utc = utc
        self.color = color
        self._levels: dict[int, str] = {}
        self._loggers: dict[str, str] = {}

    def _level(self, level: int) -> str:
        text = self._levels.get(level)
        if text is None:
            text = f"{level_name(level):<8}"
            code = _LEVEL_COLORS.get(level)
            if self.color and code:
                text = f"\x1b[{code}m{text}{_RESET}"
            self._levels[level] = text
        return text

    def _logger(self, name: str) -> str:
        text = self._loggers.get(name)
        if text is None:
            text = self._loggers[name] = escape(name) or "-"
        return text

    def block(self, rows: np.ndarray, meta: Meta) -> str:
        if not len(rows):
            return ""
        stamps = iso_times(rows["time_ns"], self.utc)
        if self.color:
            stamps = [f"{_DIM}{s}{_RESET}" for s in stamps]
        levels = [self._level(v) for v in rows["level"].tolist()]
        loggers = [self._logger(v) for v in rows["logger"].tolist()]
        out = []
        for stamp, level, logger, thread, message, fields, exception in zip(
            stamps,
            levels,
            loggers,
            rows["thread"].tolist(),
            rows["message"].tolist(),
            rows["fields"].tolist(),
            rows["exception"].tolist(),
        ):
            if not message.isprintable():
                message = _CONTROL.sub(_escape_char, message)
            line = f"{stamp} {level} {logger} [{thread}] {message}"
            if fields:
                line = f"{line} {_fields_text(fields)}"
            if exception:
                line += _exception_text(exception)
            out.append(line)
        out.append("")
        return "\n".join(out)


class JsonFormatter(Formatter):
    """One JSON object per line: ``seq``, ``time`` (UTC), ``level``, ``logger``, ``thread``, ``pid``,
    ``message``, then ``fields`` and ``exception`` when present, then ``host`` and ``process``."""

    def __init__(self) -> None:
        self._loggers: dict[str, str] = {}

    def block(self, rows: np.ndarray, meta: Meta) -> str:
        if not len(rows):
            return ""
        stamps = np.datetime_as_string((rows["time_ns"].astype(np.int64) // 1000).astype("datetime64[us]"), unit="us")
        tails = [f',"host":{json_string(host)},"process":{json_string(process)}}}' for host, process in meta]
        levels = {v: json_string(level_name(v)) for v in np.unique(rows["level"]).tolist()}
        cache = self._loggers
        out = []
        for seq, stamp, level, logger, thread, pid, message, fields, exception, file in zip(
            rows["seq"].tolist(),
            stamps.tolist(),
            rows["level"].tolist(),
            rows["logger"].tolist(),
            rows["thread"].tolist(),
            rows["pid"].tolist(),
            rows["message"].tolist(),
            rows["fields"].tolist(),
            rows["exception"].tolist(),
            rows["file"].tolist(),
        ):
            name = cache.get(logger)
            if name is None:
                name = cache[logger] = json_string(logger)
            line = (
                f'{{"seq":{seq},"time":"{stamp}Z","level":{levels[level]},"logger":{name},'
                f'"thread":{thread},"pid":{pid},"message":{json_string(message)}'
            )
            if fields:
                line = f'{line},"fields":{json_value(fields)}'
            if exception:
                line = f'{line},"exception":{json_string(exception)}'
            out.append(line + tails[file])
        out.append("")
        return "\n".join(out)


class CsvFormatter(Formatter):
    """RFC 4180 CSV with a header row; text is escaped like the text output, so every record is one line."""

    COLUMNS = ("seq", "time", "level", "logger", "thread", "pid", "host", "process", "message", "fields", "exception")

    def __init__(self, utc: bool = False) -> None:
        self.utc = utc

    def header(self) -> str:
        return ",".join(self.COLUMNS) + "\r\n"

    def block(self, rows: np.ndarray, meta: Meta) -> str:
        if not len(rows):
            return ""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        hosts = [(escape(h), escape(p)) for h, p in meta]
        stamps = iso_times(rows["time_ns"], self.utc)
        writer.writerows(
            (
                seq,
                stamp,
                level_name(level),
                escape(logger),
                thread,
                pid,
                *hosts[file],
                escape(message),
                escape(json_value(fields)) if fields else "",
                escape(exception) if exception else "",
            )
            for seq, stamp, level, logger, thread, pid, file, message, fields, exception in zip(
                rows["seq"].tolist(),
                stamps,
                rows["level"].tolist(),
                rows["logger"].tolist(),
                rows["thread"].tolist(),
                rows["pid"].tolist(),
                rows["file"].tolist(),
                rows["message"].tolist(),
                rows["fields"].tolist(),
                rows["exception"].tolist(),
            )
        )
        return buffer.getvalue()
