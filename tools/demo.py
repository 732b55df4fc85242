"""mmaplog in one minute: a console handler and a ring file side by side, then the ring read back.

    python tools/demo.py [OUTPUT_DIRECTORY]

Records go to the console (what you see while the program runs) and into a
memory-mapped ring file (what survives a crash); at the end ``mmaplog-read``
shows the ring.  Without a directory the ring goes to a fresh temporary one.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import mmaplog


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="mmaplog-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    ring_path = out_dir / "demo-{pid}.mmlog"  # {pid}: one file per process

    # 1. Configure: a console handler for people, a ring handler for the record that survives a crash.
    console = mmaplog.ConsoleHandler(level="INFO", format="{time} {level:<8} {logger}: {message}")
    ring = mmaplog.RingHandler(ring_path, size="1 MiB")
    mmaplog.configure(level="DEBUG", handlers=[console, ring])
    print("--- the console handler (INFO and above, on stderr) ---", flush=True)

    # 2. Log: %-style arguments, key-value fields, a bound logger, an exception.
    log = mmaplog.get_logger("demo.orders")
    log.info("order %d paid %.2f by %s", 42, 9.5, "bob")
    log.debug("cache lookup", key="order:42", hit=False)  # DEBUG: in the ring only
    request = log.bind(request_id="r-17", user="ann")
    request.info("request started", path="/checkout")
    try:
        {"stock": 0}["price"]
    except KeyError:
        request.exception("could not price the basket")
    request.warning("request finished slowly", took_ms=1234)

    # 3. The async handler: bursts and trickles through a background writer.
    #    A direct console handler and an async one print the same records to stdout.  In a
    #    burst the logging thread only queues for the async one and keeps running, so the
    #    async lines lag behind (how far depends on when the worker thread gets the
    #    interpreter) and catch up; in a slow trickle the worker has written each record
    #    before the next arrives, so the lines pair up.
    print("\n--- a direct console handler beside an async one (both on stdout) ---", flush=True)
    direct = mmaplog.ConsoleHandler(sys.stdout, format="  direct  {message}", colour=False)
    queued = mmaplog.AsyncHandler(mmaplog.ConsoleHandler(sys.stdout, format="  async   {message}", colour=False))
    side_by_side = mmaplog.Logger("demo.async", handlers=[direct, queued])
    print("a burst of 5 records:", flush=True)
    for i in range(1, 6):
        side_by_side.info("burst record %d", i)
    sys.stdout.write(f"  ({queued.pending} of 5 still queued when the burst's last call returned)\n")
    sys.stdout.flush()
    queued.flush()  # what to do before a risky operation: everything queued is written now
    print("a slow trickle, one record every 0.3 s:", flush=True)
    pause = threading.Event()
    for i in range(1, 4):
        side_by_side.info("trickle record %d", i)
        pause.wait(0.3)  # pacing for the eye, not synchronisation
    queued.close()

    # 4. Read the ring back: every record, DEBUG included, with its fields and traceback.
    print(f"\n--- the ring file {ring.path}, read back with mmaplog-read ---", flush=True)
    subprocess.run([sys.executable, "-m", "mmaplog.cli.read", str(ring.path)], check=False)
    print(f"\nThe ring is at {ring.path}; try:  {reader_command()} {shlex.quote(str(ring.path))} -o json")
    return 0


def reader_command() -> str:
    """``mmaplog-read`` as it can be typed here: by name when the shell finds this installation's script,
    else by the script's path beside this Python, else as ``python -m mmaplog.cli.read``."""
    script = Path(sys.executable).parent / "mmaplog-read"
    found = shutil.which("mmaplog-read")
    if script.is_file() and found is not None and Path(found).resolve() == script.resolve():
        return "mmaplog-read"
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m mmaplog.cli.read"


if __name__ == "__main__":
    sys.exit(main())
