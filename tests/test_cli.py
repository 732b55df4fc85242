"""mmaplog-read through a real subprocess: every output format, filter, mode and error case."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmaplog
from mmaplog import RingWriter
from mmaplog import layout as L
from mmaplog.cli._output import short_thread

SLOT = 256
BASE_NS = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")


def cli(*args: object, env: dict[str, str] | None = None, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run mmaplog-read in a subprocess and capture its output as text."""
    command = [*(prefix or []), sys.executable, "-m", "mmaplog.cli.read", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env if env is not None else clean_env())


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env.update(extra)
    return env


# (message, level, logger, fields, exception, seconds after BASE_NS)
SAMPLE: list[tuple[str, int, str, dict[str, Any] | None, str | None, int]] = [
    ("service started", 20, "app", None, None, 0),
    ("connecting to db", 10, "app.db", {"host": "db1", "port": 5432}, None, 60),
    ("pool exhausted", 30, "app.db.pool", {"size": 10, "note": "two words"}, None, 120),
    ("similar name", 40, "app.dbx", None, None, 180),
    ("query failed", 40, "app.db", None, "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad\n", 240),
    ("shutting down", 50, "", None, None, 300),
]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A ring file holding SAMPLE."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, 64 * SLOT, slot_size=SLOT) as writer:
        for message, level, logger, fields, exception, seconds in SAMPLE:
            writer.write(message, level=level, logger=logger, fields=fields, exception=exception,
                         time_ns=BASE_NS + seconds * 1_000_000_000 + 123_456_789)
    return path


def lines(text: str) -> list[str]:
    return text.split("\n")[:-1] if text else []


def test_text_is_one_line_per_record_with_time_level_logger_thread_message_and_fields(sample: Path) -> None:
    """Default output: ISO-8601 time with microseconds, level, logger, thread, message, fields as key=value,
    and the exception indented below its record."""
    result = cli(sample)
    assert result.returncode == 0 and result.stderr == ""
    out = lines(result.stdout)
    heads = [line for line in out if not line.startswith("    ")]
    assert len(heads) == len(SAMPLE)
    pattern = re.compile(r"^(\S+) (\S+) +(\S+) \[([0-9a-f]{4})\] (.*)$")
    full_threads = [json.loads(x)["thread"] for x in lines(cli("-o", "json", sample).stdout)]
    for line, (message, level, logger, fields, _exc, seconds), full in zip(heads, SAMPLE, full_threads):
        match = pattern.match(line)
        assert match, line
        stamp, level_text, logger_text, thread, rest = match.groups()
        assert ISO.match(stamp)
        assert dt.datetime.fromisoformat(stamp).timestamp() == pytest.approx(BASE_NS / 1e9 + seconds + 0.123456, abs=1e-6)
        assert level_text == mmaplog.level_name(level)
        assert logger_text == (logger or "-")
        assert thread == short_thread(full) and full > 0  # a short tag of the thread; the full ident in JSON
        assert rest.startswith(message)
        if fields:
            assert rest[len(message) + 1 :].split(" ", 1)[0] in {f"{k}={v}" for k, v in fields.items()}
    assert 'note="two words"' in result.stdout and "host=db1 port=5432" in result.stdout
    failed = out.index(next(line for line in out if line.endswith("query failed")))
    assert out[failed + 1 : failed + 4] == ["    Traceback (most recent call last):", '      File "x.py", line 1', "    ValueError: bad"]
    utc = lines(cli("--utc", sample).stdout)
    assert utc[0].startswith("2024-05-01T12:00:00.123456Z ")


