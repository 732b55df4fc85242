"""Shipping to a real rsyslog: ``mmaplog-ship --once`` over RELP against rsyslog's own ``imfile`` reading a text log.

Both deliver the same records to one rsyslogd writing every message it gets to
a file (``omfile``, direct queue), and a round ends when the file holds them
all.  mmaplog's side is the whole command: start, read the ring, format RFC 5424,
send over RELP and wait for every acknowledgement.  imfile's side starts when a
complete text log with the same records (one line each, as ``mmaplog-read``
prints them) is renamed into the path it watches.  ``extra_info["records"]`` and
the round time give records per second for each; the report shows both.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._subjects import Scale
from mmaplog import RingWriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rsyslog_fixture import Rsyslog, running_rsyslog, wait_until

SHIP = [sys.executable, "-m", "mmaplog.ship.cli"]

_IMFILE = """
module(load="imfile" mode="inotify")
input(type="imfile" file="{text}" tag="app:" ruleset="shipped" addMetadata="off")
"""


def _message(i: int) -> str:
    return f"request {i} served in {i % 997} ms " + "x" * (i % 120)


@contextlib.contextmanager
def _rsyslog(root: Path, text: Path | None = None) -> Iterator[Rsyslog]:
    with running_rsyslog(root) as daemon:
        if text is not None:
            daemon.stop()
            daemon.config.write_text(daemon.config.read_text() + _IMFILE.format(text=text))
            daemon.start()
        yield daemon


def _count(count: int, scale: Scale) -> int:
    return count if scale.full else 2000


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("side", ["mmaplog-ship relp", "mmaplog-ship relp window 4096", "rsyslog imfile"])
def test_ship_throughput(benchmark: pytest.FixtureRequest, tmp_path: Path, scale: Scale, side: str) -> None:
    """Records per second from disk into rsyslog's output file: mmaplog-ship over RELP, or imfile from a text log."""
    count = _count(200_000, scale)
    ring = tmp_path / "app.mmlog"
    with RingWriter(ring, size="128 MiB") as w:
        for i in range(1, count + 1):
            w.write(_message(i), logger="app.web", fields={"i": i} if i % 4 == 0 else None)
    text = tmp_path / "watched" / "app.log"
    text.parent.mkdir()
    staged = tmp_path / "app.log.staged"
    staged.write_text("".join(f"2024-05-01T12:00:00.000000+00:00 INFO app.web [1] {_message(i)}\n"
                              for i in range(1, count + 1)))  # fmt: skip
    rounds = iter(range(1_000_000))
    rates: list[float] = []
    shipper_cpu: list[float] = []
    rsyslog_cpu: list[float] = []
    loads: list[float] = []

    def one_round() -> None:
        n = next(rounds)
        with _rsyslog(tmp_path / f"rsyslog-{n}", text if side == "rsyslog imfile" else None) as daemon:
            assert daemon.proc is not None
            loads.append(os.getloadavg()[0])
            daemon_cpu, child_cpu = _cpu_of(daemon.proc.pid), _children_cpu()
            started = time.perf_counter()
            if side.startswith("mmaplog-ship"):
                window = side.rsplit(" ", 1)[1] if "window" in side else "1024"
                done = subprocess.run([*SHIP, str(ring), "--to", daemon.relp_url, "--once", "--no-cursor", "-q",
                                       "--window", window], capture_output=True, text=True, timeout=600)  # fmt: skip
                assert done.returncode == 0, done.stderr
            else:
                os.replace(staged, text)
            wait_until(lambda: daemon.count() >= count, 600, f"{count} records at rsyslog", interval=0.01)
            elapsed = time.perf_counter() - started
            rsyslog_cpu.append(_cpu_of(daemon.proc.pid) - daemon_cpu)
            shipper_cpu.append(_children_cpu() - child_cpu)
            if side == "rsyslog imfile":
                os.replace(text, staged)
            rates.append(count / elapsed)

    benchmark.pedantic(one_round, rounds=1 if not scale.full else 5, iterations=1)  # type: ignore[attr-defined]
    info = benchmark.extra_info  # type: ignore[attr-defined]
    info["records"] = count
    info["records_per_second"] = max(rates)
    info["records_per_second_median"] = statistics.median(rates)
    info["rsyslog_cpu_seconds"] = min(rsyslog_cpu)
    info["load_average"] = loads
    if side.startswith("mmaplog-ship"):
        info["shipper_cpu_seconds"] = min(shipper_cpu)
        info["records_per_shipper_cpu_second"] = count / max(1e-9, min(shipper_cpu))
    print(
        f"{side}: best {max(rates):,.0f} records/s, median {statistics.median(rates):,.0f} ({count} records, "
        f"{len(rates)} rounds); rsyslogd CPU {min(rsyslog_cpu):.2f} s"
        + (f", shipper CPU {min(shipper_cpu):.2f} s ({count / max(1e-9, min(shipper_cpu)):,.0f} records per CPU s)"
           if side.startswith("mmaplog-ship") else "")
        + f"; load average {min(loads):.1f}..{max(loads):.1f}"
    )
