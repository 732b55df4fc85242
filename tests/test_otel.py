"""OpenTelemetry trace context in records (mmaplog.integrations.otel): fields, threads, async, config, shipping."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.trace", reason="opentelemetry-api is not installed (pip install 'mmaplog[otel]')")

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import mmaplog
from mmaplog.integrations.otel import OtelContextHandler

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


def span(trace_id: int = TRACE_ID, span_id: int = SPAN_ID, sampled: bool = True) -> NonRecordingSpan:
    """A span with a known, valid context (the API alone makes it: no SDK needed)."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags))


def fields_of(path: Path) -> list[dict[str, Any] | None]:
    return [row["fields"] for row in mmaplog.read_array(path)]


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    return tmp_path / "app.mmlog"


def test_records_in_a_span_carry_its_context(ring: Path) -> None:
    handler = OtelContextHandler(mmaplog.RingHandler(ring))
    log = mmaplog.Logger("app", [handler])
    log.info("before")
    with trace.use_span(span(), end_on_exit=False):
        log.info("inside", order=42)
        log.warning("no fields of its own")
        with trace.use_span(span(span_id=0x1122334455667788, sampled=False), end_on_exit=False):
            log.error("nested, not sampled")
    log.info("after")
    handler.close()
    trace_hex = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert fields_of(ring) == [
        None,
        {"order": 42, "trace_id": trace_hex, "span_id": "00f067aa0ba902b7", "trace_flags": "01"},
        {"trace_id": trace_hex, "span_id": "00f067aa0ba902b7", "trace_flags": "01"},
        {"trace_id": trace_hex, "span_id": "1122334455667788", "trace_flags": "00"},
        None,
    ]


def test_fields_given_in_the_call_win(ring: Path) -> None:
    handler = OtelContextHandler(mmaplog.RingHandler(ring))
    log = mmaplog.Logger("app", [handler])
    with trace.use_span(span(), end_on_exit=False):
        log.bind(span_id="mine").info("explicit")
    handler.close()
    (fields,) = fields_of(ring)
    assert fields is not None
    assert fields["span_id"] == "mine" and fields["trace_id"] == f"{TRACE_ID:032x}"


def test_a_recording_sdk_span(ring: Path) -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk is not installed")
    tracer = sdk.TracerProvider().get_tracer("test")
    handler = OtelContextHandler(mmaplog.RingHandler(ring))
    log = mmaplog.Logger("app", [handler])
    with tracer.start_as_current_span("work") as current:
        assert current.is_recording()
        log.info("recorded")
    handler.close()
    ctx = current.get_span_context()
    (fields,) = fields_of(ring)
    assert fields is not None
    assert (fields["trace_id"], fields["span_id"]) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert int(fields["trace_flags"], 16) & 1  # sampled


