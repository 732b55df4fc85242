"""A ring cut short by another process in a way that never faults, and files left short by it.

A truncation that spares the pages the writer stores into raises no SIGBUS:
stores below the new end land in the file, and stores past it inside the last
partial page land in a page the file no longer covers.  The writer notices at
its transitions (open, rotation, flush, close) and extends the file back; a
reader reads a short file for the slots it still holds and counts the rest.

The writers run in child processes killed with SIGKILL, on the C path and on
the pure-Python path (``MMAPLOG_PURE_PYTHON=1``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mmaplog
from mmaplog import layout as L
from mmaplog.writer import RingWriter, segment_path

SLOT = 128  # a short message fits one slot: the hot path, which never checks the size
SLOTS = 16
FILE_SIZE = L.DATA_OFFSET + SLOTS * SLOT
PATHS = {"c": {}, "pure": {"MMAPLOG_PURE_PYTHON": "1"}}


@pytest.fixture(params=sorted(PATHS))
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of a child on one write/read path."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("MMAPLOG_")}
    out.update(PATHS[request.param])
    return out


def _killed_child(code: str, env: dict[str, str], *args: object) -> dict[str, object]:
    """Run ``code`` (which prints one JSON line, then is SIGKILLed by itself) and return what it printed.

    The child cuts its own file and then writes: with the guard's inotify watch on, its watcher thread would
    notice the cut at some instant in between.  These tests are of the transitions that notice a cut without
    it (flush, close, rotation, reopen), as where inotify is missing, so the child runs without the watch.
    """
    prologue = ("import json, os, signal, sys, mmaplog\nfrom mmaplog import layout as L\n"
                "from mmaplog import _truncation\n_truncation._watcher.failed = True\n")
    epilogue = "\nprint(json.dumps(out), flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code) + epilogue, *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def _cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmaplog.cli.read", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env)


def test_a_file_left_short_by_a_killed_writer_is_read_and_reopened(tmp_path: Path, env: dict[str, str]) -> None:
    """Cut the last 100 bytes of a live ring, write, SIGKILL before any check: the records acknowledged after
    the cut are read back (promise 1), the shortfall is counted, and the next writer extends the file."""
    path = tmp_path / "a.mmlog"
    out = _killed_child(f"""
        w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT})
        w.write("before the cut")
        os.truncate(sys.argv[1], {FILE_SIZE - 300})
        out = {{"seqs": [w.write(f"after the cut {{i}}") for i in range(3)], "size": os.path.getsize(sys.argv[1])}}
    """, env, path)
    assert out["seqs"] == [2, 3, 4] and out["size"] == FILE_SIZE - 300  # nothing noticed the cut before the kill
    # Slot 13 is cut part-way, slots 14 and 15 entirely: three slots missing, the rest read.
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["before the cut"] + [f"after the cut {i}" for i in range(3)]
    assert scan.stats.short == 3
    stats = _cli(env, "--stats", "-o", "json", path)
    assert stats.returncode == 0 and json.loads(stats.stdout)["short_slots"] == 3, stats.stderr
    assert "cut short:      3 slots missing" in _cli(env, "--stats", path).stdout
    verify = _cli(env, "--verify", path)
    assert verify.returncode == 1 and "CORRUPT" in verify.stdout and "cut short: 3 slots missing" in verify.stdout
    listed = _cli(env, path)
    assert listed.returncode == 0 and "after the cut 2" in listed.stdout
    # The next writer extends the file back, says so once, counts nothing lost (no used slot was cut) and goes on.
    again = _killed_child(f"""
        w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT})
        out = {{"cut": w.cut_slots, "size": os.path.getsize(sys.argv[1]), "seq": w.write("after the reopen")}}
    """, env, path)
    assert again["size"] == FILE_SIZE and again["cut"] == 0 and again["seq"] == 5
    assert "found truncated to" in str(again["stderr"])
    assert [r.message for r in mmaplog.read(path)][-2:] == ["after the cut 2", "after the reopen"]
    assert _cli(env, "--verify", path).returncode == 0


def test_records_stored_past_the_cut_in_the_last_page_survive_a_flush(tmp_path: Path, env: dict[str, str]) -> None:
    """Stores past the new end inside the last partial page do not fault; flush() extends the file and puts
    back what extending zeroed (ext4 zeroes that page's tail), so every acknowledged record is read after
    SIGKILL and nothing is counted lost."""
    path = tmp_path / "a.mmlog"
    cut = L.DATA_OFFSET + 2 * SLOT + 10  # slot 2 part-way: slots 2..9 are stored past the end
    out = _killed_child(f"""
        w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT})
        os.truncate(sys.argv[1], {cut})
        seqs = [w.write(f"r{{i}}") for i in range(10)]
        w.flush()
        out = {{"seqs": seqs, "cut": w.cut_slots, "size": os.path.getsize(sys.argv[1])}}
    """, env, path)
    assert out["seqs"] == list(range(1, 11)) and out["size"] == FILE_SIZE and out["cut"] == 0
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == [f"r{i}" for i in range(10)]
    assert (scan.stats.short, scan.stats.invalid, scan.stats.gaps) == (0, 0, 0)


def test_records_a_killed_writer_stored_past_the_cut_are_put_back_at_reopen(tmp_path: Path,
                                                                           env: dict[str, str]) -> None:
    """Stores past the new end inside the last partial page, then SIGKILL before anything noticed the cut (here:
    no inotify watcher, as on a system without inotify; with it, the window is the watcher's wake-up): the records are
    only in the page cache, past the file's end, where a reader cannot see them.  The next writer reads that
    page through a map before extending the file (which zeroes it on ext4) and stores them again.  (Writeback
    of that page, about 30 s later by default, would zero them first: the next writer must come soon.)"""
    path = tmp_path / "a.mmlog"
    cut = L.DATA_OFFSET + 2 * SLOT + 10  # slot 2 part-way: slots 2..8 are stored past the end
    out = _killed_child(f"""
        w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT})
        w.write("first")
        os.truncate(sys.argv[1], {cut})
        out = {{"seqs": [w.write(f"r{{i}}") for i in range(8)], "size": os.path.getsize(sys.argv[1])}}
    """, env, path)
    assert out["seqs"] == list(range(2, 10)) and out["size"] == cut
    assert [r.message for r in mmaplog.read(path)] == ["first", "r0"]
    again = _killed_child(f"""
        w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT})
        out = {{"cut": w.cut_slots, "size": os.path.getsize(sys.argv[1]), "seq": w.write("after the reopen")}}
    """, env, path)
    assert again["size"] == FILE_SIZE and again["cut"] == 0 and again["seq"] == 10
    assert "put back 7 slots" in str(again["stderr"])
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["first"] + [f"r{i}" for i in range(8)] + ["after the reopen"]
    assert (scan.stats.short, scan.stats.invalid, scan.stats.gaps) == (0, 0, 0)


def test_a_cut_that_never_faults_is_noticed_and_repaired_without_a_write(tmp_path: Path,
                                                                       env: dict[str, str]) -> None:
    """A cut inside the page the writer stores into raises no SIGBUS.  The guard's inotify watch tells the
    writer at once: the file is extended back while the writer is idle, so the records it acknowledges next,
    stored where the cut was, are in the file when it is SIGKILLed (no flush, no close, no later check)."""
    path = tmp_path / "a.mmlog"
    cut = L.DATA_OFFSET + 4 * SLOT + 10  # slot 4 part-way: the next records are stored past the end
    code = f"""
