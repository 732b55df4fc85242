"""RFC 5424 syslog messages for mmaplog records, and RFC 6587 octet-counting framing.

Pure functions, no I/O.  One record becomes one message::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [mmaplog@PEN ...][fields@PEN ...] MSG

* ``PRI`` is ``facility * 8 + severity``; the level maps to a severity with
  :func:`severity` (CRITICAL 2 crit, ERROR 3 err, WARNING 4 warning, 25 and up 5
  notice, INFO 6 info, DEBUG and below 7 debug).
* ``TIMESTAMP`` is the record's time in UTC with microseconds
  (``2024-05-01T12:00:00.123456Z``).
* ``HOSTNAME``, ``APP-NAME`` (the process name) and ``PROCID`` (the pid) come
  from the ring file's header; ``MSGID`` is the NILVALUE ``-``.
* STRUCTURED-DATA carries two elements.  ``mmaplog@PEN`` holds the record's
  ``seq``, ``logger`` and ``thread``; ``fields@PEN`` holds the record's
  key-value fields, one SD-PARAM each (string values as they are, other values
  as compact JSON).  PARAM-NAMEs are cut to 32 printable ASCII characters,
  anything else in them becoming ``_``; PARAM-VALUEs escape ``"``, ``\\`` and
  ``]`` with a backslash (RFC 5424 section 6.3.3).
* ``PEN`` is a private enterprise number; the default, 32473, is the number
  RFC 5612 reserves for documentation and examples.  An organisation with its
  own number passes it as ``enterprise_id``.
* ``MSG`` is the message in UTF-8 without a byte-order mark, followed by a line
  feed and the formatted exception when the record has one.  A message longer
  than ``max_size`` allows is cut at a character boundary and ends with
  :data:`TRUNCATION_MARKER`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import operator
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ..layout import FLAG_TRUNCATED as _FLAG_TRUNCATED

if TYPE_CHECKING:
    from ..reader import Record

__all__ = [
    "DEFAULT_ENTERPRISE_ID",
    "DEFAULT_MAX_SIZE",
    "FACILITIES",
    "TRUNCATION_MARKER",
    "RecordBatchFormatter",
    "SyslogFormatter",
    "escape_param_value",
    "facility_number",
    "format_timestamp",
    "octet_frame",
    "sanitize_name",
    "severity",
]

#: RFC 5612's private enterprise number for documentation; pass your own in production if you have one.
DEFAULT_ENTERPRISE_ID: Final = 32473
#: Bytes per message, header and STRUCTURED-DATA included; rsyslog's ``maxMessageSize`` must be at least this.
DEFAULT_MAX_SIZE: Final = 65536
TRUNCATION_MARKER: Final = " [mmaplog-ship: message truncated]"
NILVALUE: Final = "-"

FACILITIES: Final[dict[str, int]] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip

# Field limits of RFC 5424 section 6.
_HOSTNAME_MAX: Final = 255
_APP_NAME_MAX: Final = 48
_PROCID_MAX: Final = 128
_SD_NAME_MAX: Final = 32
_VALUE_ESCAPES: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})


def severity(level: int) -> int:
    """The syslog severity (0 emerg .. 7 debug) of a numeric log level (stdlib numbers)."""
    if level >= 50:
        return 2
    if level >= 40:
        return 3
    if level >= 30:
        return 4
    if level >= 25:
        return 5
    if level >= 20:
        return 6
    return 7


def facility_number(facility: int | str) -> int:
    """Turn a facility name ("local0", "user") or number (0..23) into its number; ValueError names the value."""
    if isinstance(facility, int) and not isinstance(facility, bool):
        if 0 <= facility <= 23:
            return facility
        raise ValueError(f"facility {facility} is out of range 0..23")
    text = str(facility).strip().lower()
    if text.isdigit():
        return facility_number(int(text))
    if text in FACILITIES:
        return FACILITIES[text]
    raise ValueError(f"unknown syslog facility {facility!r} (expected one of {', '.join(FACILITIES)} or 0..23)")


def sanitize_name(text: str, limit: int, *, sd_name: bool = False) -> str:
    """``text`` as printable US-ASCII cut to ``limit`` characters (NILVALUE when empty).

    With ``sd_name`` the characters ``=``, ``]`` and ``"`` (not allowed in an
    SD-NAME) are replaced too.  Disallowed characters become ``_``.
    """
    banned = '=]"' if sd_name else ""
    out = "".join(c if 33 <= ord(c) <= 126 and c not in banned else "_" for c in text[:limit])
    return out or NILVALUE


def escape_param_value(value: Any) -> str:
    """An SD PARAM-VALUE: strings as they are, other values as compact JSON, with ``"``, ``\\``, ``]`` escaped."""
    if value.__class__ is int:
        return str(value)
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    if '"' in text or "\\" in text or "]" in text:
        return text.translate(_VALUE_ESCAPES)
    return text


@functools.lru_cache(maxsize=4096)
def _param_name(key: str) -> str:
    return sanitize_name(key, _SD_NAME_MAX, sd_name=True)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


_last_second: tuple[int, str] = (-1, "")


