"""Where the shipper sends: RELP (acknowledged), TCP syslog (best effort) and JSON lines on stdout.

Every sink has the same small interface, driven by one thread:
:meth:`Sink.connect`, :meth:`Sink.send` (queue one item), :meth:`Sink.pump`
(move bytes, return the items now delivered, in order) and :meth:`Sink.close`.
A sink that loses its connection raises :class:`SinkUnavailable`; the items it
had not confirmed are then in :meth:`Sink.take_unconfirmed`, to be sent again.
"Delivered" means acknowledged by the collector for RELP, and handed to the
kernel (TCP) or flushed (stdout) for the others.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from collections import deque
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from .._errors import MmaplogError
from .._json import json_string, json_value
from ..reader import Record, level_name
from ._source import Gap, Item
from .relp import RelpClient, RelpError
from .syslog import RecordBatchFormatter, SyslogFormatter, format_timestamp, octet_frame

__all__ = [
    "JsonLinesSink",
    "RelpSink",
    "Sink",
    "SinkClosed",
    "SinkUnavailable",
    "TcpSink",
    "open_sink",
    "parse_destination",
    "record_line",
]

GAP_LOGGER = "mmaplog.ship"
_WARNING = 30


class SinkUnavailable(MmaplogError):
    """The collector cannot be reached or dropped the connection; try again later.

    ``delivered`` lists the items confirmed just before the failure.
    """

    def __init__(self, message: str, delivered: list[Item] | None = None) -> None:
        super().__init__(message)
        self.delivered = delivered or []


class SinkClosed(MmaplogError):
    """The destination is gone for good (stdout closed by the reader); stop shipping."""


class Sink(Protocol):
    """What the shipper needs from a destination."""

    name: str

    @property
    def connected(self) -> bool: ...

    @property
    def in_flight(self) -> int: ...

    def can_send(self) -> bool: ...

    def room(self) -> int: ...

    def connect(self) -> None: ...

    def send(self, item: Item) -> None: ...

    def send_many(self, items: list[Item]) -> None: ...

    def pump(self, timeout: float, wake_fd: int | None = None) -> list[Item]: ...

    def take_unconfirmed(self) -> list[Item]: ...

    def close(self, timeout: float) -> list[Item]: ...


def parse_destination(url: str) -> tuple[str, str, int]:
    """Split ``relp://host:port``, ``tcp://host:port`` or ``-`` into (scheme, host, port); ValueError names the URL."""
    if url == "-":
        return "-", "", 0
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("relp", "tcp"):
        raise ValueError(f"destination {url!r} must be relp://HOST:PORT, tcp://HOST:PORT or - (stdout)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"destination {url!r} has a bad port") from None
    if not parts.hostname or port is None:
        raise ValueError(f"destination {url!r} needs a host and a port, e.g. {scheme}://logs.example.com:2514")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"destination {url!r} must not have a path or query")
    return scheme, parts.hostname, port


def gap_message(gap: Gap) -> str:
    """The text of the message sent to the collector when records were lost before they could be shipped."""
    return f"mmaplog-ship: {gap.describe()}"


def gap_fields(gap: Gap) -> dict[str, object]:
    """Machine-readable facts about a gap."""
    return {"lost": gap.count, "first_seq": gap.first_seq, "last_seq": gap.last_seq, "cause": gap.cause,
            "source": gap.path}  # fmt: skip


class _SyslogItems:
    """Formats items as RFC 5424 messages."""

    def __init__(self, formatter: SyslogFormatter) -> None:
        self.formatter = formatter
        self.batch = RecordBatchFormatter(formatter)
        self._hex: dict[bytes, str] = {}

    def encode_many(self, items: list[Item]) -> list[bytes]:
        """The messages of many items, in order: the records through the batch formatter, gaps one by one."""
        if all(item.record is not None for item in items):
            return self._records(items)
        out: list[bytes] = []
        run: list[Item] = []
        for item in items:
            if item.record is not None:
                run.append(item)
                continue
            if run:
                out += self._records(run)
                run = []
            out.append(self.encode(item))
        if run:
            out += self._records(run)
        return out

    def _records(self, items: list[Item]) -> list[bytes]:
        hexes = self._hex
        series = [hexes.get(item.series) or self._series_hex(item.series) for item in items]
        return self.batch.format_records([item.record for item in items], series)  # type: ignore[misc]

    def _series_hex(self, series: bytes) -> str:
        if len(self._hex) > 4096:
            self._hex.clear()
        text = self._hex[series] = series.hex()
        return text

    def encode(self, item: Item) -> bytes:
        fmt = self.formatter
        record = item.record
        if record is not None:
            series = self._hex.get(item.series)
            if series is None:
                series = self._hex[item.series] = item.series.hex()
            meta = {"seq": record.seq, "logger": record.logger, "thread": record.thread, "series": series}
            if record.truncated:
                meta["truncated"] = 1
            return fmt.format(
                time_ns=record.time_ns,
                level=record.level,
                message=record.message,
                host=record.host,
                process=record.process,
                pid=record.pid,
                meta=meta,
                fields=record.fields,
                exception=record.exception,
            )
        gap = item.gap
        assert gap is not None
        meta = {"logger": GAP_LOGGER, "series": gap.series.hex(), **gap_fields(gap)}
        return fmt.format(
            time_ns=time.time_ns(),
            level=_WARNING,
            message=gap_message(gap),
            host=gap.host,
            process=gap.process,
            pid=gap.pid,
            meta=meta,
        )


