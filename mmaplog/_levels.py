"""Level names and numbers: the one owner of the scale the writer stores, the reader shows and loggers filter on.

A level is a byte (0..255) in every record; the names below are the ones the
logger methods, the configuration, the reader and the CLI know.  Other
numbers are valid and show as ``LEVEL<n>``.
"""

from __future__ import annotations

__all__ = [
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "INFO",
    "LEVEL_NAMES",
    "NOTSET",
    "TRACE",
    "WARNING",
    "level_name",
    "level_number",
]

NOTSET = 0
TRACE = 5
DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
CRITICAL = 50

LEVEL_NAMES: dict[int, str] = {
    NOTSET: "NOTSET", TRACE: "TRACE", DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR",
    CRITICAL: "CRITICAL",
}  # fmt: skip
#: Names accepted on input: the ones above and the aliases the stdlib knows.
_LEVEL_NUMBERS = {name: number for number, name in LEVEL_NAMES.items()} | {"WARN": WARNING, "FATAL": CRITICAL}


def level_name(level: int) -> str:
    """The name of a numeric level ("INFO"), or "LEVEL<n>" for a custom number."""
    return LEVEL_NAMES.get(level) or f"LEVEL{level}"


def level_number(level: int | str) -> int:
    """Turn a level name ("info", "WARNING") or number into its number; ValueError names the value."""
    if isinstance(level, bool):
        raise ValueError(f"unknown level {level!r}")
    if isinstance(level, int):
        if 0 <= level <= 255:
            return level
        raise ValueError(f"level {level} is out of range 0..255")
    text = str(level).strip().upper()
    if text in _LEVEL_NUMBERS:
        return _LEVEL_NUMBERS[text]
    if text.isdigit():
        return level_number(int(text))
    raise ValueError(f"unknown level {level!r} (expected one of {', '.join(n for n in _LEVEL_NUMBERS if n != 'NOTSET')})")
