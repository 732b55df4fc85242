"""Accelerated standard-library loggers write exactly the records the standard path writes.

The differential tests keep two mirrored logger trees ("wA..." and "wB...")
under the same configuration operations.  World A always calls the logger
class's own methods (the standard path, whatever the acceleration does);
world B calls the instance's methods, which are the accelerated ones while
:func:`mmaplog.stdlib.accelerate` is on.  Each world has its own ring files
and foreign handlers; at the end the records are compared field by field
(time only for order) and so is everything written on stderr
(``handleError``, ``logging.lastResort``).  Other tests run whole programs in
subprocesses with and without the switch, through ``dictConfig``,
``fileConfig`` and ``basicConfig``, and across ``fork``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import logging.config
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import mmaplog.stdlib as S
from mmaplog import LoggingHandler, _native
from mmaplog.reader import read

NATIVE = _native.load("_cstdlib") is not None and _native.load("_cwrite") is not None
needs_native = pytest.mark.skipif(not NATIVE, reason="the fast path needs the C accelerators")

NAMES = ("top", "top.a", "top.a.b", "top.a.b.c", "top.x")
LEVELS = (0, 5, 10, 15, 20, 25, 30, 40, 50)
WORLDS = itertools.count()
METHODS = ("debug", "info", "warning", "error", "critical", "fatal", "exception", "log")


@contextlib.contextmanager
def saved_logging() -> Iterator[None]:
    """Restore the process-wide logging state a test changes (root, disable, factory, logThreads, switch)."""
    root = logging.getLogger()
    handlers, level, filters = list(root.handlers), root.level, list(root.filters)
    factory, threads = logging.getLogRecordFactory(), logging.logThreads
    try:
        yield
    finally:
        S.deaccelerate()
        logging.disable(logging.NOTSET)
        logging.setLogRecordFactory(factory)
        logging.logThreads = threads
        root.handlers[:] = handlers
        root.filters[:] = filters
        root.setLevel(level)


def path_of(handler: LoggingHandler) -> Path:
    path = handler.ring.path
    assert path is not None
    return path


class Collect(logging.Handler):
    """A foreign (non-mmaplog) handler: remembers what it received."""

    def __init__(self, level: int = 0) -> None:
        super().__init__(level)
        self.seen: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name.split(".", 1)[-1], record.levelno, record.getMessage()))


class Tagging(logging.Filter):
    """A filter that drops records whose message mentions "drop" and tags the others (an ``extra`` field)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.tag = "filtered"
        return "drop" not in str(record.msg)


def tagging_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = logging.LogRecord(*args, **kwargs)
    record.factory = "custom"
    return record


class World:
    """One mirrored logger tree with its ring handlers and foreign handlers."""

    def __init__(self, prefix: str, directory: Path, standard: bool) -> None:
        self.prefix = prefix
        self.standard = standard
        # The second ring stores the caller's location: the C code reads the frame, the standard path findCaller.
        self.rings = [LoggingHandler(directory / f"{prefix}-{i}.mmlog", size="256 KiB", capture_source=i == 1)
                      for i in range(2)]
        self.foreign = [Collect() for _ in range(2)]
        self.filters = [Tagging() for _ in range(2)]
        top = self.logger("top")
        top.propagate = False  # keep the root (and the test runner's handlers) out
        top.setLevel(logging.DEBUG)
        top.addHandler(self.rings[0])  # start from the configuration the fast path serves

    def logger(self, name: str) -> logging.Logger:
        return logging.getLogger(f"{self.prefix}.{name}")

    def method(self, name: str, method: str) -> Callable[..., None]:
        logger = self.logger(name)
        if self.standard:
            return getattr(type(logger), method).__get__(logger)  # type: ignore[no-any-return]
        return getattr(logger, method)  # type: ignore[no-any-return]

    def records(self) -> list[tuple[Any, ...]]:
        out = []
        for i, handler in enumerate(self.rings):
            for r in read(path_of(handler)):
                out.append((i, r.logger.split(".", 1)[-1] if r.logger != self.prefix else "", r.level, r.message,
                            r.thread, r.fields, r.exception, r.time_ns))
        return out

    def close(self) -> None:
        for handler in self.rings:
            handler.close()