import json, os, signal, sys, mmaplog
w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT})
for i in range(4):
    w.write(f"before {{i}}")
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps([w.write(f"after {{i}}") for i in range(8)]), flush=True)
sys.stdin.readline()
"""
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n"
        os.truncate(path, cut)
        deadline = time.monotonic() + 60
        while os.path.getsize(path) < FILE_SIZE:  # extended back by the writer, which has not written since
            assert time.monotonic() < deadline, "nothing noticed the cut in 60 s"
            time.sleep(0.005)
        child.stdin.write("go\n")
        child.stdin.flush()
        seqs = json.loads(child.stdout.readline())
        assert seqs == list(range(5, 13)), seqs
    finally:
        child.kill()
        _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    assert "truncated to" in err, err
    scan = mmaplog.scan(path)
    shown = [r.message for r in scan.iter_records()]
    assert shown == [f"before {i}" for i in range(4)] + [f"after {i}" for i in range(8)], (shown, scan.stats, err)
    assert (scan.stats.short, scan.stats.invalid) == (0, 0), (scan.stats, err)


def test_used_slots_cut_away_are_counted_at_close(tmp_path: Path, env: dict[str, str]) -> None:
    """A cut that removes slots holding records: close() extends the file, the loss is counted and reported
    once, and the records stored after the cut are read."""
    path = tmp_path / "a.mmlog"
    cut = L.DATA_OFFSET + 6 * SLOT  # slots 6..15 held records of the first lap
    out = _killed_child(f"""
        w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT})
        for i in range({SLOTS}):
            w.write(f"lap {{i}}")
        os.truncate(sys.argv[1], {cut})
        seqs = [w.write(f"after {{i}}") for i in range(3)]
        w.close()
        out = {{"seqs": seqs, "cut": w.cut_slots, "size": os.path.getsize(sys.argv[1])}}
    """, env, path)
    assert out["size"] == FILE_SIZE and out["seqs"] == [17, 18, 19]
    assert out["cut"] == SLOTS - 6  # slots 6..15 held "lap 6".."lap 15"
    assert "used slots lost" in str(out["stderr"])
    messages = [r.message for r in mmaplog.read(path)]
    assert messages == [f"lap {i}" for i in range(3, 6)] + [f"after {i}" for i in range(3)]


def test_a_cut_short_file_is_not_sealed_into_a_segment(tmp_path: Path, env: dict[str, str]) -> None:
    """Rotation checks the size before sealing: the series stays readable, every acknowledged record is there,
    and --verify finds every file intact."""
    path = tmp_path / "seg" / "a.mmlog"
    out = _killed_child(f"""
        w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT}, rotate=3)
        first = w.write("before the cut")
        os.truncate(sys.argv[1], {FILE_SIZE - 100})
        out = {{"seqs": [first] + [w.write(f"after the cut {{i}}") for i in range(20)]}}
    """, env, path)
    seqs = out["seqs"]
    assert isinstance(seqs, list) and seqs == list(range(1, 22))
    assert segment_path(path, 0).exists() and os.path.getsize(segment_path(path, 0)) == FILE_SIZE
    scan = mmaplog.scan(path)
    assert [r.seq for r in scan.iter_records()] == seqs
    assert (scan.stats.short, scan.stats.invalid, scan.stats.gaps) == (0, 0, 0)
    verify = _cli(env, "--verify", path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_cut_into_the_name_table_is_repaired_with_the_names(tmp_path: Path, env: dict[str, str]) -> None:
    """A cut through the name table (header intact): flush() writes the names again, so records logged
    under a registered name after it keep their logger."""
    path = tmp_path / "a.mmlog"
    out = _killed_child(f"""
        w = mmaplog.RingWriter(sys.argv[1], {SLOTS * SLOT}, slot_size={SLOT})
        w.write("named", logger="app.db")
        os.truncate(sys.argv[1], {L.NAME_OFFSET + 10})
        w.flush()
        out = {{"size": os.path.getsize(sys.argv[1]), "cut": w.cut_slots, "seq": w.write("again", logger="app.db")}}
    """, env, path)
    assert out["size"] == FILE_SIZE and out["cut"] == 1 and out["seq"] == 2
    records = list(mmaplog.read(path))
    assert [(r.message, r.logger) for r in records] == [("again", "app.db")]
    assert _cli(env, "--verify", path).returncode == 0


def test_a_cut_into_the_header_is_refused_and_one_past_it_is_read(tmp_path: Path, env: dict[str, str]) -> None:
    """A cut into the header leaves nothing to trust: FormatError when named (CLI: one line, exit 2), skipped and
    counted when found as a segment beside the live file.  A cut past the header
    but before the first slot (a sealed segment cut by a truncation racing its rotation) leaves an empty ring
    with every slot counted missing, so the rest of the series stays readable."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, SLOTS * SLOT, slot_size=SLOT, rotate=3) as w:
        for i in range(SLOTS + 2):
            w.write(f"r{i}")
    segment = segment_path(path, 0)
    os.truncate(segment, L.NAME_OFFSET + 100)
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["r16", "r17"]
    assert scan.stats.short == SLOTS
    verify = _cli(env, "--verify", path)
    assert verify.returncode == 1 and f"{SLOTS} slots missing" in verify.stdout
    os.truncate(segment, L.HEADER_CHECK_OFFSET)
    # Cut into its header, the segment holds nothing to trust: named, it is a FormatError (CLI: one line,
    # exit 2); found beside the live file, it is skipped and counted, and the rest of the series still reads.
    with pytest.raises(mmaplog.FormatError, match="truncated header"):
        mmaplog.read(segment)
    result = _cli(env, segment)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["r16", "r17"] and scan.stats.unreadable == 1


