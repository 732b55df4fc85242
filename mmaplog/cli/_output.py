"""Rendering records for ``mmaplog-read``: text lines, JSON lines and CSV, in bulk.

Every formatter takes a block of rows of :data:`mmaplog.reader.RECORD_DTYPE`
and the (host, process) of each file a row's ``file`` column points at, and
returns one string for the whole block: a million records cost one Python loop
of plain f-strings.  Text and CSV escape control characters (C0, DEL, C1) in
everything that comes from the file, so a log line cannot move the cursor or
hide lines on a terminal; JSON is always valid JSON.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import itertools
import os
import re
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import Any, NamedTuple

import numpy as np

from .. import _codec
from .. import layout as L
from .._json import escape_raw, json_string, json_value
from ..reader import RECORD_DTYPE, level_name

__all__ = [
    "CsvFormatter",
    "Formatter",
    "JsonFormatter",
    "Meta",
    "Stamps",
    "TextFormatter",
    "escape",
    "iso_times",
    "json_string",
    "json_value",
    "location_text",
    "short_thread",
    "stamps",
]

#: (host, process) of each file, indexed by a row's ``file`` column.
Meta = Sequence[tuple[str, str]]

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_LEVEL_COLORS = {5: "2", 10: "2", 20: "32", 30: "33", 40: "31", 50: "1;31"}
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def escape(text: str) -> str:
    """``text`` with every C0 control, DEL and C1 control shown as an escape (``\\n``, ``\\x1b``)."""
    return text if text.isprintable() else _CONTROL.sub(_escape_char, text)


#: Every level number's JSON name, and the record layout, as the accelerator takes them.
_JSON_LEVELS = tuple(json_string(level_name(v)).encode() for v in range(256))
_RECORD_LAYOUT = _codec.record_layout(RECORD_DTYPE)


class Stamps(NamedTuple):
    """ISO-8601 times in parts: record *i* is ``f"{heads[key[i]]}.{str(micros[i])[1:]}{tails[key[i]]}"``.

    Log times cluster in few distinct seconds, so date and time of day are
    formatted once per second present; ``micros`` holds the microseconds plus
    1,000,000, whose ``str()`` without its first digit is the zero-padded fraction.
    """

    key: list[int]
    micros: list[int]
    heads: list[str]
    tails: list[str]


def stamps(time_ns: np.ndarray, utc: bool) -> Stamps:
    """The times ``time_ns`` (ns since the epoch) in parts, UTC (``Z``) or local with its offset (``+02:00``).

    The local offset is looked up once per quarter hour present, since time zones
    change their offset only on quarter hours.
    """
    seconds, micros = np.divmod(time_ns.astype(np.int64) // 1000, 1_000_000)
    unique, key = np.unique(seconds, return_inverse=True)
    if utc:
        offsets = np.zeros(len(unique), dtype=np.int64)
    else:
        quarters, which = np.unique(unique // 900, return_inverse=True)
        offsets = np.array([_utc_offset(int(q) * 900) for q in quarters.tolist()], dtype=np.int64)
        offsets = offsets[which.reshape(-1)]
    heads = np.datetime_as_string((unique + offsets).astype("datetime64[s]"), unit="s").tolist()
    tails = ["Z"] * len(unique) if utc else [_zone_text(o) for o in offsets.tolist()]
    return Stamps(key.reshape(-1).tolist(), (micros + 1_000_000).tolist(), heads, tails)


def iso_times(time_ns: np.ndarray, utc: bool) -> list[str]:
    """ISO-8601 times with microseconds, one string per element of ``time_ns``."""
    key, micros, heads, tails = stamps(time_ns, utc)
    return [f"{heads[k]}.{str(us)[1:]}{tails[k]}" for k, us in zip(key, micros)]


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


_U64 = (1 << 64) - 1


def short_thread(ident: int) -> str:
    """A 4-hex-digit tag of a thread ident for the text line, the same for the same ident everywhere.

    The file stores ``threading.get_ident()`` (a 15-digit address on Linux); the
    tag is its top 16 bits after Fibonacci hashing, so idents that differ only in
    a few bits still get different tags.  The full ident is in ``-o json``/``csv``.
    """
    return f"{((ident & _U64) * 0x9E3779B97F4A7C15 & _U64) >> 48:04x}"


def _field_value(value: Any) -> str:
    """A bare word stays as it is (logfmt style); anything else is written as JSON."""
    if isinstance(value, str) and value and value.isprintable() and not any(c in value for c in ' "=\\'):
        return value
    return escape(json_value(value))


def fields_text(fields: dict[str, Any]) -> str:
    """Fields as ``key=value`` pairs separated by spaces."""
    return " ".join(f"{escape(str(key)) or '-'}={_field_value(value)}" for key, value in fields.items())


def location_text(pathname: str, lineno: int) -> str:
    """``file.py:12``: the source location as the standard library's ``%(filename)s:%(lineno)d`` shows it."""
    return f"{escape(os.path.basename(pathname)) or '-'}:{lineno}"