def invoke(method: Callable[..., None], args: tuple[Any, ...], kwargs: dict[str, Any], raising: bool) -> None:
    """Both worlds' calls come from these lines, so stacks, tracebacks and call-site reports are identical."""
    if raising:
        try:
            raise ValueError("boom")
        except ValueError:
            method(*args, **kwargs)
    else:
        method(*args, **kwargs)


MESSAGES: list[tuple[Any, tuple[Any, ...]]] = [
    ("order %d paid %.2f by %s", (42, 9.5, "bob")),
    ("plain text", ()),
    ("100% done", ()),
    ("%(who)s paid", ({"who": "ann"},)),
    ("%s", ({"who": "ann"},)),
    ("%s and %r", ("a", [1, 2])),
    ("bad %d", ("x",)),
    ("too few %s %s", ("x",)),
    ("unused", ("x",)),
    (42, ()),
    ("%d%%", (7,)),
    ("drop me %s", ("now",)),
    ("é ü %s", ("ß",)),
    ("wide %s", ("y" * 3000,)),
]
KWARGS: list[dict[str, Any]] = [
    {}, {}, {}, {"extra": {"user": "ann", "n": 3}}, {"exc_info": True}, {"stack_info": True}, {"stacklevel": 2},
    {"exc_info": ValueError("given")}, {"extra": {"message": "clash"}},
]


class Differential(RuleBasedStateMachine):
    """Random configuration changes and calls, applied to both worlds; the outcomes must be equal."""

    def __init__(self) -> None:
        super().__init__()
        self._saved = saved_logging()
        self._saved.__enter__()
        self._dir = tempfile.TemporaryDirectory()
        self.accelerated = S.accelerate()
        base = f"d{os.getpid()}x{next(WORLDS)}"
        self.worlds = [World(f"{base}A", Path(self._dir.name), True), World(f"{base}B", Path(self._dir.name), False)]
        self.fast_calls = 0

    def each(self, action: Callable[[World], None]) -> None:
        for world in self.worlds:
            action(world)

    @rule(name=st.sampled_from(NAMES), level=st.sampled_from(LEVELS))
    def set_level(self, name: str, level: int) -> None:
        self.each(lambda w: w.logger(name).setLevel(level))

    @rule(name=st.sampled_from(NAMES[1:]), value=st.booleans())
    def set_propagate(self, name: str, value: bool) -> None:
        self.each(lambda w: setattr(w.logger(name), "propagate", value))

    @rule(name=st.sampled_from(NAMES), value=st.booleans())
    def set_disabled(self, name: str, value: bool) -> None:
        self.each(lambda w: setattr(w.logger(name), "disabled", value))

    @rule(level=st.sampled_from((0, 10, 20, 30, 50)))
    def disable(self, level: int) -> None:
        logging.disable(level)

    @rule(name=st.sampled_from(NAMES), which=st.integers(0, 1), foreign=st.booleans(), add=st.booleans(),
          direct=st.booleans())
    def change_handlers(self, name: str, which: int, foreign: bool, add: bool, direct: bool) -> None:
        def act(w: World) -> None:
            logger = w.logger(name)
            handler = (w.foreign if foreign else w.rings)[which]
            if add and handler not in logger.handlers:
                logger.handlers.append(handler) if direct else logger.addHandler(handler)
            elif not add:
                if direct and handler in logger.handlers:
                    logger.handlers = [h for h in logger.handlers if h is not handler]
                else:
                    logger.removeHandler(handler)
        self.each(act)

    @rule(which=st.integers(0, 1), foreign=st.booleans(), level=st.sampled_from(LEVELS))
    def handler_level(self, which: int, foreign: bool, level: int) -> None:
        self.each(lambda w: (w.foreign if foreign else w.rings)[which].setLevel(level))

    @rule(name=st.sampled_from(NAMES), which=st.integers(0, 1), on_handler=st.booleans(), add=st.booleans())
    def change_filters(self, name: str, which: int, on_handler: bool, add: bool) -> None:
        def act(w: World) -> None:
            target: logging.Filterer = w.rings[which] if on_handler else w.logger(name)
            (target.addFilter if add else target.removeFilter)(w.filters[which])
        self.each(act)

    @rule(custom=st.booleans())
    def record_factory(self, custom: bool) -> None:
        logging.setLogRecordFactory(tagging_factory if custom else logging.LogRecord)

    @rule(value=st.booleans())
    def log_threads(self, value: bool) -> None:
        logging.logThreads = value

    @rule(on=st.booleans())
    def switch(self, on: bool) -> None:
        if on:
            self.accelerated = S.accelerate()
        else:
            S.deaccelerate()
            self.accelerated = False

    @rule(name=st.sampled_from(NAMES), method=st.sampled_from(METHODS), message=st.sampled_from(MESSAGES),
          kwargs=st.sampled_from(KWARGS), level=st.sampled_from((5, 10, 20, 35, 50, 300)), threaded=st.booleans())
    def call(self, name: str, method: str, message: tuple[Any, tuple[Any, ...]], kwargs: dict[str, Any],
             level: int, threaded: bool) -> None:
        msg, args = message
        call_args = (level, msg, *args) if method == "log" else (msg, *args)
        raising = method == "exception" or kwargs.get("exc_info") is True
        outputs = []

        def run() -> None:
            for world in self.worlds:
                bound = world.method(name, method)
                err = io.StringIO()
                try:
                    with contextlib.redirect_stderr(err):
                        invoke(bound, call_args, kwargs, raising)
                except Exception as exc:  # noqa: BLE001 - the standard library raises for some extra keys
                    err.write(f"raised {exc!r}")
                outputs.append(err.getvalue().replace(world.prefix, "W"))
                if getattr(bound, "plan", "") in ("ring", "source") and not kwargs and logging.logThreads:
                    self.fast_calls += 1

        if threaded:
            worker = threading.Thread(target=run)
            worker.start()
            worker.join()
        else:
            run()
        assert outputs[0] == outputs[1]

    @rule(name=st.sampled_from(NAMES), method=st.sampled_from(METHODS[:6]), message=st.sampled_from(MESSAGES[:6]))
    def call_plain(self, name: str, method: str, message: tuple[Any, tuple[Any, ...]]) -> None:
        """The calls the fast path serves, more often than the general rule draws them."""
        self.call(name, method, message, {}, logging.INFO, False)

    @invariant()
    def same_outcome(self) -> None:
        a, b = (w.records() for w in self.worlds)
        assert [r[:-1] for r in a] == [r[:-1] for r in b]
        for records in (a, b):
            for i in (0, 1):
                times = [r[-1] for r in records if r[0] == i]
                assert times == sorted(times)
        assert self.worlds[0].foreign[0].seen == self.worlds[1].foreign[0].seen
        assert self.worlds[0].foreign[1].seen == self.worlds[1].foreign[1].seen

    def teardown(self) -> None:
        try:
            for world in self.worlds:
                world.close()
        finally:
            self._saved.__exit__(None, None, None)
            self._dir.cleanup()