def test_json_lines_carry_the_documented_keys(sample: Path) -> None:
    """``-o json``: one object per line with seq, time (UTC), level, logger, thread, pid, message, host,
    process, and fields and exception when present."""
    result = cli("-o", "json", sample)
    assert result.returncode == 0
    docs = [json.loads(line) for line in lines(result.stdout)]
    assert len(docs) == len(SAMPLE)
    for seq, (doc, (message, level, logger, fields, exception, seconds)) in enumerate(zip(docs, SAMPLE), start=1):
        assert {"seq", "time", "level", "logger", "thread", "pid", "message", "host", "process"} <= doc.keys()
        assert doc["seq"] == seq and doc["message"] == message and doc["logger"] == logger
        assert doc["level"] == mmaplog.level_name(level) and doc["pid"] == os.getpid()
        assert doc["time"] == dt.datetime.fromtimestamp(BASE_NS // 10**9 + seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + ".123456Z"
        assert doc.get("fields") == fields and doc.get("exception") == exception


def test_csv_has_a_header_and_one_row_per_record(sample: Path) -> None:
    """``-o csv``: RFC 4180 CSV with a header row, fields as JSON, the exception on the record's row."""
    result = cli("-o", "csv", "--utc", sample)
    assert result.returncode == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["message"] for r in rows] == [s[0] for s in SAMPLE]
    assert rows[1]["fields"] and json.loads(rows[1]["fields"]) == SAMPLE[1][3]
    assert rows[4]["exception"] == SAMPLE[4][4].replace("\n", "\\n")  # type: ignore[union-attr]
    assert rows[0]["time"] == "2024-05-01T12:00:00.123456Z" and rows[2]["level"] == "WARNING"
    assert result.stdout.count("\n") == len(SAMPLE) + 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--level", "warning"], ["pool exhausted", "similar name", "query failed", "shutting down"]),
        (["-p", "40"], ["similar name", "query failed", "shutting down"]),
        (["--logger", "app.db"], ["connecting to db", "pool exhausted", "query failed"]),
        (["--since", "2024-05-01T12:02:00Z"], ["pool exhausted", "similar name", "query failed", "shutting down"]),
        (["-S", "2024-05-01T12:01:00Z", "-U", "2024-05-01T12:03:00.2Z"], ["connecting to db", "pool exhausted", "similar name"]),
        (["--grep", "^s"], ["service started", "similar name", "shutting down"]),
        (["-g", "QUERY|POOL", "-i"], ["pool exhausted", "query failed"]),
        (["-n", "2"], ["query failed", "shutting down"]),
        (["--logger", "app.db", "-n", "1", "-p", "error"], ["query failed"]),
    ],
)
def test_filters_select_records(sample: Path, args: list[str], expected: list[str]) -> None:
    """Each filter, alone and combined, keeps exactly the records it names."""
    result = cli("-o", "json", *args, sample)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["message"] for line in lines(result.stdout)] == expected


def test_relative_times_count_back_from_now(tmp_path: Path) -> None:
    """``--since -5min``, ``--since '90 s ago'`` and ``--until -1h`` are read relative to now."""
    path = tmp_path / "app.mmlog"
    now = time.time_ns()
    with RingWriter(path, 64 * SLOT, slot_size=SLOT) as writer:
        for minutes in (120, 30, 3, 0):
            writer.write(f"{minutes} min ago", time_ns=now - minutes * 60_000_000_000)
    assert [json.loads(x)["message"] for x in lines(cli("-o", "json", "--since", "-5min", path).stdout)] == ["3 min ago", "0 min ago"]
    assert [json.loads(x)["message"] for x in lines(cli("-o", "json", "--since", "90 s ago", path).stdout)] == ["0 min ago"]
    assert [json.loads(x)["message"] for x in lines(cli("-o", "json", "--until", "-1h", path).stdout)] == ["120 min ago"]


def test_nothing_matched_exits_1(sample: Path) -> None:
    """A filter that matches nothing prints nothing and exits 1; ``-n 0`` likewise."""
    for args in (["--grep", "no such text"], ["-n", "0"]):
        result = cli(*args, sample)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", "")


