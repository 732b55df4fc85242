"""Bridges to tools people already use: OpenTelemetry trace context, structlog, loguru.

Each submodule imports its third-party package only when it is used (building
a handler, a processor or a sink), never when ``mmaplog`` is imported; a
missing package raises ImportError naming the extra that installs it
(``pip install 'mmaplog[otel]'``, ``'mmaplog[structlog]'``, ``'mmaplog[loguru]'``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..handlers._base import Handler

__all__ = ["as_handler", "require"]


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, or raise ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is needed here and is not installed: pip install 'mmaplog[{extra}]' ({exc})"
        ) from exc


def as_handler(target: Any, **ring_options: Any) -> tuple[Handler, bool]:
    """A handler for ``target``: a :class:`~mmaplog.Handler` as it is, a writer or a path in a new RingHandler.

    Returns (handler, owned): ``owned`` is True when the handler was made here (and is closed with the bridge).
    """
    from ..handlers._base import Handler
    from ..handlers.ring import RingHandler

    if isinstance(target, Handler):
        return target, False
    return RingHandler(target, **ring_options), True
