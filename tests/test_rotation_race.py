"""A record whose file is rotated away under it is still written: an open writer never refuses a record.

Found by the lifecycle state machine (tests/test_writer_stateful.py, docs/RELIABILITY.md
section 7): with truncations racing rotations, ``write`` sometimes returned 0.  A store
that faulted (its file cut by another process) into a map another thread rotated away
before the fault was dealt with was counted as lost instead of being written again in
the current file; a record of several slots whose map was rotated away twice (and
unmapped) between two of its parts failed on the closed map and was counted as lost.

Each scenario runs in a child interpreter, on the C write path and on the pure-Python
one, with the interleaving forced by events (no timing): the writer's lock is held
while the faulting store waits for it, or the writing thread is parked inside its
claim of a position.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmaplog import _native, _truncation

PATHS = ["c", "pure"]


def _env(kind: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMAPLOG_")}
    env.pop("PYTHONFAULTHANDLER", None)  # faulthandler would see the guard's faults first
    if kind == "pure":
        env["MMAPLOG_PURE_PYTHON"] = "1"
    return env


@pytest.fixture(params=PATHS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "c" and (_native.pure_python() or _native.load("_cwrite") is None):
        pytest.skip("the C path is not available in this run")
    return str(request.param)


def _run(code: str, kind: str, *args: object) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=_env(kind))
    if proc.returncode < 0:
        raise AssertionError(f"killed by {signal.Signals(-proc.returncode).name}\n{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


_FAULT_THEN_ROTATION = """
    import json, os, sys, threading
    import mmaplog
    from mmaplog import RingWriter
    path = sys.argv[1]
    entered = threading.Event()

    class Spy(RingWriter):
        def _fault(self, state, m=None, record=None):
            if state == 0:
                entered.set()  # the store faulted; dealing with it needs the writer's lock
            return super()._fault(state, m, record)

    w = Spy(path, 64 * 64, slot_size=64, rotate=3)
    for i in range(5):
        w.write(f"fill {i}", logger="app")
    out = {}
    t = threading.Thread(target=lambda: out.update(seq=w.write("the record", logger="app")))
    with w._lock:
        os.truncate(path, 0)       # copytruncate by another process: the next store faults
        t.start()
        assert entered.wait(60)
        w._rotate(w._map)          # meanwhile another thread fills the file: it is rotated away
    t.join()
    w.close()
    found = [r.seq for r in mmaplog.read(path) if r.message == "the record"]
    print(json.dumps({"seq": out["seq"], "dropped": w.dropped, "found": found}))
"""


def test_a_store_that_faulted_into_a_file_rotated_away_meanwhile_is_written_again(tmp_path: Path, kind: str) -> None:
    if not _truncation.supported():
        pytest.skip("the SIGBUS guard (mmaplog._sigbus) is not built")
    out = _run(_FAULT_THEN_ROTATION, kind, tmp_path / "app.mmlog")
    assert out["seq"] != 0, f"write returned 0 (dropped {out['dropped']})"
    assert out["dropped"] == 0
    assert out["found"] == [out["seq"]], out


#: Inserted into a child script (after ``parked``, ``go`` and ``writer_thread`` exist): positions that park the
#: writing thread, once, right after it claims its ``at``-th position, until ``go`` is set.
_GATE = """
    class Gate:
        def __init__(self, inner, at):
            self.inner, self.at, self.calls = inner, at, 0
        def __iter__(self):
            return self
        def __next__(self):
            pos = next(self.inner)
            if threading.current_thread() is writer_thread:
                self.calls += 1
                if self.calls == self.at:
                    parked.set()
                    go.wait()
            return pos
"""


_PARKED_BETWEEN_PARTS = """
    import json, os, sys, threading
    import mmaplog
    from mmaplog import RingWriter
    from mmaplog.writer import segment_path
    path, case = sys.argv[1], sys.argv[2]
    w = RingWriter(path, 256 * 16, slot_size=256, rotate=3)   # 16 slots; a record of 300 bytes takes 2
    w.write("fill", logger="app")
    parked, go = threading.Event(), threading.Event()
    first = w._map
    writer_thread = None
""" + _GATE + """
    # The positions of the first file; the writing thread parks after claiming its record's second slot.
    first.hot = first.hot[:8] + (Gate(first.positions, 2),)
    out = {}
    writer_thread = threading.Thread(target=lambda: out.update(seq=w.write("L" * 300, logger="app")))
    writer_thread.start()
    assert parked.wait(60)
    rotations = 2 if case == "closed" else 1
    segment = first.header.segment
    while w.header.segment < segment + rotations:
        w.write("other", logger="app")
    if case == "cut":
        os.truncate(segment_path(path, segment), 0)   # the rotated file is cut: the next part faults
    assert first.mm.closed == (case == "closed")
    go.set()
    writer_thread.join()
    w.close()
    found = [r.seq for r in mmaplog.read(path) if r.message == "L" * 300]
    print(json.dumps({"seq": out["seq"], "dropped": w.dropped, "found": found}))
