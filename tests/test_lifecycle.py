"""Process life, with real processes and signals: exit flush, uncaught exceptions, SIGTERM, fork."""

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

# A handler that keeps records in memory and writes them to a file only on flush(): it shows whether
# the process-life machinery flushed it.
_BUFFERING = textwrap.dedent(
    """
    import sys
    from mmaplog import Handler

    class Buffering(Handler):
        def __init__(self, path):
            super().__init__()
            self.path, self.lines = path, []
            from mmaplog import _lifecycle
            _lifecycle.track(self)
        def emit(self, record):
            self.lines.append(f"{record.level} {record.message}")
        def flush(self):
            if self.lines:
                with open(self.path, "a") as f:
                    f.write("".join(line + "\\n" for line in self.lines))
                self.lines = []
    """
)


def _run(code: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          **kwargs)  # type: ignore[call-overload]


def test_importing_registers_no_exit_hook() -> None:
    """Importing mmaplog registers nothing with atexit; creating the first handler does."""
    code = textwrap.dedent(
        """
        import atexit, logging, numpy
        before = atexit._ncallbacks()
        import mmaplog, mmaplog.config, mmaplog.stdlib, mmaplog.testing
        after_import = atexit._ncallbacks()
        mmaplog.ConsoleHandler()
        print(before, after_import, atexit._ncallbacks())
        """
    )
    before, after_import, after_handler = map(int, _run(code).stdout.split())
    assert after_import == before and after_handler > before


def test_everything_is_flushed_and_closed_at_normal_exit(tmp_path: Path) -> None:
    """Buffered records reach their file and ring writers are closed when the interpreter exits normally."""
    code = _BUFFERING + textwrap.dedent(
        """
        from mmaplog import Logger, RingHandler
        ring = RingHandler(sys.argv[2], size="64 KiB")
        log = Logger("app", handlers=[Buffering(sys.argv[1]), ring])
        for i in range(3):
            log.info("record %d", i)
        """
    )
    out, ring = tmp_path / "buffered.txt", tmp_path / "a.mmlog"
    proc = _run(code, str(out), str(ring))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == ["20 record 0", "20 record 1", "20 record 2"]
    assert [r.message for r in mmaplog.read(ring)] == ["record 0", "record 1", "record 2"]


def test_uncaught_exception_in_the_main_thread_is_logged_then_chained(tmp_path: Path) -> None:
    """capture_uncaught logs the traceback as CRITICAL and the usual hook still prints it and exits 1."""
    code = textwrap.dedent(
        """
        import sys, mmaplog
        mmaplog.configure(capture_uncaught=True, handlers=[{"type": "ring", "path": sys.argv[1], "size": "64 KiB"}])
        def explode():
            raise ValueError("no such order")
        explode()
        """
    )
    ring = tmp_path / "a.mmlog"
    proc = _run(code, str(ring))
    assert proc.returncode == 1
    assert "ValueError: no such order" in proc.stderr  # the previous hook ran
    records = list(mmaplog.read(ring))
    assert [(r.level_name, r.message) for r in records] == [
        ("CRITICAL", "uncaught exception: ValueError: no such order"),
    ]
    assert "in explode" in (records[0].exception or "") and "ValueError: no such order" in (records[0].exception or "")


def test_uncaught_exception_in_another_thread_is_logged(tmp_path: Path) -> None:
    """An exception that ends a thread is logged as CRITICAL with the thread's name; the process goes on."""
    code = textwrap.dedent(
        """
        import sys, threading, mmaplog
        mmaplog.configure(capture_uncaught=True, handlers=[{"type": "ring", "path": sys.argv[1], "size": "64 KiB"}])
        def work():
            raise KeyError("job-7")
        t = threading.Thread(target=work, name="job-runner")
        t.start(); t.join()
        mmaplog.get_logger("app").warning("still running")
        """
    )
    ring = tmp_path / "a.mmlog"
    proc = _run(code, str(ring))
    assert proc.returncode == 0, proc.stderr
    assert "KeyError: 'job-7'" in proc.stderr
    first, second = mmaplog.read(ring)
    assert first.level_name == "CRITICAL" and first.fields == {"thread_name": "job-runner"}
    assert first.message == "uncaught exception in thread job-runner: KeyError: 'job-7'"
    assert "in work" in (first.exception or "")
    assert second.message == "still running"


