"""OpenTelemetry trace context in records: ``trace_id``, ``span_id`` and ``trace_flags`` as fields.

:class:`OtelContextHandler` wraps other handlers: in the thread that logs, it
looks up the current span (``opentelemetry.trace.get_current_span()``) and,
when that span's context is valid, gives the wrapped handlers the record with
three more fields, named as the OpenTelemetry logs data model names them::

    trace_id     32 lowercase hex digits   "4bf92f3577b34da6a3ce929d0e0e4736"
    span_id      16 lowercase hex digits   "00f067aa0ba902b7"
    trace_flags   2 lowercase hex digits   "01" (sampled)

A valid context is attached whether or not the span is sampled (a span
propagated with flags ``00`` still correlates); ``trace_flags`` tells which.
Fields the call itself passes under these names win.  The context is read at
the call, so the wrapper must be the outermost handler (an
:class:`~mmaplog.AsyncHandler` goes inside it, never around it).

It is opt-in: nothing imports OpenTelemetry until a handler is built, and
loggers without the wrapper pay nothing.  In code::

    from mmaplog.integrations.otel import OtelContextHandler
    log = mmaplog.Logger("app", [OtelContextHandler(mmaplog.RingHandler("app.mmlog"))])

In a configuration (``mmaplog.configure``)::

    [[handlers]]
    type = "otel"
    handlers = [{ type = "ring", path = "app.mmlog" }]

Needs ``opentelemetry-api`` (``pip install 'mmaplog[otel]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._record import LogRecord
from ..handlers._base import Handler
from . import require

if TYPE_CHECKING:
    from ..config import HandlerOptions

__all__ = ["FIELD_NAMES", "OtelContextHandler", "context_fields", "from_config"]

#: The fields added to a record with a valid span context.
FIELD_NAMES = ("trace_id", "span_id", "trace_flags")


def context_fields(span: Any) -> dict[str, str] | None:
    """``trace_id``, ``span_id`` and ``trace_flags`` of an OpenTelemetry span as hex text (None when invalid)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}", "trace_flags": f"{ctx.trace_flags:02x}"}


class OtelContextHandler(Handler):
    """Passes each record on to ``handlers`` with the current OpenTelemetry span context added as fields.

    ``level`` filters as for any handler.  :meth:`flush` and :meth:`close`
    reach the wrapped handlers.
    """

    def __init__(self, *handlers: Handler, level: int | str = 0) -> None:
        if not handlers:
            raise ValueError("OtelContextHandler needs at least one handler to pass records to")
        trace = require("opentelemetry.trace", "otel")
        super().__init__(level)
        #: The wrapped handlers (what configuration code walks to flush and close them).
        self.handlers: tuple[Handler, ...] = tuple(handlers)
        self._current_span: Callable[[], Any] = trace.get_current_span
        self._handles = tuple(h.handle for h in handlers)

    def _with_context(self, record: LogRecord) -> LogRecord:
        """``record``, or a copy with the span context in its fields when a valid span is current."""
        extra = context_fields(self._current_span())
        if extra is None:
            return record
        fields = record.fields
        if fields:
            extra = {**fields, **{k: v for k, v in extra.items() if k not in fields}}
        copy = LogRecord(record.logger, record.level, record.msg, record.args, extra, record.time_ns, record.thread,
                         record.exception)
        copy._message = record._message
        return copy

    def handle(self, record: LogRecord) -> None:
        """Add the context (in the calling thread) and hand the record to each wrapped handler; never raises."""
        if record.level < self.level:
            return
        try:
            record = self._with_context(record)
        except Exception as exc:  # noqa: BLE001 - a broken tracer must not stop logging: log without context
            self.handle_error(record, exc)
        for handle in self._handles:
            handle(record)

    def emit(self, record: LogRecord) -> None:
        """Pass one record on (with the context of the calling thread)."""
        record = self._with_context(record)
        for handle in self._handles:
            handle(record)

    def handle_batch(self, records: Iterable[LogRecord]) -> None:
        """Pass records on as they are: a batch is handled away from the calls, where no span is current."""
        batch = list(records)
        for handler in self.handlers:
            handler.handle_batch(batch)

    def flush(self) -> None:
        for handler in self.handlers:
            handler.flush()

    def close(self) -> None:
        for handler in self.handlers:
            handler.close()

    def _close_owned(self, owned: Callable[[Handler], bool]) -> None:
        """Flush and close the wrapped handlers that the configuration owns (it keeps shared ones open)."""
        for handler in self.handlers:
            if owned(handler):
                try:
                    handler.flush()
                finally:
                    handler.close()

    def __repr__(self) -> str:
        return f"<OtelContextHandler {list(self.handlers)!r}>"


def from_config(options: HandlerOptions) -> Handler:
    """Build from a configuration table (``type = "otel"``): the wrapped handlers in ``handlers``, and ``level``."""
    inner = options.handlers("handlers")
    if not inner:
        raise options.error("handlers", "must list at least one handler to wrap")
    level = options.level()
    options.finish()
    try:
        return OtelContextHandler(*inner, level=level)
    except ImportError as exc:
        raise options.error("type", str(exc)) from None
