"""The loggers under test, built the same way for every benchmark, and the shared message.

Every logger writes the same message to a file in the test's ``tmp_path``, so
all of them pay for the same disk.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import logging
import logging.handlers
import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

#: The message of every hot-path benchmark, with its three arguments.
MESSAGE = "order %d paid %.2f by %s"
ARGS = (42, 9.5, "bob")
#: The same message for loguru, which formats with str.format rather than %.
BRACE_MESSAGE = "order {} paid {:.2f} by {}"
#: The message without arguments.
PLAIN = "order 42 paid 9.50 by bob"
#: The format of the text loggers: time, level, name, message.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOGURU_FORMAT = "{time} {level} {name} {message}"
#: Ring size of the hot-path benchmarks (the default of RingWriter).
RING_SIZE = "16 MiB"

_names = itertools.count()


def noop(msg: str, *args: Any) -> None:
    """The empty function: what calling anything with the same arguments costs."""


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big the inputs of one run are (``full`` for numbers, ``quick`` to exercise the code)."""

    name: str
    #: Calls in one latency burst.
    burst: int
    #: Records logged per round in the thread benchmarks (split between the threads).
    thread_records: int
    #: Records in the file the reader benchmarks read.
    reader_records: int
    #: Ring sizes of the flat-cost benchmark that run at this scale.
    ring_sizes: tuple[str, ...]

    @property
    def full(self) -> bool:
        """True for the run whose numbers are reported."""
        return self.name == "full"


SCALES = {
    "full": Scale("full", burst=100_000, thread_records=100_000, reader_records=1_000_000,
                  ring_sizes=("1 MiB", "16 MiB", "256 MiB", "1 GiB")),
    "quick": Scale("quick", burst=1_000, thread_records=2_000, reader_records=2_000, ring_sizes=("1 MiB",)),
}
ALL_RING_SIZES = SCALES["full"].ring_sizes


def installed(module: str) -> bool:
    """True when ``module`` can be imported (the optional competitors of the ``bench`` extra)."""
    return importlib.util.find_spec(module) is not None


def need(module: str) -> None:
    """Skip the calling test, with the reason, when an optional package is missing."""
    if not installed(module):
        pytest.skip(f"{module} is not installed (pip install -e '.[bench]'; it has no wheel for every Python)")


def mmaplog_api(*names: str) -> list[Any]:
    """The named objects of mmaplog's public API, or a skip saying which one is missing."""
    import mmaplog

    missing = [name for name in names if not hasattr(mmaplog, name)]
    if missing:
        pytest.skip(f"mmaplog has no {', '.join(missing)} yet")
    return [getattr(mmaplog, name) for name in names]


# ---------------------------------------------------------------------- subjects
@dataclasses.dataclass
class Subject:
    """One logger set up for a benchmark: its INFO and DEBUG calls and how to tear it down."""

    name: str
    info: Callable[..., Any]
    debug: Callable[..., Any]
    close: Callable[[], None]
    message: str = MESSAGE
    #: Anything worth reporting after the run (drops, queue depth).
    stats: Callable[[], dict[str, Any]] = dict
    #: The text of the last record that reached the file (None: nothing written, or nothing to check).
    last: Callable[[], str | None] = lambda: None
    #: Waits until every record logged so far is in the file (loggers that write from a queue).
    flush: Callable[[], None] = lambda: None


def last_ring_message(path: Path) -> str | None:
    """The message of the newest record in a ring file."""
    import mmaplog

    rows = mmaplog.read_array(path)
    return str(rows["message"][-1]) if len(rows) else None


