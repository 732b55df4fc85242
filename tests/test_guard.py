"""The SIGBUS guard and the writer's map lifecycle: nothing here may take the process down.

Every scenario runs in a child interpreter, on the C write path and on the
pure-Python one (``MMAPLOG_PURE_PYTHON=1``), so that a crash fails the test
with the signal named instead of killing pytest.  See docs/RELIABILITY.md.
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

import mmaplog
from mmaplog import _native, _truncation

pytestmark = pytest.mark.skipif(not _truncation.supported(), reason="the SIGBUS guard (mmaplog._sigbus) is not built")

PATHS = ["c", "pure"]


def _env(kind: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MMAPLOG_PURE_PYTHON", None)
    env.pop("PYTHONFAULTHANDLER", None)  # faulthandler would see our faults first (tested on its own below)
    if kind == "pure":
        env["MMAPLOG_PURE_PYTHON"] = "1"
    return env


@pytest.fixture(params=PATHS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "c" and _native.pure_python():
        pytest.skip("the C path is turned off in this run")
    return str(request.param)


def _run(code: str, kind: str, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter on write path ``kind``; argv[1:] = args."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=_env(kind))


def _died(proc: subprocess.CompletedProcess[str]) -> str:
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}\n{proc.stderr}"
    return f"exit status {proc.returncode}\n{proc.stderr}"


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, _died(proc)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ============================================================== truncation racing close / rotation
_REPAIR_RACE = """
    import json, os, sys, threading
    import mmaplog
    from mmaplog import _truncation
    _truncation._watcher.failed = True  # no inotify watch: the faulting store, not the watcher thread, repairs
    case, path = sys.argv[1], sys.argv[2]
    rotate = case == "rotate"
    w = mmaplog.RingWriter(path, size=(64 if rotate else 1024) * 256, rotate=3 if rotate else 0)
    for i in range(10):
        w.write(f"fill {i}", logger="app")
    real_repair = _truncation._repair
    started = threading.Event()
    def other():
        started.set()
        if rotate:
            for i in range(100):  # rotates once or twice; rotate=3 keeps all 64-slot files
                w.write(f"other {i}", logger="other")
        else:
            w.close()           # waits for the writer's lock, then unmaps while the faulting write resumes
    def racing_repair(*args, **kwargs):
        real_repair(*args, **kwargs)
        t = threading.Thread(target=other)
        t.start()
        threads.append(t)
        started.wait()          # the other thread runs before the faulting write stores its record again
    threads = []
    _truncation._repair = racing_repair
    os.truncate(path, 0)        # copytruncate by another process
    seq = w.write("y" * 100, logger="app")
    for t in threads:
        t.join()
    w.close()
    print(json.dumps({"seq": seq, "dropped": w.dropped, "repairs": len(threads)}))
"""


@pytest.mark.parametrize("case", ["close", "rotate"])
def test_truncation_repair_racing_close_or_rotation_never_crashes(tmp_path: Path, kind: str, case: str) -> None:
    """A truncated ring repaired while another thread closes it or makes it rotate: the process lives, loss is counted."""
    path = tmp_path / "a.mmlog"
    res = _last_json(_run(_REPAIR_RACE, kind, case, path))
    assert res["repairs"] == 1
    if res["seq"] == 0:  # the record's page was given back: counted, never silent
        assert isinstance(res["dropped"], int) and res["dropped"] >= 1
    elif case == "rotate":
        assert "y" * 100 in [r.message for r in mmaplog.read(path)]


_TRUNCATE_WHILE_CLOSING = """
    import os, sys, threading
    import mmaplog
    path, rounds = sys.argv[1], int(sys.argv[2])
    sys.setswitchinterval(1e-6)
    for r in range(rounds):
        w = mmaplog.RingWriter(path, size=256 * 256, rotate=2 if r % 2 else 0)
        go = threading.Event()
        def work(t):
            go.wait()
            for i in range(3000):
                if w.write(f"t{t} {i}" + "." * (i % 200), logger=f"w{t}") == 0 and w.closed:
                    break
        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        go.set()
        os.truncate(path, (r * 4096) % 70000)
        w.close()
        for t in threads:
            t.join()
        os.unlink(path)
    print("survived", rounds)
