"""RFC 5424 formatting and RFC 6587 framing of mmaplog records (mmaplog.ship.syslog)."""

from __future__ import annotations

import re

import pytest

from mmaplog.ship.syslog import (
    TRUNCATION_MARKER,
    SyslogFormatter,
    escape_param_value,
    facility_number,
    format_timestamp,
    octet_frame,
    sanitize_name,
    severity,
)

# RFC 5424 section 6 as a regular expression: HEADER SP STRUCTURED-DATA [SP MSG].
_SD_PARAM = r'[!#-<>-\\^-~]{1,32}="(?:[^"\\\]]|\\["\\\]])*"'
_SD_ELEMENT = rf"\[[!#-<>-\\^-~]{{1,32}}(?: {_SD_PARAM})*\]"
RFC5424 = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    rb"(?P<msgid>[!-~]{1,32}) (?P<sd>-|(?:" + _SD_ELEMENT.encode() + rb")+)(?: (?P<msg>.*))?\Z",
    re.DOTALL,
)
PARAM = re.compile(r'([^ =\]"]+)="((?:[^"\\\]]|\\["\\\]])*)"')


def parse(message: bytes) -> dict:
    """Split an RFC 5424 message into its parts, structured data as {sd_id: {name: [values]}}."""
    m = RFC5424.match(message)
    assert m is not None, message
    sd: dict[str, dict[str, list[str]]] = {}
    text = m.group("sd").decode()
    if text != "-":
        for element in re.finditer(r"\[([^ \]]+)((?: " + _SD_PARAM + r")*)\]", text):
            params: dict[str, list[str]] = {}
            for name, value in PARAM.findall(element.group(2)):
                params.setdefault(name, []).append(re.sub(r"\\([\"\\\]])", r"\1", value))
            sd[element.group(1)] = params
    return {**{k: v.decode() for k, v in m.groupdict().items() if k not in ("sd", "msg") and v is not None},
            "sd": sd, "msg": m.group("msg")}  # fmt: skip


def test_level_to_severity_table() -> None:
    """Each standard level maps to the syslog severity a syslog user expects."""
    table = {50: 2, 45: 3, 40: 3, 30: 4, 25: 5, 20: 6, 10: 7, 5: 7, 0: 7, 255: 2}
    assert {level: severity(level) for level in table} == table


def test_header_fields_come_from_the_file_header() -> None:
    """PRI, timestamp, hostname, app name and pid are placed where RFC 5424 puts them."""
    fmt = SyslogFormatter(facility="local3")
    out = parse(fmt.format(time_ns=1_700_000_000_123_456_789, level=40, message="boom", host="web-1",
                           process="api", pid=4321))  # fmt: skip
    assert out["pri"] == str(19 * 8 + 3)
    assert out["ts"] == "2023-11-14T22:13:20.123456Z"
    assert (out["host"], out["app"], out["procid"], out["msgid"]) == ("web-1", "api", "4321", "-")
    assert out["msg"] == b"boom"
    assert out["sd"] == {}


def test_fields_go_into_structured_data_with_escaping() -> None:
    """Every field becomes an SD-PARAM of fields@PEN; quote, backslash and bracket survive escaping."""
    fields = {"user": 'al"ice', "path": "C:\\tmp", "tag": "[x]", "n": 3, "ok": True, "none": None, "list": [1, "a"]}
    fmt = SyslogFormatter(enterprise_id=99999)
    message = fmt.format(time_ns=0, level=20, message="hi", meta={"seq": 7, "logger": "app.db"}, fields=fields)
    out = parse(message)
    assert out["sd"]["mmaplog@99999"] == {"seq": ["7"], "logger": ["app.db"]}
    got = out["sd"]["fields@99999"]
    assert got == {"user": ['al"ice'], "path": ["C:\\tmp"], "tag": ["[x]"], "n": ["3"], "ok": ["true"],
                   "none": ["null"], "list": ['[1,"a"]']}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [('"', '\\"'), ("\\", "\\\\"), ("]", "\\]"), ("a]b\\c\"d", 'a\\]b\\\\c\\"d'), ("plain", "plain"), ("é ü", "é ü")],
)
def test_param_value_escaping(value: str, expected: str) -> None:
    """Exactly the three characters RFC 5424 names are escaped, with a backslash."""
    assert escape_param_value(value) == expected


