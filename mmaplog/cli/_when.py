"""Reading the times people type after ``--since`` and ``--until``."""

from __future__ import annotations

import datetime as _dt
import re
import time

__all__ = ["parse_when"]

_UNITS = {
    "us": 1e-6, "usec": 1e-6,
    "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_TERM = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)")
_DAYS = {"today": 0, "yesterday": -1, "tomorrow": 1}
_EXAMPLES = "examples: 2024-05-01T12:00:00, '2024-05-01 12:00', -5min, '1h ago', today, @1714564800"


def parse_when(text: str, now_ns: int | None = None) -> int:
    """Turn ``text`` into ns since the epoch; raises ValueError with a one-line reason.

    Accepts ISO-8601 (a time without a zone is local time), ``now``, ``today``,
    ``yesterday``, ``tomorrow``, ``@SECONDS`` since the epoch, and offsets from
    now such as ``-5min``, ``+1h``, ``1h 30min ago``.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    value = text.strip().lower()
    if not value:
        raise ValueError(f"empty time ({_EXAMPLES})")
    if value == "now":
        return now_ns
    if value in _DAYS:
        today = _dt.datetime.fromtimestamp(now_ns / 1e9).astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        return _to_ns(today + _dt.timedelta(days=_DAYS[value]))
    if value.startswith("@"):
        try:
            return int(float(value[1:]) * 1e9)
        except ValueError:
            raise ValueError(f"cannot read {text!r} as seconds since the epoch ({_EXAMPLES})") from None
    offset = _relative(value)
    if offset is not None:
        return now_ns + int(offset * 1e9)
    iso = text.strip()
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        moment = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time ({_EXAMPLES})") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return _to_ns(moment)


def _relative(value: str) -> float | None:
    """Seconds from now for ``-5min``, ``+2h``, ``1h 30min ago``; None if ``value`` is not of that form."""
    sign = 0
    if value.endswith("ago"):
        value, sign = value[: -len("ago")].strip(), -1
    if value[:1] in "+-":
        if sign:
            return None
        sign, value = (1 if value[0] == "+" else -1), value[1:]
    if not sign or not value:
        return None
    total, at = 0.0, 0
    while at < len(value):
        match = _TERM.match(value, at)
        if not match or match.end() == at:
            return None
        number, unit = match.groups()
        if unit not in _UNITS and unit != "":
            return None
        total += float(number) * _UNITS.get(unit, 1)
        at = match.end()
        while at < len(value) and value[at] == " ":
            at += 1
    return sign * total


def _to_ns(moment: _dt.datetime) -> int:
    delta = moment - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
