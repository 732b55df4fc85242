"""A writer process for the lifecycle state machine (tests/test_writer_stateful.py), driven over a pipe.

Run as ``python _writer_child.py ARGS_JSON``: it opens one ``mmaplog.RingWriter`` with
the arguments given (``path``, ``size``, ``slot_size``, ``rotate``) and answers on
stdout, one line per message:

* ``r {json}`` once: ready (``native`` says whether the C append is in use), or
  ``b {json}`` (another writer holds the ring: WriterBusyError) or ``e {json}`` (the
  constructor raised), after which the process exits 0;

then reads commands from stdin, one JSON object per line:

* ``{"op": "write", "threads": [[[uid, length, logger, kind, level], ...], ...]}``:
  one thread per list writes its records in order.  After each ``write`` call
  *returned*, the thread sends ``a UID SEQ`` (SEQ 0: the writer refused it).
  ``kind`` 0 is ``write(text, logger=, level=)``, 1 adds ``fields={"u": uid}``, 2
  puts the record into a ``write_batch`` with its neighbours of kind 2 (acknowledged
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

import json
import os
import sys
import threading
import time
from typing import Any

__all__ = ["TRUNCATION_MARKER", "make_text", "parse_uid"]

#: Characters the filler cycles through: ASCII, two- and three-byte UTF-8, so cuts land inside characters too.
_FILLER = "abcdefghijklmnopqrstuvwxyz0123456789-é漢ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TRUNCATION_MARKER = " [mmaplog: message truncated]"


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
        items = [LogRecord(r[2], r[4], make_text(r[0], r[1]), time_ns=time.time_ns(), thread=threading.get_ident())
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


def main() -> int:
    args = json.loads(sys.argv[1])
    out = _Out(os.dup(sys.stdout.fileno()))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the protocol
    import mmaplog

    try:
        writer = mmaplog.RingWriter(args["path"], args["size"], slot_size=args["slot_size"], rotate=args["rotate"])
    except mmaplog.WriterBusyError as exc:
        out.send("b " + json.dumps({"message": str(exc)}))
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to the test, which decides whether it is allowed
        out.send("e " + json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        return 0
    out.send("r " + json.dumps({"native": getattr(writer, "_fast", None) is not None, "pid": os.getpid()}))
    for line in sys.stdin:
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
    sys.exit(main())