class RelpSink(_SyslogItems):
    """RFC 5424 over RELP: every message acknowledged by the collector, up to ``window`` outstanding."""

    def __init__(self, host: str, port: int, formatter: SyslogFormatter, *, window: int, timeout: float = 30.0) -> None:
        super().__init__(formatter)
        self.name = f"relp://{host}:{port}"
        self.client = RelpClient(host, port, window=window, timeout=timeout)
        self._sent: dict[int, Item] = {}
        self._unconfirmed: list[Item] = []

    @property
    def connected(self) -> bool:
        return self.client.connected

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    def can_send(self) -> bool:
        return self.client.can_send

    def room(self) -> int:
        """How many more messages the window takes now."""
        return self.client.room

    def connect(self) -> None:
        try:
            self.client.connect()
        except RelpError as exc:
            raise SinkUnavailable(str(exc)) from None

    def send(self, item: Item) -> None:
        txnr = self.client.send(self.encode(item))
        self._sent[txnr] = item

    def send_many(self, items: list[Item]) -> None:
        """Queue many items at once (at most :meth:`room`): one formatting pass, one buffer append."""
        txnrs = self.client.send_many(self.encode_many(items))
        self._sent.update(zip(txnrs, items))

    def pump(self, timeout: float, wake_fd: int | None = None) -> list[Item]:
        try:
            acked = self.client.pump(timeout, wake_fd)
        except RelpError as exc:
            # Acknowledgements that arrived before the failure still count; the rest is sent again.
            delivered = [self._sent.pop(txnr) for txnr in self.client.take_acknowledged() if txnr in self._sent]
            self._unconfirmed += list(self._sent.values())
            self._sent.clear()
            raise SinkUnavailable(str(exc), delivered) from None
        return [self._sent.pop(txnr) for txnr in acked if txnr in self._sent]

    def take_unconfirmed(self) -> list[Item]:
        items, self._unconfirmed = self._unconfirmed, []
        return items

    def close(self, timeout: float) -> list[Item]:
        acked = self.client.close(timeout)
        delivered = [self._sent.pop(txnr) for txnr in acked if txnr in self._sent]
        self._unconfirmed += list(self._sent.values())
        self._sent.clear()
        return delivered


