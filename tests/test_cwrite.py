"""The C writer path (mmaplog._cwrite) against its pure-Python twin: same bytes, same text, same fallbacks."""

from __future__ import annotations

import math
import mmap
import os
import struct
import subprocess
import sys
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmaplog
from mmaplog import Logger, RingHandler, RingWriter
from mmaplog import layout as L
from mmaplog import logger as logger_module
from mmaplog import writer as writer_module
from mmaplog._record import LogRecord, render_message

cwrite = writer_module._cwrite
pytestmark = pytest.mark.skipif(cwrite is None, reason="the C accelerator is not built (or MMAPLOG_PURE_PYTHON is set)")
SETTINGS = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _slots(path: Path, slot_size: int = 256) -> np.ndarray:
    raw = path.read_bytes()
    return np.frombuffer(raw, dtype=L.slot_dtype(slot_size), offset=L.DATA_OFFSET)


def test_the_accelerator_is_in_use_by_default() -> None:
    """Writers and loggers take the C path when it is built: the fast entries are the C ones."""
    assert logger_module._cwrite is cwrite


def test_c_slots_are_byte_for_byte_what_the_python_encoder_writes(tmp_path: Path) -> None:
    """Every slot the C append writes equals the Python struct encoding of the same fields, trailer included."""
    path = tmp_path / "a.mmlog"
    messages = ["", "a", "x" * 199, "x" * 200, "é ü 中文 🙂", "tab\tnew\nline", "\x00nul"]
    with RingWriter(path, size=16 * 256) as w:
        assert "Appender" in repr(w._append)
        for i, message in enumerate(messages):
            assert w._append(message, 10 + i, "") == i + 1
    slots = _slots(path)
    body = struct.Struct(f"{L.SLOT_HEADER_FORMAT}{L.slot_payload_size(256)}s")
    for i, message in enumerate(messages):
        s = slots[i]
        data = message.encode()
        expected = body.pack(i + 1, i + 1, int(s["time_ns"]), int(s["thread"]), len(data), len(data), len(data), 0,
                             0, 10 + i, L.FLAG_FIRST | L.FLAG_LAST, data)
        expected += L.SLOT_TRAILER_STRUCT.pack(zlib.crc32(expected[: L.SLOT_HEADER_SIZE + len(data)]), i + 1)
        assert s.tobytes() == expected, message


def test_c_and_python_writers_write_the_same_records(tmp_path: Path) -> None:
    """The same calls through the C writer and a pure-Python one (subprocess) read back identically."""
    script = """
import sys
from mmaplog import RingWriter, Logger, RingHandler
from mmaplog import writer
print(writer._cwrite is not None)
with RingWriter(sys.argv[1], size=128 * 256, rotate=8) as w:
    for i in range(40):
        w.write(f"plain {i}", level=20 + i % 3)
        w.write("new name", logger=f"app.{i % 5}")
        w.write("long " + "y" * (150 * (i % 4)))
        w.write("lone \\ud800", logger="app.0")
        w.write(f"fields {i}", fields={"i": i})
        w._append(f"positional {i}", 30, "app.1")
        w.write(f"explicit defaults {i}", level=20, logger="", fields=None, time_ns=None, thread=None, exception=None)
        w.write(f"given time {i}", time_ns=i, thread=i + 1, exception="tb" if i % 2 else None)
        w.write(f"given odd time {i}", time_ns=[True, -(2**63), 2**63 - 1, 5][i % 4], thread=[2**64 - 1, 0, 3, 4][i % 4])
log = Logger("a.b", handlers=[RingHandler(sys.argv[2], size=64 * 256, rotate=8)], level="DEBUG")
for i in range(40):
    log.info("order %d paid %.2f by %s", i, i / 3, "bob")
    log.debug("%s %r %5d %x %%", "é", "r", i, i)
    log.warning("%(a)s", {"a": i})
    log.error("%d", "bad")
    log.info("no args %d")
"""
    outputs = []
    for pure in ("0", "1"):
        env = dict(os.environ, MMAPLOG_PURE_PYTHON=pure)
        a, b = tmp_path / f"w{pure}.mmlog", tmp_path / f"l{pure}.mmlog"
        done = subprocess.run([sys.executable, "-c", script, str(a), str(b)], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == ("True" if pure == "0" else "False")
        outputs.append([
            [(r.seq, r.level, r.logger, r.message, r.fields, r.exception, r.message.startswith("given") and (r.time_ns, r.thread))
             for r in mmaplog.read(p)] for p in (a, b)
        ])
    assert outputs[0] == outputs[1]
    assert len(outputs[0][0]) == 9 * 40 and len(outputs[0][1]) == 5 * 40


_INTS = st.one_of(st.integers(min_value=-(2**64), max_value=2**64), st.sampled_from([0, -1, 2**63 - 1, -(2**63), 2**63]))
_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-0.0, 1e300, 0.125, -2.5, 5e-324]))
_TEXTS = st.one_of(st.text(max_size=12), st.sampled_from(["", "\ud800", "é中🙂", "%s", "100%"]))
_ODD = st.one_of(st.booleans(), st.none(), st.tuples(st.integers()), st.dictionaries(st.just("k"), st.integers()))
# Each conversion mostly meets the argument type the C formatter takes, sometimes another one.
_PIECES = st.one_of(
    st.tuples(st.sampled_from(["%d", "%i", "%u"]), st.one_of(_INTS, _INTS, _FLOATS, _ODD)),
    st.tuples(st.just("%s"), st.one_of(_TEXTS, _INTS, _FLOATS, _ODD)),
    st.tuples(st.sampled_from(["%f", "%.0f", "%.2f", "%.7f", "%.20f"]), st.one_of(_FLOATS, _FLOATS, _INTS, _TEXTS)),
    st.tuples(st.sampled_from(["%r", "%5d", "%x", "%-4s", "%.3s", "%e", "%(k)s", "%.2d"]), st.one_of(_INTS, _TEXTS)),
    st.tuples(st.sampled_from(["%%", "%", "%.", "%.2"]), st.none()),
    st.tuples(st.text(max_size=8), st.none()),
)


