"""The caller's location (file, line, function) on mmaplog's own Logger with ``capture_source``.

Each expected line number is read from ``inspect`` in the test itself, never
written down.  The same tests run on the C path (``_cstdlib.SourceEmitter``
for a logger writing into one ring) and on the pure-Python path
(``MMAPLOG_PURE_PYTHON=1``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmaplog
from mmaplog import logger as logger_module
from mmaplog.handlers._base import Handler
from mmaplog.logger import LoggerTree
from mmaplog.reader import read_array

SOURCE_KEYS = ("pathname", "lineno", "funcName")


def next_line() -> int:
    """The line after the caller's current one: where the logging call under test sits."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno + 1


class Collect(Handler):
    """Keeps every record (a handler that is not a ring: the Python level methods serve)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[Any] = []

    def emit(self, record: Any) -> None:
        self.records.append(record)


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[mmaplog.RingHandler]:
    handler = mmaplog.RingHandler(tmp_path / "src.mmlog", size="256 KiB")
    yield handler
    handler.close()


def fields_of(path: Path) -> list[dict[str, Any]]:
    return [dict(f or {}) for f in read_array(path)["fields"]]


def where(line: int, function: str) -> dict[str, Any]:
    return {"pathname": __file__, "lineno": line, "funcName": function}


def test_every_way_of_logging_records_the_caller_s_location(ring: mmaplog.RingHandler) -> None:
    log = mmaplog.Logger("app", [ring], "DEBUG", capture_source=True)
    expected = []

    def site() -> None:
        expected.append(next_line())
        log.info("plain")
        expected.append(next_line())
        log.warning("order %d paid %.2f by %s", 42, 9.5, "bob")
        expected.append(next_line())
        log.debug("with a field", order=7)
        expected.append(next_line())
        log.log(30, "through log")
        expected.append(next_line())
        log.log("ERROR", "a level by name")
        try:
            raise ValueError("boom")
        except ValueError:
            expected.append(next_line())
            log.exception("failed")
        expected.append(next_line())
        log.bind(request=1).info("bound")
        expected.append(next_line())
        log.bind(request=1).log(20, "bound log")
        expected.append(next_line())
        log.info({"not": "a string"})
        expected.append(next_line())
        log.info("%(a)s from a mapping", {"a": 1})
        expected.append(next_line())
        log.info("bad %d", "arguments")

    site()
    rows = fields_of(ring.path)
    assert len(rows) == len(expected)
    for row, line in zip(rows, expected):
        assert {k: row[k] for k in SOURCE_KEYS} == where(line, "site")
    assert rows[2]["order"] == 7 and rows[6]["request"] == 1 and rows[7]["request"] == 1
    messages = [str(m) for m in read_array(ring.path)["message"]]
    assert messages[1] == "order 42 paid 9.50 by bob"
    assert messages[9] == "1 from a mapping"


def test_the_c_level_method_serves_a_ring_where_built(ring: mmaplog.RingHandler) -> None:
    log = mmaplog.Logger("app", [ring], "INFO", capture_source=True)
    if logger_module._cstdlib is not None:
        assert type(log.info).__name__ == "SourceEmitter"
    else:
        assert callable(log.info) and type(log.info).__name__ == "function"
    assert log.debug is logger_module._disabled


def test_without_capture_source_records_carry_no_location(ring: mmaplog.RingHandler) -> None:
    log = mmaplog.Logger("app", [ring], "INFO")
    log.info("plain")
    log.info("field", k=1)
    assert read_array(ring.path)["fields"][0] is None
    assert fields_of(ring.path)[1] == {"k": 1}


def test_the_location_overrides_call_fields_of_the_same_names(ring: mmaplog.RingHandler) -> None:
    log = mmaplog.Logger("app", [ring], "INFO", capture_source=True)
    line = next_line()
    log.info("clash", lineno=-1, funcName="mine", other="kept")
    assert fields_of(ring.path)[0] == {"other": "kept", **where(line, "test_the_location_overrides_call_fields_of_the_same_names")}


def test_any_handler_gets_the_location_and_children_inherit_it() -> None:
    tree = LoggerTree()
    collect, second = Collect(), Collect()
    tree.root.set_handlers([collect])
    tree.root.set_level("INFO")
    tree.root.capture_source = True
    child = tree.get("app.db")
    assert child.capture_source and child.own_capture_source is None
    line = next_line()
    child.info("from the child")
    assert collect.records[-1].fields == where(line, "test_any_handler_gets_the_location_and_children_inherit_it")

    child.capture_source = False
    child.info("not located")
    assert collect.records[-1].fields is None
    child.capture_source = None
    assert child.capture_source

    child.set_handlers([second])  # two handlers: one record shared by both
    line = next_line()
    child.error("twice", k=2)
    assert collect.records[-1] is second.records[-1]
    assert second.records[-1].fields == {"k": 2, **where(line, "test_any_handler_gets_the_location_and_children_inherit_it")}

    tree.root.capture_source = False
    child.info("off")
    assert second.records[-1].fields is None


def test_the_configuration_keys(ring: mmaplog.RingHandler) -> None:
    tree = LoggerTree()
    collect = Collect()
    mmaplog.configure(tree=tree, handlers=[collect], capture_source=True,
                      loggers={"quiet": {"capture_source": False}})
    assert tree.root.capture_source and tree.get("app").capture_source
    assert not tree.get("quiet").capture_source and not tree.get("quiet.sub").capture_source
    mmaplog.configure(tree=tree, handlers=[collect], loggers={"loud": {"capture_source": True}})
    assert not tree.root.capture_source and not tree.get("app").capture_source
    assert tree.get("quiet").own_capture_source is None
    assert tree.get("loud.sub").capture_source
    with pytest.raises(mmaplog.ConfigError, match="capture_source"):
        mmaplog.configure(tree=tree, handlers=[collect], capture_source="yes")
    with pytest.raises(mmaplog.ConfigError, match=r"loggers\.x\.capture_source"):
        mmaplog.configure(tree=tree, handlers=[collect], loggers={"x": {"capture_source": 1}})


# ---------------------------------------------------------------------------------------------- reading


def test_read_array_has_the_location_as_columns(ring: mmaplog.RingHandler) -> None:
    log = mmaplog.Logger("app", [ring], "DEBUG", capture_source=True)
    plain = mmaplog.Logger("plain", [ring], "DEBUG")
    expected = []

    def site() -> None:
        expected.append(next_line())
        log.info("located %d", 1)
        plain.info("no fields")
        plain.info("other fields", k=1)
        plain.info("wrong types", pathname=7, lineno="x", funcName=None)
        expected.append(next_line())
        log.info("a long record " + "y" * 3000)  # several slots: joined in Python on both paths

    site()
    rows = read_array(ring.path)
    assert rows.dtype.names is not None and {"pathname", "lineno", "funcName"} <= set(rows.dtype.names)
    got = list(zip(rows["pathname"].tolist(), rows["lineno"].tolist(), rows["funcName"].tolist()))
    assert got == [(__file__, expected[0], "site"), (None, 0, None), (None, 0, None), (None, 0, None),
                   (__file__, expected[1], "site")]
    assert dict(rows["fields"][3]) == {"pathname": 7, "lineno": "x", "funcName": None}  # still plain fields


def test_stdlib_records_with_the_location_fill_the_columns(tmp_path: Path) -> None:
    import logging

    handler = mmaplog.LoggingHandler(tmp_path / "std.mmlog", capture_source=True)
    logger = logging.getLogger("test_source_location.std")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        line = next_line()
        logger.warning("from the stdlib")
    finally:
        logger.removeHandler(handler)
        handler.close()
    rows = read_array(tmp_path / "std.mmlog")
    assert (rows["pathname"][0], rows["lineno"][0], rows["funcName"][0]) == (
        __file__, line, "test_stdlib_records_with_the_location_fill_the_columns")


def run_read(*args: object) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    done = subprocess.run([sys.executable, "-m", "mmaplog.cli.read", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_mmaplog_read_shows_the_location(ring: mmaplog.RingHandler) -> None:
    import json
    import os

    log = mmaplog.Logger("app", [ring], "DEBUG", capture_source=True)
    plain = mmaplog.Logger("plain", [ring], "DEBUG")
    line = next_line()
    log.info("paid", order=7)
    plain.info("unlocated", k=1)
    ring.flush()
    text = run_read("-o", "text", ring.path).splitlines()
    assert text[0].endswith(f" {os.path.basename(__file__)}:{line} paid order=7"), text[0]
    assert "pathname=" not in text[0] and "funcName=" not in text[0]
    assert text[1].endswith(" unlocated k=1"), text[1]
    first, second = (json.loads(x) for x in run_read("-o", "json", ring.path).splitlines())
    assert first["fields"] == {"order": 7, **where(line, "test_mmaplog_read_shows_the_location")}
    assert second["fields"] == {"k": 1}


# ---------------------------------------------------------------------------------------------- pre-encoded entry

needs_c = pytest.mark.skipif(logger_module._cstdlib is None, reason="the C accelerator is not in use here")


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(-(1 << 31), (1 << 31) - 1), st.text())
def test_the_location_json_is_the_writer_s_encoding_byte_for_byte(path: str, line: int, func: str) -> None:
    from mmaplog.writer import _encode_fields

    made = logger_module._cstdlib.location_json(path, line, func)
    expected = _encode_fields({"pathname": path, "lineno": line, "funcName": func})
    if made is None:  # left to the writer: text that is not plain UTF-8 (a lone surrogate) or very long
        assert any("\ud800" <= c <= "\udfff" for c in path + func) or len(expected) > 2000
    else:
        assert made == expected


@needs_c
def test_a_handler_entry_for_pre_encoded_fields_is_used_where_there_is_one(ring: mmaplog.RingHandler) -> None:
    import json

    calls: list[tuple[str, int, str, bytes]] = []

    def append_fields(message: str, level: int, logger: str, fields_json: bytes) -> int:
        calls.append((message, level, logger, fields_json))
        return int(ring._write(message, level=level, logger=logger, fields=json.loads(fields_json)))

    ring._append_fields = append_fields  # type: ignore[attr-defined]
    log = mmaplog.Logger("app", [ring], "INFO", capture_source=True)
    line = next_line()
    log.info("through the entry %d", 1)
    log.info("with call fields", k=1)  # keyword fields: the Python path, the writer's own encoding
    here = "test_a_handler_entry_for_pre_encoded_fields_is_used_where_there_is_one"
    assert [c[:3] for c in calls] == [("through the entry 1", 20, "app")]
    assert json.loads(calls[0][3]) == where(line, here)
    rows = fields_of(ring.path)
    assert rows[0] == where(line, here) and rows[1]["k"] == 1


@needs_c
def test_an_entry_that_fails_leaves_the_record_to_the_python_path(ring: mmaplog.RingHandler) -> None:
    def append_fields(message: str, level: int, logger: str, fields_json: bytes) -> int:
        raise RuntimeError("broken entry")

    ring._append_fields = append_fields  # type: ignore[attr-defined]
    log = mmaplog.Logger("app", [ring], "INFO", capture_source=True)
    line = next_line()
    log.info("still written")
    assert fields_of(ring.path) == [where(line, "test_an_entry_that_fails_leaves_the_record_to_the_python_path")]


def test_the_ring_handler_s_own_entry_writes_the_fields_as_given(ring: mmaplog.RingHandler) -> None:
    """``RingHandler._append_fields`` is the writer's entry while the ring is open, and the JSON is stored as given."""
    assert ring.writer is not None and ring._append_fields == ring.writer._append_fields
    raw = b'{"pathname":"/x/y.py","lineno":7,"funcName":"f"}'
    seq = ring._append_fields("given", 300, "app.pre", raw)  # a level past 255 is clamped, as write() does
    assert seq > 0
    (record,) = list(mmaplog.read(ring.path))
    assert (record.message, record.logger, record.level, record.fields) == (
        "given", "app.pre", 255, {"pathname": "/x/y.py", "lineno": 7, "funcName": "f"})
    ring.close()
    assert ring._append_fields("after close", 20, "app.pre", raw) == 0  # counted, never raised
