"""The standard-library bridge: logging.Handler records into a ring, set up by dictConfig alone."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mmaplog
from mmaplog import LoggingHandler, RingWriter

_APP_MODULE = textwrap.dedent(
    """
    import logging
    import threading

    log = logging.getLogger(__name__)


    def work():
        log.debug("not at INFO")
        log.info("started %s with %d workers", "billing", 3)
        log.warning("disk at %d%%", 91, extra={"disk": "sda", "host_id": 7})
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("division failed for %r", "order-42")
        worker = threading.Thread(target=log.error, args=("from a thread",), name="worker-1")
        worker.start()
        worker.join()
        return threading.get_ident(), worker.ident
    """
)

_MAIN = textwrap.dedent(
    """
    import json, logging.config, os, sys
    logging.config.dictConfig({
        "version": 1,
        "handlers": {
            "ring": {"class": "mmaplog.LoggingHandler", "path": sys.argv[1], "size": "256 KiB", "level": "INFO"},
        },
        "root": {"level": "DEBUG", "handlers": ["ring"]},
    })
    import billing
    main_thread, worker_thread = billing.work()
    print(json.dumps({"pid": os.getpid(), "main": main_thread, "worker": worker_thread}))
    """
)


def test_dictconfig_switches_an_existing_program_to_a_ring(tmp_path: Path) -> None:
    """A small real program using logging.getLogger(__name__) writes complete records through dictConfig."""
    (tmp_path / "billing.py").write_text(_APP_MODULE)
    (tmp_path / "main.py").write_text(_MAIN)
    ring = tmp_path / "app-{pid}.mmlog"
    proc = subprocess.run([sys.executable, "main.py", str(ring)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    path = tmp_path / f"app-{info['pid']}.mmlog"
    records = list(mmaplog.read(path))
    assert [(r.logger, r.level_name, r.message) for r in records] == [
        ("billing", "INFO", "started billing with 3 workers"),
        ("billing", "WARNING", "disk at 91%"),
        ("billing", "ERROR", "division failed for 'order-42'"),
        ("billing", "ERROR", "from a thread"),
    ]
    assert records[1].fields == {"disk": "sda", "host_id": 7}
    assert records[0].fields == {} and records[0].exception is None
    assert "ZeroDivisionError: division by zero" in (records[2].exception or "")
    assert "billing.py" in (records[2].exception or "")
    assert [r.thread for r in records] == [info["main"]] * 3 + [info["worker"]]
    assert {r.pid for r in records} == {info["pid"]}
    assert records == sorted(records, key=lambda r: r.time_ns)

    rows = [json.loads(line) for line in subprocess.run(
        [sys.executable, "-c", "import sys; from mmaplog.cli.read import main; sys.exit(main())", "-o", "json",
         str(path)], capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()]
    assert [row["message"] for row in rows] == [r.message for r in records]
    assert rows[1]["fields"] == {"disk": "sda", "host_id": 7}


def test_the_handler_in_process_with_a_shared_writer(tmp_path: Path) -> None:
    """A LoggingHandler given a writer writes stdlib records into it; stack_info is kept with the record."""
    writer = RingWriter(tmp_path / "a.mmlog", "64 KiB")
    handler = LoggingHandler(writer=writer)
    logger = logging.getLogger("bridge.inprocess")
    logger.addHandler(handler)
    logger.setLevel(1)
    logger.propagate = False
    try:
        logger.debug("x=%s", {"a": 1}, stack_info=True)
        logger.log(5, "custom level")
    finally:
        logger.removeHandler(handler)
        handler.close()
    writer.close()
    records = list(mmaplog.read(tmp_path / "a.mmlog"))
    assert [(r.level, r.message) for r in records] == [(10, "x={'a': 1}"), (5, "custom level")]
    assert "Stack (most recent call last)" in (records[0].exception or "")


def test_the_handler_needs_exactly_one_target() -> None:
    """Neither or both of path and writer is a clear error."""
    with pytest.raises(ValueError, match="exactly one of path= or writer="):
        LoggingHandler()


def test_records_that_cannot_be_formatted_go_to_handle_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A stdlib record with bad arguments is reported the stdlib way and does not raise."""
    handler = LoggingHandler(tmp_path / "a.mmlog", size="64 KiB")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    handler.handle(record)
    handler.close()
    assert "--- Logging error ---" in capfd.readouterr().err
    assert os.path.exists(tmp_path / "a.mmlog")
