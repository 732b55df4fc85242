"""Located records (the caller's file, line and function as fields) through the C writer's entry.

``Appender.append_fields`` (mmaplog/_cwrite.c) writes a record with pre-encoded fields into one slot, and the
source-location paths of ``mmaplog._cstdlib`` (``SourceEmitter``, accelerated stdlib loggers with
``capture_source``) call it directly.  Everything rare (a record longer than one slot, a new logger name, a
file that is full, a closed writer, a fault of the guard) goes to the Python writer with the fields.  The
differential tests compare the C side with the pure-Python writer and level methods record by record; each
test also runs on the pure-Python path (``MMAPLOG_PURE_PYTHON=1``), where both sides are Python.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmaplog
from mmaplog import _native, _truncation, stdlib
from mmaplog import layout as L
from mmaplog import logger as logger_module
from mmaplog import writer as writer_module
from mmaplog.reader import read_array
from mmaplog.writer import RingWriter, _encode_fields

COLUMNS = ("seq", "level", "logger", "message", "fields", "exception", "flags", "pathname", "lineno", "funcName")
C_WRITER = writer_module._cwrite is not None
C_LOCATED = C_WRITER and logger_module._cstdlib is not None

#: Any text, lone surrogates included (the writer shows them as escapes, the C side leaves them to it).
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.text(ANY_CHAR, max_size=30)
#: Odd file names: quotes, backslashes, control characters, non-ASCII, very long.
PATHS = st.one_of(
    TEXT,
    st.builds(lambda a, b: f"/srv/{a}\"q'\\{b}\n\t\x01\x7f/é中🎉.py", TEXT, TEXT),
    st.builds(lambda a, k: a * k, st.text(ANY_CHAR, min_size=1, max_size=8), st.integers(50, 400)),
)
#: Messages: short, empty, unicode, and long enough to span slots.
MESSAGES = st.one_of(
    TEXT,
    st.just(""),
    st.builds(lambda a, k: a * k, st.text(ANY_CHAR, min_size=1, max_size=12), st.integers(10, 300)),
)
#: Logger names: the unnamed one, names seen before, new ones, names too long for the name table.
LOGGERS = st.one_of(st.sampled_from(["", "app", "app.db"]), TEXT, st.builds(lambda k: "n" * k, st.integers(250, 300)))


def rows(path: Path) -> list[tuple[Any, ...]]:
    """The records of a ring as tuples of COLUMNS (fields as dicts)."""
    array = read_array(path)
    return [tuple(dict(r[c]) if c == "fields" and r[c] is not None else r[c] for c in COLUMNS) for r in array]


# ---------------------------------------------------------------------------------------------- the entry itself


def test_the_writer_s_entry_is_the_c_one_where_built(tmp_path: Path) -> None:
    with RingWriter(tmp_path / "a.mmlog", size="64 KiB") as w:
        entry = w._append_fields
        if C_WRITER:
            assert type(entry).__name__ == "builtin_function_or_method" and entry.__self__ is w._fast
        else:
            assert entry.__func__ is RingWriter._append_fields  # type: ignore[attr-defined]


@pytest.mark.skipif(not C_WRITER, reason="the C write accelerator is not in use here")
def test_an_appender_without_its_callbacks_refuses_instead_of_crashing() -> None:
    """``append_fields`` on an Appender made with ``__new__`` alone, or without ``slow_fields`` for a record it
    cannot write itself: an exception, never a crash."""
    cwrite = writer_module._cwrite
    assert cwrite is not None
    with pytest.raises(RuntimeError, match="not initialised"):
        cwrite.Appender.__new__(cwrite.Appender).append_fields("m", 20, "", b"{}")
    bare = cwrite.Appender(iter(()), print, print, print, fault=print)
    with pytest.raises(TypeError, match="slow_fields"):
        bare.append_fields("m", 20, "", b"{}")  # no ring targeted: the Python path, which it does not have
    with pytest.raises(TypeError):
        bare.append_fields("m", 20, "")


@settings(max_examples=200, deadline=None)
@given(message=MESSAGES, level=st.integers(-5, 300), logger=LOGGERS, path=PATHS,
       line=st.integers(-(1 << 31), (1 << 31) - 1), func=TEXT, slot_size=st.sampled_from([64, 128, 256, 1024]))
def test_the_c_entry_and_the_python_writer_store_the_same_records(message: str, level: int, logger: str, path: str,
                                                                   line: int, func: str, slot_size: int) -> None:
    """Two records each (the second with the logger's name known): the same decoded rows from both writers."""
    fields = _encode_fields({"pathname": path, "lineno": line, "funcName": func})
    with tempfile.TemporaryDirectory() as tmp:
        fast = RingWriter(Path(tmp, "c.mmlog"), size=64 * slot_size, slot_size=slot_size, prefault=False)
        pure = RingWriter(Path(tmp, "py.mmlog"), size=64 * slot_size, slot_size=slot_size, prefault=False)
        for _ in range(2):
            assert fast._append_fields(message, level, logger, fields) > 0
            assert RingWriter._append_fields(pure, message, level, logger, fields) > 0
        fast.close()
        pure.close()
        got, want = rows(fast.path), rows(pure.path)
    assert got == want and len(got) == 2
    flags = got[0][COLUMNS.index("flags")]
    if not flags & L.FLAG_TRUNCATED:  # a record too long for the ring drops its fields, visibly
        assert flags & L.FLAG_FIELDS and got[0][COLUMNS.index("lineno")] == line
        if not any(0xD800 <= ord(c) <= 0xDFFF for c in path):
            assert got[0][COLUMNS.index("pathname")] == path


def test_the_c_entry_s_rare_branches_keep_the_fields(tmp_path: Path) -> None:
    """A record longer than one slot, a new logger name, a level out of range, a closed writer (counted)."""
    raw = b'{"pathname":"/x/y.py","lineno":7,"funcName":"f"}'
    located = {"pathname": "/x/y.py", "lineno": 7, "funcName": "f"}
    w = RingWriter(tmp_path / "a.mmlog", size="64 KiB")
    assert w._append_fields("short", 20, "", raw) == 1
    assert w._append_fields("x" * 1000, 30, "", raw) == 2  # spans slots: the Python writer
    assert w._append_fields("first of a new name", 20, "app.new", raw) == 3  # registers the name
    assert w._append_fields("known name", 20, "app.new", raw) == 4
    assert w._append_fields("clamped", 999, "app.new", raw) == 5
    w.close()
    assert (w._append_fields("after close", 20, "app.new", raw), w.dropped) == (0, 1)  # counted, never raised
    records = list(mmaplog.read(tmp_path / "a.mmlog"))
    assert [(r.message, r.level, r.logger, r.fields) for r in records] == [
        ("short", 20, "", located), ("x" * 1000, 30, "", located), ("first of a new name", 20, "app.new", located),
        ("known name", 20, "app.new", located), ("clamped", 255, "app.new", located)]


def test_the_c_entry_at_a_rotation_boundary_keeps_every_record_s_fields(tmp_path: Path) -> None:
    """Files of 8 slots, rotate=3: many records are the first past the end of a file (the C entry's full branch)."""
    path = tmp_path / "a.mmlog"
    w = RingWriter(path, size=8 * 256, rotate=3, prefault=False)
    for i in range(30):
        raw = _encode_fields({"pathname": "/x/y.py", "lineno": i, "funcName": "f"})
        assert w._append_fields(f"record {i}", 20, "app", raw) == i + 1
    segment = w.header.segment
    w.close()
    assert segment >= 3
    records = list(mmaplog.read(path))
    assert len(records) >= 16  # three files kept, the oldest ones pruned
    for r in records:
        assert r.fields == {"pathname": "/x/y.py", "lineno": r.seq - 1, "funcName": "f"}, r
        assert r.message == f"record {r.seq - 1}"
    assert [r.seq for r in records] == list(range(records[0].seq, 31))


# ---------------------------------------------------------------------------------------------- the level methods


def _site(method: Any, msg: Any, *args: Any) -> None:
    method(msg, *args)


def located_site(path: str, func: str) -> Any:
    """``_site`` as if it were function ``func`` in file ``path``: the call site a located record names."""
    code = _site.__code__.replace(co_filename=path, co_name=func)
    return types.FunctionType(code, globals(), func)


#: A message and its arguments: plain, %-formats the C formatter takes, ones it leaves to %, one that fails.
CALLS = st.one_of(
    st.tuples(MESSAGES),
    st.tuples(st.just("order %d paid %.2f by %s"), st.integers(-(1 << 63), (1 << 63) - 1),
              st.floats(allow_nan=False, allow_infinity=False), TEXT),
    st.tuples(st.just("%s|%r"), TEXT, TEXT),
    st.tuples(st.just("%d"), st.integers(1 << 64, 1 << 70)),
    st.tuples(st.just("%s and %s"), TEXT),
    st.builds(lambda s: (s + "%s", "x"), MESSAGES),
)


@pytest.fixture
def own_logger(tmp_path: Path) -> Iterator[tuple[mmaplog.Logger, mmaplog.RingHandler]]:
    ring = mmaplog.RingHandler(tmp_path / "own.mmlog", size="1 MiB")
    yield mmaplog.Logger("app.located", [ring], "INFO", capture_source=True), ring
    ring.close()


def test_mmaplog_s_logger_writes_what_its_python_level_method_writes(
        own_logger: tuple[mmaplog.Logger, mmaplog.RingHandler]) -> None:
    """``SourceEmitter`` (C) against its Python fallback, called from the same site: the same decoded records."""
    log, ring = own_logger
    if logger_module._cstdlib is not None:
        assert type(log.info).__name__ == "SourceEmitter"
    python_info = getattr(log.info, "fallback", log.info)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(call=CALLS, path=PATHS, func=TEXT)
    def check(call: tuple[Any, ...], path: str, func: str) -> None:
        site = located_site(path, func)
        site(log.info, *call)
        site(python_info, *call)
        fast, pure = rows(ring.path)[-2:]
        assert fast[1:] == pure[1:] and fast[0] + 1 == pure[0]
        assert fast[COLUMNS.index("lineno")] == _site.__code__.co_firstlineno + 1

    check()


_loggers = itertools.count()


@contextlib.contextmanager
def accelerated_logger(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    """A stdlib logger with an accelerated ``LoggingHandler(capture_source=True)`` and the path of its ring.

    Made in the test body: the test runner gives its capture handler to non-propagating loggers that exist
    when a test phase starts, and a second handler would send the calls to the standard path.
    """
    handler = stdlib.LoggingHandler(tmp_path / "std.mmlog", size="1 MiB", capture_source=True, accelerate=True)
    logger = logging.getLogger(f"located.c.{os.getpid()}.{next(_loggers)}")  # new each time: no capture handler
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    assert handler.ring.path is not None
    try:
        if stdlib.accelerated():
            assert "with the caller's location" in stdlib.explain(logger.name), stdlib.explain(logger.name)
        yield logger, handler.ring.path
    finally:
        logger.removeHandler(handler)
        handler.close()
        stdlib.deaccelerate()


def test_an_accelerated_stdlib_logger_writes_what_the_standard_path_writes(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The accelerated ``info`` against the logger class's own, called from the same site: the same records.

    A format that fails writes no record on either path (``handleError``, quiet here: with the traceback on,
    the standard library's own report fails on a file name with a lone surrogate)."""
    monkeypatch.setattr(logging, "raiseExceptions", False)
    with accelerated_logger(tmp_path) as (logger, ring_path):
        standard = getattr(logger.info, "standard", logger.info)

        @settings(max_examples=150, deadline=None)
        @given(call=CALLS, path=PATHS, func=TEXT)
        def check(call: tuple[Any, ...], path: str, func: str) -> None:
            site = located_site(path, func)
            before = len(read_array(ring_path))
            site(logger.info, *call)
            written = len(read_array(ring_path)) - before
            site(standard, *call)
            assert len(read_array(ring_path)) - before == 2 * written
            if written:
                fast, pure = rows(ring_path)[-2:]
                assert fast[1:] == pure[1:] and fast[0] + 1 == pure[0]

        check()


@pytest.mark.parametrize("path", ["/app/views.py", "/usr/lib/python3/importlib/_bootstrap.py", "/x/importlib.py"])
def test_a_call_site_s_kept_verdict_follows_logging_s_srcfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              path: str) -> None:
    """Whether findCaller skips a call site is kept per site, for the ``logging._srcfile`` it was decided for:
    a site in a file findCaller skips, and one whose file becomes ``_srcfile`` and stops being it, log what the
    standard path logs."""
    with accelerated_logger(tmp_path) as (logger, ring_path):
        standard = getattr(logger.info, "standard", logger.info)
        site = located_site(path, "view")

        def both() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
            for method in (logger.info, standard):  # one line: findCaller may name this frame
                site(method, "paid %s", "bob")
            fast, pure = rows(ring_path)[-2:]
            assert fast[1:] == pure[1:]
            return fast, pure

        # findCaller skips importlib's bootstrap since Python 3.11 (_is_internal_frame).
        skipped = "importlib" in path and "_bootstrap" in path and sys.version_info >= (3, 11)
        for _ in range(2):  # the second time from the kept verdict
            fast, _ = both()
            assert (fast[COLUMNS.index("pathname")] == path) != skipped
        monkeypatch.setattr(logging, "_srcfile", path)
        for _ in range(2):
            fast, _ = both()
            assert fast[COLUMNS.index("pathname")] != path
        monkeypatch.undo()
        fast, _ = both()
        assert (fast[COLUMNS.index("pathname")] == path) != skipped


def test_the_located_level_methods_rare_branches_keep_the_location(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``Logger(capture_source=True)``: a long record, a new logger, a rotation boundary, a closed writer."""
    started: list[int] = []  # records that were the first past the end of a file in the C entry (its full branch)
    full = RingWriter._append_full

    def spy(self: RingWriter, seq: int, *args: Any) -> int:
        started.append(seq)
        return full(self, seq, *args)

    monkeypatch.setattr(RingWriter, "_append_full", spy)  # before the writer binds it
    w = RingWriter(tmp_path / "a.mmlog", size=16 * 256, rotate=10, prefault=False)
    ring = mmaplog.RingHandler(w)
    here = {"pathname": __file__, "funcName": "test_the_located_level_methods_rare_branches_keep_the_location"}
    lines = []
    for i in range(60):
        log = mmaplog.Logger(f"app.n{i % 4}", [ring], "INFO", capture_source=True)  # four new names, then known
        lines.append(sys._getframe().f_lineno + 1)
        log.info("record %d", i) if i % 7 else log.info("long %d " + "x" * 300, i)  # long: several slots
    assert w.header.segment >= 4
    if C_LOCATED:
        assert started
    w.close()
    log.info("after close")
    assert w.dropped == 1 and ring.dropped == 1  # counted, never raised
    records = list(mmaplog.read(tmp_path / "a.mmlog"))
    assert [r.seq for r in records] == list(range(1, 61))
    for r in records:
        i = r.seq - 1
        assert r.message == (f"record {i}" if i % 7 else f"long {i} " + "x" * 300)
        assert r.logger == f"app.n{i % 4}" and r.fields == {**here, "lineno": lines[i]}, r


# ---------------------------------------------------------------------------------------------- faults of the guard

needs_guard = pytest.mark.skipif(not _truncation.supported(), reason="the SIGBUS guard (mmaplog._sigbus) is not built")


@pytest.fixture(params=["c", "pure"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "c" and (_native.pure_python() or not C_WRITER):
        pytest.skip("the C path is not in use in this run")
    return str(request.param)


def _run(code: str, kind: str, *args: object) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter on write path ``kind``; its last line of output is JSON."""
    env = dict(os.environ)
    env.pop("MMAPLOG_PURE_PYTHON", None)
    env.pop("PYTHONFAULTHANDLER", None)
    if kind == "pure":
        env["MMAPLOG_PURE_PYTHON"] = "1"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@needs_guard
def test_located_records_written_after_a_cut_are_all_readable(tmp_path: Path, kind: str) -> None:
    """The file is truncated under the writer: every located record that returned a seq is readable, fields too."""
    res = _run(
        """
        import json, os, sys, mmaplog
        from mmaplog import _truncation
        _truncation._watcher.failed = True  # no inotify watch: the faulting store repairs
        path = sys.argv[1]
        w = mmaplog.RingWriter(path, size=1024 * 256)
        ring = mmaplog.RingHandler(w)
        log = mmaplog.Logger("app", [ring], "INFO", capture_source=True)
        log.info("before")
        os.truncate(path, 0)
        acked = [i for i in range(300) if w._append_fields(f"after {i}", 20, "app", b'{"i":%d}' % i)]
        log.info("located after the cut")
        w.close()
        print(json.dumps({"acked": len(acked), "dropped": w.dropped}))
        """,
        kind, tmp_path / "a.mmlog",
    )
    assert res == {"acked": 300, "dropped": 0}
    records = list(mmaplog.read(tmp_path / "a.mmlog"))
    after = [(r.message, r.fields) for r in records if r.message.startswith("after")]
    assert after == [(f"after {i}", {"i": i}) for i in range(300)]
    assert records[-1].message == "located after the cut" and records[-1].fields["funcName"] == "<module>"


@needs_guard
def test_a_located_record_whose_file_rotates_during_the_repair_is_written_again_with_its_fields(
        tmp_path: Path, kind: str) -> None:
    """The store faults; while the fault is repaired the file rotates: the record lands in the new file, whole."""
    res = _run(
        """
        import json, os, sys, mmaplog
        from mmaplog import _truncation
        from mmaplog.writer import RingWriter
        _truncation._watcher.failed = True
        moved, real_fault, real_moved = [], RingWriter._fault, RingWriter._rewrite_moved
        def fault(self, state, m=None, record=None):
            seen = real_fault(self, state, m, record)
            if state == 0 and not moved:  # rotate now, before the faulting store is made again
                moved.append("rotated")
                first = self.header.segment
                while self.header.segment == first:
                    self.write("filler", logger="other")
            return seen
        def rewrite_moved(self, record):
            if len(record) == 8:  # the C append's record with its fields
                moved.append("written again")
            return real_moved(self, record)
        RingWriter._fault = fault
        RingWriter._rewrite_moved = rewrite_moved
        path = sys.argv[1]
        w = RingWriter(path, size=64 * 256, rotate=3)
        w.write("fill", logger="app")
        os.truncate(path, 0)
        seq = w._append_fields("y" * 100, 30, "app", b'{"pathname":"p.py","lineno":3,"funcName":"f"}')
        w.close()
        print(json.dumps({"seq": seq, "dropped": w.dropped, "moved": moved}))
        """,
        kind, tmp_path / "a.mmlog",
    )
    assert res["seq"] > 0 and res["dropped"] == 0
    if kind == "c":
        assert res["moved"] == ["rotated", "written again"]
    (record,) = [r for r in mmaplog.read(tmp_path / "a.mmlog") if r.seq == res["seq"]]
    assert (record.message, record.level, record.logger, record.fields) == (
        "y" * 100, 30, "app", {"pathname": "p.py", "lineno": 3, "funcName": "f"})


@needs_guard
def test_located_records_on_a_full_disk_are_stored_or_counted(small_tmpfs: Path, kind: str) -> None:
    """A cut ring on a full file system: each located record is either stored or counted as dropped; no hang."""
    res = _run(
        """
        import json, os, sys, mmaplog
        from mmaplog import _truncation
        _truncation._watcher.failed = True
        path = sys.argv[1]
        w = mmaplog.RingWriter(path, size=512 * 256)
        w.write("before")
        os.truncate(path, 0)
        with open(os.path.join(os.path.dirname(path), "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\\0" * 65536)
                    f.flush()
            except OSError:
                pass
        results = [w._append_fields(f"after {i}", 20, "", b'{"i":1}') for i in range(200)]
        w.close()
        print(json.dumps({"acked": sum(1 for s in results if s), "dropped": w.dropped}))
        """,
        kind, small_tmpfs / "a.mmlog",
    )
    assert res["dropped"] > 0 and res["acked"] + res["dropped"] == 200