"""


def test_truncation_with_threads_writing_while_the_writer_closes(tmp_path: Path, kind: str) -> None:
    """Truncate a live ring while three threads write and the main thread closes it, 20 rounds: no crash."""
    proc = _run(_TRUNCATE_WHILE_CLOSING, kind, tmp_path / "a.mmlog", 20)
    assert proc.returncode == 0 and proc.stdout.split() == ["survived", "20"], _died(proc)


def test_truncated_ring_keeps_every_acknowledged_record_written_after_the_cut(tmp_path: Path, kind: str) -> None:
    """After a cut, every write that returned a seq is readable: the store that faulted was made again."""
    proc = _run(
        """
        import json, os, sys, mmaplog
        path = sys.argv[1]
        w = mmaplog.RingWriter(path, size=1024 * 256)
        w.write("before", logger="app")
        os.truncate(path, 0)
        acked = [i for i in range(500) if w.write(f"after {i}", logger="app" if i % 2 else "db")]
        w.write("x" * 900, logger="long")  # a record of several slots
        w.close()
        print(json.dumps({"acked": len(acked), "dropped": w.dropped}))
        """,
        kind, tmp_path / "a.mmlog",
    )
    res = _last_json(proc)
    assert res == {"acked": 500, "dropped": 0}
    assert "truncated to 0 bytes" in proc.stderr
    records = list(mmaplog.read(tmp_path / "a.mmlog"))
    after = [(r.logger, r.message) for r in records if r.message.startswith("after")]
    assert after == [("app" if i % 2 else "db", f"after {i}") for i in range(500)]
    assert records[-1].message == "x" * 900 and records[-1].logger == "long"


# ============================================================== SIGBUS that is not ours
_SENT = """
    import os, signal, sys, mmaplog
    mode, path = sys.argv[1], sys.argv[2]
    seen = []
    if mode == "handler":
        signal.signal(signal.SIGBUS, lambda *a: seen.append(1))
    elif mode == "ignore":
        signal.signal(signal.SIGBUS, signal.SIG_IGN)
    from mmaplog import _truncation
    _truncation._watcher.failed = True        # no inotify watch: the next store finds the cut
    w = mmaplog.RingWriter(path, size=64 * 256)
    w.write("open")
    os.truncate(path, 0)
    w.write("repaired")                       # the guard's own fault first
    print("sending", flush=True)
    sys.stdin.readline()                      # the parent sends SIGBUS with kill, then a line
    for i in range(100):
        w.write(f"after {i}")
    w.close()
    print("survived", len(seen), w.dropped, flush=True)
"""


@pytest.mark.parametrize("mode", ["default", "handler", "ignore"])
def test_sigbus_sent_by_another_process_gets_the_previous_disposition(tmp_path: Path, kind: str, mode: str) -> None:
    """``kill -BUS`` from another process: SIG_DFL kills with SIGBUS, an application handler runs, SIG_IGN ignores."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_SENT), mode, str(tmp_path / "a.mmlog")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(kind))
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "sending"
        subprocess.run(["kill", "-BUS", str(proc.pid)], check=True)
        try:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if mode == "default":
        assert proc.returncode == -signal.SIGBUS, (proc.returncode, err)
    else:
        assert proc.returncode == 0, (proc.returncode, err)
        assert out.split() == ["survived", "1" if mode == "handler" else "0", "0"], (out, err)


def test_application_handler_installed_first_keeps_getting_sigbus_and_the_guard_stays(tmp_path: Path, kind: str) -> None:
    """An application's SIGBUS handler installed before the ring gets unrelated SIGBUS; later cuts are still repaired."""
    proc = _run(
        """
        import json, os, signal, sys, mmaplog
        seen = []
        signal.signal(signal.SIGBUS, lambda *a: seen.append(1))
        path = sys.argv[1]
        w = mmaplog.RingWriter(path, size=256 * 256)
        for round in range(3):
            os.kill(os.getpid(), signal.SIGBUS)          # unrelated: the application's handler takes it
            signal.raise_signal(signal.SIGBUS)           # and a tgkill from this very thread
            os.truncate(path, 0)
            ok = sum(1 for i in range(300) if w.write(f"r{round} {i}"))
            assert ok == 300, ok
        w.close()
        print(json.dumps({"seen": len(seen), "dropped": w.dropped}))
        """,
        kind, tmp_path / "a.mmlog",
    )
    assert _last_json(proc) == {"seen": 6, "dropped": 0}
    assert proc.stderr.count("truncated to 0 bytes") == 3