def _unlocated(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without the source keys the location column shows (a key of another type stays a field)."""
    return {k: v for k, v in fields.items()
            if not (k == "pathname" or (k == "lineno" and type(v) is int) or (k == "funcName" and type(v) is str))}


def _exception_text(exception: str) -> str:
    return "".join(f"\n    {escape(line)}" for line in exception.rstrip("\n").split("\n"))


class Formatter:
    """Renders blocks of records; subclasses write :meth:`block` (and :meth:`header` when they have one)."""

    def header(self) -> str:
        """Text to write once before the first record."""
        return ""

    def see(self, rows: np.ndarray) -> None:
        """Look at all the rows about to be written in blocks (the text line shows pids once there are several)."""

    def block(self, rows: np.ndarray, meta: Meta) -> str:
        """All of ``rows`` as one string ending in a newline (empty for no rows)."""
        raise NotImplementedError

    def encoded(self, rows: np.ndarray, meta: Meta) -> bytes | bytearray:
        """:meth:`block` as UTF-8 bytes, text UTF-8 cannot carry as backslash escapes (what the CLI writes)."""
        return self.block(rows, meta).encode("utf-8", "backslashreplace")


class TextFormatter(Formatter):
    """``2024-05-01T14:03:02.123456+02:00 INFO     app.db [3f2a] message key=value``, exceptions indented below.

    ``[3f2a]`` is the thread (:func:`short_thread`); once the records seen come
    from more than one process it becomes ``[4711/3f2a]``, the pid first.  A
    record with a source location shows it before the message as ``file.py:12``
    (the file's base name and the line), and its ``pathname``, ``lineno`` and
    ``funcName`` fields are not repeated among the ``key=value`` pairs.
    """

    def __init__(self, utc: bool = False, color: bool = False, show_pid: bool = False) -> None:
        self.utc = utc
        self.color = color
        #: Show the pid before the thread: set by :meth:`see` once two pids have been seen, then kept.
        self.show_pid = show_pid

    def see(self, rows: np.ndarray) -> None:
        if not self.show_pid and len(rows):
            pids = rows["pid"]
            self.show_pid = bool((pids != pids[0]).any())

    def _level(self, level: int) -> str:
        text = f"{level_name(level):<8}"
        code = _LEVEL_COLORS.get(level)
        return f"\x1b[{code}m{text}{_RESET}" if self.color and code else text

    def block(self, rows: np.ndarray, meta: Meta) -> str:
        if not len(rows):
            return ""
        key, micros, heads, tails = stamps(rows["time_ns"], self.utc)
        if self.color:
            heads = [f"{_DIM}{h}" for h in heads]
            tails = [f"{t}{_RESET}" for t in tails]
        level_list = rows["level"].tolist()
        logger_list = rows["logger"].tolist()
        levels = {v: self._level(v) for v in set(level_list)}
        loggers = {v: escape(v) or "-" for v in set(logger_list)}
        self.see(rows)
        if self.show_pid:
            pairs = list(zip(rows["pid"].tolist(), rows["thread"].tolist()))
            threads = {v: f"[{v[0]}/{short_thread(v[1])}]" for v in set(pairs)}
            thread_list: list[Any] = pairs
        else:
            thread_list = rows["thread"].tolist()
            threads = {v: f"[{short_thread(v)}]" for v in set(thread_list)}
        sub, esc = _CONTROL.sub, _escape_char
        # Only records with fields can carry a location: a block without any skips the columns.
        located = "pathname" in (rows.dtype.names or ()) and bool((rows["flags"] & L.FLAG_FIELDS).any())
        paths: Any = rows["pathname"].tolist() if located else itertools.repeat(None)
        lines: Any = rows["lineno"].tolist() if located else itertools.repeat(0)
        out = []
        for k, us, level, logger, thread, message, fields, exception, path, lineno in zip(
            key,
            micros,
            level_list,
            logger_list,
            thread_list,
            rows["message"].tolist(),
            rows["fields"].tolist(),
            rows["exception"].tolist(),
            paths,
            lines,
        ):
            text = message if message.isprintable() else sub(esc, message)
            shown = fields
            if path is not None:
                text = f"{location_text(path, lineno)} {text}"
                shown = _unlocated(fields)
            line = f"{heads[k]}.{str(us)[1:]}{tails[k]} {levels[level]} {loggers[logger]} {threads[thread]} {text}"
            if shown:
                line = f"{line} {fields_text(shown)}"
            if exception:
                line += _exception_text(exception)
            out.append(line)
        out.append("")
        return "\n".join(out)


class JsonFormatter(Formatter):
    """One JSON object per line with the keys ``seq``, ``time`` (UTC), ``level``, ``logger``, ``thread``,
    ``pid``, ``message``, then ``fields`` and ``exception`` when the record has them, then ``host`` and
    ``process``: the shape ``mmaplog-ship --to -`` also writes."""

    def block(self, rows: np.ndarray, meta: Meta) -> str:
        if not len(rows):
            return ""
        key, micros, heads, _tails = stamps(rows["time_ns"], utc=True)
        heads = [f'"time":"{h}.' for h in heads]
        ends = [f',"host":{json_string(host)},"process":{json_string(process)}}}' for host, process in meta]
        level_list = rows["level"].tolist()
        logger_list = rows["logger"].tolist()
        levels = {v: json_string(level_name(v)) for v in set(level_list)}
        loggers = {v: json_string(v) for v in set(logger_list)}
        thread_list = rows["thread"].tolist()
        threads = {v: str(v) for v in set(thread_list)}
        encode, escape = encode_basestring, escape_raw
        out = []
        for seq, k, us, level, logger, thread, pid, message, fields, exception, file in zip(
            rows["seq"].tolist(),
            key,
            micros,
            level_list,
            logger_list,
            thread_list,
            rows["pid"].tolist(),
            rows["message"].tolist(),
            rows["fields"].tolist(),
            rows["exception"].tolist(),
            rows["file"].tolist(),
        ):
            text = encode(message)
            if not message.isprintable():
                text = escape(text)
            if fields or exception:
                if fields:
                    text = f'{text},"fields":{json_value(fields)}'
                if exception:
                    text = f'{text},"exception":{json_string(exception)}'
            out.append(
                f'{{"seq":{seq},{heads[k]}{str(us)[1:]}Z","level":{levels[level]},"logger":{loggers[logger]},'
                f'"thread":{threads[thread]},"pid":{pid},"message":{text}{ends[file]}'
            )
        out.append("")
        return "\n".join(out)

    # Twin: _cread.c json_lines writes the same bytes as JsonFormatter.block in C. See docs/MAP.md.
    def encoded(self, rows: np.ndarray, meta: Meta) -> bytes | bytearray:
        """The bytes of :meth:`block`, written by the C accelerator where it is built."""
        cread = _codec.accelerator()
        if cread is None or not len(rows) or rows.dtype != RECORD_DTYPE or rows.ndim != 1:
            return super().encoded(rows, meta)
        ends = tuple(
            f',"host":{json_string(host)},"process":{json_string(process)}}}'.encode("utf-8", "backslashreplace")
            for host, process in meta
        )
        lines = cread.json_lines(np.ascontiguousarray(rows), _RECORD_LAYOUT, _JSON_LEVELS, ends, json_value)
        return super().encoded(rows, meta) if lines is None else lines


class CsvFormatter(Formatter):
    """RFC 4180 CSV with a header row; text is escaped as in the text output, so each record is one line."""

    COLUMNS = ("seq", "time", "level", "logger", "thread", "pid", "host", "process", "message", "fields", "exception")

    def __init__(self, utc: bool = False) -> None:
        self.utc = utc

    def header(self) -> str:
        return ",".join(self.COLUMNS) + "\r\n"

    def block(self, rows: np.ndarray, meta: Meta) -> str:
        if not len(rows):
            return ""
        buffer = io.StringIO()
        hosts = [(escape(host), escape(process)) for host, process in meta]
        level_list = rows["level"].tolist()
        logger_list = rows["logger"].tolist()
        levels = {v: level_name(v) for v in set(level_list)}
        loggers = {v: escape(v) for v in set(logger_list)}
        sub, esc = _CONTROL.sub, _escape_char
        csv.writer(buffer).writerows(
            (
                seq,
                stamp,
                levels[level],
                loggers[logger],
                thread,
                pid,
                *hosts[file],
                message if message.isprintable() else sub(esc, message),
                escape(json_value(fields)) if fields else "",
                escape(exception) if exception else "",
            )
            for seq, stamp, level, logger, thread, pid, file, message, fields, exception in zip(
                rows["seq"].tolist(),
                iso_times(rows["time_ns"], self.utc),
                level_list,
                logger_list,
                rows["thread"].tolist(),
                rows["pid"].tolist(),
                rows["file"].tolist(),
                rows["message"].tolist(),
                rows["fields"].tolist(),
                rows["exception"].tolist(),
            )
        )
        return buffer.getvalue()