def test_sigterm_flushes_then_ends_the_process_as_sigterm_does(tmp_path: Path) -> None:
    """With flush_on_sigterm, a SIGTERM flushes buffered records and the exit status is still 'killed by SIGTERM'."""
    code = _BUFFERING + textwrap.dedent(
        """
        import mmaplog, signal
        mmaplog.configure(flush_on_sigterm=True, handlers=[Buffering(sys.argv[1])])
        log = mmaplog.get_logger("app")
        for i in range(5):
            log.warning("pending %d", i)
        print("ready", flush=True)
        while True:
            signal.pause()
        """
    )
    out = tmp_path / "buffered.txt"
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    assert not out.exists()  # nothing flushed yet
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, err
    assert out.read_text().splitlines() == [f"30 pending {i}" for i in range(5)]


def test_sigterm_chains_to_a_handler_the_program_installed(tmp_path: Path) -> None:
    """A SIGTERM handler installed before configure() still runs, after the flush."""
    code = _BUFFERING + textwrap.dedent(
        """
        import mmaplog, signal
        def graceful(signum, frame):
            print("graceful", open(sys.argv[1]).read().count("pending"), flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, graceful)
        mmaplog.configure(flush_on_sigterm=True, handlers=[Buffering(sys.argv[1])])
        mmaplog.get_logger("app").warning("pending")
        print("ready", flush=True)
        while True:
            signal.pause()
        """
    )
    out = tmp_path / "buffered.txt"
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert stdout.strip() == "graceful 1"


_FORK_CHILD = textwrap.dedent(
    """
    import json, os, sys, threading
    from mmaplog import Logger, RingHandler
    ring = RingHandler(sys.argv[1], size="16 MiB")
    log = Logger("app", handlers=[ring])
    stop, started = threading.Event(), threading.Event()
    def hammer():                      # another thread is logging while the process forks
        for i in range(30000):
            if stop.is_set():
                break
            log.info("parent-thread %d", i)
            if i == 100:
                started.set()
        started.set()
    t = threading.Thread(target=hammer); t.start()
    started.wait()
    for i in range(100):
        log.info("parent-before %d", i)
    pid = os.fork()
    if pid == 0:
        for i in range(100):
            log.info("child %d", i)
        print(json.dumps({"child_dropped": ring.dropped}), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    stop.set(); t.join()
    for i in range(100):
        log.info("parent-after %d", i)
    print(json.dumps({"parent": os.getpid(), "child": pid, "status": status}), flush=True)
    """
)


def test_fork_with_pid_in_the_path_gives_each_process_its_own_file(tmp_path: Path) -> None:
    """After fork, parent and child records land in separate files: none lost, none in the other's file."""
    proc = _run(_FORK_CHILD, str(tmp_path / "app-{pid}.mmlog"))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0] == {"child_dropped": 0}
    info = lines[1]
    assert info["status"] == 0
    parent_file = tmp_path / f"app-{info['parent']}.mmlog"
    child_file = tmp_path / f"app-{info['child']}.mmlog"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([parent_file.name, child_file.name])

    parent_scan = mmaplog.scan(parent_file)
    parent = [r.message for r in parent_scan.iter_records()]
    own = [m for m in parent if not m.startswith("parent-thread")]
    assert own == [f"parent-before {i}" for i in range(100)] + [f"parent-after {i}" for i in range(100)]
    assert parent_scan.stats.invalid == 0 and parent_scan.stats.gaps == 0 and parent_scan.stats.overwritten == 0

    child_scan = mmaplog.scan(child_file)
    assert [r.message for r in child_scan.iter_records()] == [f"child {i}" for i in range(100)]
    assert {r.pid for r in child_scan.iter_records()} == {info["child"]}
    assert child_scan.stats.invalid == 0 and child_scan.stats.gaps == 0

    merged = [r.message for r in mmaplog.read([parent_file, child_file])]
    assert len(merged) == len(parent) + 100