def test_stats_counts_levels_loggers_and_loss(tmp_path: Path) -> None:
    """``--stats``: counts per level and logger, time span and rate, and the records the ring overwrote."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, 64 * SLOT, slot_size=SLOT) as writer:
        for i in range(100):  # 36 overwritten
            writer.write(f"m{i}", level=30 if i % 4 == 0 else 20, logger="app.a" if i % 2 else "app.b",
                         time_ns=BASE_NS + i * 1_000_000_000)
    doc = json.loads(cli("--stats", "-o", "json", path).stdout)
    kept = range(36, 100)
    assert doc["records"] == 64 and doc["overwritten"] == 36 and doc["invalid_slots"] == 0
    assert doc["levels"] == {"INFO": sum(1 for i in kept if i % 4), "WARNING": sum(1 for i in kept if i % 4 == 0)}
    assert doc["loggers"] == {"app.a": 32, "app.b": 32}
    assert doc["span_seconds"] == 63 and doc["rate_per_second"] == pytest.approx(64 / 63, abs=1e-3)
    text = cli("--stats", "--logger", "app.a", path)
    assert text.returncode == 0
    assert re.search(r"^records: +32$", text.stdout, re.M) and re.search(r"^overwritten: +36 ", text.stdout, re.M)
    assert "app.a 32" in text.stdout and "app.b" not in text.stdout


def corrupt_slot(path: Path, index: int) -> None:
    """Flip a byte inside the payload of slot ``index``."""
    with open(path, "r+b") as f:
        offset = L.DATA_OFFSET + index * SLOT + L.SLOT_HEADER_SIZE + 3
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_verify_passes_intact_files_and_fails_on_a_corrupted_slot(tmp_path: Path) -> None:
    """``--verify`` exits 0 for an intact (wrapped, multi-slot) ring and 1 naming the file when a slot is
    corrupted; records cut only by the wrap are not damage."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, 64 * SLOT, slot_size=SLOT) as writer:
        for i in range(150):
            writer.write("x" * (i * 97 % 700))
    clean = cli("--verify", path)
    assert clean.returncode == 0 and clean.stdout.startswith(f"{path}: ok:") and clean.stderr == ""
    corrupt_slot(path, 10)
    damaged = cli("--verify", path)
    assert damaged.returncode == 1
    assert damaged.stdout.startswith(f"{path}: CORRUPT: 1 invalid slot")


def test_colour_only_on_a_terminal_and_never_with_no_color(sample: Path) -> None:
    """Levels are coloured on a TTY, not on a pipe, not with NO_COLOR set; ``--color`` overrides."""
    assert "\x1b[" not in cli(sample).stdout  # a pipe
    assert "\x1b[" in cli("--color=always", sample).stdout

    def on_tty(*args: str, **env: str) -> str:
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "mmaplog.cli.read", *args, str(sample)],
                                stdout=slave, stderr=subprocess.PIPE, env=clean_env(**env))
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        assert proc.wait(timeout=60) == 0
        return b"".join(chunks).decode()

    assert "\x1b[31mERROR" in on_tty()
    assert "\x1b[" not in on_tty(NO_COLOR="1")
    assert "\x1b[" not in on_tty("--color=never")


def test_control_characters_cannot_reach_the_terminal(tmp_path: Path) -> None:
    """Every C0 control, DEL and C1 control in a message, logger, field or exception is escaped in text and
    CSV output; JSON stays valid and gives the text back exactly."""
    path = tmp_path / "app.mmlog"
    nasty = "".join(chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)])
    with RingWriter(path, 64 * SLOT, slot_size=SLOT) as writer:
        writer.write(f"msg {nasty} \x1b]0;title\x07 end", logger="log\x1b[2J", fields={"k\x1b": "v\x9b"},
                     exception=f"Traceback\n  {nasty}\n")
        writer.write("\x1b")  # a lone escape
    text = cli(path).stdout
    assert not CONTROL.search(text.replace("\n", ""))
    assert len(lines(text)) == 2 + 3  # two records and the exception's three lines (a newline of its own in nasty)
    assert "\\x1b]0;title\\x07" in text and "\\n" in text and "\\x9b" in text and "\\x7f" in text
    csv_bytes = subprocess.run([sys.executable, "-m", "mmaplog.cli.read", "-o", "csv", str(path)],
                               capture_output=True, timeout=120, env=clean_env()).stdout
    assert csv_bytes.count(b"\r\n") == 3  # header and two records
    assert not CONTROL.search(csv_bytes.decode().replace("\r\n", ""))
    docs = [json.loads(line) for line in cli("-o", "json", path).stdout.split("\n")[:-1]]
    assert docs[0]["message"] == f"msg {nasty} \x1b]0;title\x07 end" and docs[1]["message"] == "\x1b"
    assert docs[0]["logger"] == "log\x1b[2J" and docs[0]["fields"] == {"k\x1b": "v\x9b"}


