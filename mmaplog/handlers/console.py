"""ConsoleHandler: formatted lines on stderr (or any text stream), whole lines even from many threads."""

from __future__ import annotations

import os
import sys
import threading
from typing import Literal, TextIO

from .. import _lifecycle
from .._record import LogRecord
from ._base import Handler
from ._format import DEFAULT_FORMAT, LineFormat

__all__ = ["ConsoleHandler"]


def _wants_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except Exception:  # noqa: BLE001 - a closed or odd stream is not a terminal
        return False


class ConsoleHandler(Handler):
    """Writes each record as a formatted line to a text stream, stderr by default.

    One lock is held around each write, so lines from different threads never
    interleave.  With ``stream=None`` the handler writes to whatever
    ``sys.stderr`` is at the time of each record (so redirection works).
    ``colour`` is ``"auto"`` (level names in colour on a terminal without
    ``NO_COLOR``), True or False.
    """

    line_format: LineFormat  # always set: this handler formats every record itself

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        level: int | str = 0,
        format: str = DEFAULT_FORMAT,
        colour: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__(level)
        self.stream = stream
        if colour == "auto":
            colour = _wants_colour(stream if stream is not None else sys.stderr)
        self.line_format = LineFormat(format, colour=bool(colour))
        # Re-entrant: a signal handler that logs while this thread is inside a write must not wait for itself.
        self._lock = threading.RLock()
        self._closed = False
        _lifecycle.track(self)

    def _stream(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def emit(self, record: LogRecord) -> None:
        """Format ``record`` and write it as one line (more when it carries a traceback)."""
        if self._closed:
            return
        text = self.line_format.format(record) + "\n"
        with self._lock:
            stream = self._stream()
            stream.write(text)
            stream.flush()

    def emit_batch(self, records: list[LogRecord]) -> None:
        """Format several records and write them with one write call."""
        if self._closed:
            return
        fmt = self.line_format.format
        text = "".join([fmt(r) + "\n" for r in records])
        with self._lock:
            stream = self._stream()
            stream.write(text)
            stream.flush()

    def flush(self) -> None:
        """Flush the stream."""
        with self._lock:
            try:
                self._stream().flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        """Flush and stop writing; the stream itself is not closed (it is not the handler's)."""
        if not self._closed:
            self.flush()
            self._closed = True

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        target = "sys.stderr" if self.stream is None else getattr(self.stream, "name", repr(self.stream))
        return f"<ConsoleHandler {target} level={self.level}>"
