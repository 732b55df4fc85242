"""Reading logs back: mmaplog's reader and CLI against parsing a stdlib text log with a regular expression.

One ring file and one text log hold the same records (same times, levels,
loggers, threads and messages); the text log is written by a stdlib
``logging.Formatter``.  The regex path produces exactly the JSON lines that
``mmaplog-read -o json`` prints (a test checks that, so the comparison stays
fair); ``extra_info["records"]`` lets the report compute records per second.

Benchmarks that write output write each round into a new file and delete the
previous round's file before the round, untimed, the same for every path:
deleting or truncating a file of 190 MB takes a filesystem a good part of a
second (discards, writeback), which is neither path's work.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import mmaplog
from bench._subjects import Scale
from mmaplog.cli.read import main as mmaplog_read

#: The text log's line: everything ``mmaplog-read -o json`` shows, time first as an ISO-8601 UTC string.
TEXT_LOG_FORMAT = "%(isotime)s %(levelname)s %(name)s [%(thread)d] %(process)d %(message)s"
LINE = re.compile(r"(\S+) (\w+) (\S+) \[(\d+)\] (\d+) (.*)")
LOGGERS = ("app", "app.db", "app.http")


class Logs(NamedTuple):
    """The same records as a ring file and as a stdlib text log."""

    ring: Path
    text: Path
    records: int
    host: str
    process: str


def _iso(time_ns: int) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    import datetime as dt

    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos // 1000:06d}Z"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, scale: Scale) -> Logs:
    """A ring of ``scale.reader_records`` records and a stdlib text log of the same records."""
    folder = tmp_path_factory.mktemp("reader")
    ring = folder / "app.mmlog"
    count = scale.reader_records
    with mmaplog.RingWriter(ring, count * 256) as writer:
        write = writer.write
        for i in range(count):
            level = 30 if i % 50 == 0 else 20
            write(f"order {i} paid {i * 0.25:.2f} by user{i % 97}", level=level, logger=LOGGERS[i % 3])
    scan = mmaplog.scan(ring)
    assert scan.stats.records == count
    header = scan.files[0].header
    formatter = logging.Formatter(TEXT_LOG_FORMAT)
    text = folder / "app.log"
    with open(text, "w", encoding="utf-8") as out:
        for row in scan.records:
            record = logging.makeLogRecord(
                {
                    "name": row["logger"],
                    "levelno": int(row["level"]),
                    "levelname": logging.getLevelName(int(row["level"])),
                    "msg": row["message"],
                    "thread": int(row["thread"]),
                    "process": int(row["pid"]),
                    "isotime": _iso(int(row["time_ns"])),
                }
            )
            out.write(formatter.format(record) + "\n")
    return Logs(ring, text, count, header.hostname, header.process_name)


def _run_cli(argv: list[str], out: Path) -> int:
    """Run ``mmaplog-read`` in this process with its standard output going to ``out``."""
    saved = sys.stdout
    with open(out, "wb") as raw:
        sys.stdout = io.TextIOWrapper(raw, encoding="utf-8")
        try:
            status = mmaplog_read(argv)
            sys.stdout.flush()
        finally:
            sys.stdout.detach()
            sys.stdout = saved
    return status


def _parse_lines(path: Path) -> Iterator[tuple[int, re.Match[str]]]:
    with open(path, encoding="utf-8") as f:
        for seq, line in enumerate(f, 1):
            match = LINE.match(line.rstrip("\n"))
            if match is None:
                raise ValueError(f"{path}:{seq}: not a log line")
            yield seq, match


def regex_to_dicts(path: Path) -> list[dict[str, Any]]:
    """Parse the text log into one dict per record (the regex counterpart of ``read_array``)."""
    return [
        {"seq": seq, "time": m[1], "level": m[2], "logger": m[3], "thread": int(m[4]), "pid": int(m[5]), "message": m[6]}
        for seq, m in _parse_lines(path)
    ]


def regex_to_json(path: Path, out: Path, host: str, process: str) -> int:
    """Parse the text log and write the JSON lines ``mmaplog-read -o json`` writes; return the line count."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    count = 0
    with open(out, "w", encoding="utf-8") as f:
        write = f.write
        for seq, m in _parse_lines(path):
            write(
                dumps(
                    {"seq": seq, "time": m[1], "level": m[2], "logger": m[3], "thread": int(m[4]), "pid": int(m[5]),
                     "message": m[6], "host": host, "process": process}
                )
                + "\n"
            )
            count += 1
    return count


def _records(benchmark: Any, logs: Logs, subject: str) -> None:
    benchmark.group = "reader"
    benchmark.extra_info.update(subject=subject, records=logs.records)


def _to_fresh_files(benchmark: Any, request: pytest.FixtureRequest, write: Callable[..., Any], folder: Path) -> Any:
    """Time ``write(out=...)`` with a new output file each round; the previous round's file is deleted untimed."""
    names = itertools.count()

    def fresh() -> tuple[tuple[()], dict[str, Path]]:
        for old in folder.glob("out.*"):
            old.unlink()
        return (), {"out": folder / f"out.{next(names)}"}

    rounds = max(1, int(request.config.getoption("benchmark_min_rounds", 5) or 5))
    return benchmark.pedantic(write, setup=fresh, rounds=rounds, iterations=1)


def test_read_array(benchmark: Any, logs: Logs) -> None:
    """Every record of the ring into one numpy structured array."""
    _records(benchmark, logs, "mmaplog read_array")
    rows = benchmark(mmaplog.read_array, logs.ring)
    assert len(rows) == logs.records


def test_regex_to_dicts(benchmark: Any, logs: Logs) -> None:
    """Every line of the stdlib text log parsed with a regular expression into a dict."""
    _records(benchmark, logs, "stdlib text + regex -> dicts")
    rows = benchmark(regex_to_dicts, logs.text)
    assert len(rows) == logs.records


@pytest.mark.parametrize("output", ["text", "json"])
def test_mmaplog_read_cli(
    benchmark: Any, request: pytest.FixtureRequest, logs: Logs, tmp_path: Path, output: str
) -> None:
    """``mmaplog-read`` (in this process) writing every record as text lines or JSON lines to a file."""
    _records(benchmark, logs, f"mmaplog-read -o {output}")
    argv = ["-o", output, "--utc", str(logs.ring)]
    status = _to_fresh_files(benchmark, request, lambda out: _run_cli(argv, out), tmp_path)
    assert status == 0
    (out,) = tmp_path.glob("out.*")
    with open(out, "rb") as f:
        assert sum(1 for _ in f) == logs.records


def test_regex_to_json(benchmark: Any, request: pytest.FixtureRequest, logs: Logs, tmp_path: Path) -> None:
    """The stdlib text log parsed with a regular expression into the JSON lines ``mmaplog-read -o json`` prints."""
    _records(benchmark, logs, "stdlib text + regex -> json")
    count = _to_fresh_files(
        benchmark, request, lambda out: regex_to_json(logs.text, out, logs.host, logs.process), tmp_path
    )
    assert count == logs.records


def test_both_paths_print_the_same_json(logs: Logs, tmp_path: Path) -> None:
    """The regex path and ``mmaplog-read -o json`` produce identical output, so their speeds compare like for like."""
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    assert _run_cli(["-o", "json", str(logs.ring)], ours) == 0
    regex_to_json(logs.text, theirs, logs.host, logs.process)
    assert ours.read_bytes() == theirs.read_bytes()
