"""Unmodified ``logging`` code, accelerated by configuration alone, against the standard library in one run.

Each subject is a child logger ``bench.appN.orders`` of a logger that holds the
handler (with ``propagate=False``, so the test runner's own handlers on the
root stay out), configured through ``dictConfig`` as an application would be:

* ``stdlib-file``: a ``FileHandler`` with the usual text format;
* ``stdlib-ring``: ``mmaplog.LoggingHandler`` on the standard path;
* ``accelerated``: the same handler with ``"accelerate": True``;
* ``stdlib-ring-source``, ``accelerated-source``: the same two with ``"capture_source": True``;
* ``picologging``: picologging's drop-in with its ``FileHandler`` (skipped where not installed).

``test_flask_requests``: a Flask test client (bench/_flask_app.py) whose view logs through its module's
logger, with that logger and the framework's routed by ``dictConfig``; time per request.

The call is ``log.info("order %d paid %.2f by %s", 42, 9.5, "bob")``, and
``log.debug`` of the same while the level is INFO for the disabled-level group.
``test_ratios`` prints the ratios of the run (``pytest -s``); docs/BENCHMARKS.md
records them.
"""

from __future__ import annotations

import itertools
import logging
import logging.config
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench._subjects import (
    ARGS,
    MESSAGE,
    PLAIN,
    TEXT_FORMAT,
    Subject,
    last_ring_message,
    last_text_line,
    make_picologging,
)
from mmaplog import stdlib

ROUNDS = pytest.mark.benchmark(min_time=0.0002, warmup=True)
_names = itertools.count()
#: Minimum time per call of each (group, subject) measured in this run, for test_ratios.
RESULTS: dict[tuple[str, str], float] = {}


def configure(tmp: Path, kind: str) -> tuple[logging.Logger, Callable[[], str | None], Callable[[], None]]:
    """dictConfig a ``bench.appN`` logger with the subject's handler; the logger under test is its child."""
    top = f"bench.app{next(_names)}"
    if kind == "stdlib-file":
        path = tmp / "app.log"
        handler: dict[str, Any] = {"class": "logging.FileHandler", "filename": str(path), "formatter": "text"}
        last = lambda: last_text_line(path)  # noqa: E731
    else:
        path = tmp / "app.mmlog"
        handler = {"class": "mmaplog.LoggingHandler", "path": str(path), "size": "16 MiB",
                   "accelerate": kind.startswith("accelerated"), "capture_source": "source" in kind}
        last = lambda: last_ring_message(path)  # noqa: E731
    logging.config.dictConfig({
        "version": 1, "incremental": False, "disable_existing_loggers": False,
        "formatters": {"text": {"format": TEXT_FORMAT}},
        "handlers": {"out": handler},
        "loggers": {top: {"level": "INFO", "handlers": ["out"], "propagate": False}},
    })
    logger = logging.getLogger(f"{top}.orders")

    def close() -> None:
        stdlib.deaccelerate()
        owner = logging.getLogger(top)
        for h in list(owner.handlers):
            owner.removeHandler(h)
            h.close()

    return logger, last, close


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[[str], Subject]]:
    """Builds the subject inside the test body: the test runner attaches its capture handler to every
    non-propagating logger that exists when a test phase starts, and that would be a second handler."""
    closers: list[Callable[[], None]] = []

    def build(kind: str) -> Subject:
        if kind == "picologging":
            made = make_picologging(tmp_path)
            closers.append(made.close)
            return made
        logger, last, close = configure(tmp_path, kind)
        closers.append(close)
        if kind.startswith("accelerated") and not stdlib.accelerated():
            pytest.skip("the C accelerator is not in use here (MMAPLOG_PURE_PYTHON=1 or not built)")
        if kind.startswith("accelerated"):
            assert "info: ring path" in stdlib.explain(logger.name), stdlib.explain(logger.name)
        return Subject(kind, logger.info, logger.debug, close, last=last)

    yield build
    for close in closers:
        close()


ENABLED = ["stdlib-file", "stdlib-ring", "stdlib-ring-source", "accelerated", "accelerated-source", "picologging"]
DISABLED = ["stdlib-file", "accelerated"]


@ROUNDS
@pytest.mark.parametrize("kind", ENABLED)
def test_enabled(benchmark: Any, make: Callable[[str], Subject], kind: str) -> None:
    """One INFO call with three arguments that writes its record."""
    subject = make(kind)
    benchmark.group = "stdlib: 3 args"
    benchmark.extra_info.update(subject=subject.name)
    benchmark(subject.info, MESSAGE, *ARGS)
    last = subject.last()
    assert last is not None and last.endswith(PLAIN), last
    if benchmark.stats is not None:
        RESULTS[("enabled", subject.name)] = benchmark.stats.stats.min


