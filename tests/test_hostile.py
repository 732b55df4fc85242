"""Hostile environment: full disks, file limits, files changed under live mappings, hostile arguments,
signal handlers and shutdown, planted symlinks and control characters, and concurrency under stress.

Anything that could kill a process (SIGBUS, SIGXFSZ, a deadlock) runs in a child
process whose exit status the test asserts.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import random
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

import mmaplog
from mmaplog import layout as L
from mmaplog.handlers import Handler, RingHandler
from mmaplog.writer import RingWriter, _peek, segment_path

PACKAGE = Path(mmaplog.__file__).resolve().parent
SLOT = L.DEFAULT_SLOT_SIZE


def _child(code: str, *args: object, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (argv[1:] = args) and return the finished process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


# =========================================================================== 2. disk full and file limits
def test_ring_larger_than_the_disk_fails_at_open(small_tmpfs: Path) -> None:
    """A ring that does not fit the file system fails in the constructor with a clear error and leaves no file."""
    path = small_tmpfs / "big.mmlog"
    proc = _child(
        """
        import sys, mmaplog
        try:
            mmaplog.RingWriter(sys.argv[1], size="2 MiB")
        except OSError as exc:
            print(exc)
            sys.exit(3)
        """,
        path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot reserve" in proc.stdout and str(path) in proc.stdout and "No space left" in proc.stdout
    assert os.listdir(small_tmpfs) == []


def test_ring_larger_than_rlimit_fsize_fails_at_open_without_sigxfsz(tmp_path: Path) -> None:
    """Under RLIMIT_FSIZE with SIGXFSZ at its default (kill), opening a too-large ring raises instead of dying."""
    path = tmp_path / "big.mmlog"
    proc = _child(
        """
        import resource, signal, sys, mmaplog
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # an application that restored the default action
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            mmaplog.RingWriter(sys.argv[1], size="8 MiB")
        except OSError as exc:
            print(exc)
            sys.exit(3)
        """,
        path,
    )
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "cannot reserve" in proc.stdout and "ulimit -f" in proc.stdout and str(path) in proc.stdout
    assert not path.exists()


_FILL_AND_WRITE = """
    import errno, os, sys, mmaplog
    path, laps, rotate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    w = mmaplog.RingWriter(path, size=512 * 1024, rotate=rotate)
    # Take every block that is left, so nothing else can be allocated.
    with open(os.path.join(os.path.dirname(path), "filler"), "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    n = laps * w.slot_count
    for i in range(n):
        w.write(f"m{i}", fields={"i": i} if i % 7 == 0 else None)
    w.close()
    print(n, w.dropped, w.errors)
"""


def test_writing_on_a_full_disk_never_dies_of_sigbus(small_tmpfs: Path) -> None:
    """A ring reserved at open keeps taking records (20 laps) when its file system is full: no SIGBUS."""
    path = small_tmpfs / "a.mmlog"
    proc = _child(_FILL_AND_WRITE, path, 20, 0)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    written, dropped, errors = map(int, proc.stdout.split())
    assert (dropped, errors) == (0, 0)
    scan = mmaplog.scan(path)
    slots = scan.stats.slots
    assert [r.message for r in scan.iter_records()] == [f"m{i}" for i in range(written - slots, written)]
    assert scan.stats.invalid == 0 and scan.stats.overwritten == written - slots


def _assert_rotation_fell_back(path: Path, proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    reports = [line for line in proc.stderr.splitlines() if "cannot start a new segment" in line]
    assert len(reports) == 1 and str(path) in reports[0] and "overwriting the current ring" in reports[0], proc.stderr
    written, dropped, errors = map(int, proc.stdout.split())
    assert (dropped, errors) == (0, 0)
    assert not segment_path(path, 0).exists()
    assert not [p for p in os.listdir(path.parent) if p.endswith(".new")]
    scan = mmaplog.scan(path)
    slots = scan.stats.slots
    assert [r.message for r in scan.iter_records()] == [f"m{i}" for i in range(written - slots, written)]
    assert scan.stats.overwritten == written - slots


def test_rotation_on_a_full_disk_keeps_overwriting_and_reports_once(small_tmpfs: Path) -> None:
    """When the next segment cannot be reserved, the writer overwrites its current ring and says so once."""
    path = small_tmpfs / "a.mmlog"
    _assert_rotation_fell_back(path, _child(_FILL_AND_WRITE, path, 3, 3))


def test_rotation_without_free_descriptors_keeps_overwriting_and_reports_once(tmp_path: Path) -> None:
    """With RLIMIT_NOFILE exhausted the next segment cannot be opened: the ring is overwritten, reported once."""
    path = tmp_path / "a.mmlog"
    proc = _child(
        """
        import os, resource, sys, mmaplog
        w = mmaplog.RingWriter(sys.argv[1], size=64 * 256, rotate=3)
        w.write("warm up", fields={"k": 1})
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        n = 3 * w.slot_count
        for i in range(1, n):
            w.write(f"m{i}")
        w.close()
        print(n, w.dropped, w.errors)
        """,
        path,
    )
    assert "Too many open files" in proc.stderr
    _assert_rotation_fell_back(path, proc)


# =========================================================================== 3. files that change under a mapping
def test_second_writer_in_another_process_gets_a_clear_error(tmp_path: Path) -> None:
    """A second process opening a live ring for writing gets WriterBusyError naming the file and the owner."""
    path = tmp_path / "a.mmlog"
    code = """
        import sys, mmaplog
        try:
            w = mmaplog.RingWriter(sys.argv[1], size=64 * 256)
        except mmaplog.WriterBusyError as exc:
            print(exc)
            sys.exit(3)
        w.write("second writer")
        w.close()
        """
    with RingWriter(path, size=64 * 256) as w:
        w.write("first writer")
        proc = _child(code, path)
        assert proc.returncode == 3, proc.stderr
        assert f"{path}: already open for writing by another writer (created by pid {os.getpid()})" in proc.stdout
        w.write("still mine")
    assert _child(code, path).returncode == 0  # the lock goes with the writer
    assert [r.message for r in mmaplog.read(path)] == ["first writer", "still mine", "second writer"]


def test_follower_survives_its_file_truncated_deleted_and_replaced(tmp_path: Path) -> None:
    """A follower whose file is truncated, then deleted, then replaced says so each time and goes on."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        for i in range(5):
            w.write(f"a{i}")
    follower = mmaplog.follow(path, from_start=True, poll_interval=0.01, grace=0.05)
    seen: list[str] = []
    kinds: list[str] = []

    def poll() -> None:
        for item in follower.poll():
            if isinstance(item, mmaplog.Record):
                seen.append(item.message)
            else:
                kinds.append(item.kind)

    _wait_for(lambda: poll() or len(seen) == 5, "the first records")
    assert seen == [f"a{i}" for i in range(5)]
    os.truncate(path, 1000)
    _wait_for(lambda: poll() or "truncated" in kinds, "the truncation to be noticed")
    path.unlink()
    _wait_for(lambda: poll() or "deleted" in kinds, "the deletion to be noticed")
    with RingWriter(path, size=64 * 256) as w:
        for i in range(3):
            w.write(f"b{i}")
    _wait_for(lambda: poll() or seen[-1:] == ["b2"], "the records of the replacement")
    assert seen == [f"a{i}" for i in range(5)] + ["b0", "b1", "b2"]
    follower.close()
    assert follower.stats.warnings >= 2


def test_reading_while_another_process_truncates_and_rewrites_the_file(tmp_path: Path) -> None:
    """scan() racing a process that truncates, deletes and rewrites the file returns valid records or FormatError, never dies."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=512 * 256) as w:
        for i in range(400):
            w.write(f"m{i}" + "-" * (i % 300), fields={"i": i} if i % 3 == 0 else None)
    path.read_bytes()
    valid = {r.seq: (r.message, r.fields) for r in mmaplog.read(path)}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(
        """
        import os, sys
        path, data = sys.argv[1], open(sys.argv[1], "rb").read()
        print("ready", flush=True)
        i = 0
        while not os.path.exists(path + ".stop"):
            i += 1
            if i % 3 == 0:
                os.unlink(path)
                with open(path, "wb") as f:
                    f.write(data)
            else:
                os.truncate(path, (i * 7919) % len(data))
                with open(path, "r+b") as f:
                    f.write(data)
        """), str(path)], stdout=subprocess.PIPE, text=True)
    outcomes = {"records": 0, "format_error": 0}
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while min(outcomes.values()) < 20 and time.monotonic() < deadline:  # both outcomes, many times
            try:
                records = list(mmaplog.read(path))
            except mmaplog.FormatError:
                outcomes["format_error"] += 1
                continue
            outcomes["records"] += 1
            assert all(valid[r.seq] == (r.message, r.fields) for r in records)
    finally:
        (tmp_path / "a.mmlog.stop").touch()
        proc.wait(timeout=30)
    assert proc.returncode == 0 and min(outcomes.values()) >= 20, outcomes


def _reader(stream: IO[str], sink: queue.Queue[str]) -> None:
    for line in stream:
        sink.put(line.rstrip("\n"))


def _expect(sink: queue.Queue[str], pattern: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    skipped = []
    while True:
        try:
            line = sink.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no line matching {pattern!r} within {timeout} s; saw {skipped}") from None
        if re.search(pattern, line):
            return line
        skipped.append(line)


def test_cli_follow_survives_its_file_truncated_deleted_and_replaced(tmp_path: Path) -> None:
    """``mmaplog-read -f`` keeps running through truncation, deletion and replacement, says so, and exits 0 on SIGTERM."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        for i in range(3):
            w.write(f"before {i}")
    proc = subprocess.Popen([sys.executable, "-m", "mmaplog.cli.read", "-f", "--interval", "0.02", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()
    for stream, sink in ((proc.stdout, out), (proc.stderr, err)):
        threading.Thread(target=_reader, args=(stream, sink), daemon=True).start()
    try:
        _expect(out, "before 2")
        with RingWriter(path, size=64 * 256) as w:
            w.write("live 0")
        _expect(out, "live 0")  # the listing is done and the follower is following
        os.truncate(path, 500)
        assert "truncated" in _expect(err, "truncated")
        path.unlink()
        assert "deleted" in _expect(err, "deleted")
        with RingWriter(path, size=64 * 256) as w:
            w.write("after 0")
            w.write("after 1")
        _expect(out, "after 1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = []
    while not err.empty():
        rest.append(err.get())
    assert not [line for line in rest if "Traceback" in line]


_TRUNCATED_WRITER = """
    import sys, threading, mmaplog
    w = mmaplog.RingWriter(sys.argv[1], size=1024 * 256, rotate=int(sys.argv[2]))
    stop = threading.Event()
    counts = [0] * 4
    def work(t):
        i = 0
        while not stop.is_set():
            w.write(f"t{t} {i}" + "." * (i % 300), logger=f"worker{t}")
            i += 1
        counts[t] = i
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    for th in threads:
        th.join()
    w.write("last words", logger="worker0")
    w.close()
    print(sum(counts), w.dropped, w.errors, flush=True)
"""


@pytest.mark.parametrize("cut", [[0, 1000, 70000, 0], [4096]])
def test_writer_survives_its_file_truncated_by_another_process(tmp_path: Path, cut: list[int]) -> None:
    """Four threads write flat out while another process truncates the ring: the writer lives, repairs, reports each cut."""
    path = tmp_path / "a.mmlog"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_TRUNCATED_WRITER), str(path), "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    err: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stderr, err), daemon=True)
    reader.start()
    reports = []
    for length in cut:  # like logrotate's copytruncate, or ": > a.mmlog"
        os.truncate(path, length)
        reports.append(_expect(err, "truncated to"))  # the repair is complete once it is reported
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("stop\n")
    proc.stdin.close()
    out = proc.stdout.read()
    assert proc.wait(timeout=60) == 0
    reader.join(timeout=30)
    rest = list(err.queue)
    assert [int(re.search(r"truncated to (\d+) bytes", r).group(1)) for r in reports] == cut  # type: ignore[union-attr]
    assert all(str(path) in r and "went on writing" in r for r in reports)
    assert not [line for line in rest if "truncated" in line], rest  # exactly one report per cut
    written, dropped, errors = map(int, out.split())
    assert written > 0 and (dropped, errors) == (0, 0)
    scan = mmaplog.scan(path)  # the header and names were written again: the file reads
    records = list(scan.iter_records())
    assert records[-1].message == "last words" and records[-1].logger == "worker0"
    assert {r.logger for r in records} <= {f"worker{t}" for t in range(4)}


def test_rotating_writer_survives_truncation_of_its_live_file(tmp_path: Path) -> None:
    """A rotating writer whose live file is truncated again and again keeps writing and rotating."""
    path = tmp_path / "a.mmlog"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_TRUNCATED_WRITER), str(path), "2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for _ in range(20):
        os.truncate(path, 0)
        _wait_for(lambda: os.stat(path).st_size > 0, "the writer to restore or replace its file")
    _out, err = proc.communicate("stop\n", timeout=60)
    assert proc.returncode == 0, (proc.returncode, err)
    assert "truncated to 0 bytes" in err
    assert list(mmaplog.read(path, segments=False))[-1].message == "last words"


def test_writer_survives_truncation_with_faulthandler_enabled_after_it(tmp_path: Path) -> None:
    """With faulthandler installed after the writer (it sees the fault first and re-raises it), the writer still survives.

    The child cuts its own file between two writes microseconds apart, without the guard's inotify watch, so the
    second write's store is what finds the cut (not the watcher or the writer's once-a-second size check, which
    would repair it without a fault)."""
    path = tmp_path / "a.mmlog"
    proc = _child(
        """
        import faulthandler, os, sys, mmaplog
        from mmaplog import _truncation
        _truncation._watcher.failed = True  # no inotify watch: the store, not the watcher thread, finds the cut
        w = mmaplog.RingWriter(sys.argv[1], size=1024 * 256)
        faulthandler.enable()
        w.write("before the cut")
        os.truncate(sys.argv[1], 0)
        seq = w.write("last words")
        w.close()
        print(seq, w.dropped, w.errors, flush=True)
        """,
        path,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "Fatal Python error: Bus error" in proc.stderr  # faulthandler did see the fault first ...
    assert "truncated to 0 bytes" in proc.stderr  # ... and passed it on to the guard, which repaired the file
    seq, dropped, errors = map(int, proc.stdout.split())
    assert seq > 0 and (dropped, errors) == (0, 0)
    assert list(mmaplog.read(path))[-1].message == "last words"


def test_sigbus_sent_with_kill_keeps_its_default_action(tmp_path: Path) -> None:
    """``kill -BUS`` at a process with an open writer whose file is intact still terminates it, as without mmaplog."""
    proc = _child(
        """
        import os, signal, sys, mmaplog
        w = mmaplog.RingWriter(sys.argv[1], size=64 * 256)
        w.write("open")
        print("sending", flush=True)
        os.kill(os.getpid(), signal.SIGBUS)
        print("survived", flush=True)
        """,
        tmp_path / "a.mmlog",
    )
    assert proc.stdout.split() == ["sending"] and proc.returncode == -signal.SIGBUS, (proc.returncode, proc.stderr)


def test_sigbus_outside_any_ring_still_kills(tmp_path: Path) -> None:
    """The truncation guard handles only its own mappings: an application's own SIGBUS keeps its default action."""
    proc = _child(
        """
        import mmap, os, sys, mmaplog
        w = mmaplog.RingWriter(sys.argv[1] + "/a.mmlog", size=64 * 256)
        w.write("guard installed")
        other = sys.argv[1] + "/other.bin"
        with open(other, "wb") as f:
            f.write(b"x" * 16384)
        fd = os.open(other, os.O_RDWR)
        m = mmap.mmap(fd, 16384)
        os.truncate(other, 0)
        print("touching", flush=True)
        m[8192] = 1
        print("survived", flush=True)
        """,
        tmp_path,
    )
    assert proc.stdout.split() == ["touching"] and proc.returncode == -signal.SIGBUS, (proc.returncode, proc.stderr)


# =========================================================================== 4. logging never raises
class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class _BadBoth:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _BadFormat:
    def __format__(self, spec: str) -> str:
        raise ValueError("no format")

    def __str__(self) -> str:
        return "fine as str"


_circular: dict[str, Any] = {}
_circular["self"] = _circular

HOSTILE_WRITES: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    ("str raises", (_BadStr(),), {}, "<unprintable _BadStr: RuntimeError>"),
    ("str and repr raise", (_BadBoth(),), {}, "<unprintable _BadBoth: RuntimeError>"),
    ("lone surrogate", ("bad \ud800 half",), {}, "bad \\ud800 half"),
    ("NUL bytes", ("nul\0inside\0",), {}, "nul\0inside\0"),
    ("bytes message", (b"\xff\xfe raw",), {}, "b'\\xff\\xfe raw'"),
    ("None message", (None,), {}, "None"),
    ("hostile logger name", ("x",), {"logger": "log\ud800\0" + "n" * 300}, "x"),
    ("non-str logger", ("x",), {"logger": _BadStr()}, "x"),
    ("fields that are not JSON", ("x",), {"fields": {"obj": object(), "bad": _BadStr(), "nan": float("nan")}}, "x"),
    ("circular fields", ("x",), {"fields": _circular}, "x"),
    ("non-str field keys", ("x",), {"fields": {(1, 2): "tuple key", None: 1}}, "x"),
    ("fields not a mapping", ("x",), {"fields": [("a", 1)]}, "x"),
    ("hostile exception text", ("x",), {"exception": _BadBoth()}, "x"),
    ("level out of range", ("x",), {"level": 10**9}, "x"),
    ("level not a number", ("x",), {"level": "loud"}, "x"),
    ("time not a number", ("x",), {"time_ns": "yesterday"}, "x"),
    ("thread out of range", ("x",), {"thread": -(2**70)}, "x"),
]


@pytest.mark.parametrize("args,kwargs,shown", [c[1:] for c in HOSTILE_WRITES], ids=[c[0] for c in HOSTILE_WRITES])
def test_ring_writer_write_never_raises(tmp_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any], shown: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """RingWriter.write with a hostile argument returns; the record is written with what renders, or counted and reported once."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        seq = w.write(*args, **kwargs)
        seq2 = w.write(*args, **kwargs)
        after = w.write("after")
    records = list(mmaplog.read(path))
    assert records[-1].message == "after" and after > 0
    if seq:
        assert [r.seq for r in records] == [seq, seq2, after] and records[0].message == shown
    else:  # refused: counted and reported on stderr exactly once
        assert w.dropped == 2 and w.errors == 2 and [r.message for r in records] == ["after"]
        assert len([line for line in capsys.readouterr().err.splitlines() if "could not be written" in line]) == 1


def test_enormous_message_is_cut_with_a_marker(tmp_path: Path) -> None:
    """A 64 MB message is stored cut to the maximum record size, ending with the truncation marker."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=256 * 256) as w:
        assert w.write("é" * (32 << 20), fields={"big": "v" * (1 << 20)}) > 0
    (record,) = mmaplog.read(path)
    assert record.truncated and record.message.endswith(L.TRUNCATION_MARKER)
    assert set(record.message[: -len(L.TRUNCATION_MARKER)]) == {"é"}


def _logger(path: Path, *extra: Handler, size: int = 256 * 256) -> mmaplog.Logger:
    return mmaplog.Logger("app", handlers=[RingHandler(path, size=size), *extra], level="DEBUG")


def test_logger_calls_with_hostile_arguments_never_raise(tmp_path: Path) -> None:
    """Bad % arguments, raising __str__/__repr__, surrogates, NUL and 64 MB messages: Logger methods return, records show markers."""
    path = tmp_path / "a.mmlog"
    log = _logger(path)
    log.info("%d items", "many")
    log.info("%s and %s", 1)  # noqa: PLE1206 - too few arguments on purpose
    log.info("%(key)s", {"other": 1})
    log.info(_BadStr())
    log.info("value %s", _BadBoth())
    log.info("value %r", _BadBoth())
    log.info("value %s", _BadFormat())
    log.info("half \ud800 and nul \0", extra=_BadStr(), more=_circular)
    log.error("boom", exc_info=_BadBoth())
    log.warning("é" * (32 << 20))
    log.info("after")
    for handler in log.handlers:
        handler.close()
    messages = [r.message for r in mmaplog.read(path)]
    assert len(messages) == 11 and messages[-1] == "after"
    assert messages[0].startswith("%d items [mmaplog: bad arguments (TypeError")
    assert messages[1].startswith("%s and %s [mmaplog: bad arguments")
    assert messages[2].startswith("%(key)s [mmaplog: bad arguments (KeyError")
    assert "<unprintable" in messages[4] and "<unprintable" in messages[5]
    assert messages[6] == "value fine as str"
    assert messages[7] == "half \\ud800 and nul \0"
    assert messages[9].endswith(L.TRUNCATION_MARKER)


def test_handler_that_logs_does_not_take_the_caller_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A handler whose emit logs to the same logger (unbounded recursion) returns to the caller; the record is kept."""
    path = tmp_path / "a.mmlog"

    class Echo(Handler):
        def emit(self, record: mmaplog.LogRecord) -> None:
            log.warning("echo: %s", record.message)

    echo = Echo()
    log = _logger(path, echo, size=8 << 20)  # room for the whole flood of echoes
    log.info("hello")  # must return
    log.info("still alive")
    for handler in log.handlers:
        handler.close()
    messages = [r.message for r in mmaplog.read(path)]
    assert messages[0] == "hello" and "still alive" in messages
    assert echo.errors >= 1 and "RecursionError" in capsys.readouterr().err


def test_writer_object_whose_str_logs_is_written(tmp_path: Path) -> None:
    """A message object whose __str__ writes to the same ring (re-entrant write) is written, as is the inner record."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:

        class Chatty:
            def __str__(self) -> str:
                w.write("from inside __str__", logger="inner")
                return "chatty"

        assert w.write(Chatty(), logger="outer") > 0
    assert sorted(r.message for r in mmaplog.read(path)) == ["chatty", "from inside __str__"]


_SIGNAL_LOGGER = """
    import signal, sys, mmaplog
    path, rotate, use_logger = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "logger"
    w = mmaplog.RingWriter(path, size=(64 if rotate else 1 << 16) * 256, rotate=rotate)
    log = mmaplog.Logger("main", handlers=[mmaplog.RingHandler(w)])
    fired = [0]
    def on_alarm(signum, frame):
        fired[0] += 1
        # One read of the counter: a nested alarm (handlers run between bytecodes, their own included) may move it
        # between two reads, which would give a record whose message and fields disagree through no fault of ours.
        k = fired[0]
        if use_logger:
            log.warning("from handler %d", k, n=k)
        else:
            w.write(f"from handler {k}", logger=f"sig{k % 500}", fields={"n": k})
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    for i in range(int(sys.argv[4])):
        # A new logger name every time: the writer registers it under its lock, where the signal lands.
        w.write(f"main {i}", logger=f"main{i}" if i < 900 else "main")
    last = fired[0] + 3
    while fired[0] < last:  # end with a few handler records, so the newest slots hold some
        signal.pause()
    signal.setitimer(signal.ITIMER_REAL, 0)
    w.close()
    print(fired[0], w.dropped, w.errors)
"""


@pytest.mark.parametrize("rotate,via", [(0, "writer"), (0, "logger"), (3, "writer")])
def test_logging_from_a_signal_handler_never_deadlocks(tmp_path: Path, rotate: int, via: str) -> None:
    """A signal handler that logs, firing while the main thread is inside the writer (names, rotation), never deadlocks."""
    path = tmp_path / "a.mmlog"
    proc = _child(_SIGNAL_LOGGER, path, rotate, via, 20000 if rotate else 60000, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fired, dropped, errors = map(int, proc.stdout.split())
    assert fired > 0 and dropped == errors
    if dropped:  # only a record logged in the middle of a rotation may be refused; counted, reported once
        assert len([ln for ln in proc.stderr.splitlines() if "middle of a rotation" in ln]) == 1
    shown = [r for r in mmaplog.read(path) if r.message.startswith("from handler")]
    assert shown and all(r.fields["n"] == int(r.message.split()[-1]) for r in shown)


def test_logging_during_interpreter_shutdown_never_raises(tmp_path: Path) -> None:
    """Records logged from atexit, from __del__ at teardown and from a daemon thread during shutdown: exit 0, no traceback."""
    path = tmp_path / "a.mmlog"
    proc = _child(
        """
        import atexit, sys, threading, mmaplog
        log = mmaplog.Logger("app", handlers=[mmaplog.RingHandler(sys.argv[1], size=256 * 256)])
        # The daemon writes flat out into a ring of its own: in the shared ring it would lap the records checked below.
        noisy = mmaplog.Logger("noisy", handlers=[mmaplog.RingHandler(sys.argv[1] + ".noisy", size=256 * 256)])
        atexit.register(lambda: log.info("from atexit"))
        class Late:
            def __del__(self):
                log.info("from __del__ at teardown")
                noisy.info("from __del__ at teardown")
        sys.modules["late_object_holder"] = Late()  # collected when the interpreter tears modules down
        started = threading.Event()
        def chatter():
            i = 0
            while True:
                noisy.info("daemon %d", i)
                if i % 4096 == 0:  # and now and then into the shared one, at a rate that cannot lap it
                    log.info("daemon %d", i)
                i += 1
                started.set()
        threading.Thread(target=chatter, daemon=True).start()
        started.wait()
        log.info("main done")
        """,
        path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    messages = [r.message for r in mmaplog.read(path)]
    assert "main done" in messages and "from atexit" in messages


# =========================================================================== 5. security
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_files_are_0640_under_the_umask_and_never_world_writable(tmp_path: Path, umask: int) -> None:
    """The live file and every rotated segment get 0o640 minus the umask; none is ever world-writable."""
    path = tmp_path / "a.mmlog"
    proc = _child(
        """
        import os, sys, mmaplog
        os.umask(int(sys.argv[2]))
        with mmaplog.RingWriter(sys.argv[1], size=16 * 256, rotate=3) as w:
            for i in range(50):
                w.write(f"m{i}")
        """,
        path,
        umask,
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3  # the live file and two sealed segments
    for f in files:
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == 0o640 & ~umask and not mode & 0o002, (f.name, oct(mode))


@pytest.mark.parametrize("mode", [0o666, 0o602, 0o777, 0o10000, "0640"])
def test_a_world_writable_or_odd_mode_is_refused(tmp_path: Path, mode: Any) -> None:
    """Asking for a mode that lets every user write (or that is not a permission mode) fails naming the mode."""
    path = tmp_path / "a.mmlog"
    with pytest.raises(ValueError, match=re.escape(repr(mode))):
        RingWriter(path, size=16 * 256, mode=mode)
    assert not path.exists()


def test_symlinks_planted_at_rotation_names_are_not_followed(tmp_path: Path) -> None:
    """Symlinks planted at the rotation's temporary name and at a segment name never redirect a write."""
    path = tmp_path / "a.mmlog"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / f".a.mmlog.{os.getpid()}.new").symlink_to(victim)
    segment_path(path, 0).symlink_to(victim)
    with RingWriter(path, size=16 * 256, rotate=3) as w:
        for i in range(20):
            w.write(f"m{i}")
    assert victim.read_bytes() == b"precious"
    assert not segment_path(path, 0).is_symlink() and segment_path(path, 0).is_file()
    assert [r.message for r in mmaplog.read(path)] == [f"m{i}" for i in range(20)]


def test_symlink_at_the_ring_path_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Creating a ring where a symlink was planted fails, saying it refuses to follow a symbolic link."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    path = tmp_path / "a.mmlog"
    path.symlink_to(victim)
    with pytest.raises(OSError, match="refusing to open a symbolic link"):
        RingWriter(path, size=16 * 256)
    assert victim.read_bytes() == b"precious"


_CONTROLS = "".join(chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)])


def _cli(*args: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "mmaplog.cli.read", *map(str, args)], capture_output=True, timeout=60)


def test_cli_text_output_escapes_every_control_character(tmp_path: Path) -> None:
    """No C0, DEL or C1 character from a message, logger, field or traceback reaches the terminal raw."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=256 * 256) as w:
        w.write(f"all controls: {_CONTROLS}|", logger=f"log{_CONTROLS}")
        w.write("\x1b]0;pwned title\x07\x1b[2J\x1b[1A\rhidden", fields={"k\x1b": "v\x9b31m"})
        w.write("with traceback", exception="Traceback\n  line\x1b[31m\x85\nError: \x00x")
        for c in _CONTROLS:
            w.write(f"one {c} char", logger="single")
    proc = _cli(path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode("utf-8")
    raw = {c for c in text if c in _CONTROLS and c != "\n"}
    assert not raw, sorted(hex(ord(c)) for c in raw)
    lines = text.split("\n")
    records = [ln for ln in lines if ln and not ln.startswith("    ")]
    assert len(records) == 3 + len(_CONTROLS)  # a control character never splits or hides a line
    assert "\\x1b" in text and "\\x9b" in text and "\\x00" in text and "\\x85" in text


def test_cli_json_output_is_valid_json_for_any_message(tmp_path: Path) -> None:
    """Every -o json line parses, and carries back exactly the message, logger and fields the reader returns."""
    path = tmp_path / "a.mmlog"
    rng = random.Random(11)
    alphabet = [*_CONTROLS, "\u2028", "\u2029", "\ufeff", "\ud800", "\udfff", '"', "\\", "/", "é", "😀", "\U0010ffff",
                "a", " ", "{", "}"]
    with RingWriter(path, size=1024 * 256) as w:
        for i in range(300):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
            w.write(text, logger=rng.choice(["", "app", text[:20]]),
                    fields={text[:5]: text, "n": float("nan") if i % 50 == 0 else i} if i % 3 else None,
                    exception=text if i % 7 == 0 else None)
    proc = _cli(path, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.decode("utf-8").split("\n") if ln]
    docs = [json.loads(line) for line in lines]
    expected = list(mmaplog.read(path))
    assert len(docs) == len(expected) == 300
    for doc, record in zip(docs, expected):
        assert doc["message"] == record.message and doc["logger"] == record.logger
        assert json.loads(json.dumps(doc)) == doc


def test_no_module_evaluates_or_unpickles_anything() -> None:
    """No module of the package calls eval, exec or compile, or imports pickle, marshal or shelve."""
    found = []
    for source in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"eval", "exec", "compile"}:
                found.append(f"{source.name}:{node.lineno} calls {node.func.id}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                bad = {n.split(".")[0] for n in names} & {"pickle", "marshal", "shelve", "dill", "cloudpickle"}
                if bad:
                    found.append(f"{source.name}:{node.lineno} imports {sorted(bad)}")
    assert not found, found
    text = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    assert not re.search(r"\b(eval|exec)\(|\bpickle\b|\bmarshal\b", text)


# =========================================================================== 6. concurrency under stress
_FOLLOWER = """
    import json, sys, threading, time, zlib, mmaplog
    follower = mmaplog.follow(sys.argv[1], from_start=True, poll_interval=0.002, grace=0.2)
    target = []  # the last seq written, sent on stdin once the writers are done
    threading.Thread(target=lambda: target.append(int(sys.stdin.readline())), daemon=True).start()
    shown, torn, seqs = 0, [], set()
    def check(record):
        global shown
        shown += 1
        head, _, crc = record.message.rpartition(":")
        t, i, _body = head.split(":", 2)
        ok = zlib.crc32(head.encode()) == int(crc, 16) and record.logger == f"w{t}"
        ok = ok and (record.fields == ({"t": int(t), "i": int(i)} if int(i) % 5 == 0 else {}))
        if not ok or record.seq in seqs:
            torn.append(record.seq)
        seqs.add(record.seq)
    def take(items):
        for item in items:
            if isinstance(item, mmaplog.Record):
                check(item)
    print("ready", flush=True)
    first = True
    deadline = None
    while True:
        items = follower.poll()
        take(items)
        if first:
            print("polled", flush=True)
            first = False
        if target:  # the writers are done: follow until the last record written has been shown
            deadline = deadline or time.monotonic() + 60
            if max(seqs, default=0) >= target[0] or time.monotonic() > deadline:
                break
        if not items and follower.idle:
            time.sleep(0.002)
    take(follower.close())
    print(json.dumps({"shown": shown, "torn": torn, "last": max(seqs, default=0), "stats": follower.stats.as_dict()}))
"""


def test_sixteen_writers_two_followers_hundred_wraps_loss_is_counted_exactly(tmp_path: Path) -> None:
    """16 threads write while 2 follower processes follow and the ring wraps 100 times: nothing torn, shown + missed == written."""
    path = tmp_path / "a.mmlog"
    slots = 256
    w = RingWriter(path, size=slots * SLOT)
    followers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_FOLLOWER), str(path)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for f in followers:
        assert f.stdout is not None and f.stdout.readline().strip() == "ready"
        assert f.stdout.readline().strip() == "polled"
    start = threading.Barrier(16)
    written = [0] * 16

    def work(t: int) -> None:
        rng = random.Random(t)
        start.wait()
        i = 0
        while _peek(w._map.positions) <= 100 * slots:
            head = f"{t}:{i}:" + "abcdefghijklmnopqrstuvwxyz"[i % 26] * rng.randrange(0, 600)
            seq = w.write(f"{head}:{zlib.crc32(head.encode()):08x}", logger=f"w{t}",
                          fields={"t": t, "i": i} if i % 5 == 0 else None)
            assert seq > 0
            written[t] += 1
            i += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    laps = (_peek(w._map.positions) - 1) / slots
    total = sum(written)
    w.close()
    results = []
    for f in followers:
        out, err = f.communicate(f"{total}\n", timeout=120)
        assert f.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert laps >= 100 and w.dropped == 0
    for result in results:
        stats = result["stats"]
        assert result["torn"] == [] and result["last"] == total
        assert result["shown"] == stats["records"]
        assert stats["records"] + stats["missed"] == total, (stats, total)
        assert stats["records"] >= slots  # the newest ring-full at least was read after the writers stopped


def test_fork_while_another_thread_registers_rings_does_not_hang_the_child(tmp_path: Path) -> None:
    """Children forked while a thread of the parent opens and closes rings (the guard's table lock) still abandon theirs."""
    proc = _child(
        """
        import os, sys, threading, mmaplog
        w = mmaplog.RingWriter(sys.argv[1] + "/a.mmlog", size=64 * 256)
        stop = threading.Event()
        def churn():
            i = 0
            while not stop.is_set():
                with mmaplog.RingWriter(sys.argv[1] + f"/churn{i % 2}.mmlog", size=16 * 256, prefault=False):
                    pass
                i += 1
        t = threading.Thread(target=churn)
        t.start()
        codes = []
        for _ in range(40):
            pid = os.fork()
            if pid == 0:
                w.write("in the child: dropped")
                with mmaplog.RingWriter(sys.argv[1] + f"/child{os.getpid()}.mmlog", size=16 * 256) as c:
                    c.write("the child's own ring")  # registers with the guard: its table lock must be free
                os._exit(0 if w.dropped == 1 else 1)
            codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        stop.set()
        t.join()
        print(sorted(set(codes)))
        """,
        tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "[0]", proc.stderr
