"""The cost of one logging call, per logger, measured side by side in one run.

Three groups: an enabled INFO call with the three-argument message, the same
with a message without arguments, and a DEBUG call while the level is INFO.
The empty function called with the same arguments is the floor in each group;
``tools/bench_report.py`` turns the groups into ratios.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench._subjects import ARGS, MESSAGE, PLAIN, SUBJECTS, Subject, args_for

#: Every logger the suite knows, in the registry's order.
ENABLED = list(SUBJECTS)
DISABLED = ["noop", "mmaplog-direct", "mmaplog-async", "stdlib-file", "picologging"]


#: Rounds of at least 0.2 ms: each round averages many calls, so the timer's own cost and a single
#: interrupt weigh little, and the minimum over thousands of rounds is a stable figure.
ROUNDS = pytest.mark.benchmark(min_time=0.0002, warmup=True)


@ROUNDS
@pytest.mark.parametrize("message", ["args", "plain"])
@pytest.mark.parametrize("name", ENABLED)
def test_enabled_call(benchmark: Any, subject_factory: Callable[..., Subject], name: str, message: str) -> None:
    """One INFO call that writes its record to the file, for each logger and message shape."""
    subject = subject_factory(name)
    with_args = message == "args"
    benchmark.group = f"call: {'3 args' if with_args else 'no args'}"
    benchmark.extra_info.update(subject=name, message=message)
    benchmark(subject.info, *args_for(subject, with_args))
    benchmark.extra_info.update(subject.stats())
    last = subject.last()
    if name != "noop":
        # A logger that silently dropped its records would look fast: the record must be in the file.
        assert last is not None and last.endswith(PLAIN), last
        assert MESSAGE % ARGS == PLAIN


@ROUNDS
@pytest.mark.parametrize("name", DISABLED)
def test_disabled_call(benchmark: Any, subject_factory: Callable[..., Subject], name: str) -> None:
    """One DEBUG call while the level is INFO: what logging that is switched off costs."""
    subject = subject_factory(name)
    benchmark.group = "call: disabled level"
    benchmark.extra_info.update(subject=name, message="disabled")
    benchmark(subject.debug, *args_for(subject, True))
    assert subject.last() is None, "a disabled DEBUG call wrote a record"
