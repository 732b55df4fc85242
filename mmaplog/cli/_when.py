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
    return _iso(text.strip(), text)


#: ISO-8601 as ``datetime.fromisoformat`` reads it on Python 3.11+, read the same way on every supported
#: Python (3.10's reads far less): a calendar (``2024-05-01``, ``20240501``) or week date (``2024-W18-3``,
#: ``2024W183``), then optionally a separator (``T``, a space, any one character but a digit) and a time
#: ``HH[:MM[:SS[.f]]]`` or ``HH[MM[SS[.f]]]`` whose fraction has any number of digits (after ``.`` or
#: ``,``; kept to the nanosecond), then optionally a zone ``Z`` or ``±HH[:MM[:SS[.f]]]``.
_ISO = re.compile(
    r"""
    (?P<year>\d{4})
    (?: -(?P<month>\d{2})-(?P<day>\d{2}) | (?P<bmonth>\d{2})(?P<bday>\d{2})
      | -?[wW](?P<week>\d{2})(?:-?(?P<weekday>\d))? )
    (?: [^0-9]
        (?P<hour>\d{2})
        (?: (?P<colon>:?)(?P<minute>\d{2})
            (?: (?P=colon)(?P<second>\d{2}) (?: [.,](?P<fraction>\d+) )? )? )?
        (?P<zone> [zZ]
          | (?P<zsign>[+-])(?P<zhour>\d{2})
            (?: (?P<zcolon>:?)(?P<zminute>\d{2})
                (?: (?P=zcolon)(?P<zsecond>\d{2}) (?: [.,](?P<zfraction>\d+) )? )? )? )?
    )?
    """,
    re.VERBOSE,
)


def _fraction_ns(digits: str | None) -> int:
    """``.2`` -> 200,000,000 ns; digits past the ninth are dropped."""
    return int(digits[:9].ljust(9, "0")) if digits else 0


def _iso(iso: str, text: str) -> int:
    """ns since the epoch of the ISO-8601 time ``iso`` (local time when it has no zone)."""
    match = _ISO.fullmatch(iso)
    if match is None:
        raise ValueError(f"cannot read {text!r} as a time ({_EXAMPLES})")
    g = match.groupdict()
    try:
        if g["week"] is not None:
            day = _dt.date.fromisocalendar(int(g["year"]), int(g["week"]), int(g["weekday"] or 1))
        else:
            day = _dt.date(int(g["year"]), int(g["month"] or g["bmonth"]), int(g["day"] or g["bday"]))
        zone: _dt.tzinfo | None = None
        if g["zone"] is not None:
            if g["zsign"] is None:
                zone = _dt.timezone.utc
            else:
                offset = _dt.timedelta(
                    hours=int(g["zhour"]),
                    minutes=int(g["zminute"] or 0),
                    seconds=int(g["zsecond"] or 0),
                    microseconds=_fraction_ns(g["zfraction"]) // 1000,
                )
                zone = _dt.timezone(-offset if g["zsign"] == "-" else offset)
        moment = _dt.datetime(
            day.year,
            day.month,
            day.day,
            int(g["hour"] or 0),
            int(g["minute"] or 0),
            int(g["second"] or 0),
            tzinfo=zone,
        )
    except ValueError as exc:
        raise ValueError(f"cannot read {text!r} as a time: {exc} ({_EXAMPLES})") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return _to_ns(moment) + _fraction_ns(g["fraction"])


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
