"""A handler's configuration table while it is built: typed getters whose errors name the key.

:func:`mmaplog.configure` makes one :class:`HandlerOptions` per handler table
and hands it to the handler type's factory (``Handler.from_config`` for the
built-in types).  It lives among the handlers, below the configuration module
that uses it, so a handler can read its own options without knowing that
module; :mod:`mmaplog.config` re-exports it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .._errors import ConfigError
from .._levels import level_number
from ..writer import parse_size
from ._base import Handler

__all__ = ["Builder", "HandlerOptions", "config_level"]

_MISSING: Any = object()


class Builder(Protocol):
    """What :class:`HandlerOptions` asks of the configuration being built (``mmaplog.config`` provides it)."""

    default_format: str

    def handler_list(self, value: Any, key: str) -> list[Handler]: ...

    def carry_over_ring(self, options: HandlerOptions, path: str, level: int, fmt: str | None,
                        settings: dict[str, Any]) -> Handler | None: ...


class HandlerOptions:
    """One handler's table while it is being built: typed getters whose errors name the key.

    A factory takes the keys it knows (each getter removes its key); keys left
    over when the factory returns are reported as unknown.
    """

    def __init__(self, key: str, table: Mapping[str, Any], build: Builder) -> None:
        self.key = key
        self._table = dict(table)
        self._build = build

    def error(self, name: str, message: str) -> ConfigError:
        """A ConfigError about this handler's key ``name``."""
        return ConfigError(f"{self.key}.{name}: {message}" if name else f"{self.key}: {message}")

    def has(self, name: str) -> bool:
        """True when the table has key ``name`` (not yet taken)."""
        return name in self._table

    def take(self, name: str, default: Any = _MISSING) -> Any:
        """The raw value of ``name`` (removed from the table); without a default the key is required."""
        if name in self._table:
            return self._table.pop(name)
        if default is _MISSING:
            raise self.error(name, "required")
        return default

    def string(self, name: str, default: Any = _MISSING) -> Any:
        """A string value."""
        value = self.take(name, default)
        if value is not default and not isinstance(value, str):
            raise self.error(name, f"must be a string, got {value!r}")
        return value

    def path(self, name: str = "path") -> str:
        """A file path (a non-empty string)."""
        value = self.take(name)
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise self.error(name, f"must be a file path, got {value!r}")
        return os.fspath(value)

    def level(self, name: str = "level", default: int = 0) -> int:
        """A level name or number."""
        value = self.take(name, default)
        return config_level(value, f"{self.key}.{name}")

    def size(self, name: str, default: int) -> int:
        """A positive byte size (``65536``, ``"64 MiB"``)."""
        value = self.take(name, default)
        try:
            size = parse_size(value)
        except (ValueError, TypeError):
            size = -1
        if size <= 0:
            raise self.error(name, f"must be a positive size (like 65536 or '64 MiB'), got {value!r}")
        return size

    def integer(self, name: str, default: Any = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        """A whole number, optionally within bounds."""
        value = self.take(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be a whole number, got {value!r}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise self.error(name, f"must be {bounds}, got {value!r}")
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> bool:
        """true or false."""
        value = self.take(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def choice(self, name: str, choices: Iterable[Any], default: Any = _MISSING) -> Any:
        """One of ``choices``."""
        value = self.take(name, default)
        options = list(choices)
        if value not in options:
            raise self.error(name, f"must be one of {', '.join(repr(c) for c in options)}, got {value!r}")
        return value

    def file_mode(self, name: str = "mode", default: int = 0o640) -> int:
        """A permission mode: a number (0o640) or an octal string ("640", "0o640")."""
        value = self.take(name, default)
        try:
            mode = int(value, 8) if isinstance(value, str) else value
        except ValueError:
            mode = -1
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise self.error(name, f"must be a permission mode like 0o640 or '640', got {value!r}")
        return mode

    def format(self, name: str = "format") -> str:
        """A format string (the top-level ``format`` when absent); checked when the handler is made."""
        value = self.take(name, self._build.default_format)
        if not isinstance(value, str):
            raise self.error(name, f"must be a format string, got {value!r}")
        return value

    def handlers(self, name: str = "handlers") -> list[Handler]:
        """Nested handler tables (for handlers that wrap others)."""
        value = self.take(name)
        return self._build.handler_list(value, f"{self.key}.{name}")

    def rest(self) -> dict[str, Any]:
        """Every key not taken yet (for passing on as keyword arguments)."""
        rest, self._table = self._table, {}
        return rest

    def finish(self) -> None:
        """Raise for keys no getter took."""
        if self._table:
            name = next(iter(self._table))
            raise self.error(name, "unknown key")

    def carry_over_ring(self, path: str, *, level: int = 0, format: str | None = None,
                        **settings: Any) -> Handler | None:
        """The running configuration's ring handler writing ``path`` with these settings, to be reused, or None.

        A ring writer holds an exclusive lock on its file, so a new
        configuration naming a ring the running one has open takes that
        handler over instead of opening the file again.  ``settings`` are
        the writer's (``size``, ``slot_size``, ``rotate``, ``mode``); a
        different ``level`` is applied when the new configuration is swapped
        in, never before.  Raises ConfigError when the ring is open with
        other settings (they cannot change while the file stays open).
        """
        return self._build.carry_over_ring(self, path, level, format, settings)

    def release_ring(self, path: str) -> None:
        """Kept for compatibility: does nothing (see :meth:`carry_over_ring`).

        Closing the running configuration's ring before the new one is known
        to be valid would leave a failed reload without its ring.
        """


def config_level(value: Any, key: str) -> int:
    """A level name or number; a ConfigError names ``key`` when it is neither."""
    try:
        return level_number(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from None
