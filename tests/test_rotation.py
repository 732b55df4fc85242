"""A ring's files on disk: atomic creation, crash-consistent bounded rotation, a live file moved or deleted.

Crash and race tests use real processes (SIGKILL, a pipe as a start barrier)
on both write paths: the C accelerator and ``MMAPLOG_PURE_PYTHON=1``.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mmaplog
from mmaplog import _native, _rotation, _series
from mmaplog import layout as L
from mmaplog import writer as writer_module
from mmaplog.reader import RingFile
from mmaplog.writer import RingWriter, segment_path

HAVE_C = _native.load("_cwrite") is not None
PATHS = [pytest.param(False, id="c", marks=pytest.mark.skipif(not HAVE_C, reason="C accelerator not built")),
         pytest.param(True, id="pure")]
TEMP = re.compile(r"\..*\.new")


def _env(pure: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMAPLOG_")}
    if pure:
        env["MMAPLOG_PURE_PYTHON"] = "1"
    return env


def _temps(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if TEMP.fullmatch(n))


def _series_files(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name == path.name or re.fullmatch(re.escape(path.name) + r"\.\d{6,}", p.name)]


def _seqs_per_file(path: Path) -> dict[str, list[int]]:
    return {p.name: [r.seq for r in mmaplog.read(p, segments=False)] for p in _series_files(path)}


def _wait_readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


# ---------------------------------------------------------------------- creation races

_CREATOR = r"""
import json, os, sys
import mmaplog
path, go, hold, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("waiting", flush=True)
os.read(go, 1)                      # every creator blocks here until the parent closes the pipe
try:
    w = mmaplog.RingWriter(path, size=64 * 1024)
except mmaplog.WriterBusyError:
    print(json.dumps({"busy": True}), flush=True)
    sys.exit(0)
seqs = [w.write(f"{os.getpid()} r{i}", logger="app") for i in range(n)]
print(json.dumps({"won": True, "pid": os.getpid(), "seqs": [s for s in seqs if s], "series": w.header.series_id.hex()}),
      flush=True)
if hold >= 0:
    os.read(hold, 1)                # keep the lock until the parent closes the hold pipe
w.close()
"""


def _race(path: Path, n: int, pure: bool, hold: bool) -> list[dict[str, Any]]:
    go_r, go_w = os.pipe()
    hold_r, hold_w = os.pipe()
    procs = [
        subprocess.Popen([sys.executable, "-c", _CREATOR, str(path), str(go_r), str(hold_r if hold else -1), "50"],
                         pass_fds=(go_r, hold_r), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=_env(pure))
        for _ in range(n)
    ]
    os.close(go_r)
    os.close(hold_r)
    try:
        # Every child imports mmaplog, says so and blocks on the pipe; closing it starts them together.
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "waiting\n"
        os.close(go_w)
        results = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line, p.stderr.read() if p.stderr else ""
            results.append(json.loads(line))
    finally:
        os.close(hold_w)
        for p in procs:
            try:
                _, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            assert p.returncode == 0, err
    return results


@pytest.mark.parametrize("pure", PATHS)
@pytest.mark.parametrize("n", [3, 4])
def test_racing_creators_while_the_winner_holds_the_lock(tmp_path: Path, n: int, pure: bool) -> None:
    """3-4 processes open one new path together: exactly one wins, the rest get WriterBusyError, nothing is lost."""
    for rnd in range(4):
        path = tmp_path / f"r{rnd}" / "app.mmlog"
        path.parent.mkdir()
        results = _race(path, n, pure, hold=True)
        winners = [r for r in results if r.get("won")]
        assert len(winners) == 1 and sum(1 for r in results if r.get("busy")) == n - 1, results
        assert [r.seq for r in mmaplog.read(path)] == winners[0]["seqs"] == list(range(1, 51))
        assert os.listdir(path.parent) == ["app.mmlog"]


@pytest.mark.parametrize("pure", PATHS)
def test_racing_creators_that_exit_at_once_share_one_series(tmp_path: Path, pure: bool) -> None:
    """Creators that close right away: each later one reopens the published file; every acked record is there once."""
    for rnd in range(3):
        path = tmp_path / f"r{rnd}" / "app.mmlog"
        path.parent.mkdir()
        results = _race(path, 4, pure, hold=False)
        winners = [r for r in results if r.get("won")]
        assert winners and len({r["series"] for r in winners}) == 1, results
        acked = sorted(s for r in winners for s in r["seqs"])
        assert acked == list(range(1, 50 * len(winners) + 1))
        assert [r.seq for r in mmaplog.read(path)] == acked
        assert os.listdir(path.parent) == ["app.mmlog"]


_SLOW_CREATOR = r"""
import fcntl, json, os, sys, time
path, go, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
real = fcntl.flock
def flock(fd, op, *args):
    if op & fcntl.LOCK_EX and delay:
        time.sleep(delay)           # preempted between creating a file and locking it
    return real(fd, op, *args)
