"""LogRecord: one record in flight from a Logger to its handlers (not the on-disk form)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["LogRecord"]


class LogRecord:
    """What a logging call produced: who, when, how severe, and the message with its arguments.

    Formatting of ``msg % args`` is deferred until a handler asks for
    :attr:`message`, so a record that no handler renders costs no formatting.
    A message whose arguments do not fit is rendered with a visible marker
    instead of raising.
    """

    __slots__ = ("_message", "args", "exception", "fields", "level", "logger", "msg", "thread", "time_ns")

    def __init__(
        self,
        logger: str,
        level: int,
        msg: Any,
        args: tuple[Any, ...] = (),
        fields: Mapping[str, Any] | None = None,
        time_ns: int = 0,
        thread: int = 0,
        exception: str | None = None,
    ) -> None:
        self.logger = logger
        self.level = level
        self.msg = msg
        self.args = args
        self.fields = fields
        self.time_ns = time_ns
        self.thread = thread
        self.exception = exception
        self._message: str | None = None

    @property
    def message(self) -> str:
        """``msg % args``, computed once; never raises (a failure is shown in the text)."""
        text = self._message
        if text is None:
            text = self._message = render_message(self.msg, self.args)
        return text

    def __repr__(self) -> str:
        return f"<LogRecord {self.logger!r} {self.level} {self.msg!r}>"


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001 - a broken __str__ must not stop logging
        try:
            return repr(value)
        except Exception:  # noqa: BLE001
            return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def render_message(msg: Any, args: tuple[Any, ...]) -> str:
    """Apply %-style ``args`` to ``msg``; on failure keep everything visible with a marker."""
    text = msg if type(msg) is str else _safe_str(msg)
    if not args:
        return text
    if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]  # type: ignore[assignment]  # stdlib-style "%(name)s" with a dict
    try:
        return text % args
    except Exception as exc:  # noqa: BLE001
        shown = ", ".join(_safe_str(a) for a in (args.values() if isinstance(args, Mapping) else args))
        return f"{text} [mmaplog: bad arguments ({type(exc).__name__}: {_safe_str(exc)}): {shown}]"