@SETTINGS
@given(pieces=st.lists(_PIECES, max_size=8), extra=st.sampled_from([0, 0, 0, 1, -1]))
def test_c_formatting_gives_exactly_what_percent_gives(tmp_path: Path, pieces: list[tuple[str, Any]], extra: int) -> None:
    """For any format and arguments, the C level method stores what Python's ``msg % args`` (or its marker) gives."""
    fmt = "".join(text for text, _ in pieces)
    args = [arg for text, arg in pieces if text.startswith("%") and text not in ("%%", "%", "%.", "%.2")]
    if extra > 0:
        args.append(7)  # one argument too many
    elif extra < 0 and args:
        args.pop()  # one too few
    path = tmp_path / f"{uuid.uuid4().hex}.mmlog"
    log = Logger("fmt", handlers=[RingHandler(path, size=64 * 256)], level="INFO")
    try:
        log.info("registers the logger name")  # a name's first record takes the Python path
        log.info(fmt, *args)
    finally:
        log.handlers[0].close()
    _, record = list(mmaplog.read(path))
    # Lone surrogates cannot be UTF-8: both paths store them as visible backslash escapes.
    assert record.message == render_message(fmt, tuple(args)).encode("utf-8", "backslashreplace").decode()


_HANDLED_CASES = [
    ("%d|%i|%u", (-5, 0, 7)),
    ("%d %d %d %d", (2**63 - 1, -(2**63), 2**63, -(2**64))),
    ("%s and %s", ("é中🙂", -12)),
    ("order %d paid %.2f by %s", (42, 9.5, "bob")),
    ("%f %.0f %.1f", (-0.0, 0.5, -2.25)),
    ("100%% %s", ("sure",)),
    ("no conversion", (1,)),
    ("%d %d", (1,)),
    ("%s", ("x" * 300,)),  # longer than a slot once formatted
]


@pytest.mark.parametrize(("fmt", "args"), _HANDLED_CASES)
def test_c_formatting_of_the_conversions_it_handles(tmp_path: Path, fmt: str, args: tuple[Any, ...]) -> None:
    """The conversions the C formatter handles itself give exactly ``msg % args`` (or the same marker)."""
    path = tmp_path / "a.mmlog"
    log = Logger("fmt", handlers=[RingHandler(path, size=64 * 256)], level="INFO")
    log.info("registers the logger name")
    log.info(fmt, *args)
    log.handlers[0].close()
    _, record = list(mmaplog.read(path))
    assert record.message == render_message(fmt, args)


def test_float_formatting_matches_python_at_every_precision(tmp_path: Path) -> None:
    """The C %.Nf path uses the interpreter's own rounding (ties, negatives, zero, inf, nan)."""
    values = [0.125, 0.375, 2.0005, -0.0, -1.5, 1e16, 123456.789, math.inf, -math.inf, math.nan, 5e-324]
    with_args = []
    for precision in range(12):
        fmt = f"%.{precision}f|%f"
        for v in values:
            with_args.append((fmt, v))
    path = tmp_path / "f.mmlog"
    log = Logger("fmt", handlers=[RingHandler(path, size=1024 * 256)], level="INFO")
    log.info("registers the logger name")
    for fmt, v in with_args:
        log.info(fmt, v, v)
    log.handlers[0].close()
    assert [r.message for r in mmaplog.read(path)][1:] == [fmt % (v, v) for fmt, v in with_args]