fcntl.flock = flock
import mmaplog
print("waiting", flush=True)
os.read(go, 1)
try:
    w = mmaplog.RingWriter(path, size=64 * 1024)
except mmaplog.WriterBusyError:
    print(json.dumps({"busy": True}), flush=True)
    sys.exit(0)
seqs = [w.write(f"{os.getpid()} r{i}") for i in range(20)]
print(json.dumps({"won": True, "seqs": seqs}), flush=True)
sys.stdin.read()                    # hold the lock until the parent lets go
w.close()
"""


@pytest.mark.parametrize("pure", PATHS)
def test_a_creator_preempted_before_locking_never_deletes_the_winners_file(tmp_path: Path, pure: bool) -> None:
    """One creator stalls between create and lock at every step; the others win or wait: the file is never lost."""
    path = tmp_path / "app.mmlog"
    go_r, go_w = os.pipe()
    procs = [subprocess.Popen([sys.executable, "-c", _SLOW_CREATOR, str(path), str(go_r), str(delay)], pass_fds=(go_r,),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(pure))
             for delay in (0.3, 0.0, 0.0)]
    os.close(go_r)
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "waiting\n"
    os.close(go_w)
    results = []
    for p in procs:
        assert p.stdout is not None
        results.append(json.loads(p.stdout.readline() or "{}"))
    winners = [r for r in results if r.get("won")]
    assert len(winners) == 1, results
    assert [r.seq for r in mmaplog.read(path)] == winners[0]["seqs"]
    for p in procs:
        p.communicate(timeout=60)
        assert p.returncode == 0
    assert os.listdir(tmp_path) == ["app.mmlog"]


def test_an_empty_or_blank_file_at_the_path_becomes_the_ring(tmp_path: Path) -> None:
    """A touched file, or one whose header page is zeros (a creation cut short), is set up under its lock."""
    for name, content in (("empty", b""), ("zeros", bytes(70_000))):
        path = tmp_path / f"{name}.mmlog"
        path.write_bytes(content)
        with RingWriter(path, size=16 * 256) as w:
            assert w.write("hello") == 1
        assert [r.message for r in mmaplog.read(path)] == ["hello"]
        assert RingFile(path).header.file_size == os.path.getsize(path)


def test_a_file_that_is_not_a_ring_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.mmlog"
    path.write_bytes(b"precious notes\n")
    with pytest.raises(mmaplog.FormatError, match="refusing to overwrite"):
        RingWriter(path, size=16 * 256)
    assert path.read_bytes() == b"precious notes\n"
    assert os.listdir(tmp_path) == ["a.mmlog"]


def test_missing_parent_directories_are_created_private(tmp_path: Path) -> None:
    """Missing directories on the way are made, group-readable like the file (0o750 for 0o640), nothing wider."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "logs" / "app" / "a.mmlog"
        with RingWriter(path, size=16 * 256) as w:
            w.write("x")
    finally:
        os.umask(old)
    for d in (tmp_path / "logs", tmp_path / "logs" / "app"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o750
    assert [r.message for r in mmaplog.read(path)] == ["x"]


def test_a_parent_that_cannot_be_created_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OSError) as info:
        RingWriter(tmp_path / "file" / "sub" / "a.mmlog", size=16 * 256)
    text = str(info.value)
    assert "\n" not in text and str(tmp_path / "file") in text and "choose another path" in text