class TcpSink(_SyslogItems):
    """RFC 5424 over plain TCP with RFC 6587 octet counting.  Best effort: there are no acknowledgements,
    so messages in the kernel's buffers when the collector dies are lost."""

    def __init__(self, host: str, port: int, formatter: SyslogFormatter, *, connect_timeout: float = 10.0) -> None:
        super().__init__(formatter)
        self.name = f"tcp://{host}:{port}"
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._out = bytearray()
        #: (end offset in _out, item), in order.
        self._queued: deque[tuple[int, Item]] = deque()
        self._written = 0
        self._unconfirmed: list[Item] = []

    # Twin: connected and in_flight are the sink interface RelpClient (ship/relp.py) has too.
    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def in_flight(self) -> int:
        return len(self._queued)

    def can_send(self) -> bool:
        return self._sock is not None and len(self._out) < (1 << 20)

    def room(self) -> int:
        """Items taken now: a few hundred while the output buffer is below 1 MiB."""
        return 256 if self.can_send() else 0

    def connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise SinkUnavailable(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setblocking(False)
        self._sock = sock
        self._out.clear()
        self._queued.clear()
        self._written = 0

    def send(self, item: Item) -> None:
        self._out += octet_frame(self.encode(item))
        self._queued.append((self._written + len(self._out), item))

    def send_many(self, items: list[Item]) -> None:
        """Queue many items at once."""
        for item, message in zip(items, self.encode_many(items)):
            self._out += octet_frame(message)
            self._queued.append((self._written + len(self._out), item))

    def pump(self, timeout: float, wake_fd: int | None = None) -> list[Item]:
        sock = self._sock
        if sock is None:
            raise SinkUnavailable("not connected")
        readers: list[socket.socket | int] = [sock] if wake_fd is None else [sock, wake_fd]
        try:
            readable, writable, _ = select.select(readers, [sock] if self._out else [], [], timeout)
            if sock in readable and not sock.recv(4096):
                raise ConnectionResetError(0, "the collector closed the connection")
            if writable:
                try:
                    sent = sock.send(self._out)
                except BlockingIOError:
                    sent = 0
                del self._out[:sent]
                self._written += sent
        except OSError as exc:
            self._drop()
            raise SinkUnavailable(f"{self.name}: {exc.strerror or exc}") from None
        delivered = []
        while self._queued and self._queued[0][0] <= self._written:
            delivered.append(self._queued.popleft()[1])
        return delivered

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._unconfirmed += [item for _, item in self._queued]
        self._queued.clear()
        self._out.clear()

    def take_unconfirmed(self) -> list[Item]:
        items, self._unconfirmed = self._unconfirmed, []
        return items

    def close(self, timeout: float) -> list[Item]:
        delivered: list[Item] = []
        deadline = time.monotonic() + timeout
        try:
            while self._sock is not None and self._queued and time.monotonic() < deadline:
                delivered += self.pump(deadline - time.monotonic())
        except SinkUnavailable:
            pass
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self._drop()
        return delivered


class JsonLinesSink:
    """JSON lines on a binary stream (stdout), the shape of ``mmaplog-read -o json``; delivered when flushed."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.name = "stdout"
        self.stream = stream if stream is not None else sys.stdout.buffer
        self._queued: list[Item] = []
        self._lines: list[str] = []

    @property
    def connected(self) -> bool:
        return True

    @property
    def in_flight(self) -> int:
        return len(self._queued)

    def can_send(self) -> bool:
        return len(self._queued) < 4096

    def room(self) -> int:
        """Items taken before the next flush."""
        return max(0, 4096 - len(self._queued))

    def connect(self) -> None:
        pass

    def send(self, item: Item) -> None:
        self._queued.append(item)
        self._lines.append(record_line(item.record) if item.record is not None else _gap_line(item.gap))

    def send_many(self, items: list[Item]) -> None:
        """Queue many items at once."""
        for item in items:
            self.send(item)

    def pump(self, timeout: float, wake_fd: int | None = None) -> list[Item]:
        if not self._queued:
            self._check_reader()
            if timeout > 0:
                select.select([wake_fd] if wake_fd is not None else [], [], [], timeout)
            return []
        try:
            self.stream.write(("\n".join(self._lines) + "\n").encode("utf-8", "replace"))
            self.stream.flush()
        except BrokenPipeError:
            _silence_stdout()
            raise SinkClosed("stdout was closed by the reader") from None
        except OSError as exc:
            raise SinkClosed(f"cannot write to stdout: {exc.strerror or exc}") from None
        delivered, self._queued, self._lines = self._queued, [], []
        return delivered

    def _check_reader(self) -> None:
        """Notice a pipe whose reader went away even when there is nothing to write (``| head`` while idle)."""
        try:
            fd = self.stream.fileno()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            events = poller.poll(0)
        except (OSError, ValueError, AttributeError):
            return
        if any(mask & select.POLLERR for _, mask in events):
            _silence_stdout()
            raise SinkClosed("stdout was closed by the reader")

    def take_unconfirmed(self) -> list[Item]:
        items, self._queued, self._lines = self._queued, [], []
        return items

    def close(self, timeout: float) -> list[Item]:
        try:
            return self.pump(0)
        except SinkClosed:
            return []


def record_line(record: Record) -> str:
    """One JSON line for a record, exactly as ``mmaplog-read -o json`` writes it (same keys, order and escaping)."""
    line = (
        f'{{"seq":{record.seq},"time":"{format_timestamp(record.time_ns)}","level":{json_string(level_name(record.level))},'
        f'"logger":{json_string(record.logger)},"thread":{record.thread},"pid":{record.pid},'
        f'"message":{json_string(record.message)}'
    )
    if record.fields:
        line = f'{line},"fields":{json_value(record.fields)}'
    if record.exception:
        line = f'{line},"exception":{json_string(record.exception)}'
    return f'{line},"host":{json_string(record.host)},"process":{json_string(record.process)}}}'


def _gap_line(gap: Gap | None) -> str:
    """A gap as a JSON line shaped like a record without ``seq``: a WARNING from logger ``mmaplog.ship``."""
    assert gap is not None
    return (
        f'{{"time":"{format_timestamp(time.time_ns())}","level":"WARNING","logger":"{GAP_LOGGER}","thread":0,'
        f'"pid":{gap.pid},"message":{json_string(gap_message(gap))},"fields":{json_value(gap_fields(gap))},'
        f'"host":{json_string(gap.host)},"process":{json_string(gap.process)}}}'
    )


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def open_sink(url: str, formatter: SyslogFormatter, *, window: int, timeout: float = 30.0) -> Sink:
    """The sink for a destination URL (``relp://``, ``tcp://`` or ``-``)."""
    scheme, host, port = parse_destination(url)
    if scheme == "relp":
        return RelpSink(host, port, formatter, window=window, timeout=timeout)
    if scheme == "tcp":
        return TcpSink(host, port, formatter)
    return JsonLinesSink()