def test_the_reader_never_reads_past_a_short_files_end(tmp_path: Path) -> None:
    """A header declaring far more slots than the file holds (a lie, or a cut) is read for what is there,
    in bounded memory; the writer refuses to extend a file to a layout it was not asked for."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, SLOTS * SLOT, slot_size=SLOT) as w:
        w.write("kept")
    raw = path.read_bytes()
    header = mmaplog.scan(path).files[0].header._replace(slot_count=1 << 30)
    path.write_bytes(L.encode_header(header) + raw[L.HEADER_CHECK_OFFSET + 4 :])
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["kept"]
    assert scan.stats.short == (1 << 30) - SLOTS
    with pytest.raises(mmaplog.FormatError, match="refusing to extend"):
        RingWriter(path, SLOTS * SLOT, slot_size=SLOT)
    assert path.stat().st_size == len(raw)  # not a byte of disk taken


@pytest.mark.parametrize("cut", [0, 1, L.HEADER_CHECK_OFFSET // 2])
def test_a_named_segment_cut_to_nothing_is_one_formaterror_naming_it(tmp_path: Path, env: dict[str, str],
                                                                     cut: int) -> None:
    """A sealed segment cut to nothing (or into its header) by a truncation racing its rotation, named directly --
    alone or in a list beside the live file -- is a FormatError of one line naming it from every reader entry
    point (CLI: that line, exit 2), never another exception; the path with its segments implied skips and counts
    it (found by the lifecycle state machine, which names every file of the series)."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, SLOTS * SLOT, slot_size=SLOT, rotate=3) as w:
        for i in range(SLOTS + 2):
            w.write(f"r{i}")
    segment = segment_path(path, 0)
    os.truncate(segment, cut)
    for named in ([segment], [segment, path], str(segment)):
        for read in (lambda p: list(mmaplog.read(p, segments=False)), lambda p: mmaplog.read_array(p, segments=False),
                     lambda p: mmaplog.scan(p, segments=False)):
            with pytest.raises(mmaplog.FormatError) as info:
                read(named)
            text = str(info.value)
            assert "\n" not in text and segment.name in text, text
    result = _cli(env, segment)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and segment.name in result.stderr
    scan = mmaplog.scan(path)
    assert [r.message for r in scan.iter_records()] == ["r16", "r17"] and scan.stats.unreadable == 1