# ---------------------------------------------------------------------- orphans and pruning

def test_orphans_of_dead_builders_go_and_live_ones_stay(tmp_path: Path) -> None:
    """At open: a temporary file nobody holds (dead builder, any naming) is removed; one a live process locks is kept."""
    path = tmp_path / "a.mmlog"
    dead_new = tmp_path / ".a.mmlog.99999999.0123abcd.new"
    dead_old = tmp_path / ".a.mmlog.99999998.new"  # the naming of earlier versions
    for p in (dead_new, dead_old):
        p.write_bytes(bytes(70_000))
    live = tmp_path / ".a.mmlog.99999996.feedbeef.new"
    live.write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()", str(live)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious")
        (tmp_path / ".a.mmlog.99999997.aa.new").symlink_to(victim)
        with RingWriter(path, size=16 * 256):
            names = set(os.listdir(tmp_path))
        assert dead_new.name not in names and dead_old.name not in names
        assert live.name in names and victim.read_bytes() == b"precious"
    finally:
        holder.communicate("")
    with RingWriter(path, size=16 * 256):
        assert live.name not in os.listdir(tmp_path)


def test_prune_at_open_keeps_k_files_of_the_live_series(tmp_path: Path) -> None:
    """Reopening with rotate=K removes older segments and leftovers of another series; foreign files stay."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256, rotate=10) as w:
        for i in range(16 * 6):
            w.write(f"m{i}")
        live_segment = w.header.segment
    other = tmp_path / "b.mmlog"
    with RingWriter(other, size=16 * 256):
        pass
    os.rename(other, segment_path(path, 77))  # a leftover of another series under a segment name
    segment_path(path, 78).write_bytes(b"not a ring")
    with RingWriter(path, size=16 * 256, rotate=3) as w:
        assert w.header.segment == live_segment
    names = sorted(os.listdir(tmp_path))
    assert names == ["a.mmlog", segment_path("a.mmlog", live_segment - 2).name,
                     segment_path("a.mmlog", live_segment - 1).name, segment_path("a.mmlog", 78).name]


# ---------------------------------------------------------------------- crash states, in-process

def _fill(w: RingWriter, n: int, logger: str = "app") -> list[int]:
    return [w.write(f"m{i}", logger=logger) for i in range(n)]


@pytest.mark.parametrize("state", ["sealed", "linked", "temp"])
def test_each_crash_state_of_a_rotation_is_recovered_at_open(tmp_path: Path, state: str) -> None:
    """Sealed live file, segment link already there, or a finished temp never renamed: the next open completes it."""
    path = tmp_path / "a.mmlog"
    w = RingWriter(path, size=16 * 256, rotate=3)
    seqs = _fill(w, 16)  # exactly full: the next record would rotate
    header = w.header
    fd = os.open(path, os.O_RDWR)
    temp = tmp_path / ".a.mmlog.99999999.00ff.new"
    if state in ("sealed", "linked"):
        os.pwrite(fd, L.STATE_STRUCT.pack(16, ~16 & 0xFFFFFFFFFFFFFFFF), L.STATE_OFFSET)
    if state == "linked":
        os.link(path, segment_path(path, 0))
    if state == "temp":
        temp.write_bytes(bytes(L.DATA_OFFSET + 16 * 256))
    os.close(fd)
    w._abandon_after_fork()  # drop the writer without writing anything more (as SIGKILL would); the lock goes
    with RingWriter(path, size=16 * 256, rotate=3) as again:
        more = _fill(again, 3, logger="later")
        segment = again.header.segment
    assert _temps(tmp_path) == []
    assert segment == header.segment + 1 and segment_path(path, 0).exists()
    with RingFile(segment_path(path, 0)) as sealed:
        assert sealed.sealed()
    files = _seqs_per_file(path)
    everything = [s for v in files.values() for s in v]
    assert sorted(everything) == seqs + more and len(set(everything)) == len(everything)
    assert [r.logger for r in mmaplog.read(path)][-3:] == ["later"] * 3


# ---------------------------------------------------------------------- SIGKILL during rotation, both paths

_KILLED = r"""
import os, signal, sys
import mmaplog
from mmaplog import _series
path, k, step, nth, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
count = [0]