TestDifferential = Differential.TestCase
TestDifferential.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------- plans


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[LoggingHandler]:
    with saved_logging():
        handler = LoggingHandler(tmp_path / "r.mmlog", size="256 KiB")
        yield handler
        handler.close()


def fresh(name: str) -> logging.Logger:
    return logging.getLogger(f"p{os.getpid()}.{name}.{next(WORLDS)}")


@needs_native
def test_the_common_configuration_takes_the_ring_path_and_writes_what_the_standard_path_writes(
        ring: LoggingHandler) -> None:
    logger = fresh("common")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(ring)
    logging.Logger.info(logger, "order %d paid %.2f by %s", 42, 9.5, "bob")
    assert S.accelerate()
    assert logger.info.plan in ("ring", "stale")  # type: ignore[attr-defined]
    logger.info("order %d paid %.2f by %s", 42, 9.5, "bob")
    assert logger.info.plan == "ring"  # type: ignore[attr-defined]
    logger.debug("off")
    assert logger.debug.plan == "disabled"  # type: ignore[attr-defined]
    a, b = list(read(path_of(ring)))
    assert (a.logger, a.level, a.message, a.thread, a.fields, a.exception) == (
        b.logger, b.level, b.message, b.thread, b.fields, b.exception)
    assert b.message == "order 42 paid 9.50 by bob" and b.thread == threading.get_ident()
    assert a.time_ns <= b.time_ns


