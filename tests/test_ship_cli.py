"""mmaplog-ship as a command, without rsyslog: JSON lines, exit codes, errors, progress, reconnects, backoff."""

from __future__ import annotations

import json
import os
import pty
import random
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import mmaplog
from mmaplog import RingWriter
from mmaplog.ship._shipper import Backoff
from mmaplog.ship.cli import main
from mmaplog.ship.cursor import load_cursor

SHIP = [sys.executable, "-m", "mmaplog.ship.cli"]
READ = [sys.executable, "-m", "mmaplog.cli.read"]


def ship(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHIP, *args], capture_output=True, text=True, timeout=timeout)


def make_ring(path: Path, count: int, size: int = 4096 * 256, start: int = 1) -> None:
    with RingWriter(path, size=size) as w:
        for i in range(start, start + count):
            w.write(f"message {i} \x1b[31m ☃", level=(10, 20, 30, 40, 50)[i % 5], logger="app.db",
                    fields={"i": i, "nested": {"a": [1, 2]}} if i % 3 else None,
                    exception="Traceback:\n  boom" if i % 7 == 0 else None)  # fmt: skip


def test_json_lines_match_mmaplog_read(tmp_path: Path) -> None:
    """`--to -` writes exactly what `mmaplog-read -o json` writes for the same records."""
    path = tmp_path / "app.mmlog"
    make_ring(path, 500)
    shipped = ship(str(path), "--to", "-", "--once")
    assert shipped.returncode == 0, shipped.stderr
    read = subprocess.run([*READ, "-o", "json", str(path)], capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    assert shipped.stdout.splitlines() == read.stdout.splitlines()
    docs = [json.loads(line) for line in shipped.stdout.splitlines()]
    assert [d["seq"] for d in docs] == list(range(1, 501))
    assert docs[1]["fields"] == {"i": 2, "nested": {"a": [1, 2]}}
    assert docs[6]["exception"] == "Traceback:\n  boom"
    assert list(docs[0])[:7] == ["seq", "time", "level", "logger", "thread", "pid", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", docs[0]["time"])


def test_json_lines_resume_from_cursor(tmp_path: Path) -> None:
    """With --cursor, a second run ships only what was written since the first."""
    path = tmp_path / "app.mmlog"
    cursor = tmp_path / "c"
    with RingWriter(path, size=4096 * 256) as w:
        for i in range(10):
            w.write(f"first {i}")
        first = ship(str(path), "--to", "-", "--once", "--cursor", str(cursor))
        for i in range(5):
            w.write(f"second {i}")
    second = ship(str(path), "--to", "-", "--once", "--cursor", str(cursor))
    third = ship(str(path), "--to", "-", "--once", "--cursor", str(cursor))
    assert [json.loads(x)["seq"] for x in first.stdout.splitlines()] == list(range(1, 11))
    assert [json.loads(x)["message"] for x in second.stdout.splitlines()] == [f"second {i}" for i in range(5)]
    assert (third.returncode, third.stdout) == (0, "")
    assert list(load_cursor(cursor).positions().values()) == [15]


def test_gap_in_json_mode(tmp_path: Path) -> None:
    """A lapped ring yields a WARNING line with the exact count of lost records, and the same count on stderr."""
    path = tmp_path / "app.mmlog"
    cursor = tmp_path / "c"
    with RingWriter(path, size=64 * 256) as w:
        for i in range(10):
            w.write(f"m {i}")
        ship(str(path), "--to", "-", "--once", "--cursor", str(cursor))
        for i in range(10, 500):
            w.write(f"m {i}")
    oldest = int(mmaplog.read_array(path)["seq"][0])
    result = ship(str(path), "--to", "-", "--once", "--cursor", str(cursor), "--grace", "0")
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    lost = oldest - 11
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "mmaplog.ship"
    assert lines[0]["fields"] == {"lost": lost, "first_seq": 11, "last_seq": oldest - 1, "cause": "overwritten",
                                  "source": str(path)}  # fmt: skip
    assert f"mmaplog-ship: {lost} records overwritten before they could be shipped" in result.stderr
    assert [x["seq"] for x in lines[1:]] == list(range(oldest, 501))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{file}"], "the following arguments are required: --to"),
        (["{file}", "--to", "http://x:1"], "must be relp://HOST:PORT"),
        (["{file}", "--to", "relp://host"], "needs a host and a port"),
        (["{file}", "--to", "relp://host:99999"], "bad port"),
        (["{file}", "--to", "-", "--window", "0"], "must be at least 1"),
        (["{file}", "--to", "-", "--poll-interval", "0"], "more than 0 seconds"),
        (["{file}", "--to", "-", "--grace", "-1"], "finite number of seconds >= 0"),
        (["{file}", "--to", "-", "--facility", "local9"], "unknown syslog facility"),
        (["{file}", "--to", "-", "--max-message-size", "12 parsecs"], "cannot read"),
        (["{file}", "--to", "-", "--max-message-size", "100"], "too small"),
        (["{missing}", "--to", "-", "--once"], "No such file"),
        (["{foreign}", "--to", "-", "--once"], "not an mmaplog file"),
        (["{file}", "--to", "-", "--cursor", "{bad_cursor}"], "not valid JSON"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Every mistake a user can make ends with exit status 2 and a one-line message, never a traceback."""
    good = tmp_path / "app.mmlog"
    make_ring(good, 3)
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("hello, not a ring\n" * 1000)
    bad_cursor = tmp_path / "bad.cursor"
    bad_cursor.write_text("{")
    names = {"file": good, "missing": tmp_path / "missing.mmlog", "foreign": foreign, "bad_cursor": bad_cursor}
    try:
        code = main([a.format(**names) for a in args])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert message in stderr
    assert stderr.strip().splitlines()[-1].startswith("mmaplog-ship: ")


def test_second_shipper_on_the_same_cursor_is_refused(tmp_path: Path) -> None:
    """Two shippers sharing one cursor would send everything twice: the second one exits 2."""
    path = tmp_path / "app.mmlog"
    make_ring(path, 3)
    cursor = tmp_path / "c"
    first = subprocess.Popen([*SHIP, str(path), "--to", "-", "--cursor", str(cursor)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert first.stdout is not None
        first.stdout.readline()  # it is running and holds the lock
        second = ship(str(path), "--to", "-", "--once", "--cursor", str(cursor))
        assert second.returncode == 2
        assert "another mmaplog-ship is using this cursor" in second.stderr
    finally:
        first.terminate()
        assert first.wait(30) == 0


def test_once_with_nothing_new_exits_0_quietly(tmp_path: Path) -> None:
    """An empty ring ships nothing and exits 0 (nothing to do is not an error for cron)."""
    path = tmp_path / "app.mmlog"
    RingWriter(path, size=64 * 256).close()
    result = ship(str(path), "--to", "-", "--once")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    """Piped into `head`, the shipper stops without a traceback."""
    path = tmp_path / "app.mmlog"
    make_ring(path, 3000)
    proc = subprocess.Popen([*SHIP, str(path), "--to", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()
        assert proc.wait(60) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _run_with_stderr_on_a_tty(args: list[str]) -> str:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([*SHIP, *args], stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    assert proc.wait(60) == 0
    return b"".join(chunks).decode()


def test_progress_line_only_on_a_tty(tmp_path: Path) -> None:
    """On a terminal stderr shows a progress line (records, rate, lag); into a pipe it shows nothing."""
    path = tmp_path / "app.mmlog"
    make_ring(path, 2000)
    shown = _run_with_stderr_on_a_tty([str(path), "--to", "-", "--once"])
    assert re.search(r"shipped 2,000 records, [\d,]+/s, lag 0", shown), shown
    piped = ship(str(path), "--to", "-", "--once")
    assert piped.stderr == "mmaplog-ship: shipped 2000 records, 0 reported lost\n"  # the closing count only
    quiet = _run_with_stderr_on_a_tty([str(path), "--to", "-", "--once", "--quiet"])
    assert "shipped" not in quiet


class FlakyRelpServer:
    """A RELP server that acknowledges everything but drops each connection after `every` messages,
    leaving the last few unacknowledged."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.received: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        buf = b""
        count = 0
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while True:
                m = re.match(rb"(\d+) ([a-z]+) (\d+)[ \n]", buf)
                if not m:
                    break
                n = int(m.group(3))
                end = m.end() + n + (1 if n else 0)
                if len(buf) < end:
                    break
                txnr, command, payload = int(m.group(1)), m.group(2), buf[m.end() : m.end() + n]
                buf = buf[end:]
                if command == b"open":
                    offers = b"200 OK\nrelp_version=0\ncommands=syslog"
                    conn.sendall(b"%d rsp %d %s\n" % (txnr, len(offers), offers))
                elif command == b"syslog":
                    self.received.append(payload)
                    count += 1
                    if count >= self.every:
                        return  # the last message was received (and kept) but never acknowledged
                    conn.sendall(b"%d rsp 6 200 OK\n" % txnr)
                elif command == b"close":
                    conn.sendall(b"%d rsp 0\n" % txnr)
                    return

    def close(self) -> None:
        self.listener.close()


def test_reconnects_after_dropped_connections_and_delivers_everything(tmp_path: Path) -> None:
    """A collector that keeps dropping the connection gets every record; each reconnect resends less than a window."""
    path = tmp_path / "app.mmlog"
    make_ring(path, 3000)
    server = FlakyRelpServer(every=700)
    try:
        result = ship(str(path), "--to", f"relp://127.0.0.1:{server.port}", "--once", "--window", "100",
                      "--cursor", str(tmp_path / "c"))  # fmt: skip
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    seqs = [int(re.search(rb' seq="(\d+)"', m).group(1)) for m in server.received]
    assert set(seqs) == set(range(1, 3001))
    assert server.connections >= 5
    assert len(seqs) - 3000 < 100 * server.connections
    assert "connected again" in result.stderr


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    """Delays double (within jitter: the upper half of each ceiling) up to the cap, and reset after success."""
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[4:]}) == 4, "jitter: capped delays still differ"
    backoff.reset()
    assert 0.25 <= backoff.next_delay() <= 0.5


# Paced like a busy application (about 10,000 records/s at most), so that on a loaded machine the shipper
# is not lapped on every pass and has records to ship; unpaced, the C writer laps the ring every few ms.
_ENDLESS_WRITER = """
import sys, time
from mmaplog import RingWriter
with RingWriter(sys.argv[1], size=65536 * 256) as w:
    w.write("first")
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        w.write(f"more {i}")
        if i % 10 == 0:
            time.sleep(0.001)
"""


def test_once_ends_while_the_writer_keeps_writing(tmp_path: Path) -> None:
    """--once ships what existed when it caught up and exits, even though the application never stops logging."""
    path = tmp_path / "app.mmlog"
    writer = subprocess.Popen([sys.executable, "-c", _ENDLESS_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        result = ship(str(path), "--to", "-", "--once", timeout=120)
        assert writer.poll() is None, "the writer was still writing when the shipper finished"
    finally:
        writer.kill()
        writer.wait(30)
    assert result.returncode == 0, result.stderr
    # The writer may lap the shipper: every seq is then either shipped or inside a reported gap, in order.
    covered = []
    for doc in map(json.loads, result.stdout.splitlines()):
        if "seq" in doc:
            covered.append(doc["seq"])
        else:
            covered += range(doc["fields"]["first_seq"], doc["fields"]["last_seq"] + 1)
    assert covered == list(range(1, len(covered) + 1))
    assert len(covered) > 1


@pytest.mark.parametrize("window", ["1", "7", "4096"])
def test_once_ships_every_multi_slot_record_whatever_the_window(tmp_path: Path, window: str) -> None:
    """--once reads until every file is drained: a poll is bounded in slots and bytes, not a sign of being done."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, size="2 MiB") as w:
        for i in range(3000):
            w.write(f"rec {i:06d} " + "x" * (194 + i % 400), logger="app")  # two to three slots each
    on_disk = sorted(int(s) for s in mmaplog.read_array(path)["seq"])
    result = ship(str(path), "--to", "-", "--once", "--window", window)
    shipped = [json.loads(line)["seq"] for line in result.stdout.splitlines()]
    assert result.returncode == 0, result.stderr
    assert sorted(shipped) == on_disk and len(set(shipped)) == len(shipped) == 3000
    assert result.stderr.splitlines()[-1] == "mmaplog-ship: shipped 3000 records, 0 reported lost"


def test_once_with_records_lost_says_how_many_and_exits_3(tmp_path: Path) -> None:
    """Records a writer claimed and never committed (the writer is gone) are reported lost: the closing line
    counts them and the exit status is 3, while a run that lost nothing exits 0."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        w.write("one")
        next(w._seqs)  # a thread that died after taking its seq
        next(w._seqs)
        w.write("four")
    result = ship(str(path), "--to", "-", "--once", "--no-cursor")
    assert [json.loads(line).get("seq") for line in result.stdout.splitlines()] == [1, None, 4]  # None: the gap
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == "mmaplog-ship: shipped 2 records, 2 reported lost (in 1 gap)"