def test_a_fault_outside_any_ring_goes_to_the_application_handler(tmp_path: Path, kind: str) -> None:
    """A fault in the application's own mapping reaches its SA_SIGINFO handler (faulthandler here), not the guard."""
    proc = _run(
        """
        import faulthandler, mmap, os, sys, mmaplog
        faulthandler.enable()                            # installed before the ring: the guard chains to it
        w = mmaplog.RingWriter(sys.argv[1] + "/a.mmlog", size=64 * 256)
        other = sys.argv[1] + "/other.bin"
        with open(other, "wb") as f:
            f.write(b"x" * 16384)
        m = mmap.mmap(os.open(other, os.O_RDWR), 16384)
        os.truncate(other, 0)
        print("touching", flush=True)
        m[8192] = 1
        print("survived", flush=True)
        """,
        kind, tmp_path,
    )
    assert proc.stdout.split() == ["touching"] and proc.returncode == -signal.SIGBUS, _died(proc)
    assert "Fatal Python error: Bus error" in proc.stderr


def test_guard_turned_off_leaves_sigbus_alone(tmp_path: Path, kind: str) -> None:
    """``guard_truncation=False``: the ring is not watched, so a truncation kills with SIGBUS as documented."""
    proc = _run(
        """
        import os, sys, mmaplog
        w = mmaplog.RingWriter(sys.argv[1], size=64 * 256, guard_truncation=False)
        w.write("open")
        os.truncate(sys.argv[1], 0)
        print("writing", flush=True)
        w.write("into the cut part")
        print("survived", flush=True)
        """,
        kind, tmp_path / "a.mmlog",
    )
    assert proc.stdout.split() == ["writing"] and proc.returncode == -signal.SIGBUS, _died(proc)


def test_a_hole_the_disk_cannot_back_is_counted_and_does_not_loop(small_tmpfs: Path, kind: str) -> None:
    """A cut ring on a full file system: the repair cannot reserve the space; stores are counted as lost, no hang."""
    proc = _run(
        """
        import json, os, sys, mmaplog
        from mmaplog import _truncation
        _truncation._watcher.failed = True  # no inotify watch: the repair must come after the disk filled up
        path = sys.argv[1]
        w = mmaplog.RingWriter(path, size=512 * 256)
        w.write("before")
        os.truncate(path, 0)
        with open(os.path.join(os.path.dirname(path), "filler"), "wb") as f:   # the disk fills up meanwhile
            try:
                while True:
                    f.write(b"\\0" * 65536)
                    f.flush()
            except OSError:
                pass
        results = [w.write(f"after {i}") for i in range(200)]
        w.close()
        print(json.dumps({"acked": sum(1 for s in results if s), "dropped": w.dropped}))
        """,
        kind, small_tmpfs / "a.mmlog", timeout=60,
    )
    res = _last_json(proc)
    assert isinstance(res["dropped"], int) and res["dropped"] > 0
    assert res["acked"] + res["dropped"] == 200  # every record either stored or counted


# ============================================================== write_batch vs Python code in a record
_BATCH_REPR = """
    import json, sys, threading, time
    import mmaplog
    case, path = sys.argv[1], sys.argv[2]
    rotate = case.startswith("rotate")
    w = mmaplog.RingWriter(path, size=16 * 256, rotate=4 if rotate else 0)
    w.write("hello", logger="app")
    class CloseInRepr:
        def __repr__(self):
            w.close()
            return "arg"
    class RotateInRepr:
        def __repr__(self):
            first = w.header.segment
            for i in range(200):
                if w.header.segment != first:
                    break
                w.write(f"filler {i}", logger="filler")
            w.write("first in the new file", logger="other")
            return "arg"
    arg = CloseInRepr() if case == "close" else RotateInRepr()
    recs = [mmaplog.LogRecord("app", 30, "payment %r", (arg,), None, time.time_ns(), threading.get_ident(), None),
            mmaplog.LogRecord("app", 20, "plain", (), None, time.time_ns(), threading.get_ident(), None)]
    n = w.write_batch(recs)
    w.close()
    shown = [(r.logger, r.message) for r in mmaplog.read(path) if r.message in ("payment arg", "plain")]
    print(json.dumps({"returned": n, "shown": shown, "dropped": w.dropped}))
"""


