"""Options and fixtures of the benchmark suite.

``pytest bench/ --benchmark-only`` is the full run; ``pytest bench/
--benchmark-disable`` runs every benchmark body once on small inputs (the
quick mode CI uses so the suite cannot rot).  ``--bench-scale`` overrides the
choice of input sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench._subjects import SCALES, SUBJECTS, Scale, Subject


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mmaplog benchmarks")
    group.addoption(
        "--bench-scale",
        choices=sorted(SCALES),
        default=None,
        help="input sizes: full (the default when benchmarks run) or quick (the default with --benchmark-disable)",
    )


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    """The scale of this run: quick when benchmarks are disabled, else full, unless --bench-scale says otherwise."""
    chosen = pytestconfig.getoption("--bench-scale")
    if chosen is None:
        chosen = "quick" if pytestconfig.getoption("benchmark_disable", False) else "full"
    return SCALES[chosen]


@pytest.fixture
def subject_factory(tmp_path: Path) -> Iterator[Callable[..., Subject]]:
    """Builds subjects by name in this test's directory and closes them afterwards."""
    made: list[Subject] = []

    def build(name: str, **options: Any) -> Subject:
        made.append(SUBJECTS[name](tmp_path, **options))
        return made[-1]

    yield build
    for subject in made:
        subject.close()