def test_fork_without_pid_never_writes_into_the_parents_ring(tmp_path: Path) -> None:
    """A forked child of a process writing a fixed path leaves the parent's ring alone, says so once, counts drops."""
    ring = tmp_path / "app.mmlog"
    proc = _run(_FORK_CHILD, str(ring))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0] == {"child_dropped": 100}
    assert proc.stderr.count("mmaplog:") == 1 and "fork" in proc.stderr and "{pid}" in proc.stderr
    scan = mmaplog.scan(ring)
    messages = [r.message for r in scan.iter_records()]
    assert not [m for m in messages if m.startswith("child")]
    own = [m for m in messages if not m.startswith("parent-thread")]
    assert own == [f"parent-before {i}" for i in range(100)] + [f"parent-after {i}" for i in range(100)]
    assert scan.stats.invalid == 0 and scan.stats.gaps == 0 and scan.stats.overwritten == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.mmlog"]


def test_file_handler_with_pid_reopens_in_the_child(tmp_path: Path) -> None:
    """A text file handler with {pid} in its path writes a forked child's lines to the child's own file."""
    code = textwrap.dedent(
        """
        import os, sys
        from mmaplog import FileHandler, Logger
        log = Logger("app", handlers=[FileHandler(sys.argv[1], format="{pid} {message}")])
        log.info("before")
        pid = os.fork()
        if pid == 0:
            log.info("in child")
            os._exit(0)
        os.waitpid(pid, 0)
        log.info("after")
        print(os.getpid(), pid)
        """
    )
    proc = _run(code, str(tmp_path / "app-{pid}.log"))
    assert proc.returncode == 0, proc.stderr
    parent, child = proc.stdout.split()
    assert (tmp_path / f"app-{parent}.log").read_text().splitlines() == [f"{parent} before", f"{parent} after"]
    assert (tmp_path / f"app-{child}.log").read_text().splitlines() == [f"{child} in child"]
    assert os.getpid() != int(parent)


def test_a_ring_writer_used_directly_is_inert_in_a_forked_child(tmp_path: Path) -> None:
    """A RingWriter inherited through fork drops the child's writes and leaves the parent's ring and lock intact."""
    code = textwrap.dedent(
        """
        import os, sys
        from mmaplog import RingWriter
        from mmaplog._errors import WriterBusyError
        writer = RingWriter(sys.argv[1], "64 KiB")
        writer.write("before", logger="app")
        pid = os.fork()
        if pid == 0:
            seqs = [writer.write(f"child {i}", logger="app") for i in range(10)]
            try:
                RingWriter(sys.argv[1], "64 KiB")   # the parent still holds the lock
                busy = False
            except WriterBusyError:
                busy = True
            writer.close()
            print(sum(seqs), writer.dropped, busy, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print(writer.write("after", logger="app"), flush=True)
        """
    )
    ring = tmp_path / "a.mmlog"
    proc = _run(code, str(ring))
    assert proc.returncode == 0, proc.stderr
    child_line, parent_seq = proc.stdout.splitlines()
    assert child_line == "0 10 True"
    assert parent_seq == "2"
    scan = mmaplog.scan(ring)
    assert [r.message for r in scan.iter_records()] == ["before", "after"]
    assert scan.stats.invalid == 0 and scan.stats.gaps == 0


