"""``--since``/``--until`` times: every ISO-8601 form Python 3.11+ reads, read alike on every supported Python."""

from __future__ import annotations

import datetime as dt
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmaplog.cli._when import parse_when

UTC = dt.timezone.utc


def ns(moment: dt.datetime, extra_ns: int = 0) -> int:
    """ns since the epoch of an aware datetime, plus ``extra_ns``."""
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000 + extra_ns


BASE = dt.datetime(2026, 12, 1, 21, 9, 18, tzinfo=UTC)

# Each spelling and the instant it names; none of these has a local-time part, so they hold in any zone.
ZONED = [
    # a fraction of every length from 1 to 9 digits (Python 3.10's fromisoformat takes only 3 or 6)
    ("2026-12-01T21:09:18.2Z", ns(BASE, 200_000_000)),
    ("2026-12-01T21:09:18.25Z", ns(BASE, 250_000_000)),
    ("2026-12-01T21:09:18.123Z", ns(BASE, 123_000_000)),
    ("2026-12-01T21:09:18.1234Z", ns(BASE, 123_400_000)),
    ("2026-12-01T21:09:18.12345Z", ns(BASE, 123_450_000)),
    ("2026-12-01T21:09:18.123456Z", ns(BASE, 123_456_000)),
    ("2026-12-01T21:09:18.1234567Z", ns(BASE, 123_456_700)),
    ("2026-12-01T21:09:18.12345678Z", ns(BASE, 123_456_780)),
    ("2026-12-01T21:09:18.123456789Z", ns(BASE, 123_456_789)),
    ("2026-12-01T21:09:18.1234567891Z", ns(BASE, 123_456_789)),  # past nanoseconds: dropped
    ("2026-12-01T21:09:18,5Z", ns(BASE, 500_000_000)),  # a comma as the decimal sign
    ("2026-12-01t21:09:18z", ns(BASE)),
    ("2026-12-01 21:09:18Z", ns(BASE)),
    # reduced precision of the time
    ("2026-12-01T21Z", ns(BASE.replace(minute=0, second=0))),
    ("2026-12-01T21:09Z", ns(BASE.replace(second=0))),
    # basic format (no separators)
    ("20261201T210918Z", ns(BASE)),
    ("20261201T210918.2Z", ns(BASE, 200_000_000)),
    ("20261201T2109Z", ns(BASE.replace(second=0))),
    # zone offsets in every form
    ("2026-12-01T22:09:18+01:00", ns(BASE)),
    ("2026-12-01T22:09:18+0100", ns(BASE)),
    ("2026-12-01T22:09:18+01", ns(BASE)),
    ("2026-12-01T20:09:18-01:00", ns(BASE)),
    ("2026-12-01T22:39:18.5+01:30", ns(BASE, 500_000_000)),
    ("2026-12-01T21:09:28+00:00:10", ns(BASE)),
    ("2026-12-01T21:09:28.5+00:00:10.5", ns(BASE)),
    ("2026-12-01T21:09:18.75+00:00", ns(BASE, 750_000_000)),
    # ISO week dates: 2026-12-01 is the Tuesday (day 2) of week 49
    ("2026-W49-2T21:09:18Z", ns(BASE)),
    ("2026W492T210918Z", ns(BASE)),
    ("2026-W49T00:00Z", ns(dt.datetime(2026, 11, 30, tzinfo=UTC))),
]


@pytest.mark.parametrize(("text", "expected"), ZONED, ids=[t for t, _ in ZONED])
def test_iso_forms_with_a_zone(text: str, expected: int) -> None:
    assert parse_when(text) == expected


LOCAL = [
    ("2026-12-01", dt.datetime(2026, 12, 1), 0),
    ("20261201", dt.datetime(2026, 12, 1), 0),
    ("2026-W49-2", dt.datetime(2026, 12, 1), 0),
    ("2026W49", dt.datetime(2026, 11, 30), 0),
    ("2026-12-01 21:09", dt.datetime(2026, 12, 1, 21, 9), 0),
    ("2026-12-01T21:09:18.2", dt.datetime(2026, 12, 1, 21, 9, 18), 200_000_000),
    ("2026-12-01T21:09:18.1234567", dt.datetime(2026, 12, 1, 21, 9, 18), 123_456_700),
    ("2026-12-01T21", dt.datetime(2026, 12, 1, 21), 0),
]


@pytest.mark.parametrize(("text", "naive", "extra"), LOCAL, ids=[t for t, _, _ in LOCAL])
def test_iso_forms_without_a_zone_are_local_time(text: str, naive: dt.datetime, extra: int) -> None:
    assert parse_when(text) == ns(naive.astimezone(), extra)


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-01",  # no month 13
        "2026-02-30",
        "2026-12-01T25:00",
        "2026-12-01T21:61",
        "2026-12-01T21:09:18.",  # a decimal sign without digits
        "2026-12-01T21:0918",  # extended and basic mixed
        "2026-12-01T21:09:18+25:00",  # offset of a day or more
        "2026-W54-1",
        "2026-W49-8",
        "2026-12",  # reduced precision dates: not read by 3.11 either
        "2026",
        "12/01/2026",
        "2026-12-01T21:09:18Zjunk",
    ],
)
def test_not_a_time_is_one_line_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read") as info:
        parse_when(text)
    assert "\n" not in str(info.value)


@st.composite
def iso_texts(draw: st.DrawFn) -> tuple[str, int]:
    """An ISO-8601 text in one of the forms 3.11's fromisoformat reads, and its ns since the epoch (UTC)."""
    moment = draw(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1)))
    digits = draw(st.integers(min_value=0, max_value=9))
    frac = draw(st.text("0123456789", min_size=digits, max_size=digits))
    basic = draw(st.booleans())
    sep = draw(st.sampled_from(["T", " "]))
    zone_minutes = draw(st.integers(min_value=-23 * 60, max_value=23 * 60))
    date = moment.strftime("%Y%m%d" if basic else "%Y-%m-%d")
    clock = moment.strftime("%H%M%S" if basic else "%H:%M:%S")
    if frac:
        clock += draw(st.sampled_from([".", ","])) + frac
    sign = "-" if zone_minutes < 0 else "+"
    hh, mm = divmod(abs(zone_minutes), 60)
    zone = f"{sign}{hh:02d}{mm:02d}" if basic else f"{sign}{hh:02d}:{mm:02d}"
    if zone_minutes == 0 and draw(st.booleans()):
        zone = "Z"
    offset = dt.timedelta(minutes=zone_minutes)
    expected = ns(moment.replace(microsecond=0, tzinfo=dt.timezone(offset)), int(frac[:9].ljust(9, "0") or 0))
    return f"{date}{sep}{clock}{zone}", expected


@given(iso_texts())
def test_generated_iso_texts(case: tuple[str, int]) -> None:
    text, expected = case
    assert parse_when(text) == expected


@pytest.mark.skipif(sys.version_info < (3, 11), reason="compares with the fromisoformat of Python 3.11+")
@given(iso_texts())
def test_agrees_with_fromisoformat_of_311(case: tuple[str, int]) -> None:
    """The same instant as Python 3.11+ reads, to its microsecond (it has no nanoseconds)."""
    text, _ = case
    moment = dt.datetime.fromisoformat(text)
    assert parse_when(text) // 1000 == ns(moment) // 1000
