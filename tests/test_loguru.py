"""A loguru sink writing into a mmaplog ring (mmaplog.loguru_sink)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

loguru = pytest.importorskip("loguru", reason="loguru is not installed (pip install 'mmaplog[loguru]')")

import mmaplog  # noqa: E402


@pytest.fixture
def logger() -> Iterator[Any]:
    """loguru's logger without its default stderr sink; every sink added in the test is removed afterwards."""
    log = loguru.logger
    log.remove()
    try:
        yield log
    finally:
        log.remove()
        log.add(sys.stderr)


def records(path: Path) -> list[mmaplog.Record]:
    return list(mmaplog.read(path))


def test_levels_messages_extras_and_names(tmp_path: Path, logger: Any) -> None:
    ring = tmp_path / "app.mmlog"
    sink = mmaplog.loguru_sink(ring)
    logger.add(sink, level="TRACE", format="{message}")
    logger.trace("t")
    logger.debug("d")
    logger.info("hello {}", "world")  # noqa: PLE1205 - loguru formats with str.format
    logger.success("s")
    logger.bind(user="bob", n=3).warning("w")
    with logger.contextualize(request="r-1"):
        logger.error("e")
    logger.critical("c")
    logger.remove()  # stops the sink: it closes the ring it opened
    got = [(r.level, r.logger, r.message, r.fields) for r in records(ring)]
    assert got == [
        (5, __name__, "t", {}),
        (10, __name__, "d", {}),
        (20, __name__, "hello world", {}),
        (25, __name__, "s", {}),
        (30, __name__, "w", {"user": "bob", "n": 3}),
        (40, __name__, "e", {"request": "r-1"}),
        (50, __name__, "c", {}),
    ]


def test_exceptions_times_and_threads(tmp_path: Path, logger: Any) -> None:
    ring = tmp_path / "app.mmlog"
    logger.add(mmaplog.loguru_sink(ring), format="{message}")
    before = dt.datetime.now(dt.timezone.utc)
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup failed")
    logger.opt(exception=ValueError("given")).error("with an exception object")
    done = threading.Event()

    def other() -> None:
        logger.info("from a thread")
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert done.wait(30)
    thread.join(timeout=30)
    logger.remove()
    first, second, third = records(ring)
    assert first.level == 40 and first.exception is not None
    assert "Traceback" in first.exception and "KeyError: 'missing'" in first.exception
    assert second.exception is not None and "ValueError: given" in second.exception
    assert first.thread == threading.get_ident() and third.thread == thread.ident
    assert before <= first.time <= dt.datetime.now(dt.timezone.utc)


def test_a_handler_target_is_flushed_not_closed(tmp_path: Path, logger: Any) -> None:
    handler = mmaplog.RingHandler(tmp_path / "shared.mmlog")
    logger.add(mmaplog.loguru_sink(handler), format="{message}")
    logger.info("one")
    logger.remove()
    assert not handler.closed
    handler.close()
    assert [r.message for r in records(tmp_path / "shared.mmlog")] == ["one"]


def test_enqueued_sink(tmp_path: Path, logger: Any) -> None:
    """``enqueue=True``: loguru's worker writes the records, with the caller's thread and time."""
    ring = tmp_path / "app.mmlog"
    logger.add(mmaplog.loguru_sink(ring), format="{message}", enqueue=True)
    for i in range(100):
        logger.bind(i=i).info("queued")
    logger.complete()
    logger.remove()
    got = records(ring)
    assert [r.fields["i"] for r in got] == list(range(100))
    assert {r.thread for r in got} == {threading.get_ident()}


def test_no_loguru_import_by_mmaplog(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        import mmaplog
        sink = mmaplog.loguru_sink({str(tmp_path / 'x.mmlog')!r})
        sink.stop()
        assert "loguru" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