@needs_native
def test_log_takes_the_path_of_its_level(ring: LoggingHandler) -> None:
    logger = fresh("log")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(ring)
    calls: list[tuple[Any, ...]] = [(logging.INFO, "order %d", 1), (logging.DEBUG, "off"), (35, "custom %s", "x"),
                                    (300, "clamped"), (25, "%(k)s", {"k": "v"}), (True, "a bool level")]
    for call in calls:
        logging.Logger.log(logger, *call)
    assert S.accelerate()
    assert logger.log.plan == "per level"  # type: ignore[attr-defined]
    for call in calls:
        logger.log(*call)
    records = [(r.logger, r.level, r.message, r.thread, r.fields, r.exception) for r in read(path_of(ring))]
    assert len(records) == 8 and records[:4] == records[4:]  # True is level 1: below INFO, as in the stdlib
    logger.setLevel(logging.ERROR)
    logger.log(logging.INFO, "now off")
    assert [r.message for r in read(path_of(ring))][-1] == "v"


@needs_native
@pytest.mark.parametrize("change", [
    "setLevel", "parent_setLevel", "disable", "disabled", "propagate", "addFilter", "handler_filter",
    "handler_level", "foreign_handler", "direct_append", "factory", "logThreads", "second_ring",
])
def test_every_change_that_matters_moves_the_plan_and_undoing_it_moves_it_back(ring: LoggingHandler,
                                                                               change: str) -> None:
    parent = fresh("tree")
    parent.propagate = False
    parent.setLevel(logging.INFO)
    parent.addHandler(ring)
    child = logging.getLogger(parent.name + ".child")
    assert S.accelerate()
    child.info("x")
    assert child.info.plan == "ring", S.explain(child.name)  # type: ignore[attr-defined]
    other = LoggingHandler(path_of(ring).with_name("other.mmlog"))
    flt = logging.Filter("nothing")
    foreign = Collect()
    undo: Callable[[], None]
    if change == "setLevel":
        child.setLevel(logging.ERROR)
        undo = lambda: child.setLevel(logging.NOTSET)  # noqa: E731
    elif change == "parent_setLevel":
        parent.setLevel(logging.ERROR)
        undo = lambda: parent.setLevel(logging.INFO)  # noqa: E731
    elif change == "disable":
        logging.disable(logging.INFO)
        undo = lambda: logging.disable(logging.NOTSET)  # noqa: E731
    elif change == "disabled":
        child.disabled = True
        undo = lambda: setattr(child, "disabled", False)  # noqa: E731
    elif change == "propagate":
        child.propagate = False
        undo = lambda: setattr(child, "propagate", True)  # noqa: E731
    elif change == "addFilter":
        child.addFilter(flt)
        undo = lambda: child.removeFilter(flt)  # noqa: E731
    elif change == "handler_filter":
        ring.addFilter(flt)
        undo = lambda: ring.removeFilter(flt)  # noqa: E731
    elif change == "handler_level":
        ring.setLevel(logging.ERROR)
        undo = lambda: ring.setLevel(logging.NOTSET)  # noqa: E731
    elif change == "foreign_handler":
        parent.addHandler(foreign)
        undo = lambda: parent.removeHandler(foreign)  # noqa: E731
    elif change == "direct_append":
        child.handlers.append(foreign)
        undo = child.handlers.clear
    elif change == "factory":
        logging.setLogRecordFactory(tagging_factory)
        undo = lambda: logging.setLogRecordFactory(logging.LogRecord)  # noqa: E731
    elif change == "logThreads":
        logging.logThreads = False
        undo = lambda: setattr(logging, "logThreads", True)  # noqa: E731
    else:
        child.addHandler(other)
        undo = lambda: child.removeHandler(other)  # noqa: E731
    child.info("y")
    assert child.info.plan in ("standard", "disabled") or change in ("factory", "logThreads"), S.explain(child.name)  # type: ignore[attr-defined]
    assert "ring path" not in S.explain(child.name).splitlines()[2]
    undo()
    child.info("z")
    assert child.info.plan == "ring", S.explain(child.name)  # type: ignore[attr-defined]
    other.close()


def located(path: Path) -> list[tuple[str, int, str, dict[str, Any]]]:
    return [(r.logger, r.level, r.message, r.fields) for r in read(path)]


