"""JSON text of record values has one owner (mmaplog/_json.py); the CLI's per-row loop uses its escape_raw."""

from __future__ import annotations

import json
from json.encoder import encode_basestring

from hypothesis import given
from hypothesis import strategies as st

from mmaplog._json import escape_raw, json_string


@given(st.text(alphabet=st.characters(blacklist_categories=())))
def test_escape_raw_after_the_encoder_is_json_string(text: str) -> None:
    out = escape_raw(encode_basestring(text))
    assert out == json_string(text)
    assert json.loads(out) == text
    assert not any(0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in out)