def last_text_line(path: Path) -> str | None:
    """The last line of a text log file."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 4096))
        lines = f.read().decode("utf-8").splitlines()
    return lines[-1] if lines else None


def _stdlib_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"bench.stdlib{next(_names)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


def _close_stdlib(logger: logging.Logger, *extra: Callable[[], None]) -> Callable[[], None]:
    def close() -> None:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        for step in extra:
            step()

    return close


def make_noop(tmp: Path) -> Subject:
    """The floor: the empty function stands in for both levels."""
    return Subject("noop", noop, noop, lambda: None)


def make_mmaplog_direct(tmp: Path, size: str = RING_SIZE) -> Subject:
    """A mmaplog Logger with one RingHandler (records go straight into the ring)."""
    Logger, RingHandler = mmaplog_api("Logger", "RingHandler")
    handler = RingHandler(tmp / "direct.mmlog", size=size)
    log = Logger("bench.app", handlers=[handler], level="INFO")
    return Subject("mmaplog-direct", log.info, log.debug, handler.close,
                   stats=lambda: {"dropped": handler.dropped}, last=lambda: last_ring_message(handler.path))


def make_mmaplog_writer(tmp: Path) -> Subject:
    """RingWriter.write alone, the layer under the Logger."""
    (RingWriter,) = mmaplog_api("RingWriter")
    writer = RingWriter(tmp / "writer.mmlog", RING_SIZE)
    write = writer.write

    def info(msg: str, *args: Any) -> Any:
        # The writer takes finished text: the benchmark formats, as any caller of it would.
        return write(msg % args) if args else write(msg)

    return Subject("mmaplog-writer", info, noop, writer.close, stats=lambda: {"dropped": writer.dropped},
                   last=lambda: last_ring_message(writer.path))


def make_mmaplog_async(tmp: Path, capacity: int = 16384) -> Subject:
    """A mmaplog Logger whose handler is an AsyncHandler around a RingHandler (the producer side is timed)."""
    Logger, RingHandler, AsyncHandler = mmaplog_api("Logger", "RingHandler", "AsyncHandler")
    path = tmp / "async.mmlog"
    handler = AsyncHandler(RingHandler(path, size=RING_SIZE), capacity=capacity)
    log = Logger("bench.app", handlers=[handler], level="INFO")

    def last() -> str | None:
        handler.flush()
        return last_ring_message(path)

    return Subject("mmaplog-async", log.info, log.debug, handler.close,
                   stats=lambda: {"dropped": handler.dropped, "pending": handler.pending}, last=last,
                   flush=handler.flush)


def make_mmaplog_stdlib(tmp: Path) -> Subject:
    """A stdlib logger with mmaplog's LoggingHandler: what switching an existing application costs."""
    (LoggingHandler,) = mmaplog_api("LoggingHandler")
    path = tmp / "stdlib.mmlog"
    logger = _stdlib_logger(LoggingHandler(path, size=RING_SIZE))
    return Subject("mmaplog-stdlib", logger.info, logger.debug, _close_stdlib(logger),
                   last=lambda: last_ring_message(path))


def make_stdlib_file(tmp: Path) -> Subject:
    """The stdlib logger with a FileHandler and the usual format."""
    path = tmp / "stdlib.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logger = _stdlib_logger(handler)
    return Subject("stdlib-file", logger.info, logger.debug, _close_stdlib(logger), last=lambda: last_text_line(path))


def make_stdlib_queue(tmp: Path) -> Subject:
    """The stdlib's own asynchronous set-up: QueueHandler in front, QueueListener writing the file."""
    path = tmp / "stdlib-queue.log"
    target = logging.FileHandler(path, encoding="utf-8")
    target.setFormatter(logging.Formatter(TEXT_FORMAT))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, target)
    listener.start()
    logger = _stdlib_logger(logging.handlers.QueueHandler(records))

    def stop() -> None:
        listener.stop()
        target.close()

    def last() -> str | None:
        listener.stop()  # drains the queue
        listener.start()
        return last_text_line(path)

    return Subject("stdlib-queue", logger.info, logger.debug, _close_stdlib(logger, stop), last=last)


def make_picologging(tmp: Path) -> Subject:
    """picologging (a C reimplementation of logging) with its FileHandler and the same format."""
    need("picologging")
    import picologging

    path = tmp / "pico.log"
    handler = picologging.FileHandler(str(path), encoding="utf-8")
    handler.setFormatter(picologging.Formatter(TEXT_FORMAT))
    logger = picologging.getLogger(f"bench.pico{next(_names)}")
    logger.propagate = False
    logger.setLevel(picologging.INFO)
    logger.addHandler(handler)

    def close() -> None:
        logger.removeHandler(handler)
        handler.close()

    def last() -> str | None:
        handler.flush()
        return last_text_line(path)

    return Subject("picologging", logger.info, logger.debug, close, last=last)


def make_loguru(tmp: Path) -> Subject:
    """loguru with a file sink (synchronous, as by default)."""
    need("loguru")
    from loguru import logger

    logger.remove()
    path = tmp / "loguru.log"
    sink = logger.add(path, format=LOGURU_FORMAT, level="INFO", enqueue=False, catch=True)
    log = logger.bind()
    return Subject("loguru", log.info, log.debug, lambda: logger.remove(sink), message=BRACE_MESSAGE,
                   last=lambda: last_text_line(path))


SUBJECTS: dict[str, Callable[[Path], Subject]] = {
    "noop": make_noop,
    "mmaplog-direct": make_mmaplog_direct,
    "mmaplog-writer": make_mmaplog_writer,
    "mmaplog-async": make_mmaplog_async,
    "mmaplog-stdlib": make_mmaplog_stdlib,
    "stdlib-file": make_stdlib_file,
    "stdlib-queue": make_stdlib_queue,
    "picologging": make_picologging,
    "loguru": make_loguru,
}


def args_for(subject: Subject, with_args: bool) -> tuple[Any, ...]:
    """The positional arguments of one logging call of ``subject``."""
    return (subject.message, *ARGS) if with_args else (PLAIN,)