@needs_native
def test_the_caller_s_location_is_the_one_find_caller_gives(tmp_path: Path) -> None:
    with saved_logging():
        handler = LoggingHandler(tmp_path / "src.mmlog", capture_source=True)
        logger = fresh("source")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)

        def site(method: Callable[..., None]) -> int:
            method("at %s", "site")
            return sys._getframe().f_lineno - 1

        line = site(type(logger).info.__get__(logger))
        assert S.accelerate()
        site(logger.info)
        assert logger.info.plan == "source"  # type: ignore[attr-defined]
        standard, fast = located(path_of(handler))
        assert standard == fast
        assert fast[3] == {"pathname": __file__, "lineno": line, "funcName": "site"}
        saved_srcfile = logging._srcfile
        logging._srcfile = None  # the documented way to skip findCaller
        try:
            site(logger.info)
        finally:
            logging._srcfile = saved_srcfile
        assert located(path_of(handler))[-1][3] == {"pathname": "(unknown file)", "lineno": 0,
                                                     "funcName": "(unknown function)"}
        handler.close()


@needs_native
def test_a_new_intermediate_logger_is_seen_by_its_existing_children(ring: LoggingHandler) -> None:
    top = fresh("fixup")
    top.propagate = False
    top.addHandler(ring)
    top.setLevel(logging.INFO)
    assert S.accelerate()
    deep = logging.getLogger(top.name + ".a.b")
    deep.warning("first")
    assert deep.warning.plan == "ring"  # type: ignore[attr-defined]
    middle = logging.getLogger(top.name + ".a")  # the manager re-parents "a.b" under it
    middle.propagate = False
    deep.warning("second")  # now stops at "a", which has no handler: logging.lastResort
    assert deep.warning.plan == "standard"  # type: ignore[attr-defined]
    assert [r.message for r in read(path_of(ring))] == ["first"]


@needs_native
def test_deaccelerate_restores_the_standard_objects(ring: LoggingHandler) -> None:
    logger = fresh("restore")
    handlers = logger.handlers
    assert S.accelerate() and S.accelerated()
    assert type(logger) is not logging.Logger and isinstance(logger, logging.Logger)
    assert "info" in vars(logger)
    S.deaccelerate()
    assert not S.accelerated()
    assert type(logger) is logging.Logger and type(logging.Logger.manager) is logging.Manager
    assert "info" not in vars(logger) and type(logger.handlers) is list and logger.handlers == handlers
    assert logging.Handler.setLevel is S._original_handler_set_level
    assert "acceleration is off" in S.explain(logger.name)


@needs_native
def test_a_custom_logger_class_stays_on_the_standard_path(ring: LoggingHandler) -> None:
    class Custom(logging.Logger):
        def _log(self, *args: Any, **kwargs: Any) -> None:
            super()._log(*args, **kwargs)

    saved = logging.getLoggerClass()
    logging.setLoggerClass(Custom)
    try:
        S.accelerate()
        logger = fresh("custom")
    finally:
        logging.setLoggerClass(saved)
    assert type(logger) is Custom and "info" not in vars(logger)
    assert "overrides the standard behaviour" in S.explain(logger.name)


