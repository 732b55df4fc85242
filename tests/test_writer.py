"""RingWriter: creation, reopening, locking, rotation, threads and crashes."""

from __future__ import annotations

import gc
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import mmaplog
from mmaplog import layout as L
from mmaplog.writer import RingWriter, parse_size, segment_path


def test_new_file_has_declared_size_and_private_mode(tmp_path: Path) -> None:
    """A new ring is fully reserved and created 0o640 (less the umask)."""
    path = tmp_path / "a.mmlog"
    old = os.umask(0o022)
    try:
        with RingWriter(path, size=64 * 256) as w:
            assert w.slot_count == 64
    finally:
        os.umask(old)
    st = path.stat()
    assert st.st_size == L.DATA_OFFSET + 64 * 256
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_blocks * 512 >= st.st_size  # reserved, not sparse


def test_write_returns_consecutive_sequence_numbers(tmp_path: Path) -> None:
    """Each write returns the record's seq, starting at 1 and counting up."""
    with RingWriter(tmp_path / "a.mmlog", size=64 * 256) as w:
        assert [w.write(f"m{i}") for i in range(5)] == [1, 2, 3, 4, 5]
    assert [r.seq for r in mmaplog.read(tmp_path / "a.mmlog")] == [1, 2, 3, 4, 5]


def test_reopen_continues_after_the_last_record(tmp_path: Path) -> None:
    """Reopening an existing ring continues its sequence instead of starting over."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256) as w:
        for i in range(20):
            w.write(f"first {i}", logger="app.one")
    with RingWriter(path, size=16 * 256) as w:
        assert w.write("second", logger="app.two") == 21
        w.write("third", logger="app.one")
    records = list(mmaplog.read(path))
    assert [r.seq for r in records] == list(range(7, 23))
    assert records[-2].logger == "app.two" and records[-1].logger == "app.one"


def test_reopen_keeps_existing_geometry_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reopening with a different size keeps the file's layout and reports it once on stderr."""
    path = tmp_path / "a.mmlog"
    RingWriter(path, size=16 * 256).close()
    with RingWriter(path, size=32 * 256) as w:
        assert w.slot_count == 16
    assert "continuing with the existing layout" in capsys.readouterr().err


def test_refuses_to_overwrite_a_foreign_file(tmp_path: Path) -> None:
    """A path holding something that is not a ring is never clobbered."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"precious text" * 100)
    with pytest.raises(mmaplog.FormatError, match="not an mmaplog file"):
        RingWriter(path)
    assert path.read_bytes() == b"precious text" * 100


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    """The advisory lock stops a second writer, in this process or another."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256):
        with pytest.raises(mmaplog.WriterBusyError, match="already open for writing"):
            RingWriter(path, size=16 * 256)
        code = f"import mmaplog,sys\ntry:\n    mmaplog.RingWriter({str(path)!r})\nexcept mmaplog.WriterBusyError as e:\n    print(e); sys.exit(3)"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.returncode == 3, proc.stderr
        assert f"pid {os.getpid()}" in proc.stdout


def test_symlink_at_target_is_refused(tmp_path: Path) -> None:
    """Creating a ring does not follow a symlink planted at the path, and the error says why."""
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "a.mmlog"
    link.symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        RingWriter(link)
    assert victim.read_text() == "keep"