@pytest.mark.parametrize("case", ["close", "rotate"])
def test_write_batch_with_a_repr_that_closes_or_rotates_the_writer(tmp_path: Path, kind: str, case: str) -> None:
    """A record's ``__repr__`` closes or rotates the writer mid-batch: no crash, each record under its own logger."""
    res = _last_json(_run(_BATCH_REPR, kind, case, tmp_path / "a.mmlog"))
    if case == "close":
        assert res["returned"] == 0 and res["shown"] == [] and res["dropped"] == 2
    else:
        assert res["returned"] == 2
        assert res["shown"] == [["app", "payment arg"], ["app", "plain"]]


def test_batches_racing_close_never_store_into_a_closed_map(tmp_path: Path, kind: str) -> None:
    """write_batch in one thread, close() in another, 200 rounds at a 1 us switch interval: no crash, loss counted."""
    proc = _run(
        """
        import sys, threading, time, mmaplog
        sys.setswitchinterval(1e-6)
        path = sys.argv[1]
        records = [mmaplog.LogRecord("app", 20, "m %d", (i,), None, time.time_ns(), 1, None) for i in range(64)]
        lost = 0
        for r in range(200):
            w = mmaplog.RingWriter(path, size=64 * 256)
            w.write("x", logger="app")
            started = threading.Event()
            def batches():
                started.set()
                while not w.closed:
                    w.write_batch(records)
            t = threading.Thread(target=batches)
            t.start()
            started.wait()
            w.close()
            t.join()
            lost += w.dropped
        print("survived", lost >= 0)
        """,
        kind, tmp_path / "a.mmlog",
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["survived", "True"], _died(proc)


# ============================================================== C objects used wrongly
_UNINITIALISED = """
    import sys
    from mmaplog import _cwrite
    a = _cwrite.Appender.__new__(_cwrite.Appender)
    name = sys.argv[1]
    calls = {
        "append": lambda: a.append("x", 20, ""),
        "write": lambda: a.write("x", level=20),
        "append_records": lambda: a.append_records([]),
        "release": lambda: a.release(),
        "target-then-append": lambda: (a.target(bytearray(4096), iter(range(1, 9)), {"": 0}, 8, 0, 256, 8), a.append("x", 20, "")),
        "init-twice": lambda: (a.__init__(iter([1]), print, print, print), a.__init__(iter([1]), print, print, print), a.append("x", 20, "")),
    }
    try:
        calls[name]()
        print("returned")
    except Exception as exc:
        print("raised", type(exc).__name__)
"""


@pytest.mark.parametrize("call", ["append", "write", "append_records", "release", "target-then-append", "init-twice"])
def test_uninitialised_appender_raises_instead_of_crashing(tmp_path: Path, call: str) -> None:
    """``Appender.__new__`` without ``__init__``, then any method: a Python exception (or a no-op), never a crash."""
    if _native.load("_cwrite") is None:
        pytest.skip("the C write accelerator is not built")
    proc = _run(_UNINITIALISED, "c", call)
    assert proc.returncode == 0, _died(proc)
    out = proc.stdout.split()
    if call in ("append", "write", "append_records"):
        assert out == ["raised", "RuntimeError"]
    else:
        assert proc.stdout.splitlines()[-1].split()[0] in ("returned", "raised")


def test_emitter_state_cannot_be_made_from_python(tmp_path: Path) -> None:
    """The level methods' C state type cannot be instantiated empty from Python."""
    if _native.load("_cwrite") is None:
        pytest.skip("the C write accelerator is not built")
    proc = _run(
        """
        from mmaplog import _cwrite
        fn = _cwrite.ring_emitter(object(), 20, "app", print)
        Emitter = type(fn.__self__)
        for make in (lambda: Emitter(), lambda: Emitter.__new__(Emitter), lambda: object.__new__(Emitter)):
            try:
                make()
                print("made")
            except TypeError:
                print("refused")
        """,
        "c",
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["refused"] * 3, _died(proc)


def test_guard_module_rejects_bad_slots_and_addresses() -> None:
    """The guard's entry points validate their arguments (no region is touched by a wrong call)."""
    guard = _native.guard()
    assert guard is not None
    with pytest.raises(ValueError):
        guard.unregister(guard.MAX_REGIONS)
    with pytest.raises(ValueError):
        guard.remap(-1, 0)
    with pytest.raises(ValueError):
        guard.register(0, 4096, 0)
    with pytest.raises(OSError):
        guard.remap(guard.MAX_REGIONS - 1, 0)  # not registered
    assert guard.faults(-1) == 0 and guard.faults(10**6) == 0


