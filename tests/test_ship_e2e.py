"""mmaplog-ship end to end against a real rsyslogd: RELP at least once, restarts, gaps, TCP, SIGTERM, outages."""

from __future__ import annotations

import itertools
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from rsyslog_fixture import Rsyslog, parse_message, running_rsyslog, wait_until

import mmaplog
from mmaplog import RingWriter
from mmaplog.ship.cursor import load_cursor

SHIP = [sys.executable, "-m", "mmaplog.ship.cli"]


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    """A running rsyslogd (imrelp and imtcp on 127.0.0.1) writing what it receives to a file."""
    with running_rsyslog(tmp_path / "rsyslog") as daemon:
        yield daemon


def ship(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run mmaplog-ship to completion."""
    return subprocess.run([*SHIP, *args], capture_output=True, text=True, timeout=timeout)


class Shipper:
    """A mmaplog-ship process in follow mode whose stderr is collected line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*SHIP, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.stderr.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.stderr)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def stop_quietly(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


_SEQ = re.compile(r'\[mmaplog@32473 seq="(\d+)"')


def record_seqs(lines: list[str]) -> list[int]:
    """Seqs of the record messages among the received lines (gap reports have none)."""
    return [int(m.group(1)) for m in map(_SEQ.search, lines) if m]


def test_100k_records_over_relp_in_order_exactly_once(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """100,000 records shipped over RELP arrive in order, each exactly once, with their fields in STRUCTURED-DATA."""
    path = tmp_path / "app.mmlog"
    count = 100_000
    with RingWriter(path, size="32 MiB") as w:
        for i in range(1, count + 1):
            w.write(f"request {i} done", level=20 if i % 10 else 40, logger="app.web",
                    fields={"i": i, "user": 'o"brien]\\x', "ok": i % 2 == 0})  # fmt: skip
    cursor = tmp_path / "ship.cursor"
    started = time.monotonic()
    result = ship(str(path), "--to", rsyslog.relp_url, "--once", "--cursor", str(cursor))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    lines = rsyslog.wait_for(count)
    print(f"shipped {count} records over RELP in {elapsed:.1f} s")
    assert len(lines) == count
    assert record_seqs(lines) == list(range(1, count + 1))
    # Every message carries its record's fields (here: i equals the seq).
    assert [int(i) for i in re.findall(r'\[fields@32473 i="(\d+)"', "\n".join(lines))] == list(range(1, count + 1))
    for i in (1, 2, 10, 77_777, count):
        msg = parse_message(lines[i - 1])
        assert msg["msg"] == f"request {i} done"
        expected = {"i": str(i), "user": 'o"brien]\\x', "ok": "true" if i % 2 == 0 else "false"}
        assert msg["sd"]["fields@32473"] == expected
        assert msg["sd"]["mmaplog@32473"]["logger"] == "app.web"
        assert msg["pri"] == 8 + (3 if i % 10 == 0 else 6)
    assert load_cursor(cursor).positions() == {mmaplog.reader.RingFile(path).header.series_id: count}


_WRITER = """
import sys
from mmaplog import RingWriter
written = 0
with RingWriter(sys.argv[1], size="16 MiB") as w:
    for line in sys.stdin:
        for _ in range(int(line)):
            written += 1
            w.write(f"record {written}", fields={"i": written})
        print(written, flush=True)
"""


class Writer:
    """A writer process that appends records when told to, so the test decides what "mid-stream" is."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.written = 0

    def write(self, count: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        self.written = int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.wait(60) != 0:
            raise AssertionError("writer failed")


def test_kills_and_collector_restart_lose_nothing(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """SIGKILL the shipper three times and restart rsyslog once mid-stream: every record arrives, duplicates only
    from the last unacknowledged window."""
    path = tmp_path / "app.mmlog"
    cursor = tmp_path / "ship.cursor"
    step, window = 4000, 300
    args = [str(path), "--to", rsyslog.relp_url, "--cursor", str(cursor), "--window", str(window)]
    writer = Writer(path)
    shippers: list[Shipper] = []
    try:
        for _ in range(3):
            writer.write(step)
            if not shippers:
                shippers.append(Shipper(*args))
            # Kill while the shipper is half-way through what was just written.
            rsyslog.wait_for(writer.written - step // 2, timeout=120)
            shippers[-1].kill()
            shippers.append(Shipper(*args))
        writer.write(step)
        rsyslog.wait_for(writer.written - step // 2, timeout=120)
        rsyslog.stop()
        wait_until(lambda: shippers[-1].said("retrying"), 60, "the shipper to notice the collector is down")
        writer.write(step)  # written while the collector is down
        rsyslog.start()
        total = writer.written
        writer.close()
        wait_until(lambda: set(record_seqs(rsyslog.lines())) >= set(range(1, total + 1)), 180, "every record")
        assert shippers[-1].terminate() == 0
    finally:
        for shipper in shippers:
            shipper.stop_quietly()
        if writer.proc.poll() is None:
            writer.proc.kill()
    seqs = record_seqs(rsyslog.lines())
    assert set(seqs) == set(range(1, total + 1))
    # Duplicates come only from the four restarts, each resending less than one window.
    jumps = [(prev, seq) for prev, seq in itertools.pairwise(seqs) if seq <= prev]
    assert len(jumps) <= 4, jumps
    for prev, seq in jumps:
        assert prev - seq < window, (prev, seq)
    duplicates = sum(n - 1 for n in Counter(seqs).values())
    assert duplicates <= 4 * window
    assert shippers[-1].said("connected again")


def test_lapping_writer_gap_is_reported_with_exact_count(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """Records the writer overwrote before the shipper got to them are reported, with the exact count, on stderr
    and to the collector, and everything still present is shipped."""
    path = tmp_path / "app.mmlog"
    cursor = tmp_path / "ship.cursor"
    args = [str(path), "--to", rsyslog.relp_url, "--once", "--cursor", str(cursor)]
    with RingWriter(path, size=1024 * 256) as w:
        for i in range(1, 101):
            w.write(f"early {i}")
        assert ship(*args).returncode == 0
        rsyslog.wait_for(100)
        for i in range(101, 5001):
            w.write(f"late {i}")
    oldest = int(mmaplog.read_array(path)["seq"][0])
    expected = oldest - 101
    assert expected > 1000
    result = ship(*args)
    assert result.returncode == 3, result.stderr  # --once: done, with records reported lost
    assert f"{expected} records overwritten before they could be shipped" in result.stderr
    shipped = 5000 - oldest + 1
    assert result.stderr.splitlines()[-1] == f"mmaplog-ship: shipped {shipped} records, {expected} reported lost (in 1 gap)"
    lines = rsyslog.wait_for(100 + 1 + (5000 - oldest + 1))
    warnings = [parse_message(line) for line in lines if "overwritten before" in line]
    assert len(warnings) == 1
    warning = warnings[0]
    assert warning["pri"] == 8 + 4
    assert f"mmaplog-ship: {expected} records overwritten before they could be shipped" in warning["msg"]
    meta = warning["sd"]["mmaplog@32473"]
    assert (meta["lost"], meta["first_seq"], meta["last_seq"]) == (str(expected), "101", str(oldest - 1))
    assert record_seqs(lines) == list(range(1, 101)) + list(range(oldest, 5001))


def test_tcp_round_trip(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """Over plain TCP (RFC 6587 octet counting) records arrive whole, in order, with fields and exceptions."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, size=4096 * 256) as w:
        for i in range(1, 2001):
            w.write(f"tcp {i} ünïcode", fields={"i": i},
                    exception="Traceback (most recent call last):\n  boom" if i % 500 == 0 else None)  # fmt: skip
    result = ship(str(path), "--to", rsyslog.tcp_url, "--once", "--cursor", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    lines = rsyslog.wait_for(2000)
    assert record_seqs(lines) == list(range(1, 2001))
    first = parse_message(lines[0])
    assert first["msg"] == "tcp 1 ünïcode"
    assert first["sd"]["fields@32473"] == {"i": "1"}
    assert parse_message(lines[499])["msg"].startswith("tcp 500 ünïcode#012Traceback")


def test_sigterm_finishes_the_window_and_saves_the_cursor(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """After SIGTERM mid-stream the cursor matches what the collector acknowledged, so a restart sends no duplicate."""
    path = tmp_path / "app.mmlog"
    cursor = tmp_path / "ship.cursor"
    total = 20_000
    with RingWriter(path, size="8 MiB") as w:
        for i in range(1, total + 1):
            w.write(f"m {i}")
    shipper = Shipper(str(path), "--to", rsyslog.relp_url, "--cursor", str(cursor), "--window", "2000")
    try:
        rsyslog.wait_for(3000, timeout=120)
        assert shipper.terminate() == 0
    finally:
        shipper.stop_quietly()
    saved = next(iter(load_cursor(cursor).positions().values()))
    received = record_seqs(rsyslog.lines())
    assert received == list(range(1, saved + 1)), "the cursor is exactly what the collector received"
    assert saved < total, "SIGTERM came mid-stream"
    assert ship(str(path), "--to", rsyslog.relp_url, "--once", "--cursor", str(cursor)).returncode == 0
    assert record_seqs(rsyslog.wait_for(total)) == list(range(1, total + 1))


def test_collector_down_at_start_then_up(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """With the collector down the shipper retries with backoff, keeps its place, and delivers once it is back."""
    path = tmp_path / "app.mmlog"
    cursor = tmp_path / "ship.cursor"
    with RingWriter(path, size=4096 * 256) as w:
        for i in range(1, 1001):
            w.write(f"m {i}")
    rsyslog.stop()
    shipper = Shipper(str(path), "--to", rsyslog.relp_url, "--cursor", str(cursor))
    try:
        wait_until(lambda: shipper.said("retrying in"), 60, "the first retry message")
        assert not cursor.exists()
        rsyslog.start()
        lines = rsyslog.wait_for(1000)
        assert shipper.terminate() == 0
    finally:
        shipper.stop_quietly()
    assert record_seqs(lines) == list(range(1, 1001))
    assert shipper.said("connected again")
    assert next(iter(load_cursor(cursor).positions().values())) == 1000


def test_once_gives_up_with_status_1_when_the_collector_stays_down(tmp_path: Path) -> None:
    """--once with an unreachable collector exits 1 after --retry-for, naming the destination, cursor untouched."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        w.write("m")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = ship(str(path), "--to", f"relp://127.0.0.1:{port}", "--once", "--retry-for", "1",
                  "--cursor", str(tmp_path / "c"))  # fmt: skip
    assert result.returncode == 1
    assert f"relp://127.0.0.1:{port}" in result.stderr
    assert "giving up" in result.stderr
    assert "Traceback" not in result.stderr
    assert load_cursor(tmp_path / "c").positions() == {}