def test_keyword_arguments_and_odd_messages_take_the_python_path(tmp_path: Path) -> None:
    """Fields, exc_info, a non-str message and a message longer than a slot are all stored as Python stores them."""
    path = tmp_path / "a.mmlog"
    log = Logger("app", handlers=[RingHandler(path, size=64 * 256)], level="INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        log.error("failed %s", "x", exc_info=True, order=7)
    log.info(12345)
    log.info("%s", "z" * 600)
    log.info("lone \udcff %s", "ok")
    log.handlers[0].close()
    records = list(mmaplog.read(path))
    assert records[0].message == "failed x" and records[0].fields == {"order": 7}
    assert records[0].exception is not None and "ValueError: boom" in records[0].exception
    assert [r.message for r in records[1:3]] == ["12345", "z" * 600]
    assert records[3].message.startswith("lone ") and records[3].message.endswith(" ok")


def test_c_records_equal_python_records() -> None:
    """The async path's C level method builds LogRecords with exactly the slots the constructor sets."""
    captured: list[LogRecord] = []
    emit = cwrite.record_emitter(captured.append, 20, "n", None, LogRecord)
    emit("hello %s", 1)
    emit("no args")
    for record, (msg, args) in zip(captured, [("hello %s", (1,)), ("no args", ())]):
        reference = LogRecord("n", 20, msg, args, None, record.time_ns, record.thread, None)
        assert {k: getattr(record, k) for k in LogRecord.__slots__} == {
            k: getattr(reference, k) for k in LogRecord.__slots__
        }
        assert type(record) is LogRecord


def test_a_record_class_with_other_slots_is_built_through_its_constructor() -> None:
    """A record type laid out differently is constructed by calling it, never by writing its memory."""

    class Other:
        def __init__(self, *values: Any) -> None:
            self.values = values

    captured: list[Any] = []
    emit = cwrite.record_emitter(captured.append, 30, "n", None, Other)
    emit("m %d", 5)
    assert captured[0].values[:4] == ("n", 30, "m %d", (5,))


def test_closing_releases_the_mapping_and_counts_later_writes(tmp_path: Path) -> None:
    """close() unmaps the file even though the C appender wrote into it, and later appends are dropped, counted."""
    w = RingWriter(tmp_path / "a.mmlog", size=16 * 256)
    m = w._map
    w._append("one", 20, "")
    w.close()
    assert m.mm.closed
    assert w._append("late", 20, "") == 0 and w.write("later") == 0
    assert w.dropped == 2


def test_rotation_through_the_c_path_keeps_every_record_in_order(tmp_path: Path) -> None:
    """Thousands of C appends over a rotating ring: each file's records are contiguous and the newest are kept."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256, rotate=3) as w:
        seqs = [w._append(f"r{i}", 20, "") for i in range(1000)]
    assert seqs == list(range(1, 1001))
    records = list(mmaplog.read(path))
    assert [r.seq for r in records] == list(range(1001 - len(records), 1001))
    assert [r.message for r in records] == [f"r{r.seq - 1}" for r in records]
    assert len(records) == 2 * 16 + 1000 % 16  # two full sealed files and the live one


def test_appender_refuses_a_mapping_too_small_for_its_slots(tmp_path: Path) -> None:
    """Appender.target checks the slot geometry against the mapping, so the C code cannot write outside it."""
    appender = cwrite.Appender(iter(()), print, print, print)
    buffer = mmap.mmap(-1, 4096)
    with pytest.raises(ValueError, match="do not fit"):
        appender.target(buffer, iter(()), {}, 17, 0, 256, 100)
    with pytest.raises(ValueError, match="do not fit"):
        appender.target(buffer, iter(()), {}, 1, 4096, 256, 100)
    appender.target(buffer, iter(()), {}, 16, 0, 256, 100)
    appender.release()
    buffer.close()


class _PlainRecord:
    """A BatchRecord that is not a LogRecord: read by attribute."""

    def __init__(self, message: Any, level: int, time_ns: int) -> None:
        self.message, self.level, self.logger = message, level, "plain"
        self.fields, self.exception, self.time_ns, self.thread = None, None, time_ns, 9


def _batch() -> list[Any]:
    records: list[Any] = []
    for i in range(60):
        records += [
            LogRecord("app", 20, "order %d paid %.2f by %s", (i, i / 7, "bob"), None, 1000 + i, 7),
            LogRecord("app", 30, "plain %d", (), None, 2000 + i, 8),
            LogRecord("app.new", 40, "%s", ("é" * 150,), None, -i, 2**64 - 1),  # long: two slots
            LogRecord("app", 20, "with fields", (), {"i": i}, 3000 + i, 7, "Traceback: x" if i % 2 else None),
            LogRecord("app", 25, "%(k)s", ({"k": i},), None, 4000 + i, 7),
            LogRecord("app", 300, 12345, (), None, 5000 + i, 7),  # level clamped, message not str
            _PlainRecord(f"plain record {i}", 10, 6000 + i),
        ]
    rendered = LogRecord("app", 20, "cached %d", (1,), None, 1, 1)
    assert rendered.message == "cached 1"
    return [*records, rendered]


def test_c_batches_write_what_python_batches_write(tmp_path: Path) -> None:
    """write_batch through C and through Python stores the same records (times, threads, fields, tracebacks)."""
    results = []
    for name, use_c in (("c.mmlog", True), ("py.mmlog", False)):
        with RingWriter(tmp_path / name, size=1024 * 256) as w:
            if not use_c:
                w._fast = None
            assert w.write_batch(_batch()) == 7 * 60 + 1
        results.append([
            (r.seq, r.time_ns, r.thread, r.level, r.logger, r.message, r.fields, r.exception)
            for r in mmaplog.read(tmp_path / name)
        ])
    assert results[0] == results[1]
    assert len(results[0]) == 7 * 60 + 1