def test_pid_placeholder_in_path(tmp_path: Path) -> None:
    """``{pid}`` in the path becomes the process id."""
    with RingWriter(tmp_path / "app-{pid}.mmlog", size=16 * 256) as w:
        assert w.path.name == f"app-{os.getpid()}.mmlog"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slot_size": 100}, "slot_size 100"),
        ({"slot_size": 32}, "slot_size 32"),
        ({"size": 10}, "smaller than one slot"),
        ({"size": "lots"}, "cannot read 'lots' as a size"),
        ({"rotate": -1}, "rotate must be"),
        ({"size": (1 << 32) * 64, "slot_size": 64}, "needs more than 4294967295 slots"),
    ],
)
def test_bad_arguments_name_the_value(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    """Bad constructor arguments fail at once with a message that names the value."""
    with pytest.raises(ValueError, match=message):
        RingWriter(tmp_path / "a.mmlog", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "a.mmlog").exists()


def test_parse_size_units() -> None:
    """Sizes accept plain numbers and binary/decimal units."""
    assert parse_size(4096) == 4096
    assert parse_size("64 MiB") == 64 << 20
    assert parse_size("1g") == 1 << 30
    assert parse_size("10kb") == 10_000


def test_close_is_idempotent_and_later_writes_are_counted(tmp_path: Path) -> None:
    """After close, writes return 0 without raising and are counted as dropped."""
    w = RingWriter(tmp_path / "a.mmlog", size=16 * 256)
    w.close()
    w.close()
    assert w.write("late") == 0
    assert w.write("late", fields={"a": 1}) == 0
    assert w.dropped == 2


def test_rotation_keeps_the_newest_files(tmp_path: Path) -> None:
    """With rotate=3 a full ring is sealed into a segment and only three files remain."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256, rotate=3) as w:
        for i in range(100):
            w.write(f"r{i}", logger=f"l{i % 3}")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["a.mmlog", segment_path("a.mmlog", 4).name, segment_path("a.mmlog", 5).name]
    scan = mmaplog.scan(path)
    assert [int(s) for s in scan.records["seq"]] == list(range(100 - len(scan.records) + 1, 101))
    assert scan.stats.overwritten == 100 - len(scan.records)
    assert [r.logger for r in scan.iter_records()][-3:] == ["l0", "l1", "l2"][(97 % 3):] + ["l0", "l1", "l2"][: (97 % 3)]


def test_rotation_sealed_segments_are_marked(tmp_path: Path) -> None:
    """A rotated segment carries the sealed marker and the live file does not."""
    from mmaplog.reader import RingFile

    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256, rotate=2) as w:
        for i in range(20):
            w.write(f"r{i}")
        with RingFile(segment_path(path, 0)) as sealed, RingFile(path) as live:
            assert sealed.sealed() and not live.sealed()
            assert sealed.header.series_id == live.header.series_id
            assert live.header.segment == 1


def test_threads_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """Eight threads writing at once: every record is present exactly once, each thread's in order."""
    path = tmp_path / "a.mmlog"
    per_thread = 2000
    start = threading.Barrier(8)
    with RingWriter(path, size=8 * per_thread * 2 * 256) as w:

        def work(t: int) -> None:
            start.wait()
            for i in range(per_thread):
                w.write(f"{t}:{i}" + ("x" * 300 if i % 50 == 0 else ""), logger=f"t{t}")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    scan = mmaplog.scan(path)
    assert scan.stats.invalid == 0 and scan.stats.gaps == 0 and scan.stats.incomplete == 0
    assert sorted(int(s) for s in scan.records["seq"]) == list(range(1, 8 * per_thread + 1))
    seen: dict[str, list[int]] = {}
    for r in scan.iter_records():
        t, i = r.message.split("x")[0].split(":")
        assert r.logger == f"t{t}"
        seen.setdefault(t, []).append(int(i))
    assert all(v == list(range(per_thread)) for v in seen.values()) and len(seen) == 8


_CRASH_CHILD = textwrap.dedent(
    """
    import os, struct, sys, threading
    import mmaplog
    path, fd = sys.argv[1], int(sys.argv[2])
    w = mmaplog.RingWriter(path, size=int(sys.argv[3]) * 256)
    os.write(fd, struct.pack("<q", -1))  # ready
    def work(t):
        i = 0
        while True:
            body = f"{t}:{i}:" + "abcdefghij"[i % 10] * ((i * 37) % 700)
            seq = w.write(body, logger=f"t{t}", fields={"i": i} if i % 5 == 0 else None)
            os.write(fd, struct.pack("<q", seq))
            i += 1
    for t in range(4):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


def _crash_cycle(tmp_path: Path, rng: random.Random, cycle: int) -> None:
    path = tmp_path / f"crash{cycle}.mmlog"
    slots = 1 << 15
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASH_CHILD, str(path), str(write_fd), str(slots)], pass_fds=(write_fd,)
    )
    os.close(write_fd)
    acked: list[int] = []
    want = rng.randint(1, 3000)
    buf = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while len(acked) < want:
            chunk = pipe.read(4096)
            assert chunk, f"child died early with {proc.wait()}"
            buf += chunk
            n = len(buf) // 8
            acked.extend(v for (v,) in struct.iter_unpack("<q", buf[: n * 8]))
            buf = buf[n * 8 :]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        buf += pipe.read()
    n = len(buf) // 8
    acked.extend(v for (v,) in struct.iter_unpack("<q", buf[: n * 8]))
    acked = [s for s in acked if s > 0]
    scan = mmaplog.scan(path)
    got = {int(s) for s in scan.records["seq"]}
    missing = set(acked) - got
    assert not missing, f"cycle {cycle}: acknowledged records missing after SIGKILL: {sorted(missing)[:10]}"
    for r in scan.iter_records():
        t, i, body = r.message.split(":", 2)
        expected = "abcdefghij"[int(i) % 10] * ((int(i) * 37) % 700)
        assert body == expected and r.logger == f"t{t}", f"cycle {cycle}: damaged record {r.seq}"
        assert r.fields == ({"i": int(i)} if int(i) % 5 == 0 else {})


def test_crash_torture_sigkill(tmp_path: Path) -> None:
    """A writer SIGKILLed at random moments never loses an acknowledged record nor shows a bad one (50 cycles)."""
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    for cycle in range(50):
        _crash_cycle(tmp_path, rng, cycle)
        (tmp_path / f"crash{cycle}.mmlog").unlink()


@pytest.mark.slow
def test_crash_torture_sigkill_long(tmp_path: Path) -> None:
    """The same crash torture, 1000 cycles."""
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    for cycle in range(1000):
        _crash_cycle(tmp_path, rng, cycle)
        (tmp_path / f"crash{cycle}.mmlog").unlink()


def test_full_disk_fails_at_open_not_later(tmp_path: Path) -> None:
    """A ring that cannot be reserved fails at open with a clear OSError (RLIMIT_FSIZE in a child)."""
    path = tmp_path / "big.mmlog"
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        import mmaplog
        try:
            mmaplog.RingWriter({str(path)!r}, size="8 MiB")
        except OSError as e:
            print(e); sys.exit(3)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "cannot reserve" in proc.stdout and str(path) in proc.stdout
    assert not path.exists()


def test_slot_bytes_follow_the_commit_protocol(tmp_path: Path) -> None:
    """A written slot carries pos at its head, its checksum and the pos echo in its trailer."""
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size=16 * 256) as w:
        w.write("hello")
    raw = path.read_bytes()[L.DATA_OFFSET : L.DATA_OFFSET + 256]
    slot = np.frombuffer(raw, dtype=L.SLOT_DTYPE)[0]
    assert int(slot["pos"]) == 1 and int(slot["commit"]) == 1
    import zlib

    assert int(slot["check"]) == zlib.crc32(raw[: L.SLOT_HEADER_SIZE + 5]) == L.slot_check(raw[: L.SLOT_HEADER_SIZE + 5])
    assert raw[L.SLOT_HEADER_SIZE + 5 : -8] == bytes(256 - 8 - L.SLOT_HEADER_SIZE - 5)  # zero padding
    assert bytes(slot["payload"]) == b"hello"


_APPEND_CASES = [
    ("plain", 20, "app"),
    ("new logger name", 30, "app.brand.new"),
    ("long " + "x" * 700, 40, "app"),
    ("lone \ud800 surrogate", 20, "app"),
    (12345, 20, "app"),  # not a str: rendered with str()
    ("inline logger", 20, "n" * 80),
]


def test_positional_append_writes_exactly_what_write_writes(tmp_path: Path) -> None:
    """The loggers' positional entry falls back to write() for every case its fast path leaves out."""
    results = []
    for name, use_append in (("append.mmlog", True), ("write.mmlog", False)):
        with RingWriter(tmp_path / name, size=16 * 256, rotate=3) as w:
            for _ in range(4):  # enough records to rotate several times
                for message, level, logger in _APPEND_CASES:
                    if use_append:
                        assert w._append(message, level, logger) > 0  # type: ignore[arg-type]
                    else:
                        assert w.write(message, level=level, logger=logger) > 0  # type: ignore[arg-type]
        results.append([(r.seq, r.message, r.level, r.logger) for r in mmaplog.read(tmp_path / name)])
    assert results[0] == results[1]
    assert len(results[0]) > len(_APPEND_CASES)


def test_positional_append_on_a_closed_writer_is_counted(tmp_path: Path) -> None:
    """After close the positional entry returns 0 and counts a drop, like write()."""
    w = RingWriter(tmp_path / "a.mmlog", size=16 * 256)
    w._append("one", 20, "")
    w.close()
    assert w._append("late", 20, "") == 0
    assert w.dropped == 1


def test_truncation_guard_can_be_turned_off(tmp_path: Path) -> None:
    """With guard_truncation=False the writer's map is not watched by the SIGBUS guard; by default it is."""
    from mmaplog import _truncation

    with RingWriter(tmp_path / "off.mmlog", size=16 * 256, guard_truncation=False) as off:
        assert off._map.guard is None and off._map.slot == -1
    if _truncation.supported():
        with RingWriter(tmp_path / "on.mmlog", size=16 * 256) as on:
            assert on._map.guard is not None and on._map.guard.live
        assert not on._map.guard.live  # closed: out of the guard before it was unmapped


def test_the_lock_free_threaded_builds_use_lets_a_signal_handler_write(tmp_path: Path) -> None:
    """Without a GIL writes hold a claim lock; a signal handler logging inside a write of its own thread must not deadlock."""
    with RingWriter(tmp_path / "a.mmlog", size=16 * 256) as w:
        results: list[int] = []

        def interrupted_write() -> None:
            with w._claim_lock:  # as if the signal arrived while this thread was inside a locked write
                results.append(w._write_locked("from a signal handler"))
                results.append(w._append_locked("and positional", 20, ""))

        thread = threading.Thread(target=interrupted_write, daemon=True)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the nested write deadlocked on the claim lock"
        assert results == [1, 2]


def test_a_dropped_writer_releases_its_file(tmp_path: Path) -> None:
    """A writer garbage-collected without close() unlocks its ring (with a ResourceWarning), so it can be reopened."""
    path = tmp_path / "a.mmlog"
    w = RingWriter(path, size=16 * 256)
    w.write("before")
    with pytest.warns(ResourceWarning, match="unclosed"):
        del w
        gc.collect()
    with RingWriter(path, size=16 * 256) as again:
        again.write("after")
    assert [r.message for r in mmaplog.read(path)] == ["before", "after"]


# --------------------------------------------------------------------------- tiny rings: the maximum-parts rule

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TEXT = st.text(alphabet=st.sampled_from("ab é中🙂\0"), max_size=40).map(lambda s: s * 60)


@settings(deadline=None, max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    slot_size=st.integers(L.MIN_SLOT_SIZE // 8, 1024 // 8).map(lambda k: 8 * k),
    slots=st.integers(1, 20),
    message=_TEXT,
    logger=st.one_of(st.just(""), st.just("app"), st.text(alphabet="lgé", min_size=61, max_size=300)),
    fields=st.one_of(st.none(), st.just({"k": "v" * 50})),
    before=st.integers(0, 3),
)
def test_every_acknowledged_record_fits_the_ring_and_reads_back(
    tmp_path_factory: pytest.TempPathFactory, slot_size: int, slots: int, message: str, logger: str,
    fields: dict[str, str] | None, before: int,
) -> None:
    """For any legal slot size and count, any message and inline logger name: a write that returns a seq can be read.

    A record may use at most layout.max_record_parts(slots) slots, so it never overwrites itself; one cut to
    fit says so (FLAG_TRUNCATED) and keeps the start of its message and of its logger name.
    """
    path = tmp_path_factory.mktemp("tiny") / "t.mmlog"
    with RingWriter(path, size=slot_size * slots, slot_size=slot_size) as w:
        for i in range(before):
            w.write(f"earlier {i}")
        seq = w.write(message, logger=logger, fields=fields)
    assert seq == before + 1
    got = [r for r in mmaplog.read(path) if r.seq == seq]
    assert len(got) == 1, mmaplog.scan(path).stats
    record = got[0]
    raw = path.read_bytes()
    parts = [s for s in np.frombuffer(raw, dtype=L.slot_dtype(slot_size), offset=L.DATA_OFFSET) if int(s["seq"]) == seq]
    assert len(parts) <= L.max_record_parts(slots)
    assert logger.startswith(record.logger)  # a name is only ever cut (at 255 bytes, or to fit a tiny ring)
    if not record.truncated:
        assert len(record.logger.encode()) > min(255, len(logger.encode())) - 4
    if record.truncated:
        assert message.startswith(record.message.removesuffix(L.TRUNCATION_MARKER))
    else:
        assert (record.message, record.fields) == (message, fields or {})


@pytest.mark.parametrize(("slot_size", "slots", "logger"), [(64, 1, ""), (64, 7, "x" * 255), (80, 3, "é" * 100),
                                                           (256, 1, "x" * 200), (72, 15, "")])
def test_records_in_the_smallest_rings_are_cut_visibly(tmp_path: Path, slot_size: int, slots: int, logger: str) -> None:
    """Where even the marker does not fit, the message is cut and the flag alone says so; the record stays one lap."""
    path = tmp_path / "t.mmlog"
    with RingWriter(path, size=slot_size * slots, slot_size=slot_size) as w:
        assert w.write("m" * 5000, logger=logger) == 1
    (record,) = list(mmaplog.read(path))
    assert record.truncated and set(record.message.removesuffix(L.TRUNCATION_MARKER)) <= {"m"}
    assert logger.startswith(record.logger)
    room = L.max_record_parts(slots) * L.slot_payload_size(slot_size)
    if room > len(L.TRUNCATION_MARKER.encode()) + (1 + len(logger.encode()) if len(logger) > L.NAME_MAX else 0):
        assert record.message.endswith(L.TRUNCATION_MARKER)