def format_timestamp(time_ns: int) -> str:
    """An RFC 5424 TIMESTAMP in UTC with microseconds: ``2024-05-01T12:00:00.123456Z`` (``-`` if out of range)."""
    global _last_second
    seconds, ns = divmod(int(time_ns), 1_000_000_000)
    cached_seconds, text = _last_second
    if cached_seconds != seconds:
        try:
            moment = _EPOCH + _dt.timedelta(seconds=seconds)
        except OverflowError:
            return NILVALUE
        text = f"{moment:%Y-%m-%dT%H:%M:%S}"
        _last_second = (seconds, text)
    return f"{text}.{ns // 1000:06d}Z"


def octet_frame(message: bytes) -> bytes:
    """Frame one message for syslog over TCP with RFC 6587 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)


class SyslogFormatter:
    """Formats records (and gap reports) as RFC 5424 messages; see the module docstring for the layout.

    One instance caches the sanitised header fields per (host, process), so
    formatting a stream of records from one file costs little per record.
    """

    def __init__(
        self,
        *,
        facility: int | str = "user",
        enterprise_id: int = DEFAULT_ENTERPRISE_ID,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        if isinstance(enterprise_id, bool) or not isinstance(enterprise_id, int) or enterprise_id < 0:
            raise ValueError(f"enterprise id must be a whole number >= 0, not {enterprise_id!r}")
        if max_size < 480:
            raise ValueError(f"max message size {max_size} is too small (at least 480 bytes, RFC 5424 asks for 2048)")
        self.facility = facility_number(facility)
        self.enterprise_id = enterprise_id
        self.meta_id = f"mmaplog@{enterprise_id}"
        self.fields_id = f"fields@{enterprise_id}"
        self.max_size = max_size
        self._heads: dict[tuple[str, str, int], str] = {}

    def _head(self, host: str, process: str, pid: int) -> str:
        key = (host, process, pid)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) > 1024:
                self._heads.clear()
            head = " ".join(
                (
                    sanitize_name(host, _HOSTNAME_MAX),
                    sanitize_name(process, _APP_NAME_MAX),
                    sanitize_name(str(pid) if pid else "", _PROCID_MAX),
                    NILVALUE,
                )
            )
            self._heads[key] = head
        return head

    def format(
        self,
        *,
        time_ns: int,
        level: int,
        message: str,
        host: str = "",
        process: str = "",
        pid: int = 0,
        meta: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        exception: str | None = None,
    ) -> bytes:
        """One RFC 5424 message (bytes, no framing) from the parts of a record."""
        pri = self.facility * 8 + severity(level)
        prefix = f"<{pri}>1 {format_timestamp(time_ns)} {self._head(host, process, pid)}"
        meta_sd = self._element(self.meta_id, meta) if meta else ""
        fields_sd = self._element(self.fields_id, fields) if fields else ""
        body = message if exception is None else f"{message}\n{exception}"
        text = f"{prefix} {meta_sd}{fields_sd or ('' if meta_sd else NILVALUE)}"
        if body:
            text += " " + body
        data = text.encode("utf-8", "replace")
        if len(data) <= self.max_size:
            return data
        return self._cut(prefix, meta_sd, fields_sd, body.encode("utf-8", "replace"))

    def _element(self, sd_id: str, params: Mapping[str, Any]) -> str:
        parts = [f'{_param_name(str(k))}="{escape_param_value(v)}"' for k, v in params.items()]
        return f"[{sd_id} {' '.join(parts)}]" if parts else f"[{sd_id}]"

    def _cut(self, prefix: str, meta_sd: str, fields_sd: str, body: bytes) -> bytes:
        """Cut MSG so the message fits ``max_size``; fields too big to fit at all are replaced by a note."""
        marker = TRUNCATION_MARKER.encode()
        head = f"{prefix} {meta_sd}{fields_sd}".encode("utf-8", "replace")
        if len(head) + 1 + len(marker) > self.max_size:
            dropped = len(fields_sd.encode())
            note = f'[{self.fields_id} mmaplog_ship="fields dropped: {dropped} bytes exceed the maximum message size"]'
            head = f"{prefix} {meta_sd}{note}".encode("utf-8", "replace")[: self.max_size - 1 - len(marker)]
        room = max(0, self.max_size - len(head) - 1 - len(marker))
        end = min(room, len(body))
        # Step back to a UTF-8 character boundary.
        while 0 < end < len(body) and (body[end] & 0xC0) == 0x80:
            end -= 1
        return head + b" " + body[:end] + marker


_RECORD_PARTS = operator.attrgetter(
    "seq", "time_ns", "level", "logger", "thread", "host", "process", "pid", "message", "fields", "exception", "flags"
)


class RecordBatchFormatter:
    """Formats many records at once, byte for byte as :meth:`SyslogFormatter.format` would.

    The parts of a message that repeat from record to record are built once and
    kept as bytes: ``<PRI>1 `` per level, the timestamp's date and time per
    second, ``HOSTNAME APP-NAME PROCID MSGID [mmaplog@PEN seq="`` per file, and
    ``" logger=".." thread=".." series=".."]`` per (logger, thread, series).  A
    record is then one ``%`` of a few byte strings, its seq, its microseconds
    and its encoded message.  Fields, exceptions and truncation flags take the
    same cached path with their extra parts; a message that would exceed
    ``max_size`` is handed to :meth:`SyslogFormatter.format`, which cuts it.
    """

    def __init__(self, formatter: SyslogFormatter) -> None:
        self.formatter = formatter
        self._pri: dict[int, bytes] = {}
        self._seconds: dict[int, bytes | None] = {}
        self._heads: dict[tuple[str, str, int], bytes] = {}
        self._tails: dict[tuple[str, int, str, bool], bytes] = {}

    def _pri_of(self, level: int) -> bytes:
        pri = self._pri.get(level)
        if pri is None:
            pri = self._pri[level] = b"<%d>1 " % (self.formatter.facility * 8 + severity(level))
        return pri

    def _second(self, seconds: int) -> bytes | None:
        """``YYYY-MM-DDTHH:MM:SS`` of a second since the epoch, None if out of range."""
        text = self._seconds.get(seconds)
        if text is None and seconds not in self._seconds:
            if len(self._seconds) > 4096:
                self._seconds.clear()
            try:
                moment = _EPOCH + _dt.timedelta(seconds=seconds)
            except OverflowError:
                text = None
            else:
                text = f"{moment:%Y-%m-%dT%H:%M:%S}".encode()
            self._seconds[seconds] = text
        return text

    def _head(self, host: str, process: str, pid: int) -> bytes:
        key = (host, process, pid)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) > 1024:
                self._heads.clear()
            fmt = self.formatter
            head = self._heads[key] = f" {fmt._head(host, process, pid)} [{fmt.meta_id} seq=\"".encode("utf-8", "replace")
        return head

    def _tail(self, logger: str, thread: int, series: str, truncated: bool) -> bytes:
        key = (logger, thread, series, truncated)
        tail = self._tails.get(key)
        if tail is None:
            if len(self._tails) > 65536:
                self._tails.clear()
            text = (
                f'" logger="{escape_param_value(logger)}" thread="{escape_param_value(thread)}" '
                f'series="{escape_param_value(series)}"'
            )
            if truncated:
                text += ' truncated="1"'
            tail = self._tails[key] = (text + "]").encode("utf-8", "replace")
        return tail

    def format_records(self, records: Sequence[Record], series: Sequence[str]) -> list[bytes]:
        """One message per record (``series[i]`` is the hex series id of ``records[i]``), as a list of bytes.

        The same bytes as ``SyslogFormatter.format`` given ``meta={"seq", "logger",
        "thread", "series"[, "truncated": 1]}``, the record's fields and exception.
        """
        fmt = self.formatter
        fields_id = fmt.fields_id
        max_size = fmt.max_size
        pris, tails, heads, seconds = self._pri, self._tails, self._heads, self._seconds
        out: list[bytes] = []
        append = out.append
        last_sec = last_level = last_pid = last_thread = -1
        last_host = last_process = last_logger = last_series = None
        last_truncated = False
        stamp: bytes | None = b""
        head = tail = pri = b""
        for (seq, time_ns, level, logger, thread, host, process, pid, message, fields, exception, flags), series_id in zip(
            map(_RECORD_PARTS, records), series
        ):
            sec, ns = divmod(time_ns, 1_000_000_000)
            if sec != last_sec:
                stamp = seconds[sec] if sec in seconds else self._second(sec)
                last_sec = sec
            if level != last_level:
                pri = pris.get(level) or self._pri_of(level)
                last_level = level
            # The parts that repeat are compared by identity first (a batch shares its strings), then looked up.
            if host is not last_host or process is not last_process or pid != last_pid:
                head = heads.get((host, process, pid)) or self._head(host, process, pid)
                last_host, last_process, last_pid = host, process, pid
            truncated = flags & _FLAG_TRUNCATED != 0
            if logger is not last_logger or thread != last_thread or series_id is not last_series or truncated != last_truncated:
                tail = tails.get((logger, thread, series_id, truncated)) or self._tail(logger, thread, series_id, truncated)
                last_logger, last_thread, last_series, last_truncated = logger, thread, series_id, truncated
            text = message if exception is None else f"{message}\n{exception}"
            sd = fmt._element(fields_id, fields).encode("utf-8", "replace") if fields else b""
            if stamp is None:
                data = b"%s-%s%d%s%s" % (pri, head, seq, tail, sd)
            else:
                data = b"%s%s.%06dZ%s%d%s%s" % (pri, stamp, ns // 1000, head, seq, tail, sd)
            if text:
                data += b" " + text.encode("utf-8", "replace")
            if len(data) > max_size:
                meta: dict[str, Any] = {"seq": seq, "logger": logger, "thread": thread, "series": series_id}
                if truncated:
                    meta["truncated"] = 1
                data = fmt.format(time_ns=time_ns, level=level, message=message, host=host, process=process,
                                  pid=pid, meta=meta, fields=fields, exception=exception)  # fmt: skip
            append(data)
        return out