def kill_after(name, real):
    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        count[0] += 1
        if count[0] >= nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapped

if step == "build":          # the next segment complete under its temporary name
    _series.build = kill_after(step, _series.build)
elif step == "seal":         # the full file sealed, no segment name yet
    real_state = _series.set_state
    def set_state(mm, pos):
        real_state(mm, pos)
        if pos:
            count[0] += 1
            if count[0] >= nth:
                os.kill(os.getpid(), signal.SIGKILL)
    _series.set_state = set_state
elif step == "link":         # segment name linked, the path still the full file
    _series.link_segment = kill_after(step, _series.link_segment)
elif step == "replace":      # the new file at the path, older segments not yet pruned
    os.replace = kill_after(step, os.replace)
elif step == "create":       # a temporary file created, not yet locked
    import fcntl
    real_flock = fcntl.flock
    def flock(fd, op, *a):
        if op & fcntl.LOCK_EX and os.readlink(f"/proc/self/fd/{fd}").endswith(".new"):
            count[0] += 1
            if count[0] >= nth:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_flock(fd, op, *a)
    fcntl.flock = flock
w = mmaplog.RingWriter(path, size=16 * 128, slot_size=128, rotate=k)
print("ready", flush=True)
sys.stdin.readline()
i = seed
while True:
    i += 1
    seq = w.write(f"i{i} " + "y" * (i * 37 % 150), logger=f"app.l{i % 5}")  # one to three slots
    if seq:
        print(seq, flush=True)    # acknowledged: the write call returned