@ROUNDS
@pytest.mark.parametrize("kind", DISABLED)
def test_disabled(benchmark: Any, make: Callable[[str], Subject], kind: str) -> None:
    """One DEBUG call while the level is INFO."""
    subject = make(kind)
    benchmark.group = "stdlib: disabled level"
    benchmark.extra_info.update(subject=subject.name)
    benchmark(subject.debug, MESSAGE, *ARGS)
    assert subject.last() is None
    if benchmark.stats is not None:
        RESULTS[("disabled", subject.name)] = benchmark.stats.stats.min


OWN = ["logger", "logger-source"]


@ROUNDS
@pytest.mark.parametrize("kind", OWN)
def test_own_logger_source(benchmark: Any, tmp_path: Path, kind: str) -> None:
    """mmaplog's own Logger into one ring: plain and with ``capture_source=True``."""
    import mmaplog

    ring = mmaplog.RingHandler(tmp_path / "own.mmlog", size="16 MiB")
    log = mmaplog.Logger(f"bench.own{next(_names)}", [ring], "INFO", capture_source=kind != "logger")
    benchmark.group = "own Logger: 3 args, source location"
    benchmark.extra_info.update(subject=kind)
    try:
        benchmark(log.info, MESSAGE, *ARGS)
        assert last_ring_message(tmp_path / "own.mmlog") == PLAIN
        if kind != "logger":
            assert mmaplog.read_array(tmp_path / "own.mmlog")["lineno"][-1] > 0
    finally:
        ring.close()
    if benchmark.stats is not None:
        RESULTS[("own", kind)] = benchmark.stats.stats.min


FLASK_KINDS = ["off", "stdlib-file", "stdlib-ring", "accelerated", "accelerated-source"]


def configure_app(tmp: Path, kind: str) -> tuple[Callable[[], str | None], Callable[[], None]]:
    """dictConfig the Flask app's loggers (its module's, ``werkzeug``, ``flask.app``) as an application would.

    ``off``: the same loggers at WARNING with a ``FileHandler``, so every INFO call of the view is a disabled
    level: the cost of the request without logging.
    """
    from bench import _flask_app

    names = (_flask_app.__name__, *_flask_app.FRAMEWORK_LOGGERS)
    if kind in ("off", "stdlib-file"):
        path = tmp / "app.log"
        handler: dict[str, Any] = {"class": "logging.FileHandler", "filename": str(path), "formatter": "text"}
        last = lambda: last_text_line(path) if path.stat().st_size else None  # noqa: E731
    else:
        path = tmp / "app.mmlog"
        handler = {"class": "mmaplog.LoggingHandler", "path": str(path), "size": "64 MiB",
                   "accelerate": kind.startswith("accelerated"), "capture_source": kind.endswith("source")}
        last = lambda: last_ring_message(path)  # noqa: E731
    level = "WARNING" if kind == "off" else "INFO"
    logging.config.dictConfig({
        "version": 1, "incremental": False, "disable_existing_loggers": False,
        "formatters": {"text": {"format": TEXT_FORMAT}},
        "handlers": {"out": handler},
        "loggers": {name: {"level": level, "handlers": ["out"], "propagate": False} for name in names},
    })

    def close() -> None:
        stdlib.deaccelerate()
        for name in names:
            owner = logging.getLogger(name)
            for h in list(owner.handlers):
                owner.removeHandler(h)
                h.close()

    return last, close


@pytest.mark.parametrize("kind", FLASK_KINDS)
def test_flask_requests(benchmark: Any, tmp_path: Path, scale: Any, kind: str) -> None:
    """A Flask test client serving requests whose view logs three records through a module logger.

    The app (bench/_flask_app.py) imports nothing from mmaplog; its loggers and the framework's are routed by
    ``dictConfig`` alone.  10 rounds of 1,000 requests (one of 200 in quick mode), time per request.
    """
    pytest.importorskip("flask")
    from bench import _flask_app

    last, close = configure_app(tmp_path, kind)
    if kind.startswith("accelerated") and not stdlib.accelerated():
        close()
        pytest.skip("the C accelerator is not in use here (MMAPLOG_PURE_PYTHON=1 or not built)")
    client = _flask_app.make_app().test_client()
    # 10 rounds of 1,000 (10,000 requests) rather than 3 of 10,000: on a shared machine the minimum of many short
    # rounds is what stays stable.
    requests, rounds = (1_000, 10) if scale.full else (200, 1)

    def serve() -> None:
        for i in range(requests):
            client.get(f"/pay/{i}")

    benchmark.group = "stdlib: flask requests"
    benchmark.extra_info.update(subject=kind, requests=requests * rounds)
    try:
        if kind.startswith("accelerated"):
            for name in (_flask_app.__name__, *_flask_app.FRAMEWORK_LOGGERS):
                assert "info: ring path" in stdlib.explain(name), stdlib.explain(name)
        benchmark.pedantic(serve, rounds=rounds, iterations=1, warmup_rounds=1 if scale.full else 0)
        if kind == "off":
            assert last() is None
        else:
            assert (last() or "").endswith(f"order {requests - 1} settled")
    finally:
        close()
    if benchmark.stats is not None:
        RESULTS[("flask", kind)] = benchmark.stats.stats.min / requests


