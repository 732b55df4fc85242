"""The RELP client (mmaplog.ship.relp): framing, parsing, and sessions against a fake RELP server."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable

import pytest

from mmaplog.ship.relp import (
    MAX_NUMBER,
    Frame,
    FrameParser,
    RelpClient,
    RelpConnectionLost,
    RelpError,
    RelpProtocolError,
    encode_frame,
    parse_offers,
    parse_response,
)

# (frame, bytes on the wire) — drives both the encoder and the parser tests.
FRAMES = [
    (Frame(1, "open", b"relp_version=0\ncommands=syslog"), b"1 open 30 relp_version=0\ncommands=syslog\n"),
    (Frame(2, "syslog", b"<14>1 - - - - - - hi"), b"2 syslog 20 <14>1 - - - - - - hi\n"),
    (Frame(3, "rsp", b"200 OK"), b"3 rsp 6 200 OK\n"),
    (Frame(4, "close", b""), b"4 close 0\n"),
    (Frame(0, "serverclose", b""), b"0 serverclose 0\n"),
    (Frame(999999999, "syslog", b"a\nb c\n"), b"999999999 syslog 6 a\nb c\n\n"),
]


@pytest.mark.parametrize(("frame", "wire"), FRAMES)
def test_encode_frame(frame: Frame, wire: bytes) -> None:
    """Frames encode to TXNR SP COMMAND SP DATALEN [SP DATA] LF."""
    assert encode_frame(frame.txnr, frame.command, frame.data) == wire


@pytest.mark.parametrize(("frame", "wire"), FRAMES)
def test_parse_whole_and_byte_by_byte(frame: Frame, wire: bytes) -> None:
    """The parser returns the same frame whether the bytes come at once or one at a time."""
    assert FrameParser().feed(wire) == [frame]
    parser = FrameParser()
    got = []
    for i in range(len(wire)):
        got += parser.feed(wire[i : i + 1])
    assert got == [frame]


def test_parse_many_frames_in_one_chunk() -> None:
    """Several frames in one read come out in order, and a partial one waits for the rest."""
    wire = b"".join(w for _, w in FRAMES)
    parser = FrameParser()
    assert parser.feed(wire + b"7 rsp 6 200") == [f for f, _ in FRAMES]
    assert parser.feed(b" OK\n") == [Frame(7, "rsp", b"200 OK")]


def test_empty_data_with_space_before_trailer_is_accepted() -> None:
    """A DATALEN 0 frame written as "SP LF" (seen in the wild) parses like the plain LF form."""
    assert FrameParser().feed(b"5 rsp 0 \n") == [Frame(5, "rsp", b"")]


@pytest.mark.parametrize(
    "wire",
    [
        b"x rsp 0\n",  # txnr not a number
        b"1234567890 rsp 0\n",  # txnr of ten digits
        b"1 r$p 0\n",  # command not letters
        b"1 " + b"a" * 33 + b" 0\n",  # command longer than 32
        b"1 rsp 3 abcd\n",  # DATALEN shorter than the data: no LF where it belongs
        b"1 rsp 3\nabc\n",  # LF after a DATALEN that is not 0
        b"1 rsp 0 x",  # junk after DATALEN 0
        b"1 rsp 9999999 " + b"x" * 10,  # larger than the limit
        b"1  rsp 0\n",  # empty token
    ],
)
def test_bad_framing_is_a_protocol_error(wire: bytes) -> None:
    """Bytes that are not RELP framing raise RelpProtocolError rather than hang or misparse."""
    with pytest.raises(RelpProtocolError):
        FrameParser(max_data=1000).feed(wire)


def test_encode_refuses_bad_values() -> None:
    """The encoder refuses txnrs and commands the grammar does not allow."""
    with pytest.raises(ValueError):
        encode_frame(MAX_NUMBER + 1, "syslog", b"x")
    with pytest.raises(ValueError):
        encode_frame(1, "sys log", b"x")


def test_parse_response_and_offers() -> None:
    """rsp data splits into status, text and offers."""
    code, text, body = parse_response(b"200 OK\nrelp_version=0\ncommands=syslog\n")
    assert (code, text) == (200, "OK")
    assert parse_offers(body) == {"relp_version": "0", "commands": "syslog"}
    with pytest.raises(RelpProtocolError):
        parse_response(b"OK")


# ---------------------------------------------------------------------- a fake RELP server

_HEADER = re.compile(rb"(\d+) ([a-z]+) (\d+)[ \n]")


def _read_frames(conn: socket.socket, buf: bytearray) -> list[tuple[int, str, bytes]]:
    """A deliberately separate little parser, so the client is not tested against itself."""
    frames = []
    while True:
        m = _HEADER.match(buf)
        if m is None:
            break
        n = int(m.group(3))
        end = m.end() + n + (1 if n else 0)
        if len(buf) < end:
            break
        frames.append((int(m.group(1)), m.group(2).decode(), bytes(buf[m.end() : m.end() + n])))
        del buf[:end]
    return frames


class FakeRelpServer:
    """One-connection-at-a-time RELP server on 127.0.0.1 whose behaviour each test chooses.

    ``on_syslog(txnr, data, count)`` returns the bytes to answer a syslog command
    with (b"" to withhold the answer, None to drop the connection).
    """

    def __init__(
        self,
        on_syslog: Callable[[int, bytes, int], bytes | None] | None = None,
        open_reply: bytes = b"200 OK\nrelp_version=0\nrelp_software=fake\ncommands=syslog",
    ) -> None:
        self.on_syslog = on_syslog or (lambda txnr, data, n: b"%d rsp 6 200 OK\n" % txnr)
        self.open_reply = open_reply
        self.received: list[bytes] = []
        self.commands: list[tuple[int, str, bytes]] = []
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        buf = bytearray()
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                buf += data
                for txnr, command, payload in _read_frames(conn, buf):
                    self.commands.append((txnr, command, payload))
                    if command == "open":
                        conn.sendall(encode_frame(txnr, "rsp", self.open_reply))
                    elif command == "syslog":
                        self.received.append(payload)
                        reply = self.on_syslog(txnr, payload, len(self.received))
                        if reply is None:
                            conn.close()
                            self.closed.set()
                            return
                        conn.sendall(reply)
                    elif command == "close":
                        conn.sendall(b"%d rsp 0\n0 serverclose 0\n" % txnr)
                        self.closed.set()
                        return
        self.closed.set()

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture
def server_factory():
    servers: list[FakeRelpServer] = []

    def make(**kwargs) -> FakeRelpServer:
        server = FakeRelpServer(**kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _drain(client: RelpClient, expected: int) -> list[int]:
    acked: list[int] = []
    while len(acked) < expected:
        got = client.pump(5.0)
        assert got or client.in_flight, "no progress"
        acked += got
    return acked


def test_session_open_offers_and_delivery(server_factory) -> None:
    """The client opens with relp_version and commands=syslog; every message is delivered and acknowledged in order."""
    server = server_factory()
    client = RelpClient("127.0.0.1", server.port, window=8)
    client.connect()
    txnr, command, offers = server.commands[0]
    assert (txnr, command) == (1, "open")
    parsed = parse_offers(offers)
    assert parsed["relp_version"] == "0"
    assert parsed["commands"] == "syslog"
    assert parsed["relp_software"].startswith("mmaplog-ship,")
    assert client.server_offers["relp_software"] == "fake"
    messages = [b"<14>1 - - - - - - message %d\nwith a line feed" % i for i in range(50)]
    sent, acked = [], []
    for message in messages:
        while not client.can_send:
            acked += client.pump(5.0)
        sent.append(client.send(message))
    acked += _drain(client, len(messages) - len(acked))
    assert acked == sent == list(range(2, 52))
    assert server.received == messages
    client.close()
    assert server.closed.wait(5)
    assert server.commands[-1][1] == "close"


def test_window_bounds_unacknowledged_messages(server_factory) -> None:
    """With acknowledgements withheld, the client stops at `window` outstanding messages and refuses more."""
    server = server_factory(on_syslog=lambda txnr, data, n: b"")
    client = RelpClient("127.0.0.1", server.port, window=5)
    client.connect()
    for i in range(4):  # the open was acknowledged, so all five places are free; fill four
        client.send(b"m%d" % i)
    assert client.can_send
    client.send(b"m4")
    assert not client.can_send
    assert client.in_flight == 5
    with pytest.raises(RelpError, match="window"):
        client.send(b"one too many")
    client.abort()


def test_serverclose_keeps_earlier_acks_and_reports_the_rest(server_factory) -> None:
    """After `serverclose`, acknowledgements received before it are kept and the other messages are unacknowledged."""

    def on_syslog(txnr: int, data: bytes, n: int) -> bytes | None:
        if n < 3:
            return b"%d rsp 6 200 OK\n" % txnr
        if n < 6:
            return b""
        return b"0 serverclose 0\n"

    server = server_factory(on_syslog=on_syslog)
    client = RelpClient("127.0.0.1", server.port, window=10)
    client.connect()
    txnrs = [client.send(b"m%d" % i) for i in range(6)]
    acked: list[int] = []
    with pytest.raises(RelpConnectionLost, match="serverclose"):
        while True:
            acked += client.pump(5.0)
    acked += client.take_acknowledged()
    assert acked == txnrs[:2]
    assert client.unacknowledged == txnrs[2:]
    assert not client.connected


def test_dropped_connection_is_connection_lost(server_factory) -> None:
    """A server that closes the socket without a hint is noticed, with the outstanding message unacknowledged."""
    server = server_factory(on_syslog=lambda txnr, data, n: None)
    client = RelpClient("127.0.0.1", server.port)
    client.connect()
    txnr = client.send(b"m")
    with pytest.raises(RelpConnectionLost):
        for _ in range(100):
            client.pump(5.0)
    assert client.unacknowledged == [txnr]


def test_refused_message_is_an_error(server_factory) -> None:
    """A 500 response to a message is a RelpError naming the status, not an acknowledgement."""
    server = server_factory(on_syslog=lambda txnr, data, n: b"%d rsp 13 500 too big!!\n" % txnr)
    client = RelpClient("127.0.0.1", server.port)
    client.connect()
    client.send(b"m")
    with pytest.raises(RelpError, match="500"):
        for _ in range(100):
            client.pump(5.0)


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"500 go away", "refused the RELP session"),
        (b"200 OK\nrelp_version=0\ncommands=eventlog", "syslog"),
        (b"200 OK\ncommands=syslog", "relp_version"),
    ],
)
def test_open_refusals(server_factory, reply: bytes, match: str) -> None:
    """A server that refuses the session, or does not offer the syslog command, fails the connect clearly."""
    server = server_factory(open_reply=reply)
    client = RelpClient("127.0.0.1", server.port)
    with pytest.raises(RelpError, match=match):
        client.connect()
    assert not client.connected


def test_no_acknowledgement_within_timeout(server_factory) -> None:
    """A server that stops acknowledging is treated as gone after `timeout` seconds."""
    server = server_factory(on_syslog=lambda txnr, data, n: b"")
    client = RelpClient("127.0.0.1", server.port, timeout=0.2)
    client.connect()
    client.send(b"m")
    with pytest.raises(RelpConnectionLost, match="acknowledged nothing"):
        while True:
            client.pump(0.05)


def test_connect_refused_is_connection_lost() -> None:
    """Nothing listening on the port is a RelpConnectionLost naming the address."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(RelpConnectionLost, match=f"127.0.0.1:{port}"):
        RelpClient("127.0.0.1", port, connect_timeout=2).connect()