"""
_STEPS = ["random", "create", "build", "seal", "link", "replace"]


def _check_series(path: Path, k: int, acked: set[int], file_size: int) -> None:
    d = path.parent
    assert _temps(d) == [], "a temporary file outlived an open"
    files = _series_files(path)
    assert len(files) <= k and sum(p.stat().st_size for p in files) <= k * file_size
    assert len(os.listdir(d)) == len(files), os.listdir(d)
    per_file = _seqs_per_file(path)
    everything = [s for v in per_file.values() for s in v]
    assert len(everything) == len(set(everything)), "a record is readable twice"
    if acked:
        assert max(acked) in everything, "the newest acknowledged record is gone"
        kept = min(everything)
        lost = sorted(s for s in acked if s >= kept and s not in set(everything))
        assert not lost, f"acknowledged records inside the retention are missing: {lost[:5]}"


def _kill_cycles(tmp_path: Path, pure: bool, step: str, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    k = 3
    path = tmp_path / "logs" / "app.mmlog"
    acked: set[int] = set()
    file_size = L.DATA_OFFSET + 16 * 128
    for rnd in range(rounds):
        nth = rng.randint(1, 4)
        child = subprocess.Popen([sys.executable, "-c", _KILLED, str(path), str(k), step, str(nth), str(rnd * 1000)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=_env(pure))
        assert child.stdout is not None and child.stdin is not None
        try:
            if child.stdout.readline() != "ready\n":  # killed while creating or recovering at open
                continue
            # The child has opened the series (recovery done) and writes nothing until told: check it now.
            _check_series(path, k, acked, file_size)
            child.stdin.write("go\n")
            child.stdin.flush()
            target = rng.randint(1, 80)
            got = 0
            while step == "random" and got < target and _wait_readable(child.stdout.fileno(), 30):
                line = child.stdout.readline()
                if not line:
                    break
                acked.add(int(line))
                got += 1
        finally:
            child.kill()
            # Read through the text wrappers, not communicate(): its raw reads would miss the acknowledgements that
            # readline() has already pulled into the wrapper's buffer. The child is dead, so both pipes end.
            out, err = child.stdout.read(), child.stderr.read()
            child.wait(timeout=60)
        acked.update(int(s) for s in out.split())
        assert child.returncode == -signal.SIGKILL, err
        assert "Traceback" not in err, err
    with RingWriter(path, size=16 * 128, slot_size=128, rotate=k) as w:  # a clean open
        seq = w.write("clean")
    _check_series(path, k, acked | {seq}, file_size)


@pytest.mark.parametrize("pure", PATHS)
@pytest.mark.parametrize("step", _STEPS)
def test_sigkill_at_any_step_of_a_rotation_leaves_a_bounded_readable_series(tmp_path: Path, step: str,
                                                                             pure: bool) -> None:
    """Real SIGKILLs during rotation (at each step, and at random): after each reopen no orphan, K files at most,
    every acknowledged record the retention keeps readable exactly once."""
    _kill_cycles(tmp_path, pure, step, rounds=6 if step != "random" else 10, seed=hash((step, pure)) & 0xFFFF)


@pytest.mark.slow
@pytest.mark.parametrize("pure", PATHS)
def test_sigkill_during_rotation_many_rounds(tmp_path: Path, pure: bool) -> None:
    for i, step in enumerate(_STEPS * 5):
        _kill_cycles(tmp_path / str(i), pure, step, rounds=10, seed=i)


# ---------------------------------------------------------------------- the live file moved or deleted

def _moved(path: Path, how: str) -> Path | None:
    if how == "mv":
        target = path.with_name(path.name + ".bak")
        os.rename(path, target)
        return target
    os.unlink(path)
    return None


@pytest.fixture
def stderr_lines(capfd: pytest.CaptureFixture[str]) -> Iterator[Any]:
    def lines() -> list[str]:
        return [line for line in capfd.readouterr().err.splitlines() if line.startswith("mmaplog:")]

    yield lines


@pytest.mark.parametrize("how", ["mv", "rm"])
@pytest.mark.parametrize("rotate", [0, 3])
def test_a_moved_or_deleted_live_file_is_replaced_at_the_path(tmp_path: Path, how: str, rotate: int,
                                                              stderr_lines: Any) -> None:
    """Noticed (here on flush), reported once; the moved file is never written again, names are never rewritten."""
    path = tmp_path / "a.mmlog"
    w = RingWriter(path, size=64 * 256, rotate=rotate)
    early = [w.write(f"early {i}", logger="alpha" if i % 2 else "beta") for i in range(40)]
    moved = _moved(path, how)
    kept = [w.write(f"between {i}", logger="alpha") for i in range(5)]  # still the open file, as any descriptor
    if moved is not None:
        assert {r.seq for r in mmaplog.read(moved, segments=False)} == set(early + kept)
    w.flush()
    assert path.exists()
    snapshot = moved.read_bytes() if moved is not None else b""
    late = [w.write(f"late {i}", logger="gamma" if i % 2 else "delta") for i in range(300)]
    w.flush()
    w.close()
    assert all(late)
    reports = stderr_lines()
    assert len(reports) == 1 and "moved or deleted" in reports[0] and str(path) in reports[0], reports
    if moved is not None:
        after = moved.read_bytes()
        # Only the sealed hint, written at the switch, may differ: no record, no name entry.
        assert after[: L.STATE_OFFSET] + after[L.STATE_OFFSET + 16 :] == \
            snapshot[: L.STATE_OFFSET] + snapshot[L.STATE_OFFSET + 16 :]
        with RingFile(moved) as old:
            assert old.sealed()
        assert all(r.logger in ("alpha", "beta") for r in mmaplog.read(moved, segments=False))
    records = list(mmaplog.read(path))
    expected = {f"late {i}": "gamma" if i % 2 else "delta" for i in range(300)}
    for r in records:
        if r.message in expected:
            assert r.logger == expected[r.message]
    shown = {r.seq for r in records}
    assert set(late[-40:]) <= shown
    assert _temps(tmp_path) == []
    with RingFile(path) as live:
        assert live.header.segment >= 1


@pytest.mark.parametrize("how", ["mv", "rm"])
def test_a_rotating_writer_notices_at_the_next_rotation(tmp_path: Path, how: str, stderr_lines: Any) -> None:
    path = tmp_path / "a.mmlog"
    w = RingWriter(path, size=16 * 256, rotate=3)
    _fill(w, 10, logger="alpha")
    _moved(path, how)
    seqs = _fill(w, 40, logger="beta")
    w.close()
    assert all(seqs) and path.exists()
    assert len(stderr_lines()) == 1
    assert [r.seq for r in mmaplog.read(path)][-5:] == seqs[-5:]
    assert _temps(tmp_path) == []


def test_the_slow_write_path_checks_the_path_once_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           stderr_lines: Any) -> None:
    """A non-rotating ring moved away: a slow-path write notices (interval set to 0 here) without a flush."""
    monkeypatch.setattr(_rotation, "_CHECK_INTERVAL", 0.0)
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=64 * 256) as w:
        w.write("before")
        os.rename(path, tmp_path / "moved.mmlog")
        w.write("slow", fields={"k": 1})  # fields take the slow path
        assert path.exists()
        seq = w.write("after")
    assert "after" in [r.message for r in mmaplog.read(path)]
    assert seq not in {r.seq for r in mmaplog.read(tmp_path / "moved.mmlog")}
    assert len(stderr_lines()) == 1


def test_a_file_someone_else_put_at_the_path_is_never_replaced(tmp_path: Path, stderr_lines: Any) -> None:
    """Moved away, then another writer created the path: the first writes on into its moved file, reported once."""
    path = tmp_path / "a.mmlog"
    w = RingWriter(path, size=16 * 256, rotate=3)
    _fill(w, 5)
    os.rename(path, tmp_path / "moved.mmlog")
    other = RingWriter(path, size=16 * 256, rotate=3)
    other.write("the other writer")
    before = path.read_bytes()
    seqs = _fill(w, 40)
    w.flush()
    assert all(seqs)
    assert path.read_bytes() == before
    assert [r.message for r in mmaplog.read(path)] == ["the other writer"]
    reports = stderr_lines()
    assert len(reports) == 1 and "another file took its place" in reports[0], reports
    other.close()
    w.close()
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("failing", ["link", "rename"])
def test_a_failed_rotation_changes_nothing_and_is_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               stderr_lines: Any, failing: str) -> None:
    """A rotation whose segment link or rename fails: no switch, no seal, no temp, no segment name, names untouched."""
    path = tmp_path / "a.mmlog"
    w = RingWriter(path, size=16 * 256, rotate=3)
    _fill(w, 8, logger="alpha")

    def fail(*args: Any) -> bool:
        raise OSError(28, "No space left on device")

    if failing == "link":
        monkeypatch.setattr(_series, "link_segment", fail)
    else:
        monkeypatch.setattr(writer_module.os, "replace", fail)
    names_before = path.read_bytes()[L.NAME_OFFSET : L.DATA_OFFSET]
    seqs = _fill(w, 30, logger="alpha")
    monkeypatch.undo()
    assert all(seqs)
    with RingFile(path) as live:
        assert not live.sealed() and live.header.segment == 0
    assert path.read_bytes()[L.NAME_OFFSET : L.DATA_OFFSET] == names_before
    assert os.listdir(tmp_path) == ["a.mmlog"]
    reports = stderr_lines()
    assert len(reports) == 1 and "overwriting the current ring" in reports[0], reports
    w.close()


def test_names_are_carried_into_the_next_file_under_the_same_ids(tmp_path: Path) -> None:
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256, rotate=5) as w:
        for i in range(40):
            w.write(f"m{i}", logger=f"l{i % 4}")
        segment = w.header.segment
    tables = []
    for p in (segment_path(path, segment - 1), path):
        with RingFile(p) as ring:
            tables.append(ring.names)
    assert tables[0] == tables[1] and sorted(tables[0].values()) == ["", "l0", "l1", "l2", "l3"]
