"""Handlers: console, file and ring output, format strings, and failures that never reach the caller."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import mmaplog
from mmaplog import ConsoleHandler, FileHandler, Logger, RingHandler, RingWriter
from mmaplog._record import LogRecord
from mmaplog.handlers import FORMAT_FIELDS, Handler, LineFormat
from mmaplog.testing import CapturingHandler


def _record(**overrides: object) -> LogRecord:
    values: dict[str, object] = {"logger": "app.db", "level": 30, "msg": "disk %d%% full", "args": (91,),
                                     "fields": {"disk": "sda", "note": "two words"}, "time_ns": 1_700_000_000_123_456_789,
                                     "thread": 12345, "exception": None}
    values.update(overrides)
    return LogRecord(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- format strings
def test_every_documented_format_field_renders_from_the_record() -> None:
    """Each documented field is available and shows the record's value."""
    fmt = LineFormat(" | ".join("{" + name + "}" for name in FORMAT_FIELDS))
    record = _record(exception="Traceback (most recent call last):\nValueError: x")
    parts = fmt.format(record).split(" | ")
    values = dict(zip(FORMAT_FIELDS, parts, strict=True))
    seconds = record.time_ns // 10**9
    assert values["time"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + ".123"
    assert values["time_iso"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".123456Z"
    assert values["time_ns"] == str(record.time_ns)
    assert (values["level"], values["levelno"], values["logger"]) == ("WARNING", "30", "app.db")
    assert values["message"] == "disk 91% full"
    assert (values["thread"], values["pid"]) == ("12345", str(os.getpid()))
    assert values["process"]
    assert values["fields"] == 'disk=sda note="two words"'
    assert values["exception"] == record.exception


def test_fields_and_exception_are_appended_when_the_format_does_not_place_them() -> None:
    """A format without {fields} or {exception} still shows both, after the line."""
    text = LineFormat("{level} {message}").format(_record(exception="Traceback...\nKeyError: 'k'"))
    assert text == "WARNING disk 91% full disk=sda note=\"two words\"\nTraceback...\nKeyError: 'k'"
    assert LineFormat("{message} [{fields}]").format(_record(fields=None)) == "disk 91% full []"


@pytest.mark.parametrize("bad", ["{nope}", "{message", "{level:Z}", "{}", "{0}"])
def test_bad_format_strings_fail_at_construction(bad: str) -> None:
    """A malformed format or an unknown field raises ValueError naming the format when the handler is made."""
    with pytest.raises(ValueError, match="format"):
        ConsoleHandler(format=bad)


# ---------------------------------------------------------------------- console
_CONSOLE_CHILD = textwrap.dedent(
    """
    import sys, threading
    from mmaplog import ConsoleHandler, Logger
    log = Logger("t", handlers=[ConsoleHandler(format="{logger} {message}")])
    barrier = threading.Barrier(8)
    def work(n):
        barrier.wait()
        for i in range(200):
            log.info("%d %d %s", n, i, chr(97 + n) * (2000 + 37 * i))
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    """
)


def test_console_lines_from_eight_threads_are_never_interleaved() -> None:
    """Eight threads writing long lines to a real stderr pipe: every line arrives whole, none lost."""
    proc = subprocess.run([sys.executable, "-c", _CONSOLE_CHILD], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 8 * 200
    seen = set()
    for line in lines:
        logger, n, i, body = line.split(" ")
        n_, i_ = int(n), int(i)
        assert logger == "t" and body == chr(97 + n_) * (2000 + 37 * i_)
        seen.add((n_, i_))
    assert len(seen) == 8 * 200
    assert "\x1b[" not in proc.stderr  # a pipe is not a terminal: no colour


def test_console_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    """Level names are coloured on a terminal, and not when NO_COLOR is set or the stream is a file."""
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            monkeypatch.delenv("NO_COLOR", raising=False)
            coloured = ConsoleHandler(tty, format="{level:<8}|")
            monkeypatch.setenv("NO_COLOR", "1")
            plain = ConsoleHandler(tty, format="{level:<8}|")
            for handler in (coloured, plain):
                handler.handle(_record(fields=None))
            output = b""
            while output.count(b"|") < 2:
                output += os.read(master, 4096)
    finally:
        os.close(master)
        os.close(slave)
    first, second = output.split(b"\n")[:2]
    assert first.startswith(b"\x1b[") and b"WARNING \x1b[0m|" in first  # padding counts the name only
    assert second.strip() == b"WARNING |"


def test_console_writes_to_the_current_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """With no stream given, records go to whatever sys.stderr is when they are written."""
    ConsoleHandler(format="{message}").handle(_record())
    assert capsys.readouterr().err == "disk 91% full disk=sda note=\"two words\"\n"


# ---------------------------------------------------------------------- file
def test_file_handler_appends_plain_lines_with_mode_0640(tmp_path: Path) -> None:
    """The file handler appends one formatted line per record and creates the file with mode 0o640."""
    path = tmp_path / "app-{pid}.log"
    handler = FileHandler(path, format="{level} {logger}: {message}")
    log = Logger("app", handlers=[handler])
    log.info("one")
    log.warning("two %s", "args", k=1)
    handler.close()
    real = tmp_path / f"app-{os.getpid()}.log"
    assert real.read_text().splitlines() == ["INFO app: one", "WARNING app: two args k=1"]
    assert stat.S_IMODE(real.stat().st_mode) == 0o640 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_file_handler_refuses_a_symlink(tmp_path: Path) -> None:
    """A symbolic link in place of the log file is refused (O_NOFOLLOW), naming the path."""
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "app.log").symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        FileHandler(tmp_path / "app.log")
    assert target.read_text() == ""


# ---------------------------------------------------------------------- ring
def test_ring_handler_opens_a_ring_from_a_path_with_pid_and_options(tmp_path: Path) -> None:
    """A path with {pid} and the size, slot_size and rotate options make the expected writer."""
    handler = RingHandler(tmp_path / "app-{pid}.mmlog", size="64 KiB", slot_size=128, rotate=2)
    assert handler.path == tmp_path / f"app-{os.getpid()}.mmlog"
    assert handler.writer is not None
    assert (handler.writer.slot_size, handler.writer.slot_count, handler.writer.rotate) == (128, 512, 2)
    handler.close()
    assert handler.writer.closed


def test_ring_handler_keeps_the_record_time_and_thread(tmp_path: Path) -> None:
    """Time and thread come from the record (taken once by the logger), not from the moment of writing."""
    handler = RingHandler(tmp_path / "a.mmlog", size="64 KiB")
    handler.handle(_record(fields=None))
    handler.handle(_record())
    handler.close()
    records = list(mmaplog.read(tmp_path / "a.mmlog"))
    expected = (1_700_000_000_123_456_789, 12345, 30, "app.db")
    assert [(r.time_ns, r.thread, r.level, r.logger) for r in records] == [expected, expected]
    assert records[1].fields == {"disk": "sda", "note": "two words"}


def test_ring_handler_emit_batch_writes_every_record_in_order(tmp_path: Path) -> None:
    """A batch (the async handler's worker path) lands in order, across wrap-around of a tiny ring."""
    handler = RingHandler(tmp_path / "a.mmlog", size=64 * 16, slot_size=64)
    batch = [_record(msg="n%d", args=(i,), fields=None if i % 3 else {"i": i}, time_ns=i + 1) for i in range(40)]
    handler.handle_batch(batch)
    handler.close()
    scan = mmaplog.scan(tmp_path / "a.mmlog")
    records = list(scan.iter_records())
    assert [r.message for r in records] == [f"n{i}" for i in range(40)][-len(records):]
    assert scan.stats.overwritten == 40 - len(records) > 0


def test_ring_handler_wraps_a_shared_writer_without_closing_it(tmp_path: Path) -> None:
    """A handler given a writer writes into it and leaves it open on close; a format shapes the message."""
    writer = RingWriter(tmp_path / "a.mmlog", "64 KiB")
    handler = RingHandler(writer, format="[{logger}] {message}")
    Logger("svc", handlers=[handler]).info("hello %s", "there")
    handler.close()
    assert not writer.closed
    writer.close()
    assert [r.message for r in mmaplog.read(tmp_path / "a.mmlog")] == ["[svc] hello there"]


def test_records_after_close_are_counted_not_raised(tmp_path: Path) -> None:
    """Logging into a closed ring handler does not raise and counts the records as dropped."""
    handler = RingHandler(tmp_path / "a.mmlog", size="64 KiB")
    log = Logger("app", handlers=[handler])
    handler.close()
    log.info("late")
    log.info("later", k=1)
    assert handler.dropped == 2


# ---------------------------------------------------------------------- failures
class Exploding(Handler):
    """A handler whose output always fails."""

    def emit(self, record: LogRecord) -> None:
        raise OSError(28, "No space left on device")


def test_a_handler_that_raises_never_reaches_the_caller(capfd: pytest.CaptureFixture[str]) -> None:
    """A failing handler leaves the caller and the other handlers unaffected; stderr shows one report."""
    broken, capture = Exploding(), CapturingHandler()
    log = Logger("app", handlers=[broken, capture])
    for i in range(5):
        log.error("attempt %d", i)
    assert [r.message for r in capture.records] == [f"attempt {i}" for i in range(5)]
    assert broken.errors == 5
    reports = [line for line in capfd.readouterr().err.splitlines() if line.startswith("mmaplog:")]
    assert len(reports) == 1 and "No space left on device" in reports[0] and "'app'" in reports[0]


def test_console_handler_on_a_closed_stream_does_not_raise(capfd: pytest.CaptureFixture[str]) -> None:
    """A console whose stream was closed under it counts the failure and reports it once."""
    r, w = os.pipe()
    stream = os.fdopen(w, "w")
    handler = ConsoleHandler(stream)
    stream.close()
    os.close(r)
    log = Logger("app", handlers=[handler])
    log.info("one")
    log.info("two")
    assert handler.errors == 2
    assert capfd.readouterr().err.count("mmaplog:") == 1


def test_handlers_can_be_used_from_another_thread(tmp_path: Path) -> None:
    """Records handed over from a worker thread (as the async handler does) keep their original thread."""
    handler = RingHandler(tmp_path / "a.mmlog", size="64 KiB")
    record = _record(thread=threading.get_ident(), fields=None)
    worker = threading.Thread(target=handler.handle_batch, args=([record],))
    worker.start()
    worker.join(timeout=30)
    handler.close()
    assert [r.thread for r in mmaplog.read(tmp_path / "a.mmlog")] == [threading.get_ident()]


def test_the_demo_shows_console_and_ring_side_by_side(tmp_path: Path) -> None:
    """tools/demo.py (the quick start) runs, prints the console lines and the ring read back, and says where it is."""
    demo = Path(__file__).resolve().parent.parent / "tools" / "demo.py"
    proc = subprocess.run([sys.executable, str(demo), str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    rings = list(tmp_path.glob("demo-*.mmlog"))
    assert len(rings) == 1 and str(rings[0]) in proc.stdout
    records = list(mmaplog.read(rings[0]))
    assert "DEBUG" in {r.level_name for r in records} and any(r.exception for r in records)
    assert "cache lookup" in proc.stdout and "cache lookup" not in proc.stderr  # DEBUG: ring only
    assert "order 42 paid 9.50 by bob" in proc.stderr


def test_a_handler_of_your_own_gets_an_injectable_format() -> None:
    """Any Handler subclass takes format= and renders records with self.format(); the default applies otherwise."""
    lines: list[str] = []

    class Collect(Handler):
        def emit(self, record: LogRecord) -> None:
            lines.append(self.format(record))

    Collect(format="{levelno}|{logger}|{message}").handle(_record(fields=None))
    Collect().handle(_record(fields=None))
    assert lines[0] == "30|app.db|disk 91% full"
    assert lines[1].endswith(" WARNING  app.db: disk 91% full")
    with pytest.raises(ValueError, match="unknown field"):
        Collect(format="{когда}")