# ---------------------------------------------------------------------- multiprocessing children
_MP_SCRIPT = '''
import glob, json, multiprocessing as mp, os, signal, sys, warnings
import mmaplog

warnings.simplefilter("ignore", DeprecationWarning)   # fork of a process with threads: what is tested here
N = 300


def config(d):
    ring = {"type": "ring", "path": os.path.join(d, "app-{pid}.mmlog"), "size": "1 MiB"}
    return {"handlers": [{"type": "async", "handlers": [ring]}]}


def work(d, method, job, ending):
    if method != "fork":
        mmaplog.configure(config(d))
    log = mmaplog.get_logger("worker")
    for k in range(N):
        log.info("job %s record %d", job, k)
    if ending == "exit":
        sys.exit(3)
    if ending == "raise":
        raise RuntimeError("the target failed")
    return os.getpid()


def pool_work(args):
    d, method, job, ending = args
    if ending == "raise" and job == 0:
        try:
            work(d, method, job, ending)
        except RuntimeError:
            raise
    return work(d, method, job, "return")


class Hold(mmaplog.Handler):
    """Takes the first batch and then never returns: everything after it stays queued."""
    def emit(self, record):
        signal.pause()
    def emit_batch(self, records):
        signal.pause()


def killed(d, conn):
    mmaplog.configure({"handlers": [{"type": "async", "batch_size": 16, "handlers": [
        {"type": "ring", "path": os.path.join(d, "app-{pid}.mmlog"), "size": "1 MiB"}, Hold()]}]})
    log = mmaplog.get_logger("worker")
    for k in range(N):
        log.info("record %d", k)
    conn.send(mmaplog.get_logger().own_handlers[0].pending)
    signal.pause()


def count(d):
    return sum(1 for f in glob.glob(os.path.join(d, "app-*.mmlog")) for r in mmaplog.read(f) if r.logger == "worker")


def main():
    method, base = sys.argv[1], sys.argv[2]
    ctx = mp.get_context(method)
    out = {}
    for ending in ("return", "exit", "raise"):
        d = os.path.join(base, f"process-{ending}")
        os.makedirs(d)
        if method == "fork":
            mmaplog.configure(config(d))
        procs = [ctx.Process(target=work, args=(d, method, j, ending)) for j in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        out[f"Process/{ending}"] = [count(d), 2 * N, [p.exitcode for p in procs]]
    for ending in ("return", "raise"):
        d = os.path.join(base, f"pool-{ending}")
        os.makedirs(d)
        if method == "fork":
            mmaplog.configure(config(d))
        pool = ctx.Pool(2)
        results = [pool.apply_async(pool_work, ((d, method, j, ending),)) for j in range(4)]
        failed = 0
        for r in results:
            try:
                r.get(60)
            except RuntimeError:
                failed += 1
        pool.close()
        pool.join()
        out[f"Pool/{ending}"] = [count(d), 4 * N, failed]
    d = os.path.join(base, "sigkill")
    os.makedirs(d)
    mmaplog.configure(handlers=[{"type": "console", "level": "CRITICAL"}])
    parent, child = ctx.Pipe()
    p = ctx.Process(target=killed, args=(d, child))
    p.start()
    pending = parent.recv() if parent.poll(60) else -1
    p.kill()
    p.join(60)
    out["sigkill"] = [count(d), N, pending, p.exitcode]
    mmaplog.configure(handlers=[{"type": "console", "level": "CRITICAL"}])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_write_everything_they_logged(tmp_path: Path, method: str) -> None:
    """Children (Process and Pool) log through Logger -> AsyncHandler -> RingHandler and end by returning,
    sys.exit() or an exception: every record is in their rings; a SIGKILLed child loses at most what was pending."""
    import multiprocessing

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    script = tmp_path / "mp_children.py"
    script.write_text(_MP_SCRIPT)
    base = tmp_path / "out"
    base.mkdir()
    proc = subprocess.run([sys.executable, str(script), method, str(base)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.splitlines()[-1])
    assert res["Process/return"] == [600, 600, [0, 0]]
    assert res["Process/exit"] == [600, 600, [3, 3]]
    assert res["Process/raise"] == [600, 600, [1, 1]]
    assert res["Pool/return"] == [1200, 1200, 0]
    assert res["Pool/raise"] == [1200, 1200, 1]
    found, logged, pending, exitcode = res["sigkill"]
    assert exitcode == -9 and pending > 0
    assert logged - pending <= found < logged  # the loss window: lost, but never more than was pending


def test_multiprocessing_imported_after_the_handlers_still_drains_fork_children(tmp_path: Path) -> None:
    """Handlers made before multiprocessing is imported: a fork child still drains its queue (the at-fork hook)."""
    code = textwrap.dedent(
        """
        import os, sys, warnings
        import mmaplog
        warnings.simplefilter("ignore", DeprecationWarning)
        mmaplog.configure({"handlers": [{"type": "async", "handlers": [
            {"type": "ring", "path": os.path.join(sys.argv[1], "app-{pid}.mmlog"), "size": "1 MiB"}]}]})
        assert "multiprocessing" not in sys.modules
        import multiprocessing as mp

        def work():
            log = mmaplog.get_logger("worker")
            for k in range(500):
                log.info("record %d", k)

        p = mp.get_context("fork").Process(target=work)
        p.start()
        p.join(60)
        print(p.pid, p.exitcode)
        """
    )
    proc = _run(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    pid, exitcode = proc.stdout.split()
    assert exitcode == "0"
    assert [r.message for r in mmaplog.read(tmp_path / f"app-{pid}.mmlog")] == [f"record {k}" for k in range(500)]