def test_closing_the_pipe_early_ends_quietly(tmp_path: Path) -> None:
    """``mmaplog-read FILE | head -n 1`` prints one line and nothing on stderr; a reader that closes its
    end leaves the process to end by SIGPIPE (or exit 0), without a traceback."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, 8192 * SLOT, slot_size=SLOT) as writer:
        for i in range(8000):
            writer.write(f"line {i} " + "z" * 100)
    command = f"{sys.executable} -m mmaplog.cli.read {path} | head -n 1"
    shell = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120, env=clean_env())
    assert shell.stderr == "" and len(lines(shell.stdout)) == 1
    proc = subprocess.Popen([sys.executable, "-m", "mmaplog.cli.read", "-o", "json", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    assert proc.stdout is not None and proc.stderr is not None
    json.loads(proc.stdout.readline())
    proc.stdout.close()
    assert proc.wait(timeout=120) in (0, -signal.SIGPIPE, 128 + signal.SIGPIPE)
    assert proc.stderr.read() == b""


def write_header(path: Path, **changes: Any) -> None:
    """Rewrite the header of ``path`` with ``changes``, with a valid checksum."""
    raw = path.read_bytes()
    header = L.decode_header(raw[: L.HEADER_CHECK_OFFSET + 4], len(raw))._replace(**changes)
    with open(path, "r+b") as f:
        f.write(L.encode_header(header))


def ring(path: Path) -> Path:
    with RingWriter(path, 16 * SLOT, slot_size=SLOT) as writer:
        writer.write("hello")
    return path


def _bad_magic(p: Path) -> None:
    p.write_bytes(b"GIF89a" + bytes(100))


def _truncated(p: Path) -> None:
    ring(p)
    os.truncate(p, L.HEADER_CHECK_OFFSET)  # into the header (cut later, it is read: tests/test_short_file.py)


def _short_header(p: Path) -> None:
    ring(p)
    os.truncate(p, 100)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _newer_major(p: Path) -> None:
    write_header(ring(p), version=(L.FORMAT_VERSION[0] + 1, 0))


def _slot_size_zero(p: Path) -> None:
    write_header(ring(p), slot_size=0)


def _bad_checksum(p: Path) -> None:
    ring(p)
    with open(p, "r+b") as f:
        f.seek(100)
        f.write(b"\xff")


def _directory(p: Path) -> None:
    p.mkdir()


def _missing(p: Path) -> None:
    pass


BAD_INPUTS: list[tuple[str, Callable[[Path], None], str]] = [
    ("bad magic", _bad_magic, "not an mmaplog file (bad magic)"),
    ("truncated", _truncated, "truncated header"),
    ("short header", _short_header, "truncated header"),
    ("empty", _empty, "not an mmaplog file"),
    ("newer major version", _newer_major, f"format version {L.FORMAT_VERSION[0] + 1}.0 is not supported"),
    ("slot size 0", _slot_size_zero, "bad slot size 0"),
    ("corrupt header", _bad_checksum, "corrupt header"),
    ("directory", _directory, "not a regular file"),
    ("missing", _missing, "No such file or directory"),
]


MODES = {"list": [], "stats": ["--stats"], "verify": ["--verify"], "follow": ["-f"]}
BAD_CASES = [(case, make, reason, "list") for case, make, reason in BAD_INPUTS] + [
    (case, make, reason, mode)
    for (case, make, reason), mode in zip(BAD_INPUTS, ("stats", "verify", "follow"))
]


@pytest.mark.parametrize(("case", "make", "reason", "mode"), BAD_CASES, ids=[f"{c[0]}-{c[3]}" for c in BAD_CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str, make: Callable[[Path], None], reason: str,
                                          mode: str) -> None:
    """Each kind of bad input gives exactly one line naming the file and the reason, exit status 2, and no
    traceback (every case when listing, and one case in each other mode)."""
    path = tmp_path / "app.mmlog"
    make(path)
    result = cli(*MODES[mode], path)
    assert (result.returncode, result.stdout) == (2, "")
    assert len(lines(result.stderr)) == 1
    assert result.stderr.startswith(f"mmaplog-read: {path}: {reason}")


def test_permission_denied_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A file the user may not read: one line, exit 2 (as root, the child runs without the override capability)."""
    path = ring(tmp_path / "app.mmlog")
    path.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot take away the right to read any file")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]
    result = cli(path, prefix=prefix)
    assert (result.returncode, result.stdout) == (2, "")
    assert lines(result.stderr) == [f"mmaplog-read: {path}: Permission denied"]


@pytest.mark.parametrize(
    "args",
    [[], ["--level", "loud"], ["--since", "next blue moon"], ["--grep", "(unclosed"], ["-n", "-3"], ["-f", "--stats"]],
    ids=["no file", "level", "since", "grep", "lines", "follow+stats"],
)
def test_usage_errors_exit_2_without_traceback(sample: Path, args: list[str]) -> None:
    """A bad option value or combination is a usage error: exit 2, a message naming the option, no traceback."""
    result = cli(*args, *([sample] if args else []))
    assert result.returncode == 2 and result.stdout == ""
    assert "mmaplog-read: error:" in result.stderr and "Traceback" not in result.stderr


