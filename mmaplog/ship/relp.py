"""A small RELP client: the Reliable Event Logging Protocol spoken by rsyslog's ``imrelp``.

RELP (librelp's ``doc/relp.md``) frames every command and every response the same way::

    RELP-FRAME = TXNR SP COMMAND SP DATALEN [SP DATA] LF
    TXNR       = 1*9DIGIT     ; 1, 2, ... per session, wraps to 1 after 999999999;
                              ; 0 is reserved for hints such as "serverclose"
    COMMAND    = 1*32ALPHA    ; "open", "syslog", "close", "rsp", "serverclose"
    DATALEN    = 1*9DIGIT     ; octets of DATA; when 0 there is no SP and no DATA

A session opens with ``open`` carrying offers (``relp_version=0``,
``relp_software=...``, ``commands=syslog``, one per line); the server answers
``rsp`` with ``200 OK`` and the offers it accepts.  Each message is a ``syslog``
command, and the server acknowledges each with ``rsp`` ``200 OK`` (anything
else is a refusal).  The client may have up to ``window`` commands outstanding.
The server may say ``serverclose`` (txnr 0) before it closes the connection;
a closed connection without the hint means the same.  Outstanding commands
count as not delivered: the caller sends them again on a new session, so
delivery is at least once.

The framing functions and :class:`FrameParser` are pure; :class:`RelpClient`
adds a non-blocking socket, so sending never deadlocks against a server that is
itself blocked writing acknowledgements.
"""

from __future__ import annotations

import re
import select
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from .._errors import MmaplogError

__all__ = [
    "DEFAULT_WINDOW",
    "Frame",
    "FrameParser",
    "RelpClient",
    "RelpConnectionLost",
    "RelpError",
    "RelpProtocolError",
    "encode_frame",
    "parse_offers",
    "parse_response",
]

#: Messages sent and not yet acknowledged; librelp's own default is 128.
DEFAULT_WINDOW: Final = 1024
#: TXNR and DATALEN are at most nine digits.
MAX_NUMBER: Final = 999_999_999
#: Responses are short; a frame from the server larger than this is a framing error.
MAX_RESPONSE_DATA: Final = 128 * 1024
RELP_VERSION: Final = "0"
_MAX_COMMAND: Final = 32
_MAX_DIGITS: Final = 9


class RelpError(MmaplogError):
    """A RELP session failed: the server refused a command, or the connection is unusable."""


class RelpConnectionLost(RelpError):
    """The connection closed (or the server said ``serverclose``); outstanding messages were not acknowledged."""


class RelpProtocolError(RelpError):
    """The peer sent bytes that are not valid RELP framing."""


@dataclass(frozen=True)
class Frame:
    """One RELP frame: transaction number, command and data."""

    txnr: int
    command: str
    data: bytes = b""


def encode_frame(txnr: int, command: str, data: bytes = b"") -> bytes:
    """The bytes of one RELP frame (``TXNR SP COMMAND SP DATALEN [SP DATA] LF``)."""
    if not 0 <= txnr <= MAX_NUMBER:
        raise ValueError(f"RELP txnr {txnr} is out of range 0..{MAX_NUMBER}")
    if not (command.isascii() and command.isalpha() and len(command) <= _MAX_COMMAND):
        raise ValueError(f"RELP command {command!r} must be 1 to 32 ASCII letters")
    if len(data) > MAX_NUMBER:
        raise ValueError(f"RELP data of {len(data)} bytes is longer than {MAX_NUMBER}")
    if data:
        return b"%d %s %d %s\n" % (txnr, command.encode(), len(data), data)
    return b"%d %s 0\n" % (txnr, command.encode())


