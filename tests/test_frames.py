"""read_dataframe and read_arrow: the reader's columns as pandas and Arrow, and a DuckDB query over many rings."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmaplog
from mmaplog import RingWriter
from mmaplog.frames import COLUMNS

BASE_NS = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
MINUTE = 60_000_000_000
TRACEBACK = "Traceback (most recent call last):\nValueError: bad\n"

# (message, level, logger, fields, exception, ns after BASE_NS)
RECORDS: list[tuple[str, int, str, dict[str, Any] | None, str | None, int]] = [
    ("started", 20, "app", {"version": "1.2"}, None, 1),
    ("query", 10, "app.db", {"rows": 3, "ok": True}, None, 1_000_000_123),
    ("slow", 30, "app.db", {"ms": 812.5}, None, MINUTE + 7),
    ("failed", 40, "app.http", {"url": "/pay", "nested": {"a": [1, 2]}}, TRACEBACK, MINUTE + 999_999_999),
    ("custom level", 7, "app", None, None, 2 * MINUTE),
    ("unicode ✓ \u00e9", 50, "", None, None, 2 * MINUTE + 1),
]


def write_ring(path: Path, records: list[tuple[str, int, str, dict[str, Any] | None, str | None, int]],
               **options: Any) -> None:
    with RingWriter(path, size=options.pop("size", 64 * 1024), slot_size=256, **options) as w:
        for message, level, logger, fields, exception, offset in records:
            w.write(message, level=level, logger=logger, fields=fields, exception=exception, time_ns=BASE_NS + offset)


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    path = tmp_path / "app.mmlog"
    write_ring(path, RECORDS)
    return path


# ---------------------------------------------------------------------- pandas
def test_dataframe_columns_and_values(ring: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'mmaplog[pandas]')")
    df = mmaplog.read_dataframe(ring)
    assert tuple(df.columns) == COLUMNS
    assert len(df) == len(RECORDS)
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    # Exact to the nanosecond: the times are not taken through floats.
    assert (df["time"].astype("int64").to_numpy() == [BASE_NS + r[5] for r in RECORDS]).all()
    assert df["time"].iloc[0] == pd.Timestamp("2024-05-01T12:00:00.000000001Z")
    assert df["seq"].tolist() == list(range(1, len(RECORDS) + 1))
    assert df["level"].dtype == np.uint8 and df["thread"].dtype == np.uint64 and df["pid"].dtype == np.uint32
    assert df["level"].tolist() == [r[1] for r in RECORDS]
    assert df["level_name"].tolist() == ["INFO", "DEBUG", "WARNING", "ERROR", "LEVEL7", "CRITICAL"]
    assert isinstance(df["level_name"].dtype, pd.CategoricalDtype)
    assert df["logger"].tolist() == [r[2] for r in RECORDS]
    assert df["message"].tolist() == [r[0] for r in RECORDS]
    assert df["fields"].tolist() == [r[3] for r in RECORDS]
    assert [e if isinstance(e, str) else None for e in df["exception"]] == [r[4] for r in RECORDS]
    assert not df["truncated"].any()
    assert set(df["source"]) == {str(ring)} and set(df["pid"]) == {os.getpid()}
    assert df.attrs["mmaplog_stats"]["records"] == len(RECORDS)


def test_dataframe_fields_as_json_and_filters(ring: Path) -> None:
    pytest.importorskip("pandas", reason="pandas is not installed (pip install 'mmaplog[pandas]')")
    df = mmaplog.read_dataframe(ring, fields="json")
    texts = [f if isinstance(f, str) else None for f in df["fields"]]
    assert [json.loads(t) if t else None for t in texts] == [r[3] for r in RECORDS]
    df = mmaplog.read_dataframe(ring, min_level="warning", logger="app", since_ns=BASE_NS + MINUTE)
    assert df["message"].tolist() == ["slow", "failed"]
    with pytest.raises(ValueError, match="fields"):
        mmaplog.read_dataframe(ring, fields="xml")  # type: ignore[arg-type]


def test_dataframe_of_no_records_has_the_columns(tmp_path: Path) -> None:
    pytest.importorskip("pandas", reason="pandas is not installed (pip install 'mmaplog[pandas]')")
    path = tmp_path / "empty.mmlog"
    write_ring(path, [])
    df = mmaplog.read_dataframe(path)
    assert tuple(df.columns) == COLUMNS and len(df) == 0
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"


def test_loss_travels_with_the_frame(tmp_path: Path) -> None:
    """A ring that wrapped: the overwritten records are counted in the result's stats, not silently gone."""
    pytest.importorskip("pandas", reason="pandas is not installed (pip install 'mmaplog[pandas]')")
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'mmaplog[arrow]')")
    path = tmp_path / "small.mmlog"
    many = [(f"m{i}", 20, "app", None, None, i) for i in range(200)]
    write_ring(path, many, size=16 * 1024)
    df = mmaplog.read_dataframe(path)
    stats = df.attrs["mmaplog_stats"]
    assert stats["overwritten"] > 0 and stats["overwritten"] + len(df) == 200
    table = mmaplog.read_arrow(path)
    assert isinstance(table, pa.Table)
    assert json.loads(table.schema.metadata[b"mmaplog.stats"]) == stats


