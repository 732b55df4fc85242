"""The cost of one logging call through the integrations, each beside what it is compared with.

* ``otel``: a ring logger without the OpenTelemetry wrapper, with it and no
  current span, and with it inside a span (the three fields added).
* ``structlog``: a structlog chain ending in a mmaplog ring against the same
  chain ending in ``JSONRenderer`` and structlog's own ``WriteLogger`` on a file.
* ``loguru``: loguru into ``mmaplog.loguru_sink`` against loguru's own file sink.

Every call writes a record with two key-value fields; each test checks that
its records arrived, so a path that dropped them could not look fast.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mmaplog
from bench._subjects import need

ROUNDS = pytest.mark.benchmark(min_time=0.0002, warmup=True)
RING_SIZE = "16 MiB"


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    return tmp_path / "app.mmlog"


# ---------------------------------------------------------------------- OpenTelemetry
@ROUNDS
@pytest.mark.parametrize("case", ["ring", "otel-no-span", "otel-in-span"])
def test_otel_call(benchmark: Any, ring: Path, case: str) -> None:
    need("opentelemetry")
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from mmaplog.integrations.otel import OtelContextHandler

    handler: mmaplog.Handler = mmaplog.RingHandler(ring, size=RING_SIZE)
    if case != "ring":
        handler = OtelContextHandler(handler)
    log = mmaplog.Logger("app", [handler])
    benchmark.group = "call: OpenTelemetry context"
    benchmark.extra_info.update(subject=case)
    span = NonRecordingSpan(SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    try:
        if case == "otel-in-span":
            with trace.use_span(span, end_on_exit=False):
                benchmark(log.info, "request done", status=200, ms=12)
        else:
            benchmark(log.info, "request done", status=200, ms=12)
    finally:
        handler.close()
    last = mmaplog.read_array(ring)[-1]
    assert last["fields"]["status"] == 200
    assert ("trace_id" in last["fields"]) == (case == "otel-in-span")


# ---------------------------------------------------------------------- structlog
@pytest.fixture
def structlog_reset() -> Iterator[Any]:
    need("structlog")
    import structlog

    yield structlog
    structlog.reset_defaults()


@ROUNDS
@pytest.mark.parametrize("case", ["mmaplog-ring", "structlog-writelogger-file"])
def test_structlog_call(benchmark: Any, structlog_reset: Any, tmp_path: Path, case: str) -> None:
    structlog = structlog_reset
    from mmaplog.integrations.structlog import MmaplogLoggerFactory

    processors: list[Any] = [structlog.contextvars.merge_contextvars]
    text_file = None
    factory: Any
    if case == "mmaplog-ring":
        factory = MmaplogLoggerFactory(tmp_path / "app.mmlog", size=RING_SIZE)
    else:
        text_file = (tmp_path / "app.log").open("w")
        processors += [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                       structlog.processors.JSONRenderer()]
        factory = structlog.WriteLoggerFactory(file=text_file)
    structlog.configure(processors=processors, wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        logger_factory=factory, cache_logger_on_first_use=True)
    log = structlog.get_logger("app")
    benchmark.group = "call: structlog"
    benchmark.extra_info.update(subject=case)
    benchmark(log.info, "request done", status=200, ms=12)
    if text_file is not None:
        text_file.close()
        assert (tmp_path / "app.log").read_text().splitlines()[-1].startswith('{"status": 200')
    else:
        factory.close()
        assert mmaplog.read_array(tmp_path / "app.mmlog")[-1]["fields"] == {"status": 200, "ms": 12}


# ---------------------------------------------------------------------- loguru
@ROUNDS
@pytest.mark.parametrize("case", ["mmaplog-sink", "loguru-file"])
def test_loguru_call(benchmark: Any, tmp_path: Path, case: str) -> None:
    need("loguru")
    from loguru import logger

    logger.remove()
    if case == "mmaplog-sink":
        logger.add(mmaplog.loguru_sink(tmp_path / "app.mmlog", size=RING_SIZE), format="{message}")
    else:
        logger.add(tmp_path / "app.log", serialize=True)
    log = logger.bind(status=200, ms=12)
    benchmark.group = "call: loguru"
    benchmark.extra_info.update(subject=case)
    try:
        benchmark(log.info, "request done")
    finally:
        logger.remove()
    if case == "mmaplog-sink":
        assert mmaplog.read_array(tmp_path / "app.mmlog")[-1]["fields"] == {"status": 200, "ms": 12}
    else:
        assert '"status": 200' in (tmp_path / "app.log").read_text().splitlines()[-1]
