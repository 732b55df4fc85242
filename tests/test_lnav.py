"""The lnav format shipped in the package: lnav recognises ``mmaplog-read -o json`` lines through it.

A ring with known levels, loggers, times, fields and a traceback is turned
into JSON lines by ``mmaplog-read``; the format printed by ``--lnav-format``
is installed with ``lnav -i`` into a temporary configuration directory (never
the user's own ``~/.lnav``), and lnav's SQL interface must then see every
level, logger, time and field.  The test is skipped where lnav is not
installed, except under CI (``CI`` set), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmaplog import RingWriter

LNAV = shutil.which("lnav")
if LNAV is None:
    if os.environ.get("CI"):
        pytest.fail("lnav is not installed (.ci/run installs it with apt-get)", pytrace=False)
    pytest.skip("lnav is not installed (apt-get install lnav)", allow_module_level=True)

BASE_NS = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad'

# (message, level, logger, fields, exception, milliseconds after BASE_NS)
RECORDS: list[tuple[str, int, str, dict[str, Any] | None, str | None, int]] = [
    ("started", 20, "app", {"version": "1.2"}, None, 0),
    ("connecting", 10, "app.db", {"host": "db1", "port": 5432}, None, 1_000),
    ("query", 10, "app.db", {"host": "db1", "rows": 3}, None, 2_500),
    ("slow query", 30, "app.db", {"host": "db2", "ms": 812}, None, 61_000),
    ("retrying", 30, "app.http", None, None, 62_000),
    ("failed", 40, "app.http", {"url": "/pay"}, TRACEBACK, 63_250),
    ("gave up", 50, "app", None, None, 120_000),
    ("fine detail", 5, "app.db", None, None, 121_000),
]


def lnav_env(home: Path) -> dict[str, str]:
    """An environment whose lnav configuration lives under ``home`` (a temporary directory), times in UTC."""
    env = dict(os.environ)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), TZ="UTC")
    env.pop("LNAV_HOME", None)
    return env


@pytest.fixture
def lnav_home(tmp_path: Path) -> Path:
    """A private lnav configuration with mmaplog's format installed from ``mmaplog-read --lnav-format``."""
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    fmt = subprocess.run([sys.executable, "-m", "mmaplog.cli.read", "--lnav-format"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    definition = tmp_path / "mmaplog_json.json"
    definition.write_text(fmt)
    done = subprocess.run([LNAV, "-i", str(definition)], capture_output=True, text=True, timeout=60, env=lnav_env(home))
    assert done.returncode == 0, done.stderr + done.stdout
    installed = list((home / ".config").rglob("mmaplog_json.json"))
    assert installed, "lnav -i installed nothing under the temporary XDG_CONFIG_HOME"
    return home


@pytest.fixture
def json_lines(tmp_path: Path) -> Path:
    """The records above, written into a ring and turned into JSON lines by ``mmaplog-read -o json``."""
    ring = tmp_path / "app.mmlog"
    with RingWriter(ring, size=64 * 1024, slot_size=256) as w:
        for message, level, logger, fields, exception, ms in RECORDS:
            w.write(message, level=level, logger=logger, fields=fields, exception=exception,
                    time_ns=BASE_NS + ms * 1_000_000)
    out = tmp_path / "app.json"
    with out.open("wb") as f:
        subprocess.run([sys.executable, "-m", "mmaplog.cli.read", "-o", "json", str(ring)], stdout=f, timeout=60,
                       check=True)
    assert len(out.read_text().splitlines()) == len(RECORDS)
    return out


def sql(home: Path, query: str, source: Path, *, stdin: bool = False) -> list[dict[str, Any]]:
    """Rows of an SQL query run by lnav over ``source`` (a file argument, or piped into lnav's stdin)."""
    command = [LNAV, "-n", "-c", f";{query}", "-c", ":write-json-to -"]
    if stdin:
        with source.open("rb") as f:
            done = subprocess.run(command, stdin=f, capture_output=True, text=True, timeout=120, env=lnav_env(home))
    else:
        done = subprocess.run([*command, str(source)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120, env=lnav_env(home))
    assert done.returncode == 0, done.stderr + done.stdout
    start = done.stdout.find("[")
    assert start >= 0, f"lnav printed no JSON result: {done.stdout!r} {done.stderr!r}"
    rows: list[dict[str, Any]] = json.loads(done.stdout[start:])
    return rows


def test_format_is_valid_json_naming_the_output_keys() -> None:
    """The printed definition is one JSON format whose fields are the keys ``-o json`` writes."""
    done = subprocess.run([sys.executable, "-m", "mmaplog.cli.read", "--lnav-format"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    definition = json.loads(done.stdout)["mmaplog_json"]
    assert definition["json"] is True
    assert (definition["timestamp-field"], definition["level-field"], definition["body-field"]) == (
        "time", "level", "message")
    assert {"logger", "thread", "pid", "fields", "exception", "host", "process", "seq"} <= set(definition["value"])


def test_levels_are_recognised(lnav_home: Path, json_lines: Path) -> None:
    rows = sql(lnav_home, "SELECT log_level, count(*) AS n FROM mmaplog_json GROUP BY log_level", json_lines)
    assert {r["log_level"]: r["n"] for r in rows} == {"trace": 1, "debug": 2, "info": 1, "warning": 2, "error": 1,
                                                      "critical": 1}


def test_loggers_times_and_bodies_are_recognised(lnav_home: Path, json_lines: Path) -> None:
    rows = sql(lnav_home, "SELECT log_time, logger, log_body FROM mmaplog_json ORDER BY log_line", json_lines)
    assert [(r["logger"], r["log_body"]) for r in rows] == [(logger, message) for message, _, logger, *_ in RECORDS]
    # lnav shows times in milliseconds, in the zone of TZ (UTC here).
    assert [r["log_time"] for r in rows] == [
        "2024-05-01 12:00:00.000", "2024-05-01 12:00:01.000", "2024-05-01 12:00:02.500", "2024-05-01 12:01:01.000",
        "2024-05-01 12:01:02.000", "2024-05-01 12:01:03.250", "2024-05-01 12:02:00.000", "2024-05-01 12:02:01.000",
    ]


def test_fields_and_exceptions_are_columns(lnav_home: Path, json_lines: Path) -> None:
    rows = sql(lnav_home, "SELECT json_extract(fields, '$.host') AS host, count(*) AS n FROM mmaplog_json "
               "WHERE fields IS NOT NULL GROUP BY 1 ORDER BY 1", json_lines)
    assert [(r["host"], r["n"]) for r in rows] == [(None, 2), ("db1", 2), ("db2", 1)]
    rows = sql(lnav_home, "SELECT logger, exception FROM mmaplog_json WHERE exception IS NOT NULL", json_lines)
    assert rows == [{"logger": "app.http", "exception": TRACEBACK}]


def test_piped_lines_are_recognised(lnav_home: Path, json_lines: Path) -> None:
    """``mmaplog-read -o json app.mmlog | lnav``: lines on standard input get the format too."""
    rows = sql(lnav_home, "SELECT logger, count(*) AS n FROM mmaplog_json GROUP BY logger", json_lines, stdin=True)
    assert {r["logger"]: r["n"] for r in rows} == {"app": 2, "app.db": 4, "app.http": 2}
