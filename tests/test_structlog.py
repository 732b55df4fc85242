"""structlog chains ending in a mmaplog ring (mmaplog.integrations.structlog)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

structlog = pytest.importorskip("structlog", reason="structlog is not installed (pip install 'mmaplog[structlog]')")

import mmaplog  # noqa: E402
from mmaplog.integrations.structlog import MmaplogLoggerFactory  # noqa: E402


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    return tmp_path / "app.mmlog"


@pytest.fixture
def configured(ring: Path) -> Iterator[MmaplogLoggerFactory]:
    """structlog set up with a filtering bound logger at DEBUG and mmaplog's factory; restored afterwards."""
    factory = MmaplogLoggerFactory(ring)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    try:
        yield factory
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        factory.close()


def records(path: Path) -> list[mmaplog.Record]:
    return list(mmaplog.read(path))


def test_key_values_become_fields_and_the_event_the_message(ring: Path, configured: MmaplogLoggerFactory) -> None:
    log = structlog.get_logger("app.db")
    log.info("paid", order_id=42, amount=9.5)
    log.bind(user="bob").warning("careful with %s", "that")
    structlog.contextvars.bind_contextvars(request_id="r-1")
    log.debug("from context")
    structlog.contextvars.clear_contextvars()
    configured.close()
    got = [(r.level_name, r.logger, r.message, r.fields) for r in records(ring)]
    assert got == [
        ("INFO", "app.db", "paid", {"order_id": 42, "amount": 9.5}),
        ("WARNING", "app.db", "careful with that", {"user": "bob"}),
        ("DEBUG", "app.db", "from context", {"request_id": "r-1"}),
    ]


def test_levels_map_and_the_filter_is_structlogs(ring: Path) -> None:
    factory = MmaplogLoggerFactory(ring)
    structlog.configure(processors=[], wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        logger_factory=factory, cache_logger_on_first_use=False)
    try:
        log = structlog.get_logger("lv")
        log.debug("filtered out")
        log.info("i")
        log.warning("w")
        log.error("e")
        log.critical("c")
        log.log(logging.ERROR, "by number")
    finally:
        structlog.reset_defaults()
        factory.close()
    assert [(r.level, r.message) for r in records(ring)] == [(20, "i"), (30, "w"), (40, "e"), (50, "c"),
                                                             (40, "by number")]


def test_exceptions_become_the_traceback(ring: Path, configured: MmaplogLoggerFactory) -> None:
    log = structlog.get_logger("app")
    try:
        raise ValueError("bad input")
    except ValueError:
        log.exception("failed", step=3)
    log.error("given", exc_info=KeyError("k"))
    configured.close()
    first, second = records(ring)
    assert first.level_name == "ERROR" and first.fields == {"step": 3}
    assert first.exception is not None and "ValueError: bad input" in first.exception
    assert "Traceback" in first.exception
    assert second.exception is not None and "KeyError" in second.exception and second.fields == {}


def test_format_exc_info_text_and_a_rendered_chain(ring: Path) -> None:
    """An ``exception`` text made by format_exc_info is the traceback; a chain ending in a renderer stores text."""
    factory = MmaplogLoggerFactory(ring)
    try:
        structlog.configure(processors=[structlog.processors.format_exc_info],
                            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                            logger_factory=factory, cache_logger_on_first_use=False)
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            structlog.get_logger("fmt").exception("divided")
        structlog.configure(processors=[structlog.processors.KeyValueRenderer(key_order=["event"])])
        structlog.get_logger("kv").info("rendered", a=1)
    finally:
        structlog.reset_defaults()
        factory.close()
    formatted, rendered = records(ring)
    assert formatted.message == "divided" and formatted.exception is not None
    assert "ZeroDivisionError" in formatted.exception and formatted.fields == {}
    assert (rendered.logger, rendered.message, rendered.fields) == ("kv", "event='rendered' a=1", {})


def test_a_handler_target_and_async(ring: Path) -> None:
    """The factory also takes any mmaplog handler, an AsyncHandler around a ring for instance."""
    handler = mmaplog.AsyncHandler(mmaplog.RingHandler(ring))
    factory = MmaplogLoggerFactory(handler)
    structlog.configure(processors=[], wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        logger_factory=factory, cache_logger_on_first_use=True)
    try:
        log = structlog.get_logger("async")
        for i in range(100):
            log.info("queued", i=i)
        factory.close()  # flushes the handler it did not open, leaves it open
        assert not handler.closed
    finally:
        structlog.reset_defaults()
        handler.close()
    assert [r.fields["i"] for r in records(ring)] == list(range(100))


def test_no_structlog_import_by_mmaplog() -> None:
    script = textwrap.dedent(
        """
        import sys
        import mmaplog
        import mmaplog.integrations.structlog
        assert "structlog" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_odd_events_never_raise(ring: Path, configured: MmaplogLoggerFactory) -> None:
    log = structlog.get_logger("odd")
    obj: Any = {"not": "a string"}
    log.info(obj, logger=123)  # a non-string event and logger key
    configured.close()
    (record,) = records(ring)
    assert record.message == "{'not': 'a string'}" and record.logger == "odd"