@pytest.mark.parametrize("second_cut", [0, 100, L.NAME_OFFSET + L.NAME_ENTRY_SIZE + 3])
def test_a_cut_racing_the_repair_never_leaves_a_full_size_file_without_its_header(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second_cut: int) -> None:
    """Another process cuts the file again between the repair's size check and its extension (the inotify watch
    runs the repair as soon as the first cut happens, so the two meet): the extension then leaves zeros where the
    header or names were, at full size, which no later size check would notice.  The repair checks the header
    and the names after extending and writes them again."""
    from mmaplog import _series

    path = tmp_path / "a.mmlog"
    with RingWriter(path, SLOTS * SLOT, slot_size=SLOT, guard_truncation=False) as w:
        w.write("one", logger="app.first")
        w.write("two", logger="app.second")
        header, names = w._map.header, dict(w._names)
        fd = os.open(path, os.O_RDWR)
        try:
            os.truncate(path, L.DATA_OFFSET + 3 * SLOT)
            real_fallocate = os.posix_fallocate

            def cut_then_fallocate(fd_: int, offset: int, length: int) -> None:
                os.truncate(path, second_cut)  # the second cut lands after the repair looked at the size
                real_fallocate(fd_, offset, length)

            monkeypatch.setattr(os, "posix_fallocate", cut_then_fallocate)
            _series.restore_size(fd, header, names)
            monkeypatch.undo()
        finally:
            os.close(fd)
        assert os.path.getsize(path) == FILE_SIZE
        w.write("three", logger="app.second")
    records = mmaplog.read(path)
    assert [(r.logger, r.message) for r in records][-1] == ("app.second", "three")
    assert all(r.logger in ("app.first", "app.second") for r in records)
