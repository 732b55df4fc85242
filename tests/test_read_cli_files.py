"""mmaplog-read: which files it reads (globs, missing and unreadable ones), how many records -n shows, sparse files
and damaged name tables."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mmaplog
from mmaplog import RingWriter
from mmaplog import layout as L
from mmaplog.cli.read import main

READ = [sys.executable, "-m", "mmaplog.cli.read"]


def run(capsysbinary: pytest.CaptureFixture[bytes], *args: object) -> tuple[int, list[dict[str, object]], str]:
    """mmaplog-read in-process: (exit status, JSON records, stderr)."""
    status = main([*map(str, args)])
    out, err = capsysbinary.readouterr()
    return status, [json.loads(line) for line in out.decode().splitlines() if line.strip()], err.decode()


def write(path: Path, count: int, **kw: object) -> None:
    with RingWriter(path, size=256 * 256) as w:
        for i in range(count):
            w.write(f"m{i}", logger="app.db" if i % 3 == 0 else "app.web", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [0, 1, 3, 6, 17])
def test_lines_shows_exactly_the_last_n_matching_or_all_when_fewer_match(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], count: int
) -> None:
    """-n N against read(), for every N around the number of records (with and without a filter)."""
    path = tmp_path / "app.mmlog"
    write(path, count)
    every = [r.seq for r in mmaplog.read(path)]
    db = [r.seq for r in mmaplog.read(path, logger="app.db")]
    for n in range(count + 3):
        status, shown, _ = run(capsysbinary, "-o", "json", "-n", n, path)
        assert [r["seq"] for r in shown] == (every[max(0, len(every) - n) :] if n else []), n
        assert status == (0 if shown else 1)
        _, shown, _ = run(capsysbinary, "-o", "json", "--logger", "app.db", "-n", n, path)
        assert [r["seq"] for r in shown] == (db[max(0, len(db) - n) :] if n else []), n


def test_a_quoted_glob_is_expanded(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """'app-*.mmlog' as one argument reads every matching file, as the shell would have."""
    write(tmp_path / "app-1.mmlog", 2)
    write(tmp_path / "app-2.mmlog", 3)
    status, shown, err = run(capsysbinary, "-o", "json", tmp_path / "app-*.mmlog")
    assert status == 0 and len(shown) == 5 and err == ""
    status, shown, err = run(capsysbinary, tmp_path / "nothing-*.mmlog")
    assert status == 2 and "no file matches" in err


def test_one_unreadable_file_among_several(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """The readable files are shown; each unreadable one gets its one line on stderr; the exit status is 2."""
    good = tmp_path / "good.mmlog"
    write(good, 4)
    junk = tmp_path / "junk.mmlog"
    junk.write_bytes(b"not a ring")
    missing = tmp_path / "missing.mmlog"
    status, shown, err = run(capsysbinary, "-o", "json", junk, good, missing)
    assert status == 2 and len(shown) == 4
    assert len(err.strip().splitlines()) == 2 and "junk.mmlog" in err and "missing.mmlog" in err
    status, _, err = run(capsysbinary, "--stats", "-o", "json", junk, good)
    assert status == 2 and len(err.strip().splitlines()) == 1


def test_follow_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    """-f on a missing file says so once and shows the records once a writer creates it (as tail -F does)."""
    path = tmp_path / "later.mmlog"
    proc = subprocess.Popen([*READ, "-f", "-o", "json", "--interval", "0.05", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "does not exist yet; waiting for it" in proc.stderr.readline()
        assert proc.poll() is None
        with RingWriter(path, size=64 * 256) as w:
            w.write("finally")
            ready, _, _ = select.select([proc.stdout], [], [], 60)  # a bound, not a synchronisation
            assert ready, "the record was not shown within 60 s"
            line = proc.stdout.readline()
        assert json.loads(line)["message"] == "finally"
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0


def _sparse(path: Path, declared: int, slot_size: int) -> None:
    with RingWriter(path, size=64 * slot_size, slot_size=slot_size) as w:
        for i in range(10):
            w.write(f"record {i}", logger="app")
    with open(path, "rb") as f:
        header = L.decode_header(f.read(4096), os.path.getsize(path))
    huge = header._replace(slot_count=declared // header.slot_size)
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, L.encode_header(huge), 0)
        os.ftruncate(fd, huge.file_size)
    finally:
        os.close(fd)


@pytest.mark.parametrize("pure", ["", "1"], ids=["default", "pure"])
def test_a_sparse_file_declaring_a_terabyte_reads_only_what_is_allocated(tmp_path: Path, pure: str) -> None:
    """A 1 TiB sparse ring holding ten records: read, -n and --stats finish (well within the test's timeout) in a
    process whose address space is limited to 2 GiB, on both read paths."""
    path = tmp_path / "huge.mmlog"
    try:
        _sparse(path, 1 << 40, 4096)
    except OSError as exc:
        pytest.skip(f"this filesystem cannot hold a sparse 1 TiB file ({exc.strerror})")
    if os.stat(path).st_blocks * 512 > 64 << 20:
        pytest.skip("this filesystem does not keep holes")
    env = {**os.environ, "MMAPLOG_PURE_PYTHON": pure}
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
    code = limit + "import sys, mmaplog; print(len(list(mmaplog.read(sys.argv[1]))))"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stdout.strip()) == (0, "10"), done.stderr
    cli = limit + "import sys; from mmaplog.cli.read import main; sys.exit(main(sys.argv[1:]))"
    tail = subprocess.run([sys.executable, "-c", cli, "-n", "5", "-o", "json", str(path)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert tail.returncode == 0 and [json.loads(x)["message"] for x in tail.stdout.splitlines()] == [
        f"record {i}" for i in range(5, 10)
    ]
    stats = subprocess.run([sys.executable, "-c", cli, "--stats", "-o", "json", str(path)], capture_output=True,
                           text=True, timeout=60, env=env)
    doc = json.loads(stats.stdout)
    assert doc["records"] == 10 and doc["empty_slots"] == (1 << 40) // 4096 - 10 and doc["invalid_slots"] == 0
    assert time.monotonic() - started < 60


def test_verify_and_stats_report_a_zeroed_name_table(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """Records whose logger names were wiped show as <logger N>: --verify calls it damage (exit 1) with the count
    of records affected, --stats counts them."""
    path = tmp_path / "app.mmlog"
    write(path, 9)
    assert main(["--verify", str(path)]) == 0
    assert b": ok: 9 records" in capsysbinary.readouterr().out
    header = mmaplog.reader.RingFile(path).header
    with open(path, "r+b") as f:
        f.seek(header.name_offset)
        f.write(bytes(header.name_entries * L.NAME_ENTRY_SIZE))
    status = main(["--verify", str(path)])
    out = capsysbinary.readouterr().out.decode()
    assert status == 1 and "CORRUPT" in out and "9 records whose logger name is missing" in out
    status = main(["--stats", "-o", "json", str(path)])
    doc = json.loads(capsysbinary.readouterr().out.decode())
    assert doc["unnamed"] == 9 and doc["records"] == 9
    assert mmaplog.scan(path).stats.unnamed == 9