def payload_messages() -> list[str]:
    """The edge cases of the round trip: empty, one byte, exactly one slot, many slots, 1 MiB."""
    one_slot = 4096 - L.SLOT_OVERHEAD
    return ["", "a", "é", "s" * one_slot, "m" * (one_slot + 1), "ü€𝄞" * 5000, "L" * (1 << 20)]


def round_trip(tmp_path: Path, messages: list[str]) -> list[str]:
    path = tmp_path / "rt.mmlog"
    if path.exists():
        path.unlink()
    with RingWriter(path, 4096 * 2048, slot_size=4096) as writer:
        for message in messages:
            assert writer.write(message, logger="rt") > 0
    result = cli("-o", "json", path)
    assert result.returncode == (0 if messages else 1), result.stderr
    return [json.loads(line)["message"] for line in result.stdout.split("\n")[:-1]]


def test_round_trip_of_edge_sizes_through_json(tmp_path: Path) -> None:
    """Messages of every edge size come back exactly and in order through ``mmaplog-read -o json``."""
    messages = payload_messages()
    assert round_trip(tmp_path, messages) == messages


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=3000), min_size=1, max_size=40))
def test_round_trip_of_random_unicode_through_json(tmp_path: Path, messages: list[str]) -> None:
    """Random unicode messages come back exactly and in order through ``mmaplog-read -o json``."""
    assert round_trip(tmp_path, messages) == messages


class Lines:
    """Reads lines from a child's pipe with a deadline, never blocking past it."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.buffer = b""

    def read(self, count: int, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while self.buffer.count(b"\n") < count:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {count} lines, have {self.buffer!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 65536)
                assert data, f"stream ended, have {self.buffer!r}"
                self.buffer += data
        *got, self.buffer = self.buffer.split(b"\n", count)
        return [line.decode() for line in got]

    def until(self, needle: str, timeout: float = 60) -> str:
        while True:
            line = self.read(1, timeout)[0]
            if needle in line:
                return line


def wait_stopped(pid: int, timeout: float = 60) -> None:
    """Wait until the kernel shows process ``pid`` stopped (state T), so it reads nothing more."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, "the follower did not stop"
        time.sleep(0.001)


def start_follow(path: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mmaplog.cli.read", "-f", "-o", "json", "--interval", "0.01", *args, str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_follow_shows_new_records_and_ends_quietly_on_a_signal(tmp_path: Path, signum: int) -> None:
    """``-f -n 2`` prints the last two records, then each new one as it is written; SIGTERM or Ctrl-C ends
    it with status 0 and nothing on stderr."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, 64 * SLOT, slot_size=SLOT) as writer:
        for i in range(5):
            writer.write(f"old {i}")
        proc = start_follow(path, "-n", "2")
        out = Lines(proc.stdout)
        assert [json.loads(x)["message"] for x in out.read(2)] == ["old 3", "old 4"]
        for i in range(3):
            writer.write(f"new {i}")
        assert [json.loads(x)["message"] for x in out.read(3)] == ["new 0", "new 1", "new 2"]
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_follow_says_how_many_records_it_missed_when_lapped(tmp_path: Path) -> None:
    """A writer that laps a (stopped) follower: the follower shows what was still there and says on stderr
    how many it missed; shown plus missed equals written."""
    path = tmp_path / "app.mmlog"
    with RingWriter(path, 64 * SLOT, slot_size=SLOT) as writer:
        writer.write("first")
        proc = start_follow(path)
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        assert json.loads(out.read(1)[0])["message"] == "first"
        proc.send_signal(signal.SIGSTOP)
        wait_stopped(proc.pid)
        for i in range(300):
            writer.write(f"burst {i}")
        writer.write("last")
        proc.send_signal(signal.SIGCONT)
        missed_line = err.until("missed")
        shown: list[str] = []
        while not shown or shown[-1] != "last":
            shown.append(json.loads(out.read(1)[0])["message"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    missed = int(re.search(r"missed (\d+) records", missed_line).group(1))  # type: ignore[union-attr]
    assert len(shown) + missed == 301
    assert shown == [f"burst {i}" for i in range(300 - len(shown) + 1, 300)] + ["last"]
    assert "Traceback" not in err.buffer.decode()