"""


@pytest.mark.parametrize("case", ["kept", "cut", "closed"])
def test_a_record_whose_file_is_rotated_away_between_its_parts_is_written(tmp_path: Path, kind: str,
                                                                          case: str) -> None:
    """kept: its file rotated away, the parts land there whole; cut: that file was cut meanwhile (the parts
    fault); closed: rotated away twice and unmapped.  In every case the write returns its seq and the
    record is read exactly once."""
    if case == "cut" and not _truncation.supported():
        pytest.skip("the SIGBUS guard (mmaplog._sigbus) is not built")
    out = _run(_PARKED_BETWEEN_PARTS, kind, tmp_path / "app.mmlog", case)
    assert out["seq"] != 0, f"write returned 0 (dropped {out['dropped']})"
    assert out["dropped"] == 0
    assert out["found"] == [out["seq"]], out


_SEQ_BEFORE_ROTATION = """
    import json, os, sys, threading
    import mmaplog
    from mmaplog import RingWriter
    from mmaplog.writer import _peek
    path = sys.argv[1]
    w = RingWriter(path, 256 * 16, slot_size=256, rotate=3)
    w.write("first", logger="app")
    parked, go = threading.Event(), threading.Event()
    first = w._map
    writer_thread = None

    class Gate:
        # The writing thread parks after taking its record's seq, before taking its first position.
        def __init__(self, inner):
            self.inner, self.parked = inner, False
        def __iter__(self):
            return self
        def __next__(self):
            if threading.current_thread() is writer_thread and not self.parked:
                self.parked = True
                parked.set()
                go.wait()
            return next(self.inner)

    first.hot = first.hot[:8] + (Gate(first.positions),)
    out = {}
    writer_thread = threading.Thread(target=lambda: out.update(seq=w.write("L" * 300, logger="app")))
    writer_thread.start()
    assert parked.wait(60)
    sent = {}
    while _peek(first.positions) <= first.header.slot_count:  # later seqs fill the file to its last slot
        seq = w.write(f"other {len(sent)}", logger="app")
        sent[seq] = f"other {len(sent)}"
    go.set()                     # its first position is past the end: it rotates, and is the new file's only record
    writer_thread.join()
    sent[out["seq"]] = "L" * 300
    w.close()
    again = RingWriter(path, 256 * 16, slot_size=256, rotate=3)
    seq = again.write("after reopen", logger="app")
    sent[seq] = "after reopen"
    again.close()
    shown = [(r.seq, r.message) for r in mmaplog.read(path)]
    print(json.dumps({"sent": sorted(sent.items()), "shown": shown, "after": seq}))
"""


def test_a_reopened_writer_never_reuses_a_seq_of_the_sealed_segment(tmp_path: Path, kind: str) -> None:
    """A record takes its seq, then later ones fill the file, then it takes a position past the end: it starts
    the next file with a seq lower than the ones sealed in the segment.  A writer opening that file again must
    go on after every seq of the series (the file's first_seq), not after the highest seq the file holds: a
    reused seq made the reader drop one of two acknowledged records as a duplicate, with no loss counted."""
    out = _run(_SEQ_BEFORE_ROTATION, kind, tmp_path / "app.mmlog")
    shown = [tuple(x) for x in out["shown"]]  # type: ignore[union-attr]
    sent = [tuple(x) for x in out["sent"]]  # type: ignore[union-attr]
    assert [s for s, _ in shown] == sorted({s for s, _ in shown}), "a seq shown twice"
    missing = [x for x in sent if x not in shown and x[0] >= shown[0][0]]  # the oldest may be pruned (rotate=3)
    assert not missing, f"acknowledged records not read: {missing} (the reopened writer's seq: {out['after']})"


_BATCH_RUN_ROTATED_AWAY = """
    import json, sys, threading
    import mmaplog
    from mmaplog import LogRecord, RingWriter
    path = sys.argv[1]
    w = RingWriter(path, 256 * 16, slot_size=256, rotate=5)
    w.write("fill", logger="app")
    parked, go = threading.Event(), threading.Event()
    first = w._map
    writer_thread = None
""" + _GATE + """
    # The positions of the first file; the batching thread parks after claiming its third slot.
    first.hot = first.hot[:8] + (Gate(first.positions, 3),)
    batch = [LogRecord("app", 20, "run %d", (i,), None, i, 1) for i in range(5)]
    out = {}
    writer_thread = threading.Thread(target=lambda: out.update(written=w.write_batch(batch)))
    writer_thread.start()
    assert parked.wait(60)
    segment = first.header.segment
    while w.header.segment < segment + 2:    # rotated away twice: its map is unmapped
        w.write("other", logger="app")
    assert first.mm.closed
    go.set()
    writer_thread.join()
    w.close()
    found = sorted(r.message for r in mmaplog.read(path) if r.message.startswith("run "))
    print(json.dumps({"written": out["written"], "dropped": w.dropped, "errors": w.errors, "found": found}))
"""


def test_a_batch_run_whose_file_is_rotated_away_and_unmapped_before_its_commit_is_written(tmp_path: Path) -> None:
    """The pure path packs a batch's one-slot records into a run and commits it at the end: when its file was
    rotated away twice (and unmapped) in between, the run is written again in the current file, not dropped.

    Pure path only: the C batch claims and commits each record before the next.
    """
    out = _run(_BATCH_RUN_ROTATED_AWAY, "pure", tmp_path / "app.mmlog")
    assert out["written"] == 5 and out["dropped"] == 0 and out["errors"] == 0, out
    assert out["found"] == [f"run {i}" for i in range(5)], out
