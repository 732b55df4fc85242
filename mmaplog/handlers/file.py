"""FileHandler: formatted plain-text lines appended to a file, for people who want a text log too."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from .. import _lifecycle
from .._record import LogRecord
from ._base import Handler
from ._format import DEFAULT_FORMAT, LineFormat

__all__ = ["FileHandler"]

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


class FileHandler(Handler):
    """Appends each record as a formatted UTF-8 line to ``path``.

    The file is opened with ``O_APPEND`` and ``O_NOFOLLOW`` (a symbolic link is
    refused) and created with ``mode`` (0o640), its missing parent directories
    too (with the umask's permissions).  Each record is one ``write``
    call, so lines from threads, and from processes sharing the file, never
    interleave.  ``{pid}`` in ``path`` is replaced by the process id; after a
    fork such a handler opens the child's own file on its first record.
    """

    line_format: LineFormat  # always set: this handler formats every record itself

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        level: int | str = 0,
        format: str = DEFAULT_FORMAT,
        mode: int = 0o640,
    ) -> None:
        super().__init__(level)
        self._template = os.fspath(path)
        self.line_format = LineFormat(format)
        self._mode = mode
        # Re-entrant: a signal handler that logs while this thread is inside a write must not wait for itself.
        self._lock = threading.RLock()
        self._closed = False
        self._fd = -1
        self.path = self._resolve()
        self._fd = self._open()
        _lifecycle.track(self)

    def _resolve(self) -> Path:
        return Path(self._template.replace("{pid}", str(os.getpid())))

    def _open(self) -> int:
        try:
            try:
                return os.open(self.path, _FLAGS, self._mode)
            except FileNotFoundError:
                # A missing directory is made, as ``mkdir -p`` would (0o777 less the umask).
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return os.open(self.path, _FLAGS, self._mode)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                reason = "refusing to open a symbolic link"
            elif exc.filename is not None and os.fspath(exc.filename) != os.fspath(self.path):
                reason = f"cannot create its directory {exc.filename}: {exc.strerror}"
            else:
                reason = exc.strerror or str(exc)
            raise OSError(exc.errno, f"{self.path}: {reason}") from None

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            if self._closed:
                return
            if self._fd < 0:
                self._fd = self._open()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

    def emit(self, record: LogRecord) -> None:
        """Format ``record`` and append it as one line (more when it carries a traceback)."""
        self._write(self.line_format.format(record) + "\n")

    def emit_batch(self, records: list[LogRecord]) -> None:
        """Format several records and append them with one write call."""
        fmt = self.line_format.format
        self._write("".join([fmt(r) + "\n" for r in records]))

    def flush(self) -> None:
        """Force the file's contents to disk (lines are written unbuffered already)."""
        with self._lock:
            if self._fd >= 0:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass

    def close(self) -> None:
        """Close the file; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        if "{pid}" in self._template and not self._closed:
            # The child gets a file of its own, opened on its first record.
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1
            self.path = self._resolve()

    def __repr__(self) -> str:
        return f"<FileHandler {str(self.path)!r} level={self.level}>"