def test_txnr_wraps_to_one(server_factory) -> None:
    """After txnr 999,999,999 the next transaction number is 1, as the RELP grammar requires."""
    server = server_factory()
    client = RelpClient("127.0.0.1", server.port)
    client.connect()
    client._next_txnr = MAX_NUMBER  # white-box: reaching it honestly would take a billion messages
    first = client.send(b"last")
    second = client.send(b"wrapped")
    assert (first, second) == (MAX_NUMBER, 1)
    assert _drain(client, 2) == [MAX_NUMBER, 1]


def test_large_burst_does_not_deadlock(server_factory) -> None:
    """Megabytes sent while acknowledgements pile up do not deadlock the non-blocking client."""
    server = server_factory()
    client = RelpClient("127.0.0.1", server.port, window=4096)
    client.connect()
    payload = b"x" * 4000
    count = 3000
    acked: list[int] = []
    sent = 0
    while sent < count:
        while sent < count and client.can_send:
            client.send(payload)
            sent += 1
        acked += client.pump(1.0)
    acked += _drain(client, count - len(acked))
    assert len(acked) == count
    assert len(server.received) == count


# ---------------------------------------------------------------------- batches

def test_send_many_frames_and_acknowledges_a_batch(server_factory) -> None:
    """send_many queues a batch in one go: consecutive txnrs, the server gets every message intact, all acknowledged."""
    server = server_factory()
    client = RelpClient("127.0.0.1", server.port, window=64)
    client.connect()
    messages = [b"<14>1 - - - - - - batch %d" % i + b"\n\xc3\xa9" * (i % 3) for i in range(60)] + [b""]
    assert client.room == 64
    txnrs = client.send_many(messages)
    assert txnrs == list(range(2, 63))
    assert client.room == 64 - len(messages)
    with pytest.raises(RelpError, match="room"):
        client.send_many([b"x"] * 4)
    assert _drain(client, len(messages)) == txnrs
    assert server.received == messages
    client.close()