# ---------------------------------------------------------------------- Arrow
def test_arrow_schema_and_values(ring: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'mmaplog[arrow]')")
    table = mmaplog.read_arrow(ring)
    assert tuple(table.column_names) == COLUMNS
    schema = table.schema
    assert schema.field("time").type == pa.timestamp("ns", tz="UTC")
    assert schema.field("seq").type == pa.uint64() and schema.field("level").type == pa.uint8()
    assert schema.field("message").type == pa.string() and schema.field("fields").type == pa.string()
    assert pa.types.is_dictionary(schema.field("logger").type)
    assert table.column("time").cast(pa.int64()).to_pylist() == [BASE_NS + r[5] for r in RECORDS]
    assert table.column("level_name").to_pylist() == ["INFO", "DEBUG", "WARNING", "ERROR", "LEVEL7", "CRITICAL"]
    assert table.column("logger").to_pylist() == [r[2] for r in RECORDS]
    assert table.column("message").to_pylist() == [r[0] for r in RECORDS]
    assert [json.loads(f) if f else None for f in table.column("fields").to_pylist()] == [r[3] for r in RECORDS]
    assert table.column("exception").to_pylist() == [r[4] for r in RECORDS]
    assert table.column("source").to_pylist() == [str(ring)] * len(RECORDS)


def test_arrow_fields_json_is_valid_for_values_json_cannot_spell(tmp_path: Path) -> None:
    """NaN, infinities and control characters in fields still give valid JSON text."""
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'mmaplog[arrow]')")
    path = tmp_path / "odd.mmlog"
    write_ring(path, [("odd", 20, "app", {"nan": float("nan"), "inf": float("-inf"), "ctl": "a\x1bb\x85"}, None, 0)])
    (text,) = mmaplog.read_arrow(path).column("fields").to_pylist()
    value = json.loads(text)
    assert value["ctl"] == "a\x1bb\x85" and value["nan"] == "nan" and value["inf"] == "-inf"


def test_many_files_merge_in_time_order(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'mmaplog[arrow]')")
    a, b = tmp_path / "app-1.mmlog", tmp_path / "app-2.mmlog"
    write_ring(a, [("a0", 20, "x", None, None, 0), ("a2", 20, "x", None, None, 2)])
    write_ring(b, [("b1", 20, "y", None, None, 1), ("b3", 20, "y", None, None, 3)])
    table = mmaplog.read_arrow([a, b])
    assert table.column("message").to_pylist() == ["a0", "b1", "a2", "b3"]
    assert table.column("source").to_pylist() == [str(a), str(b), str(a), str(b)]


# ---------------------------------------------------------------------- DuckDB
#: The query docs/INTEGRATIONS.md shows: errors per logger per minute across every ring of a service.
ERRORS_PER_MINUTE = """
    SELECT logger, time_bucket(INTERVAL 1 MINUTE, time) AS minute, count(*) AS errors
    FROM records
    WHERE level >= 40
    GROUP BY ALL
    ORDER BY minute, logger
"""


def test_duckdb_errors_per_logger_per_minute(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install 'mmaplog[duckdb]')")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'mmaplog[arrow]')")
    expected: dict[tuple[str, int], int] = {}
    for i in range(4):
        records = []
        for j in range(30):
            level = 40 if (i + j) % 3 == 0 else 20
            logger = ("app.db", "app.http", "worker")[(i * j) % 3]
            offset = (j % 5) * MINUTE + i * 1000 + j
            records.append((f"r{i}.{j}", level, logger, {"i": i}, None, offset))
            if level >= 40:
                expected[(logger, j % 5)] = expected.get((logger, j % 5), 0) + 1
        write_ring(tmp_path / f"app-{i}.mmlog", records)
    write_ring(tmp_path / "other.mmlog", [("not this service", 40, "app.db", None, None, 0)])

    records = mmaplog.read_arrow(sorted(glob.glob(str(tmp_path / "app-*.mmlog"))))  # DuckDB finds it by name
    rows = duckdb.sql(ERRORS_PER_MINUTE).fetchall()
    got = {(logger, (minute.timestamp() * 1e9 - BASE_NS) // MINUTE): n for logger, minute, n in rows}
    assert got == expected
    # Fields are JSON text: DuckDB's JSON operators read them.
    assert duckdb.sql("SELECT count(*) FROM records WHERE (fields->>'i')::INT = 2").fetchall() == [(30,)]


# ---------------------------------------------------------------------- imports
def test_nothing_optional_is_imported_until_asked_for(tmp_path: Path) -> None:
    """``import mmaplog`` and read_array load neither pandas nor pyarrow; a missing one names its extra."""
    path = tmp_path / "app.mmlog"
    write_ring(path, RECORDS[:1])
    script = textwrap.dedent(
        f"""
        import sys
        import mmaplog
        mmaplog.read_array({str(path)!r})
        assert "pandas" not in sys.modules and "pyarrow" not in sys.modules, sorted(sys.modules)
        sys.modules["pandas"] = None  # an import of it now fails as if it were not installed
        sys.modules["pyarrow"] = None
        for call, extra in ((mmaplog.read_dataframe, "pandas"), (mmaplog.read_arrow, "arrow")):
            try:
                call({str(path)!r})
            except ImportError as exc:
                assert f"mmaplog[{{extra}}]" in str(exc), exc
            else:
                raise AssertionError("no ImportError")
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
