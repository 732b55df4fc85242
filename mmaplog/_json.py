"""JSON text for values decoded from records, shared by the CLI's JSON lines, the shippers and the DataFrame reader.

Non-ASCII stays readable; controls that a terminal might act on (DEL, C1) and lone surrogates, which UTF-8 cannot
carry, are escaped; NaN and infinities, which JSON cannot spell, become strings. The output is always valid JSON.
"""

from __future__ import annotations

import json
import math
import re
from json.encoder import encode_basestring
from typing import Any

__all__ = ["escape_raw", "json_string", "json_value"]

#: What json's encoder leaves raw but a terminal might act on (DEL, C1) or UTF-8 cannot carry (lone surrogates).
_JSON_RAW = re.compile("[\x7f-\x9f\ud800-\udfff]")


def _json_escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_raw(encoded: str) -> str:
    """JSON text ``encoded`` by :mod:`json` with DEL, C1 controls and lone surrogates escaped as ``\\uXXXX``.

    For callers that encode strings themselves (``json.encoder.encode_basestring``)
    in a loop over many rows; the result is what :func:`json_string` returns.
    """
    return _JSON_RAW.sub(_json_escape_char, encoded)


def json_string(text: str) -> str:
    """``text`` as a JSON string literal; non-ASCII stays readable, controls and lone surrogates are escaped."""
    encoded: str = encode_basestring(text)
    return encoded if text.isprintable() else escape_raw(encoded)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities turned into strings (JSON has no spelling for them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_value(value: Any) -> str:
    """A value decoded from a record's fields as compact JSON text."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"))
    return escape_raw(text)