def test_send_many_wraps_txnr(server_factory) -> None:
    """A batch that crosses txnr 999,999,999 continues at 1."""
    server = server_factory()
    client = RelpClient("127.0.0.1", server.port)
    client.connect()
    client._next_txnr = MAX_NUMBER - 1  # white-box, as in test_txnr_wraps_to_one
    txnrs = client.send_many([b"a", b"b", b"c"])
    assert txnrs == [MAX_NUMBER - 1, MAX_NUMBER, 1]
    assert sorted(_drain(client, 3)) == sorted(txnrs)


@pytest.mark.parametrize("cut", range(1, 40))
def test_acknowledgements_cut_anywhere_are_read_once(server_factory, cut: int) -> None:
    """Acknowledgements arriving in pieces cut at any byte (mid-number, mid-text), mixed with a hint and
    a response that is not a plain ``200 OK``, are each counted once, in order."""
    client = RelpClient("127.0.0.1", 1, window=100)
    # White-box: a session whose socket is never read; _receive is fed the bytes a server would send.
    client._sock = socket.socket()
    try:
        client._pending.update(dict.fromkeys(range(5, 13), "syslog"))
        wire = (
            b"5 rsp 6 200 OK\n6 rsp 6 200 OK\n0 hint 3 abc\n7 rsp 6 200 OK\n"
            b"8 rsp 8 200 OK\nx\n9 rsp 6 200 OK\n10 rsp 6 200 OK\n11 rsp 6 200 OK\n12 rsp 6 200 OK\n"
        )
        for start in range(0, len(wire), cut):
            client._receive(wire[start : start + cut])
        assert client.take_acknowledged() == list(range(5, 13))
        assert not client._pending and client._parser.idle
    finally:
        client.abort()


def test_refusal_inside_a_run_of_acknowledgements_is_an_error(server_factory) -> None:
    """A refused message among plain acknowledgements still raises; the acknowledgements before it are kept."""
    client = RelpClient("127.0.0.1", 1, window=100)
    client._sock = socket.socket()
    try:
        client._pending.update(dict.fromkeys(range(2, 6), "syslog"))
        with pytest.raises(RelpError, match="txnr 4"):
            client._receive(b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n4 rsp 8 500 nope\n5 rsp 6 200 OK\n")
        assert client.take_acknowledged() == [2, 3]
        with pytest.raises(RelpProtocolError, match="unknown txnr"):
            client._receive(b"77 rsp 6 200 OK\n")
    finally:
        client.abort()