def test_each_thread_logs_its_own_span(ring: Path) -> None:
    """The context is read in the logging thread: a span current in one thread never marks another's records."""
    handler = OtelContextHandler(mmaplog.RingHandler(ring))
    log = mmaplog.Logger("app", [handler])
    barrier = threading.Barrier(3)

    def work(index: int) -> None:
        with trace.use_span(span(span_id=index + 1), end_on_exit=False):
            barrier.wait(timeout=30)
            for i in range(200):
                log.info("step", thread_index=index, i=i)

    def bare() -> None:
        barrier.wait(timeout=30)
        for i in range(200):
            log.info("step", thread_index=-1, i=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)] + [threading.Thread(target=bare)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    handler.close()
    seen = 0
    for fields in fields_of(ring):
        assert fields is not None
        index = fields["thread_index"]
        if index < 0:
            assert "span_id" not in fields
        else:
            assert fields["span_id"] == f"{index + 1:016x}"
        seen += 1
    assert seen == 600


def test_async_handler_inside_keeps_the_callers_context(ring: Path) -> None:
    inner = mmaplog.AsyncHandler(mmaplog.RingHandler(ring))
    handler = OtelContextHandler(inner)
    log = mmaplog.Logger("app", [handler])
    with trace.use_span(span(), end_on_exit=False):
        for i in range(50):
            log.info("queued", i=i)
    handler.close()  # drains the queue into the ring
    fields = fields_of(ring)
    assert len(fields) == 50
    assert all(f is not None and f["span_id"] == f"{SPAN_ID:016x}" for f in fields)


def test_json_output_names_the_fields_as_the_otel_data_model(ring: Path) -> None:
    handler = OtelContextHandler(mmaplog.RingHandler(ring))
    with trace.use_span(span(), end_on_exit=False):
        mmaplog.Logger("app", [handler]).info("hello")
    handler.close()
    done = subprocess.run([sys.executable, "-m", "mmaplog.cli.read", "-o", "json", str(ring)], capture_output=True,
                          text=True, timeout=60, check=True)
    line = json.loads(done.stdout)
    assert line["fields"] == {"trace_id": f"{TRACE_ID:032x}", "span_id": f"{SPAN_ID:016x}", "trace_flags": "01"}


def test_configuration_type_otel(ring: Path) -> None:
    tree = mmaplog.logger.LoggerTree()
    mmaplog.configure({"handlers": [{"type": "otel", "handlers": [{"type": "ring", "path": str(ring)}]}]},
                      tree=tree)
    try:
        (handler,) = tree.get().handlers
        assert isinstance(handler, OtelContextHandler)
        with trace.use_span(span(), end_on_exit=False):
            tree.get("app").info("configured")
    finally:
        mmaplog.configure({"handlers": []}, tree=tree)
    (fields,) = fields_of(ring)
    assert fields is not None and fields["trace_id"] == f"{TRACE_ID:032x}"
    with pytest.raises(mmaplog.ConfigError, match=r"handlers\[0\]\.handlers"):
        mmaplog.configure({"handlers": [{"type": "otel", "handlers": []}]}, tree=mmaplog.logger.LoggerTree())
    with pytest.raises(mmaplog.ConfigError, match="unknown key"):
        mmaplog.configure({"handlers": [{"type": "otel", "handlers": [{"type": "console"}], "colour": 1}]},
                          tree=mmaplog.logger.LoggerTree())


def test_off_means_no_import_and_missing_means_a_clear_error(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        import mmaplog
        log = mmaplog.Logger("app", [mmaplog.RingHandler({str(tmp_path / 'a.mmlog')!r})])
        log.info("plain", x=1)
        mmaplog.configure({{"handlers": [{{"type": "ring", "path": {str(tmp_path / 'b.mmlog')!r}}}]}})
        mmaplog.get_logger("x").info("configured")
        assert not any(m.startswith("opentelemetry") for m in sys.modules), "opentelemetry imported"
        sys.modules["opentelemetry"] = None  # as if it were not installed
        from mmaplog.integrations.otel import OtelContextHandler
        try:
            OtelContextHandler(mmaplog.ConsoleHandler())
        except ImportError as exc:
            assert "mmaplog[otel]" in str(exc), exc
        else:
            raise AssertionError("no ImportError")
        try:
            mmaplog.configure({{"handlers": [{{"type": "otel", "handlers": [{{"type": "console"}}]}}]}})
        except mmaplog.ConfigError as exc:
            assert "mmaplog[otel]" in str(exc), exc
        else:
            raise AssertionError("no ConfigError")
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# ---------------------------------------------------------------------- shipping
def _receive_frames(server: socket.socket, out: list[bytes], done: threading.Event) -> None:
    """Accept one connection and collect RFC 6587 octet-counted messages until the sender closes it."""
    server.settimeout(60)
    try:
        conn, _ = server.accept()
    except OSError:
        done.set()
        return
    conn.settimeout(60)
    buffer = b""
    with conn:
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while True:
                length, space, rest = buffer.partition(b" ")
                if not space or not length.isdigit() or len(rest) < int(length):
                    break
                out.append(rest[: int(length)])
                buffer = rest[int(length):]
    done.set()


def test_shipped_syslog_structured_data_carries_the_context(ring: Path) -> None:
    """``mmaplog-ship --to tcp://`` puts the trace fields into the ``fields@PEN`` SD element."""
    handler = OtelContextHandler(mmaplog.RingHandler(ring))
    with trace.use_span(span(), end_on_exit=False):
        mmaplog.Logger("app", [handler]).info("shipped", order=7)
    handler.close()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    messages: list[bytes] = []
    received = threading.Event()
    reader = threading.Thread(target=_receive_frames, args=(server, messages, received))
    reader.start()
    try:
        done = subprocess.run([sys.executable, "-m", "mmaplog.ship.cli", str(ring), "--to", f"tcp://127.0.0.1:{port}",
                               "--once", "--no-cursor", "-q"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert received.wait(60)
    finally:
        server.close()
        reader.join(timeout=60)
    (message,) = messages
    element = re.search(rb"\[fields@32473((?: [^ =\]]+=\"(?:[^\"\\\]]|\\.)*\")*)\]", message)
    assert element is not None, message
    params = dict(re.findall(r'([^ =\]"]+)="((?:[^"\\\]]|\\.)*)"', element.group(1).decode()))
    assert params == {"order": "7", "trace_id": f"{TRACE_ID:032x}", "span_id": f"{SPAN_ID:016x}", "trace_flags": "01"}
