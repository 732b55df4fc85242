"""A writer process for the lifecycle state machine (tests/test_writer_stateful.py), driven over a pipe.

``python _writer_child.py --serve FD`` is a fork server: it imports mmaplog once (which
takes most of a second on a loaded machine) and, for each request on the
``SOCK_SEQPACKET`` socket FD -- a JSON object with a ``log`` path, carrying one end of a
stream socket -- forks a writer process that talks over that socket, replies
``s PID``, and reports ``x PID STATUS`` (the raw wait status) when the process ends,
so the test sees a death by signal exactly as a parent would.

A writer process reads one line of JSON (``path``, ``size``, ``slot_size``,
``rotate``), opens one ``mmaplog.RingWriter`` with it and answers, one line per
message:

* ``r {json}`` once: ready (``native`` says whether the C append is in use), or
  ``b {json}`` (another writer holds the ring: WriterBusyError) or ``e {json}`` (the
  constructor raised), after which the process exits 0;

then reads commands from stdin, one JSON object per line:

* ``{"op": "write", "threads": [[[uid, length, logger, kind, level], ...], ...]}``:
  one thread per list writes its records in order.  After each ``write`` call
  *returned*, the thread sends ``a UID SEQ`` (SEQ 0: the writer refused it).
  ``kind`` 0 is ``write(text, logger=, level=)``, 1 adds ``fields={"u": uid}``, 2
  puts the record into a ``write_batch`` with its neighbours of kind 2, with the uid as its
  time (acknowledged
  as ``a UID -1`` each when the batch call returned the full count, else ``p N``:
  only N of them written, which ones unknown).  When every thread is done: ``d {json}``
  with the writer's loss counters;
* ``{"op": "fork", "uids": [[uid, length, logger], ...]}``: fork; the forked copy
  writes the records through its inherited (abandoned) writer, sends ``f UID SEQ``
  for each and leaves with ``os._exit(0)``; the parent waits for it and sends
  ``d {json}`` with its exit status;
* ``{"op": "close"}``: close the writer, send ``d {json}`` with the counters, exit 0.

The text of a record is :func:`make_text` of its uid and length, so the test knows
exactly what every record must read back as without sending it through the pipe.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from typing import Any

__all__ = ["TRUNCATION_MARKER", "make_text", "parse_uid"]

#: Characters the filler cycles through: ASCII, two- and three-byte UTF-8, so cuts land inside characters too.
_FILLER = "abcdefghijklmnopqrstuvwxyz0123456789-é漢ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TRUNCATION_MARKER = " [mmaplog: message truncated]"


@functools.lru_cache(maxsize=4096)
def make_text(uid: int, length: int) -> str:
    """The message of record ``uid``: ``u0000042|`` and then ``length`` filler characters that depend on the uid."""
    head = f"u{uid:07d}|"
    start = (uid * 7919) % len(_FILLER)
    body = "".join(_FILLER[(start + i * (1 + uid % 5)) % len(_FILLER)] for i in range(length))
    return head + body


def parse_uid(message: str) -> int | None:
    """The uid a message starts with, or None when it is not one of ours."""
    if len(message) < 9 or message[0] != "u" or message[8] != "|" or not message[1:8].isdigit():
        return None
    return int(message[1:8])


class _Out:
    """Whole lines to the test process, from any thread, each one write(2)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, line: str) -> None:
        data = (line + "\n").encode()
        with self.lock:
            while data:
                data = data[os.write(self.fd, data) :]


def _counters(writer: Any) -> dict[str, int]:
    out = {"dropped": int(writer.dropped), "errors": int(writer.errors)}
    for name in ("lost", "lost_records"):  # a loss counter for records acknowledged but not kept, where one exists
        value = getattr(writer, name, None)
        if isinstance(value, int):
            out["lost"] = out.get("lost", 0) + value
    return out


def _write_thread(writer: Any, out: _Out, records: list[list[Any]]) -> None:
    from mmaplog import LogRecord

    batch: list[list[Any]] = []

    def flush_batch() -> None:
        if not batch:
            return
        # The time is the uid, so a record cut before its uid (a tiny ring) can still be told apart.
        items = [LogRecord(r[2], r[4], make_text(r[0], r[1]), time_ns=r[0], thread=threading.get_ident())
                 for r in batch]
        written = writer.write_batch(items)
        if written == len(batch):
            for r in batch:
                out.send(f"a {r[0]} -1")
        else:
            out.send(f"p {written}")
        batch.clear()

    for uid, length, logger, kind, level in records:
        if kind == 2:
            batch.append([uid, length, logger, kind, level])
            if len(batch) >= 4:
                flush_batch()
            continue
        flush_batch()
        text = make_text(uid, length)
        if kind == 1:
            seq = writer.write(text, logger=logger, level=level, fields={"u": uid})
        else:
            seq = writer.write(text, logger=logger, level=level)
        out.send(f"a {uid} {seq}")
    flush_batch()


def serve(ctl_fd: int) -> int:
    """The fork server: one writer process per request, each reaped here and its status reported."""
    import select
    import signal
    import socket

    import mmaplog  # noqa: F401 - imported once, inherited by every writer process

    ctl = socket.socket(fileno=ctl_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    while True:
        ready = select.select([ctl, wake_r], [], [])[0]
        if wake_r in ready:
            os.read(wake_r, 512)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            ctl.send(f"x {pid} {status}".encode())
        if ctl not in ready:
            continue
        msg, fds, _, _ = socket.recv_fds(ctl, 4096, 1)
        if not msg:  # the test process is gone: so are its writers (a hung one would spin for ever)
            for child in children:
                os.kill(child, signal.SIGKILL)
            return 0
        request = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _die_with_parent()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                ctl.close()
                os.close(wake_r)
                os.close(wake_w)
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(log, 2)
                os.dup2(log, 1)  # a stray print must not go anywhere it could be mistaken for protocol
                os.close(log)
                code = main(fds[0])
            finally:
                try:
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        for fd in fds:
            os.close(fd)
        children.add(pid)
        ctl.send(f"s {pid}".encode())


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the fork server dies, so no writer outlives a test run."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(fd: int) -> int:
    """One writer process on the stream socket ``fd``."""
    import socket

    import mmaplog

    out = _Out(fd)
    commands = socket.socket(fileno=os.dup(fd)).makefile("rb")
    line = commands.readline()
    if not line:
        return 0
    args = json.loads(line)
    try:
        writer = mmaplog.RingWriter(args["path"], args["size"], slot_size=args["slot_size"], rotate=args["rotate"])
    except mmaplog.WriterBusyError as exc:
        out.send("b " + json.dumps({"message": str(exc)}))
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to the test, which decides whether it is allowed
        out.send("e " + json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        return 0
    out.send("r " + json.dumps({"native": getattr(writer, "_fast", None) is not None, "pid": os.getpid()}))
    for line in commands:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "write":
            threads = [threading.Thread(target=_write_thread, args=(writer, out, recs)) for recs in cmd["threads"]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out.send("d " + json.dumps(_counters(writer)))
        elif op == "fork":
            pid = os.fork()
            if pid == 0:
                try:
                    for uid, length, logger in cmd["uids"]:
                        out.send(f"f {uid} {writer.write(make_text(uid, length), logger=logger)}")
                finally:
                    os._exit(0)
            _, status = os.waitpid(pid, 0)
            out.send("d " + json.dumps({**_counters(writer), "fork_status": status}))
        elif op == "close":
            writer.close()
            out.send("d " + json.dumps(_counters(writer)))
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[2])) if sys.argv[1:2] == ["--serve"] else 2)
