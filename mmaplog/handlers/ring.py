"""RingHandler: records into a memory-mapped ring file, the product's main output."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from .. import _lifecycle
from .. import layout as L
from .._record import LogRecord
from ..writer import DEFAULT_RING_SIZE, RingWriter
from ._base import Handler, report_once

__all__ = ["RingHandler"]


class RingHandler(Handler):
    """Writes records into a :class:`~mmaplog.RingWriter`: message, level, logger, time, thread, fields, traceback.

    ``target`` is a writer (shared, not closed by this handler) or a path,
    opened with ``size``, ``slot_size``, ``rotate`` and ``mode`` as by
    :class:`~mmaplog.RingWriter`; ``{pid}`` in the path gives each process a
    file of its own.  ``format``, when given, is a format string
    (:mod:`mmaplog.handlers._format`) for the stored message text; by default
    the message is stored as it is and the rest as separate columns.

    After ``os.fork()`` the child never writes into the parent's ring: a
    handler whose path contains ``{pid}`` opens the child's own file on its
    first record; any other handler stops writing in the child, reports that
    once on stderr and counts the records in :attr:`dropped`.
    """

    def __init__(
        self,
        target: RingWriter | str | os.PathLike[str],
        *,
        size: int | str = DEFAULT_RING_SIZE,
        slot_size: int = L.DEFAULT_SLOT_SIZE,
        rotate: int = 0,
        mode: int = 0o640,
        level: int | str = 0,
        format: str | None = None,
    ) -> None:
        super().__init__(level, format)
        if isinstance(target, RingWriter):
            self._template: str | None = None
            self._options: dict[str, Any] = {}
            self._owns_writer = False
            writer = target
        else:
            self._template = os.fspath(target)
            self._options = {"size": size, "slot_size": slot_size, "rotate": rotate, "mode": mode}
            self._owns_writer = True
            writer = RingWriter(self._template, **self._options)
        self._writer: RingWriter | None = writer
        self._write = writer.write
        self._take_entries(writer)
        self._write_batch: Any = getattr(writer, "write_batch", None)
        self._lock = threading.RLock()  # re-entrant: a signal handler may log while this thread holds it
        self._dropped_in_child = 0
        self._closed = False
        self._reopen_pending = False
        self._parent_path: Path | None = None
        if self.line_format is None:
            self.handle = self._handle_plain  # type: ignore[method-assign]
        _lifecycle.track(self)

    @property
    def writer(self) -> RingWriter | None:
        """The writer records go to (None in a forked child that has not written yet)."""
        return self._writer

    @property
    def path(self) -> Path | None:
        """The ring file being written."""
        return self._writer.path if self._writer is not None else None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    @property
    def dropped(self) -> int:
        """Records that could not be written (writer closed or failing, or a forked child without ``{pid}``)."""
        writer = self._writer
        return self._dropped_in_child + (writer.dropped if writer is not None else 0)

    def _handle_plain(self, record: LogRecord) -> None:
        """:meth:`Handler.handle` without a format: the level check and one write (which never raises)."""
        if record.level >= self.level:
            self._write(record.message, level=record.level, logger=record.logger, fields=record.fields,
                        time_ns=record.time_ns, thread=record.thread, exception=record.exception)

    def emit(self, record: LogRecord) -> None:
        """Write one record into the ring."""
        fmt = self.line_format
        self._write(fmt.format(record) if fmt is not None else record.message, level=record.level,
                    logger=record.logger, fields=record.fields, time_ns=record.time_ns, thread=record.thread,
                    exception=record.exception)

    def emit_batch(self, records: list[LogRecord]) -> None:
        """Write several records (the async handler's worker calls this with whole batches)."""
        write = self._write
        fmt = self.line_format
        write_batch = self._write_batch
        if fmt is None and write_batch is not None:
            write_batch(records)
        elif fmt is None:
            for r in records:
                write(r.message, level=r.level, logger=r.logger, fields=r.fields, time_ns=r.time_ns,
                      thread=r.thread, exception=r.exception)
        else:
            for r in records:
                write(fmt.format(r), level=r.level, logger=r.logger, fields=r.fields, time_ns=r.time_ns,
                      thread=r.thread, exception=r.exception)

    def flush(self) -> None:
        """Force written records to stable storage (``msync``); a returned write is already crash-safe."""
        writer = self._writer
        if writer is not None and not writer.closed:
            writer.flush()

    def close(self) -> None:
        """Stop writing; closes the writer when this handler opened it.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._write = self._drop
            self._drop_entries()
            self._write_batch = None
            writer = self._writer
        if writer is not None and self._owns_writer:
            writer.close()

    def _take_entries(self, writer: RingWriter) -> None:
        """The writer's positional entries (``_append``, ``_append_fields``), unless a subclass replaced ``write``."""
        if type(writer).write is RingWriter.write:
            self._append = writer._append
            self._append_fields = writer._append_fields
        else:
            self._drop_entries()

    def _drop_entries(self) -> None:
        """The positional entries through ``write`` (closed, forked, a custom writer)."""
        self._append = self._append_via_write
        self._append_fields = self._append_fields_via_write

    def _append_via_write(self, message: str, level: int, logger: str) -> int:
        """The loggers' positional entry while there is no writer's own (closed, forked, a custom writer)."""
        return self._write(message, level=level, logger=logger)

    def _append_fields_via_write(self, message: str, level: int, logger: str, fields_json: bytes) -> int:
        """The pre-encoded fields entry while there is no writer's own: the fields go through ``write``."""
        return self._write(message, level=level, logger=logger, fields=json.loads(fields_json))

    # ------------------------------------------------------------------ fork
    def _drop(self, message: Any, **_: Any) -> int:
        self._dropped_in_child += 1
        return 0

    def _drop_in_child(self, message: Any, **_: Any) -> int:
        self._dropped_in_child += 1
        report_once(
            self,
            "forked",
            f"ring {self._parent_path}: process {os.getpid()} is a fork of the writing process, so it does "
            f"not write into that ring (use {{pid}} in the path to give each process its own file); "
            f"records from this process are counted as dropped",
        )
        return 0

    def _open_in_child(self, message: Any, **kwargs: Any) -> int:
        """First record in a forked child: open the child's own ring, then write."""
        with self._lock:
            if self._reopen_pending:
                self._reopen_pending = False
                assert self._template is not None
                try:
                    writer = RingWriter(self._template, **self._options)
                except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
                    report_once(self, "reopen", f"ring {self._template}: cannot open in process {os.getpid()} ({exc})")
                    self._write = self._drop
                else:
                    self._writer = writer
                    self._write = writer.write
                    self._take_entries(writer)
                    self._write_batch = getattr(writer, "write_batch", None)
        write = self._write
        if write == self._open_in_child:  # re-entered (a signal handler) while this thread opens the file
            return self._drop(message)
        return write(message, **kwargs)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        if self._closed:
            return
        self._parent_path = self.path
        self._write_batch = None
        self._drop_entries()
        if self._template is not None and "{pid}" in self._template:
            self._reopen_pending = True
            self._write = self._open_in_child
        else:
            self._write = self._drop_in_child
        self._writer = None

    def __repr__(self) -> str:
        return f"<RingHandler {str(self.path)!r} level={self.level}>"