def test_param_names_are_made_valid() -> None:
    """Field names with spaces, '=', quotes, brackets or non-ASCII become valid SD-NAMEs of at most 32 characters."""
    assert sanitize_name('a b=c"d]e', 32, sd_name=True) == "a_b_c_d_e"
    assert sanitize_name("ünïcode", 32, sd_name=True) == "_n_code"
    assert sanitize_name("x" * 40, 32, sd_name=True) == "x" * 32
    assert sanitize_name("", 48) == "-"


def test_bad_header_values_are_sanitised() -> None:
    """Spaces and non-ASCII in host or process names cannot break the header."""
    out = parse(SyslogFormatter().format(time_ns=0, level=20, message="m", host="my host", process="prög nam"))
    assert out["host"] == "my_host"
    assert out["app"] == "pr_g_nam"
    assert out["procid"] == "-"


def test_exception_follows_the_message() -> None:
    """A record's traceback is appended to MSG after a line feed."""
    out = parse(SyslogFormatter().format(time_ns=0, level=40, message="failed", exception="Traceback...\nValueError"))
    assert out["msg"] == b"failed\nTraceback...\nValueError"


def test_unicode_message_is_utf8() -> None:
    """MSG is the UTF-8 encoding of the message."""
    out = parse(SyslogFormatter().format(time_ns=0, level=20, message="naïve ☃"))
    assert out["msg"].decode("utf-8") == "naïve ☃"


def test_long_message_is_cut_at_a_character_boundary_with_a_marker() -> None:
    """A message past max_size is cut to fit exactly, on a UTF-8 boundary, and says so."""
    fmt = SyslogFormatter(max_size=1000)
    data = fmt.format(time_ns=0, level=20, message="☃" * 2000, meta={"seq": 1})
    assert len(data) <= 1000
    assert len(data) > 990
    out = parse(data)
    text = out["msg"].decode("utf-8")  # raises if cut inside a character
    assert text.endswith(TRUNCATION_MARKER)
    assert set(text[: -len(TRUNCATION_MARKER)]) == {"☃"}


def test_huge_fields_are_replaced_by_a_note() -> None:
    """Fields too large for any message are dropped with a note, keeping the message valid and within the limit."""
    fmt = SyslogFormatter(max_size=2048)
    data = fmt.format(time_ns=0, level=20, message="m", meta={"seq": 1}, fields={"blob": "x" * 10_000})
    assert len(data) <= 2048
    out = parse(data)
    assert "blob" not in out["sd"]["fields@32473"]
    assert "dropped" in out["sd"]["fields@32473"]["mmaplog_ship"][0]


def test_timestamp_format() -> None:
    """Timestamps are UTC with exactly six fractional digits, also before 1970."""
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert format_timestamp(1_000) == "1970-01-01T00:00:00.000001Z"
    assert format_timestamp(-1) == "1969-12-31T23:59:59.999999Z"


def test_octet_counting_frame() -> None:
    """RFC 6587 octet counting prefixes the byte length (not the character count) and a space."""
    message = "<14>1 - - - - - - ☃".encode()
    assert octet_frame(message) == str(len(message)).encode() + b" " + message


@pytest.mark.parametrize("bad", ["local9", "nope", "24", -1])
def test_unknown_facility_is_refused(bad: object) -> None:
    """A facility that does not exist is a ValueError that names it."""
    with pytest.raises(ValueError, match=str(bad)):
        facility_number(bad)  # type: ignore[arg-type]


def test_facility_names_and_numbers() -> None:
    """Facilities are accepted by name or number."""
    assert facility_number("LOCAL0") == 16
    assert facility_number(3) == 3
    assert facility_number("9") == 9
