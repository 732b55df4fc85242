"""Records into a pandas DataFrame: ``mmaplog.read_dataframe`` of a ring against ``pandas.read_json(lines=True)``.

The JSON lines are what ``mmaplog-read -o json`` prints for the same ring, so
both paths end in a DataFrame of the same records (times, levels, loggers,
messages, fields).  ``test_dataframe_ratio`` times both in one run (best of a
few rounds each) and records ``ratio`` (read_json's time over read_dataframe's)
and records per second of each in ``extra_info``; the other benchmarks time
each path on its own.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import mmaplog
from bench._subjects import Scale, need

#: Records in the files: at most this many at full scale (read_json of a million lines takes most of a minute).
MAX_RECORDS = 200_000
LOGGERS = ("app", "app.db", "app.http", "worker")


class Inputs(NamedTuple):
    ring: Path
    lines: Path
    records: int


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, scale: Scale) -> Inputs:
    folder = tmp_path_factory.mktemp("frames")
    ring = folder / "app.mmlog"
    count = min(scale.reader_records, MAX_RECORDS)
    with mmaplog.RingWriter(ring, size=max(1 << 20, count * 256 * 2), slot_size=256) as w:
        for i in range(count):
            fields = {"request": i, "user": f"u{i % 97}"} if i % 2 else None
            w.write(f"request {i} done in {i % 1000} ms", level=(10, 20, 20, 30, 40)[i % 5],
                    logger=LOGGERS[i % len(LOGGERS)], fields=fields)
    lines = folder / "app.json"
    with lines.open("wb") as f:  # the CLI's own output, as a user would make it
        subprocess.run([sys.executable, "-m", "mmaplog.cli.read", "-o", "json", str(ring)], stdout=f, check=True)
    assert lines.read_bytes().count(b"\n") == count
    return Inputs(ring, lines, count)


def _best(call: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def test_dataframe_from_ring(benchmark: Any, inputs: Inputs) -> None:
    need("pandas")
    df = benchmark(mmaplog.read_dataframe, inputs.ring)
    assert len(df) == inputs.records
    benchmark.extra_info.update(records=inputs.records)


def test_arrow_from_ring(benchmark: Any, inputs: Inputs) -> None:
    need("pyarrow")
    table = benchmark(mmaplog.read_arrow, inputs.ring)
    assert table.num_rows == inputs.records
    benchmark.extra_info.update(records=inputs.records)


def test_dataframe_from_json_lines(benchmark: Any, inputs: Inputs) -> None:
    need("pandas")
    import pandas as pd

    df = benchmark(pd.read_json, inputs.lines, lines=True)
    assert len(df) == inputs.records
    benchmark.extra_info.update(records=inputs.records)


def test_dataframe_ratio(benchmark: Any, inputs: Inputs, scale: Scale) -> None:
    """Both paths in one run: records per second of each and the ratio."""
    need("pandas")
    import pandas as pd

    rounds = 3 if scale.full else 1
    ring_s = _best(lambda: mmaplog.read_dataframe(inputs.ring), rounds)
    json_s = _best(lambda: pd.read_json(inputs.lines, lines=True), rounds)
    benchmark.extra_info.update(
        records=inputs.records,
        read_dataframe_records_per_s=round(inputs.records / ring_s),
        read_json_records_per_s=round(inputs.records / json_s),
        ratio=round(json_s / ring_s, 2),
    )
    benchmark.pedantic(mmaplog.read_dataframe, args=(inputs.ring,), rounds=1, iterations=1)
    print(f"\nread_dataframe: {inputs.records / ring_s:,.0f} records/s; pandas.read_json(lines=True): "
          f"{inputs.records / json_s:,.0f} records/s; ratio {json_s / ring_s:.1f}x")