def test_flask_interleaved(benchmark: Any, tmp_path: Path, scale: Any) -> None:
    """``test_flask_requests`` with the set-ups taking turns: 50 rounds, each serving 200 requests under every set-up.

    On a shared machine the load drifts over the minutes one set-up after another takes; in turns, every set-up
    sees the same drift, so the ratios hold where the absolute times do not.  The benchmark's own figure is a
    whole round; the time per request of each set-up (its fastest turn) goes to ``test_ratios``.
    """
    pytest.importorskip("flask")
    from bench import _flask_app

    if stdlib._cstdlib is None or stdlib._cwrite is None:
        pytest.skip("the C accelerator is not in use here (MMAPLOG_PURE_PYTHON=1 or not built)")
    client = _flask_app.make_app().test_client()
    requests, rounds = (200, 50) if scale.full else (100, 1)
    best: dict[str, float] = {}
    turn = itertools.count()

    def one_round() -> None:
        for kind in FLASK_KINDS:
            folder = tmp_path / f"{kind}-{next(turn)}"
            folder.mkdir()
            last, close = configure_app(folder, kind)
            try:
                started = time.perf_counter()
                for i in range(requests):
                    client.get(f"/pay/{i}")
                took = time.perf_counter() - started
                expected = None if kind == "off" else f"order {requests - 1} settled"
                assert last() is None if expected is None else (last() or "").endswith(expected), kind
            finally:
                close()
                shutil.rmtree(folder, ignore_errors=True)  # 50 rounds of rings and text logs would fill gigabytes
            best[kind] = min(best.get(kind, took), took)

    benchmark.group = "stdlib: flask requests, set-ups in turns"
    benchmark.extra_info.update(requests_per_turn=requests, kinds=FLASK_KINDS)
    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1 if scale.full else 0)
    if benchmark.stats is not None:
        for kind, took in best.items():
            RESULTS[("flask-turns", kind)] = took / requests


def test_ratios() -> None:
    """The goal figures of this run: FileHandler ÷ accelerated, picologging ÷ accelerated, disabled costs."""
    lines = []
    fast = RESULTS.get(("enabled", "accelerated"))
    if fast:
        for name in ("stdlib-file", "stdlib-ring", "picologging"):
            other = RESULTS.get(("enabled", name))
            if other:
                lines.append(f"{name} ÷ accelerated: {other / fast:.1f}x ({other * 1e6:.2f} µs vs {fast * 1e6:.2f} µs)")
    file = RESULTS.get(("enabled", "stdlib-file"))
    for name in ("accelerated-source",):
        located = RESULTS.get(("enabled", name))
        if located and file:
            lines.append(f"stdlib-file ÷ {name}: {file / located:.1f}x ({located * 1e6:.2f} µs)")
        if located and fast:
            lines.append(f"{name} ÷ accelerated: {located / fast:.2f}x (the caller's location's cost)")
    off_std, off_fast = RESULTS.get(("disabled", "stdlib-file")), RESULTS.get(("disabled", "accelerated"))
    if off_std and off_fast:
        lines.append(f"disabled level: accelerated {off_fast * 1e9:.0f} ns, stdlib {off_std * 1e9:.0f} ns "
                     f"({off_fast / off_std:.2f}x)")
    own = {kind: RESULTS[("own", kind)] for kind in OWN if ("own", kind) in RESULTS}
    if "logger" in own:
        for kind, per in own.items():
            lines.append(f"own Logger, {kind}: {per * 1e6:.2f} µs ({per / own['logger']:.1f}x the plain call)")
    flask = {kind: RESULTS[("flask", kind)] for kind in FLASK_KINDS if ("flask", kind) in RESULTS}
    if "stdlib-file" in flask:
        base, floor = flask["stdlib-file"], flask.get("off")
        for kind, per in flask.items():
            logging_cost = f", logging {(per - floor) * 1e6:.1f} µs of it" if floor is not None and kind != "off" else ""
            lines.append(f"flask request, {kind}: {per * 1e6:.1f} µs ({base / per:.2f}x the FileHandler's{logging_cost})")
    turns = {kind: RESULTS[("flask-turns", kind)] for kind in FLASK_KINDS if ("flask-turns", kind) in RESULTS}
    if "stdlib-file" in turns:
        base, floor = turns["stdlib-file"], turns.get("off")
        for kind, per in turns.items():
            logging_cost = f", logging {(per - floor) * 1e6:.1f} µs of it" if floor is not None and kind != "off" else ""
            lines.append(f"flask request in turns, {kind}: {per * 1e6:.1f} µs "
                         f"({base / per:.2f}x the FileHandler's{logging_cost})")
    if not lines:
        pytest.skip("no timings in this run (--benchmark-disable, or the subjects were skipped)")
    print("\n" + "\n".join(lines))
