"""The C level methods' state objects (mmaplog/_emitter.h): each holds its references once and gives them back."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from mmaplog import _native
from mmaplog._record import LogRecord

_cwrite = _native.load("_cwrite")


def _type_refs_after(make: object, calls: int = 500) -> int:
    first = make()  # type: ignore[operator]
    kind = type(first.__self__)
    before = sys.getrefcount(kind)
    for _ in range(calls):
        make()  # type: ignore[operator]
    gc.collect()
    return sys.getrefcount(kind) - before


@pytest.mark.skipif(_cwrite is None, reason="the C accelerator is not built (or MMAPLOG_PURE_PYTHON is set)")
def test_logger_emitters_give_back_their_type_and_arguments() -> None:
    target, fallback = object(), lambda *args, **kwargs: None
    held = sys.getrefcount(fallback)
    assert _type_refs_after(lambda: _cwrite.ring_emitter(target, 20, "app", fallback)) == 0
    assert _type_refs_after(lambda: _cwrite.record_emitter(target, 20, "app", fallback, LogRecord)) == 0
    assert sys.getrefcount(fallback) == held


def test_async_emitters_give_back_their_type(tmp_path: Path) -> None:
    from mmaplog.handlers.async_ import AsyncHandler
    from mmaplog.handlers.ring import RingHandler

    handler = AsyncHandler(RingHandler(tmp_path / "r.mmlog"))
    try:
        native = handler._native
        if native is None:
            pytest.skip("the native async queue is not built (or MMAPLOG_PURE_PYTHON is set)")
        assert _type_refs_after(lambda: native.emitter(20, "app", print)) == 0
    finally:
        handler.close()
