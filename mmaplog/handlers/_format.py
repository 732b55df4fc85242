"""Line formats for the text handlers: ``"{time} {level:<8} {logger}: {message}"`` and its fields.

A format is an ordinary :meth:`str.format` template over these fields:

==============  ===========================================================
``time``        local time, ``2024-05-01 12:00:00.123`` (millisecond precision)
``time_iso``    UTC time in ISO 8601, ``2024-05-01T10:00:00.123456Z``
``time_ns``     nanoseconds since the epoch (an int)
``level``       the level's name, ``INFO``
``levelno``     the level's number, ``20``
``logger``      the logger's dotted name
``message``     the message with its ``%`` arguments applied
``thread``      the thread identifier (``threading.get_ident()``, an int)
``pid``         the process id (an int)
``process``     the process name (the program's file name)
``fields``      the key-value fields as ``key=value`` pairs, ``""`` without fields
``exception``   the formatted traceback, ``""`` without one
==============  ===========================================================

Fields and exception are never lost: when the format does not place
``{fields}``, non-empty fields are appended to the line as `` key=value``
pairs, and when it does not place ``{exception}``, a traceback follows the
line on lines of its own.
"""

from __future__ import annotations

import json
import os
import string
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import _lifecycle
from .._levels import level_name
from .._process import process_name
from .._record import LogRecord

__all__ = ["DEFAULT_FORMAT", "FORMAT_FIELDS", "LineFormat", "render_fields"]

#: The format text handlers use unless given another.
DEFAULT_FORMAT = "{time} {level:<8} {logger}: {message}"

#: The names a format string may use.
FORMAT_FIELDS = ("time", "time_iso", "time_ns", "level", "levelno", "logger", "message", "thread", "pid",
                 "process", "fields", "exception")

#: ANSI colours of level names on a terminal, by lowest level.
_COLOURS = ((50, "\x1b[1;41;97m"), (40, "\x1b[1;31m"), (30, "\x1b[33m"), (20, "\x1b[32m"), (0, "\x1b[2m"))
_RESET = "\x1b[0m"


class _Process:
    """The process id and name, looked up once per process (refreshed after fork)."""

    pid = os.getpid()
    name = ""

    @classmethod
    def refresh(cls) -> None:
        cls.pid = os.getpid()
        cls.name = ""

    @classmethod
    def process_name(cls) -> str:
        if not cls.name:
            cls.name = process_name()
        return cls.name


def after_fork_in_child() -> None:
    """Forget the parent's process id and name."""
    _Process.refresh()


_lifecycle.on_fork_child(after_fork_in_child)


class _Coloured(str):
    """A level name that pads like plain text and then wraps itself in a terminal colour."""

    colour = ""

    def __format__(self, spec: str) -> str:
        return f"{self.colour}{format(str(self), spec)}{_RESET}"


def _coloured_name(level: int) -> str:
    name = _Coloured(level_name(level))
    name.colour = next(code for threshold, code in _COLOURS if level >= threshold)
    return name


_PLAIN_NAMES = {level: level_name(level) for level in range(256)}
_COLOURED_NAMES: dict[int, str] = {}


def _needs_quotes(text: str) -> bool:
    return not text or any(c in text for c in ' ="\\\n\r\t') or not text.isprintable()


def render_fields(fields: Mapping[str, Any] | None) -> str:
    """Key-value fields as ``key=value`` pairs (logfmt style: values with spaces or quotes are quoted)."""
    if not fields:
        return ""
    parts = []
    for key, value in fields.items():
        if isinstance(value, str):
            text = value
        elif value is None or isinstance(value, (bool, int, float)):
            text = json.dumps(value)
        else:
            try:
                text = str(value)
            except Exception as exc:  # noqa: BLE001 - a broken __str__ must not stop logging
                text = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
        if _needs_quotes(text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _Clock:
    """Formats wall-clock times, caching the part that changes once a second."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: tuple[int, str] = (-1, "")

    def local(self, time_ns: int) -> str:
        second, rest = divmod(time_ns, 1_000_000_000)
        cached_second, prefix = self._cache
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._cache = (second, prefix)  # one tuple store: safe when threads race
        return f"{prefix}.{rest // 1_000_000:03d}"


def _iso_utc(time_ns: int) -> str:
    second, rest = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{rest // 1000:06d}Z"


class LineFormat:
    """A compiled format string: :meth:`format` turns a record into its text (no trailing newline).

    Raises ValueError at construction when the string is malformed or names a
    field that does not exist, so a bad format fails where it is configured,
    not on the first record.
    """

    def __init__(self, fmt: str = DEFAULT_FORMAT, *, colour: bool = False) -> None:
        if not isinstance(fmt, str):
            raise ValueError(f"format must be a string, not {type(fmt).__name__}")
        used: set[str] = set()
        try:
            for _, field, _, _ in string.Formatter().parse(fmt):
                if field is None:
                    continue
                base = field.split(".", 1)[0].split("[", 1)[0]
                if base not in FORMAT_FIELDS:
                    shown = "{}" if field == "" else "{" + field + "}"
                    raise ValueError(f"format {fmt!r}: unknown field {shown} (fields: {', '.join(FORMAT_FIELDS)})")
                used.add(base)
        except ValueError as exc:
            if str(exc).startswith("format "):
                raise
            raise ValueError(f"format {fmt!r}: {exc}") from None
        self.fmt = fmt
        self.colour = colour
        self._used = frozenset(used)
        self._append_fields = "fields" not in used
        self._append_exception = "exception" not in used
        self._clock = _Clock()
        self._getters: tuple[tuple[str, Callable[[LogRecord], Any]], ...] = tuple(
            (name, self._getter(name)) for name in FORMAT_FIELDS if name in used
        )
        # Fail now, not on the first record, when a format spec does not fit its field.
        try:
            self.format(LogRecord("app", 20, "sample", (), {"k": 1}, time.time_ns(), 1, "Traceback"))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"format {fmt!r}: {type(exc).__name__}: {exc}") from None

    def _getter(self, name: str) -> Callable[[LogRecord], Any]:
        if name == "level":
            if self.colour:
                coloured = _COLOURED_NAMES
                return lambda r: coloured.get(r.level) or coloured.setdefault(r.level, _coloured_name(r.level))
            plain = _PLAIN_NAMES
            return lambda r: plain.get(r.level) or level_name(r.level)
        getters: dict[str, Callable[[LogRecord], Any]] = {
            "time": lambda r: self._clock.local(r.time_ns),
            "time_iso": lambda r: _iso_utc(r.time_ns),
            "time_ns": lambda r: r.time_ns,
            "levelno": lambda r: r.level,
            "logger": lambda r: r.logger,
            "message": lambda r: r.message,
            "thread": lambda r: r.thread,
            "pid": lambda r: _Process.pid,
            "process": lambda r: _Process.process_name(),
            "fields": lambda r: render_fields(r.fields),
            "exception": lambda r: r.exception or "",
        }
        return getters[name]

    def format(self, record: LogRecord) -> str:
        """The record as text: one line, plus traceback lines when it carries an exception."""
        line = self.fmt.format_map({name: get(record) for name, get in self._getters})
        if self._append_fields and record.fields:
            line = f"{line} {render_fields(record.fields)}"
        if self._append_exception and record.exception:
            line = f"{line}\n{record.exception}"
        return line

    def __repr__(self) -> str:
        return f"LineFormat({self.fmt!r})"