def test_without_the_accelerator_accelerate_says_so() -> None:
    code = "import mmaplog.stdlib as S; print(S.accelerate(), S.accelerated()); print(S.explain('x'))"
    env = {**os.environ, "MMAPLOG_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "False False" and "standard path" in out


# ---------------------------------------------------------------------------------------------- whole programs

_LIBRARY = textwrap.dedent(
    """
    import logging, threading
    log = logging.getLogger("lib.orders")   # created before logging is configured

    def work():
        log.debug("not at INFO")
        log.info("order %d paid %.2f by %s", 42, 9.5, "bob")
        log.info("%(who)s paid", {"who": "ann"})
        log.warning("disk at %d%%", 91, extra={"disk": "sda"})
        log.error("bad %d", "x")
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("division failed for %r", "order-42")
        log.info("with stack", stack_info=True)
        ready = threading.Barrier(4)  # all alive at once: four distinct thread idents

        def worker(i):
            ready.wait()
            log.error("thread %d", i)

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        logging.getLogger("lib").setLevel(logging.ERROR)
        log.warning("now off")
        log.error("still on")
        logging.getLogger("lib").setLevel(logging.NOTSET)
    """
)

_ENTRY_POINTS = {
    "dictConfig": """
        import logging.config
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "handlers": {"ring": {"class": "mmaplog.LoggingHandler", "path": PATH, "accelerate": ACCEL}},
            "root": {"level": "INFO", "handlers": ["ring"]},
        })
    """,
    "fileConfig": """
        import logging.config, os, tempfile
        ini = os.path.join(tempfile.mkdtemp(), "logging.ini")
        with open(ini, "w") as f:
            f.write("[loggers]\\nkeys=root\\n[handlers]\\nkeys=ring\\n[formatters]\\nkeys=\\n"
                    "[logger_root]\\nlevel=INFO\\nhandlers=ring\\n"
                    "[handler_ring]\\nclass=mmaplog.LoggingHandler\\nargs=(%r,)\\nkwargs={'accelerate': %r}\\n"
                    % (PATH, ACCEL))
        logging.config.fileConfig(ini, disable_existing_loggers=False)
    """,
    "basicConfig": """
        import logging, mmaplog
        logging.basicConfig(level=logging.INFO, handlers=[mmaplog.LoggingHandler(PATH, accelerate=ACCEL)])
    """,
}


def run_program(tmp_path: Path, entry: str, accelerate: bool, tail: str = "") -> list[Any]:
    (tmp_path / "lib.py").write_text(_LIBRARY)
    path = tmp_path / f"{entry}-{accelerate}.mmlog"
    program = "import sys, lib\nPATH, ACCEL = sys.argv[1], sys.argv[2] == 'True'\n"
    program += textwrap.dedent(_ENTRY_POINTS[entry])
    program += "import mmaplog.stdlib as S\nassert S.accelerated() == (ACCEL and S._cstdlib is not None and S._cwrite is not None)\n"
    program += "lib.work()\n" + textwrap.dedent(tail)
    proc = subprocess.run([sys.executable, "-c", program, str(path), str(accelerate)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    records = [(r.logger, r.level, r.message, r.fields, r.exception) for r in read(path)]
    threaded = sorted(r for r in records if r[2].startswith("thread "))  # the workers race each other
    records = [r for r in records if not r[2].startswith("thread ")] + threaded
    stderr = "\n".join(line for line in proc.stderr.splitlines() if "File \"<string>\"" not in line)
    return [records, stderr, [r.thread for r in read(path)]]


@pytest.mark.parametrize("entry", sorted(_ENTRY_POINTS))
def test_a_program_writes_the_same_records_accelerated_or_not(tmp_path: Path, entry: str) -> None:
    plain = run_program(tmp_path, entry, False)
    fast = run_program(tmp_path, entry, True)
    assert plain[0] == fast[0]
    assert plain[1] == fast[1] and "--- Logging error ---" in fast[1]  # the bad %d, reported the same way
    messages = [r[2] for r in fast[0]]
    assert "order 42 paid 9.50 by bob" in messages and "ann paid" in messages and "now off" not in messages
    assert len(set(fast[2])) == 5  # the main thread and the four workers


@needs_native
def test_a_forked_child_and_a_multiprocessing_worker_write_their_own_files_on_the_fast_path(tmp_path: Path) -> None:
    tail = """
        import os, mmaplog.stdlib as S
        log = logging.getLogger("lib.orders")
        pid = os.fork()
        if pid == 0:
            log.info("from the child %d", 1)
            os._exit(0 if log.info.plan == "ring" else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        import multiprocessing
        worker = multiprocessing.get_context("fork").Process(target=log.warning, args=("from a worker %s", "w"))
        worker.start()
        worker.join()
        assert worker.exitcode == 0
        print(pid, worker.pid)
    """
    (tmp_path / "lib.py").write_text(_LIBRARY)
    template = str(tmp_path / "app-{pid}.mmlog")
    program = "import sys, lib\nPATH, ACCEL = sys.argv[1], True\n" + textwrap.dedent(_ENTRY_POINTS["dictConfig"])
    program += "lib.work()\n" + textwrap.dedent(tail)
    proc = subprocess.run([sys.executable, "-c", program, template], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    child, worker = map(int, proc.stdout.split()[-2:])
    records = list(read(tmp_path / f"app-{child}.mmlog"))
    assert [(r.logger, r.message, r.pid) for r in records] == [("lib.orders", "from the child 1", child)]
    records = list(read(tmp_path / f"app-{worker}.mmlog"))
    assert [(r.logger, r.message, r.pid) for r in records] == [("lib.orders", "from a worker w", worker)]
