"""Start-up of ``mmaplog-read``: how long a user waits for ``--version``, ``--help`` and a small read.

Each command runs as a new process, as a user runs it (the installed script
where there is one, else ``python -m mmaplog.cli.read``).  ``python -c pass``
is the floor every Python command pays; ``extra_info`` holds the fastest run
of the command and of that floor in the same round-robin, their ratio, and the
target in seconds (``--version`` under 0.15 s, reading 1,000 records under
0.3 s on the reference machine).  Nothing is asserted about time here: the
report reads the figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmaplog import RingWriter

_SCRIPT = Path(sys.executable).parent / "mmaplog-read"
_READ = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "mmaplog.cli.read"]
#: Target seconds per case (None: shown for comparison only).
TARGETS: dict[str, float | None] = {"python -c pass": None, "--version": 0.15, "--help": 0.15, "read 1,000 records": 0.3}


@pytest.fixture(scope="module")
def ring_1000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "app.mmlog"
    with RingWriter(path, size="1 MiB") as ring:
        for i in range(1000):
            ring.write(f"order {i} paid {i * 0.5:.2f} by bob", level=20, logger="app.orders", fields={"order": i})
    return path


def _argv(case: str, ring: Path) -> list[str]:
    if case == "python -c pass":
        return [sys.executable, "-c", "pass"]
    if case == "read 1,000 records":
        return [*_READ, str(ring)]
    return [*_READ, case]


def _run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - start


@pytest.mark.parametrize("case", list(TARGETS))
def test_startup(benchmark, case: str, ring_1000: Path, scale: object, pytestconfig: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as a user's shell has it
    argv = _argv(case, ring_1000)
    quick = pytestconfig.getoption("benchmark_disable", False)
    rounds = 1 if quick else 15
    # The floor and the command alternate, so both see the same machine load.
    floor, own = [], []
    for _ in range(rounds):
        floor.append(_run([sys.executable, "-c", "pass"], env))
        own.append(_run(argv, env))
    benchmark.pedantic(_run, args=(argv, env), rounds=rounds, warmup_rounds=0 if quick else 1)
    benchmark.extra_info.update(
        subject=case,
        seconds_min=min(own),
        floor_seconds_min=min(floor),
        ratio_to_python_pass=min(own) / min(floor),
        target_seconds=TARGETS[case],
    )