class FrameParser:
    """Incremental RELP frame parser: :meth:`feed` bytes as they arrive, get whole frames back.

    Raises :class:`RelpProtocolError` on anything that is not RELP framing
    (a bad number, a missing trailer, data longer than ``max_data``); after that
    the connection must be dropped.
    """

    def __init__(self, max_data: int = MAX_RESPONSE_DATA) -> None:
        self.max_data = max_data
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames now complete, in order."""
        self._buf += data
        frames: list[Frame] = []
        try:
            while True:
                frame = self._next()
                if frame is None:
                    return frames
                frames.append(frame)
        finally:
            del self._buf[: self._pos]
            self._pos = 0

    @property
    def idle(self) -> bool:
        """True when no partial frame is buffered (the next bytes start a frame)."""
        return not self._buf

    def _next(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return None
        m = _HEADER.match(buf, pos)
        if m is None:
            rest = bytes(buf[pos : pos + _HEADER_MAX + 1])
            if len(rest) <= _HEADER_MAX and _HEADER_PREFIX.fullmatch(rest):
                return None  # a header still arriving
            raise RelpProtocolError(f"bad RELP frame header {rest[:48]!r}")
        datalen = int(m.group(3))
        if datalen > self.max_data:
            raise RelpProtocolError(f"RELP frame of {datalen} bytes exceeds the limit of {self.max_data}")
        end = m.end()
        if datalen == 0:
            data = b""
            if m.group(4) == b" ":  # no data, but some peers send SP LF
                if len(buf) <= end:
                    return None
                if buf[end] != 0x0A:
                    raise RelpProtocolError("RELP frame trailer missing after DATALEN 0")
                end += 1
        else:
            if m.group(4) != b" ":
                raise RelpProtocolError("RELP data missing: LF right after a DATALEN that is not 0")
            if len(buf) <= end + datalen:
                return None
            if buf[end + datalen] != 0x0A:
                raise RelpProtocolError("RELP frame trailer missing (DATALEN does not match the data)")
            data = bytes(buf[end : end + datalen])
            end += datalen + 1
        self._pos = end
        return Frame(int(m.group(1)), m.group(2).decode("ascii"), data)


#: One or more plain acknowledgements (``TXNR rsp 6 200 OK``), and the txnr in each.
_ACK_RUN = re.compile(rb"(?:[0-9]{1,9} rsp 6 200 OK\n)+")
_ACK_TXNR = re.compile(rb"([0-9]{1,9}) rsp 6 200 OK\n")
#: TXNR SP COMMAND SP DATALEN, then SP (data follows) or LF (no data).
_HEADER = re.compile(rb"([0-9]{1,9}) ([A-Za-z]{1,32}) ([0-9]{1,9})([ \n])")
#: What the start of a header looks like while it is still arriving.
_HEADER_PREFIX = re.compile(rb"[0-9]{0,9}(?: (?:[A-Za-z]{0,32}(?: [0-9]{0,9})?)?)?")
_HEADER_MAX = 9 + 1 + 32 + 1 + 9 + 1


def parse_response(data: bytes) -> tuple[int, str, bytes]:
    """Split ``rsp`` data into (status code, human text, command data after the first LF)."""
    line, _, body = data.partition(b"\n")
    code_text, _, human = line.partition(b" ")
    if len(code_text) != 3 or not code_text.isdigit():
        raise RelpProtocolError(f"bad RELP response status {bytes(code_text[:16])!r}")
    return int(code_text), human.decode("utf-8", "replace"), body


def parse_offers(body: bytes) -> dict[str, str]:
    """The offers of an ``open`` command or its response: ``name=value`` lines as a dict."""
    offers = {}
    for line in body.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition("=")
        if name.strip():
            offers[name.strip()] = value.strip()
    return offers


def _software() -> str:
    from .. import __version__

    return f"mmaplog-ship,{__version__},https://pypi.org/project/mmaplog/"


class RelpClient:
    """A RELP session with one server, sending ``syslog`` commands within a window of unacknowledged ones.

    :meth:`send` queues a message and returns its txnr; :meth:`pump` moves
    bytes both ways and returns the txnrs acknowledged since the last call.
    Any failure raises :class:`RelpError` (:class:`RelpConnectionLost` when the
    connection went away); the session is then dead, and :attr:`unacknowledged`
    says which txnrs were not confirmed.  Not thread-safe: one thread drives it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        window: int = DEFAULT_WINDOW,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if window < 1:
            raise ValueError(f"RELP window must be at least 1, not {window}")
        self.host = host
        self.port = port
        self.window = window
        #: Seconds without any acknowledgement while messages are outstanding before the session counts as dead.
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.server_offers: dict[str, str] = {}
        self._sock: socket.socket | None = None
        self._parser = FrameParser()
        self._out = bytearray()
        self._pending: OrderedDict[int, str] = OrderedDict()
        self._next_txnr = 1
        self._last_progress = 0.0
        self._closing: int | None = None
        self._acked: list[int] = []

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        """True while a session is open."""
        return self._sock is not None

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet acknowledged."""
        return sum(1 for command in self._pending.values() if command == "syslog")

    @property
    def can_send(self) -> bool:
        """True when the window has room for another message."""
        return self._sock is not None and self._closing is None and len(self._pending) < self.window

    @property
    def room(self) -> int:
        """How many more messages the window takes now (0 when not connected or closing)."""
        if self._sock is None or self._closing is not None:
            return 0
        return max(0, self.window - len(self._pending))

    @property
    def unacknowledged(self) -> list[int]:
        """Txnrs of the messages sent in this session that the server has not acknowledged, in order."""
        return [txnr for txnr, command in self._pending.items() if command == "syslog"]

    def fileno(self) -> int:
        """The socket's descriptor (-1 when not connected), for callers that select on it."""
        return self._sock.fileno() if self._sock is not None else -1

    # ------------------------------------------------------------------ session
    def connect(self) -> None:
        """Open the TCP connection and the RELP session (``open`` and its ``200`` response)."""
        self.abort()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise RelpConnectionLost(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setblocking(False)
        self._sock = sock
        self._parser = FrameParser()
        self._out.clear()
        self._pending.clear()
        self._acked.clear()
        self._next_txnr = 1
        self._closing = None
        offers = f"relp_version={RELP_VERSION}\nrelp_software={_software()}\ncommands=syslog".encode()
        txnr = self._queue("open", offers)
        deadline = time.monotonic() + self.connect_timeout
        try:
            while txnr in self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RelpConnectionLost(
                        f"{self.host}:{self.port} did not answer the RELP open within {self.connect_timeout:g} s"
                    )
                self._io(remaining)
        except RelpError:
            self.abort()
            raise
        self._last_progress = time.monotonic()

    def send(self, message: bytes) -> int:
        """Queue one syslog message; returns its txnr.  Raises RelpError when not connected or the window is full."""
        if self._sock is None:
            raise RelpConnectionLost("not connected")
        if not self.can_send:
            raise RelpError(f"RELP window of {self.window} messages is full")
        if not self._pending:
            self._last_progress = time.monotonic()
        return self._queue("syslog", message)

    def send_many(self, messages: list[bytes]) -> list[int]:
        """Queue many syslog messages at once (at most :attr:`room`); returns their txnrs, in order.

        The frames are built in one pass and appended to the output buffer in one
        go, so the next :meth:`pump` writes them with as few ``send`` calls as the
        socket allows.
        """
        if self._sock is None:
            raise RelpConnectionLost("not connected")
        if len(messages) > self.room:
            raise RelpError(f"RELP window of {self.window} messages has room for {self.room}, not {len(messages)}")
        if not messages:
            return []
        if not self._pending:
            self._last_progress = time.monotonic()
        first = self._next_txnr
        if first + len(messages) - 1 <= MAX_NUMBER:
            txnrs: list[int] | range = range(first, first + len(messages))
        else:
            txnrs = [(first - 1 + k) % MAX_NUMBER + 1 for k in range(len(messages))]
        for message in messages:
            if len(message) > MAX_NUMBER:
                raise ValueError(f"RELP data of {len(message)} bytes is longer than {MAX_NUMBER}")
        self._out += b"".join(
            [b"%d syslog %d %s\n" % (txnr, len(m), m) if m else b"%d syslog 0\n" % txnr for txnr, m in zip(txnrs, messages)]
        )
        self._pending.update(dict.fromkeys(txnrs, "syslog"))
        last = txnrs[-1]
        self._next_txnr = 1 if last >= MAX_NUMBER else last + 1
        return list(txnrs)

    def pump(self, timeout: float = 0.0, wake_fd: int | None = None) -> list[int]:
        """Write queued bytes and read responses, waiting up to ``timeout`` seconds for something to happen.

        Returns the txnrs of messages acknowledged (``200``) during this call, in
        order.  ``wake_fd`` readable ends the wait early (a signal pipe, say).
        """
        if self._sock is None:
            raise RelpConnectionLost("not connected")
        self._io(timeout, wake_fd)
        acked = self.take_acknowledged()
        if acked:
            self._last_progress = time.monotonic()
        elif self._pending and time.monotonic() - self._last_progress > self.timeout:
            self.abort()
            raise RelpConnectionLost(f"{self.host}:{self.port} acknowledged nothing for {self.timeout:g} s")
        return acked

    def take_acknowledged(self) -> list[int]:
        """Txnrs acknowledged but not yet returned, in order; after a RelpError, the ones that arrived before it."""
        acked, self._acked = self._acked, []
        return acked

    def close(self, timeout: float = 5.0) -> list[int]:
        """End the session politely: wait for outstanding acknowledgements, send ``close``, wait for its response.

        Returns the txnrs acknowledged meanwhile.  Whatever happens, the socket is
        closed afterwards; an error only means the polite part failed.
        """
        if self._sock is None:
            return self.take_acknowledged()
        deadline = time.monotonic() + timeout
        try:
            while self._pending and time.monotonic() < deadline:
                self._io(deadline - time.monotonic())
            if not self._pending:
                self._closing = self._queue("close", b"")
                while self._closing in self._pending and time.monotonic() < deadline:
                    self._io(deadline - time.monotonic())
                # librelp sends "serverclose" after the response: linger so it does not hit a closed socket.
                linger = min(deadline, time.monotonic() + 0.5)
                while time.monotonic() < linger:
                    self._io(linger - time.monotonic())
        except RelpError:
            pass
        finally:
            self.abort()
        return self.take_acknowledged()

    def abort(self) -> None:
        """Drop the connection at once (outstanding messages stay unacknowledged)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ internals
    def _queue(self, command: str, data: bytes) -> int:
        txnr = self._next_txnr
        self._next_txnr = 1 if txnr >= MAX_NUMBER else txnr + 1
        self._out += encode_frame(txnr, command, data)
        self._pending[txnr] = command
        return txnr

    def _io(self, timeout: float, wake_fd: int | None = None) -> None:
        sock = self._sock
        if sock is None:
            raise RelpConnectionLost("not connected")
        readers: list[socket.socket | int] = [sock] if wake_fd is None else [sock, wake_fd]
        writers = [sock] if self._out else []
        try:
            readable, writable, _ = select.select(readers, writers, [], max(0.0, timeout))
        except (OSError, ValueError) as exc:
            self.abort()
            raise RelpConnectionLost(f"connection to {self.host}:{self.port} failed: {exc}") from None
        try:
            if writable:
                try:
                    sent = sock.send(self._out)
                except BlockingIOError:
                    sent = 0
                del self._out[:sent]
            if sock in readable:
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    return
                if not data:
                    raise RelpConnectionLost(f"{self.host}:{self.port} closed the connection")
                self._receive(data)
        except RelpError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise RelpConnectionLost(f"connection to {self.host}:{self.port} failed: {exc.strerror or exc}") from None

    def _receive(self, data: bytes) -> None:
        """Handle received bytes.  A run of plain ``200 OK`` acknowledgements (the steady state) is read
        with one regular expression; anything else, and a frame cut by the end of a read, goes through
        the frame parser a line at a time until it is idle again."""
        parser, pending, acked = self._parser, self._pending, self._acked
        while data:
            if parser.idle:
                run = _ACK_RUN.match(data)
                if run is not None:
                    for number in _ACK_TXNR.findall(data, 0, run.end()):
                        txnr = int(number)
                        if pending.get(txnr) == "syslog":
                            del pending[txnr]
                            acked.append(txnr)
                        elif (answered := self._response(Frame(txnr, "rsp", b"200 OK"))) is not None:
                            acked.append(answered)
                    data = data[run.end() :]
                    continue
            end = data.find(b"\n") + 1 or len(data)
            for frame in parser.feed(data[:end]):
                if (answered := self._response(frame)) is not None:
                    acked.append(answered)
            data = data[end:]

    def _response(self, frame: Frame) -> int | None:
        """Handle one frame from the server; return the txnr of an acknowledged message, if it was one."""
        if frame.txnr == 0:
            if frame.command == "serverclose":
                raise RelpConnectionLost(f"{self.host}:{self.port} closed the RELP session (serverclose)")
            return None  # Other hints carry nothing we must act on.
        if frame.command != "rsp":
            raise RelpProtocolError(f"server sent command {frame.command!r}; only rsp is expected")
        command = self._pending.pop(frame.txnr, None)
        if command is None:
            raise RelpProtocolError(f"response to unknown txnr {frame.txnr}")
        if command == "close":
            return None  # librelp answers close with an empty rsp, then serverclose.
        code, human, body = parse_response(frame.data)
        if command == "open":
            if code != 200:
                raise RelpError(f"{self.host}:{self.port} refused the RELP session: {code} {human}")
            self.server_offers = parse_offers(body)
            if "relp_version" not in self.server_offers:
                raise RelpError(f"{self.host}:{self.port} offered no relp_version; not a RELP server?")
            commands = self.server_offers.get("commands", "").split(",")
            if "syslog" not in commands:
                raise RelpError(f"{self.host}:{self.port} does not accept the RELP syslog command")
            return None
        if code != 200:
            raise RelpError(f"{self.host}:{self.port} refused message (txnr {frame.txnr}): {code} {human}")
        return frame.txnr
