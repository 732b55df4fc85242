"""The Logger: levels, the logger tree, thread safety, fields, bound context and exceptions."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import mmaplog
from mmaplog import DEBUG, ERROR, INFO, WARNING, Logger, RingHandler
from mmaplog._record import LogRecord
from mmaplog.handlers import Handler
from mmaplog.logger import LoggerTree
from mmaplog.testing import CapturingHandler, capture_logs


class CountingArg:
    """An argument that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        return "counted"


def _read_cli_json(*paths: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from mmaplog.cli.read import main; sys.exit(main())",
         "-o", "json", *map(str, paths)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ---------------------------------------------------------------------- levels
def test_logger_level_filters_records() -> None:
    """Records below the logger's level never reach a handler; those at or above it do."""
    capture = CapturingHandler()
    log = Logger("app", handlers=[capture], level="INFO")
    log.debug("hidden")
    log.info("shown")
    log.error("also shown")
    assert [(r.level, r.message) for r in capture.records] == [(INFO, "shown"), (ERROR, "also shown")]
    log.set_level(DEBUG)
    log.debug("now shown")
    assert capture.records[-1].message == "now shown"


def test_handler_level_filters_per_handler() -> None:
    """Each handler keeps only the records at or above its own level."""
    everything, errors_only = CapturingHandler(level=DEBUG), CapturingHandler(level="ERROR")
    log = Logger("app", handlers=[everything, errors_only], level=DEBUG)
    for level in (DEBUG, INFO, WARNING, ERROR):
        log.log(level, "at %d", level)
    assert [r.level for r in everything.records] == [DEBUG, INFO, WARNING, ERROR]
    assert [r.level for r in errors_only.records] == [ERROR]


def test_disabled_level_formats_nothing() -> None:
    """No argument is turned into text when the logger's level or every handler's level rejects the record."""
    arg = CountingArg()
    log = Logger("app", handlers=[CapturingHandler(level=WARNING)], level=DEBUG)
    log.debug("value %s", arg)
    log.info("value %s", arg)
    assert arg.calls == 0
    assert not log.is_enabled_for(INFO) and log.is_enabled_for(WARNING)
    log.warning("value %s", arg)
    assert arg.calls == 1


def test_lowering_a_handler_level_after_attaching_takes_effect() -> None:
    """Setting an attached handler's level lower lets the newly enabled records through at once."""
    capture = CapturingHandler(level=ERROR)
    log = Logger("app", handlers=[capture])
    log.info("dropped")
    capture.level = "INFO"
    log.info("kept")
    assert [r.message for r in capture.records] == ["kept"]


def test_logger_without_handlers_is_silent_and_cheap() -> None:
    """A logger with no handler at all disables every level."""
    log = Logger("lonely")
    assert not log.is_enabled_for(50)
    log.critical("nobody hears this")


def test_log_accepts_level_names_and_reports_an_unknown_level_once(capfd: pytest.CaptureFixture[str]) -> None:
    """log() takes level names; an unknown level is logged at WARNING and reported once, never raised."""
    capture = CapturingHandler()
    log = Logger("app", handlers=[capture])
    log.log("error", "by name")
    log.log("LOUD", "first")
    log.log("LOUD", "second")
    assert [(r.level, r.message) for r in capture.records] == [
        (ERROR, "by name"), (WARNING, "first"), (WARNING, "second"),
    ]
    assert capfd.readouterr().err.count("unknown level") == 1


def test_bad_format_arguments_are_shown_not_raised() -> None:
    """A message whose arguments do not fit keeps everything visible and does not raise."""
    capture = CapturingHandler()
    log = Logger("app", handlers=[capture])
    log.info("took %d ms", "many")
    assert capture.records[0].message.startswith("took %d ms [mmaplog: bad arguments")
    assert "many" in capture.records[0].message


# ---------------------------------------------------------------------- the tree
def test_children_inherit_level_and_handlers_through_dotted_names() -> None:
    """A dotted child without settings of its own takes its nearest ancestor's level and handlers."""
    tree = LoggerTree()
    root_capture = CapturingHandler()
    tree.root.set_handlers([root_capture])
    tree.root.set_level(WARNING)
    leaf = tree.get("app.db.pool")
    assert leaf.parent is tree.get("app.db") and tree.get("app.db").parent is tree.get("app")
    assert tree.get("app").parent is tree.root
    leaf.info("hidden by the root's level")
    tree.get("app").set_level("DEBUG")
    leaf.debug("shown by app's level")
    assert [r.logger for r in root_capture.records] == ["app.db.pool"]
    assert leaf.level == DEBUG and tree.get("other").level == WARNING

    own = CapturingHandler()
    tree.get("app.db").add_handler(own)
    leaf.info("to both")
    assert own.records[-1].message == root_capture.records[-1].message == "to both"
    tree.get("app.db").propagate = False
    leaf.info("only to app.db's handler")
    assert own.records[-1].message == "only to app.db's handler"
    assert root_capture.records[-1].message == "to both"
    tree.get("app").set_level(None)
    assert leaf.level == WARNING


def test_get_logger_returns_the_same_logger_from_every_thread() -> None:
    """Eight threads asking for the same names at the same moment all get the same objects."""
    names = [f"identity.test{i}.leaf" for i in range(5)]
    barrier = threading.Barrier(8)
    results: list[list[Logger]] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(timeout=30)
        got = [mmaplog.get_logger(name) for name in names]
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8
    for got in results:
        assert all(a is b for a, b in zip(got, results[0], strict=True))
    assert mmaplog.get_logger("identity.test0") is results[0][0].parent
    assert mmaplog.get_logger() is mmaplog.get_logger("root") is mmaplog.get_logger("")


# ---------------------------------------------------------------------- concurrency
def test_adding_and_removing_handlers_while_eight_threads_log() -> None:
    """Handlers come and go while 8 threads log: nothing raises and the handler that stayed gets every record.

    Each worker signals a semaphore every ``step`` records and the main thread makes one change per
    signal: the changes are spread over the whole run and the main thread waits instead of spinning
    (a spinning loop starved the workers for minutes under Python 3.10).
    """
    per_thread, step = 3000, 100
    stayed = CapturingHandler()
    log = Logger("busy", handlers=[stayed])
    errors: list[BaseException] = []
    start = threading.Barrier(9)
    progress = threading.Semaphore(0)

    def worker(index: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(per_thread):
                log.info("record %d", i, worker=index)
                if i % step == step - 1:
                    progress.release()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
            for _ in range(per_thread // step):
                progress.release()  # do not leave the main thread waiting for signals that will not come

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    start.wait(timeout=30)
    churn = [CapturingHandler() for _ in range(4)]
    changes = 0
    for _ in range(8 * (per_thread // step)):
        assert progress.acquire(timeout=60), "the workers stopped making progress"
        handler = churn[changes % 4]
        log.add_handler(handler)
        log.remove_handler(handler)
        if changes % 7 == 0:
            log.set_level(DEBUG if changes % 2 else INFO)
        changes += 1
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert changes >= 50
    assert log.handlers == (stayed,)
    assert len(stayed.records) == 8 * per_thread
    seen = {(r.fields["worker"], r.message) for r in stayed.records}
    assert len(seen) == 8 * per_thread


# ---------------------------------------------------------------------- fields, context, exceptions
def _log_sample(log: Logger) -> int:
    log.info("order %d paid %.2f by %s", 42, 9.5, "bob")
    log.info("order paid", order_id=42, amount=9.5, tags=["a", "b"])
    request = log.bind(request_id="r-1", user="ann")
    request.warning("slow request", took_ms=1200)
    request.bind(step=2).unbind("user").error("step failed", user="override")
    try:
        {}["missing"]
    except KeyError:
        request.exception("lookup failed")
    log.error("explicit", exc_info=ValueError("given as an instance"))
    return threading.get_ident()


def _check_sample(records: list[Any], get: Any) -> None:
    assert [get(r, "message") for r in records] == [
        "order 42 paid 9.50 by bob", "order paid", "slow request", "step failed", "lookup failed", "explicit",
    ]
    assert get(records[0], "fields") in ({}, None)
    assert get(records[1], "fields") == {"order_id": 42, "amount": 9.5, "tags": ["a", "b"]}
    assert get(records[2], "fields") == {"request_id": "r-1", "user": "ann", "took_ms": 1200}
    assert get(records[3], "fields") == {"request_id": "r-1", "step": 2, "user": "override"}
    assert get(records[4], "fields") == {"request_id": "r-1", "user": "ann"}
    lookup = get(records[4], "exception")
    assert lookup.startswith("Traceback") and "KeyError: 'missing'" in lookup and "_log_sample" in lookup
    assert "ValueError: given as an instance" in get(records[5], "exception")
    assert get(records[0], "exception") is None


def test_fields_context_and_exceptions_round_trip_through_read(tmp_path: Path) -> None:
    """Fields, bound context and tracebacks written by a logger come back from mmaplog.read."""
    ring = RingHandler(tmp_path / "app.mmlog", size="1 MiB")
    log = Logger("app.orders", handlers=[ring])
    thread = _log_sample(log)
    ring.close()
    records = list(mmaplog.read(tmp_path / "app.mmlog"))
    _check_sample(records, getattr)
    assert {r.logger for r in records} == {"app.orders"}
    assert {r.thread for r in records} == {thread}
    assert [r.level_name for r in records] == ["INFO", "INFO", "WARNING", "ERROR", "ERROR", "ERROR"]


def test_fields_context_and_exceptions_round_trip_through_the_cli_json(tmp_path: Path) -> None:
    """The same records come out of ``mmaplog-read -o json`` with a ``fields`` object and the traceback."""
    ring = RingHandler(tmp_path / "app.mmlog", size="1 MiB")
    log = Logger("app.orders", handlers=[ring, CapturingHandler()])  # two handlers: the general path
    _log_sample(log)
    ring.close()
    rows = _read_cli_json(tmp_path / "app.mmlog")
    _check_sample(rows, lambda r, key: r.get(key))
    assert {r["logger"] for r in rows} == {"app.orders"}


def test_exc_info_accepts_true_an_exception_and_a_tuple() -> None:
    """exc_info=True, an exception object and a sys.exc_info() tuple all store the traceback."""
    capture = CapturingHandler()
    log = Logger("app", handlers=[capture])
    try:
        raise RuntimeError("inner")
    except RuntimeError as exc:
        log.error("true", exc_info=True)
        log.error("object", exc_info=exc)
        log.error("tuple", exc_info=sys.exc_info())
    log.error("nothing being handled", exc_info=True)
    assert all("RuntimeError: inner" in (r.exception or "") for r in capture.records[:3])
    assert capture.records[3].exception is None


def test_bound_logger_follows_its_logger_configuration() -> None:
    """A bound logger uses its logger's current level and handlers."""
    capture = CapturingHandler()
    log = Logger("app", handlers=[capture], level=WARNING)
    bound = log.bind(job="nightly")
    bound.info("hidden")
    log.set_level(INFO)
    bound.info("shown")
    assert [(r.message, r.fields) for r in capture.records] == [("shown", {"job": "nightly"})]
    assert dict(bound.context) == {"job": "nightly"} and bound.name == "app"


def test_capture_logs_collects_and_restores() -> None:
    """capture_logs() collects a logger's records for the block and restores its settings afterwards."""
    tree_logger = mmaplog.get_logger("capture.demo")
    before = (tree_logger.own_level, tree_logger.own_handlers, tree_logger.propagate)
    with capture_logs("capture.demo", level=DEBUG) as records:
        tree_logger.debug("seen %s", "here", key=1)
    assert [(r.level_name, r.message, r.fields) for r in records] == [("DEBUG", "seen here", {"key": 1})]
    assert (tree_logger.own_level, tree_logger.own_handlers, tree_logger.propagate) == before


def test_handlers_receive_the_same_record_once() -> None:
    """A handler attached both to a logger and its parent gets each record once."""
    seen: list[LogRecord] = []

    class Recorder(Handler):
        def emit(self, record: LogRecord) -> None:
            seen.append(record)

    shared = Recorder()
    parent = Logger("p", handlers=[shared])
    child = Logger("p.c", handlers=[shared], parent=parent)
    child.info("once")
    assert len(seen) == 1 and seen[0].time_ns > 0 and seen[0].thread == threading.get_ident()


def test_a_subclass_overriding_a_level_method_stays_in_charge() -> None:
    """A Logger subclass that overrides info() is not shadowed by the per-level fast binding."""
    capture = CapturingHandler()

    class Shouting(Logger):
        def info(self, msg: Any, /, *args: Any, exc_info: Any = None, **fields: Any) -> None:
            self.log(INFO, "loudly: " + str(msg), *args, **fields)

    log = Shouting("app", handlers=[capture])
    log.info("quiet %s", "please")
    log.warning("unchanged")
    assert [r.message for r in capture.records] == ["loudly: quiet please", "unchanged"]


def test_a_logger_name_that_is_not_a_string_is_a_clear_config_error() -> None:
    """get_logger(123) raises LoggerNameError: a ConfigError saying what is wrong, and a TypeError like the stdlib's."""
    from mmaplog.logger import LoggerNameError, LoggerTree

    tree = LoggerTree()
    for name in (123, b"app", ["app"], 0):
        with pytest.raises(mmaplog.ConfigError, match=r"logger name must be a string .* got \w+ "):
            mmaplog.get_logger(name)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            tree.get(name)  # type: ignore[arg-type]
    with pytest.raises(LoggerNameError):
        mmaplog.Logger(123)  # type: ignore[arg-type]
    assert mmaplog.get_logger(None) is mmaplog.get_logger("") is mmaplog.get_logger("root")
