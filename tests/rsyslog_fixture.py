"""A real rsyslogd for the shipping tests: imrelp and imtcp on 127.0.0.1, everything received written to a file.

Tests wrap :func:`running_rsyslog` in a fixture of their own.  It skips (with the reason) when
rsyslogd or its RELP module is not installed; ``.ci/run`` installs the Debian
packages ``rsyslog`` and ``rsyslog-relp``.  The daemon uses only paths under the
test's ``tmp_path``: its own configuration, work directory and pid file, no
system socket (imuxsock is not loaded) and no system log files.
"""

from __future__ import annotations

import contextlib
import glob
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["Rsyslog", "parse_message", "running_rsyslog", "wait_until"]

_MODULE_DIRS = ["/usr/lib/*/rsyslog", "/usr/lib/rsyslog", "/usr/lib64/rsyslog", "/usr/local/lib/rsyslog"]

_CONFIG = """\
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imrelp")
module(load="imtcp")
# Direct queue: a message is written to the file before imrelp acknowledges it.
main_queue(queue.type="Direct")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="shipped") {{
    action(type="omfile" file="{out}" template="raw" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imrelp" address="127.0.0.1" port="{relp_port}" ruleset="shipped")
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="shipped")
"""


def wait_until(condition, timeout: float, what: str, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``condition()`` until it returns something truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rsyslogd() -> str | None:
    """The rsyslogd executable: on PATH, or in an sbin directory a normal user's PATH leaves out."""
    return shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin:/usr/local/sbin")


def _missing() -> str | None:
    """Why the tests cannot run here, or None."""
    if _rsyslogd() is None:
        return "rsyslogd is not installed (Debian: apt-get install rsyslog rsyslog-relp)"
    if not any(glob.glob(f"{d}/imrelp.so") for d in _MODULE_DIRS):
        return "rsyslog's RELP input module imrelp is not installed (Debian: apt-get install rsyslog-relp)"
    return None


class Rsyslog:
    """One rsyslogd process with this test's configuration; :meth:`stop` and :meth:`start` it at will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.output = root / "received.log"
        self.output.touch()
        self.relp_port = _free_port()
        self.tcp_port = _free_port()
        self.config = root / "rsyslog.conf"
        self.config.write_text(
            _CONFIG.format(work=self.work, out=self.output, relp_port=self.relp_port, tcp_port=self.tcp_port)
        )
        self.pidfile = root / "rsyslogd.pid"
        self.log = root / "rsyslogd.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def relp_url(self) -> str:
        return f"relp://127.0.0.1:{self.relp_port}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}"

    def start(self) -> None:
        """Start rsyslogd and wait until both ports accept connections."""
        assert self.proc is None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [_rsyslogd() or "rsyslogd", "-n", "-f", str(self.config), "-i", str(self.pidfile)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            for port in (self.relp_port, self.tcp_port):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    return False
            return True

        wait_until(ready, 30, "rsyslogd to listen")

    def stop(self) -> None:
        """Stop rsyslogd politely (SIGTERM) and wait for it to exit."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def lines(self) -> list[str]:
        """Every message received so far, one per line (rsyslog escapes control characters as #ooo)."""
        data = self.output.read_bytes()
        text = data.decode("utf-8", "replace")
        return text.splitlines()

    def count(self) -> int:
        """How many messages were received so far."""
        return self.output.read_bytes().count(b"\n")

    def wait_for(self, count: int, timeout: float = 60) -> list[str]:
        """Wait until at least ``count`` messages were received; return them."""
        wait_until(lambda: self.count() >= count, timeout, f"{count} messages at rsyslog (have {self.count()})")
        return self.lines()


@contextlib.contextmanager
def running_rsyslog(root: Path) -> Iterator[Rsyslog]:
    """A started :class:`Rsyslog` under ``root``, stopped afterwards; skips the test when rsyslog is missing."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    daemon = Rsyslog(root)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


# RFC 5424: <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]
_MESSAGE = re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?\Z", re.S)
_ELEMENT = re.compile(r"\[([^ \]]+)((?:[^\]\\]|\\.)*)\]")
_PARAM = re.compile(r' ([^=]+)="((?:[^"\\]|\\.)*)"')


def parse_message(line: str) -> dict:
    """Split one received RFC 5424 message: pri, time, host, app, procid, msgid, sd {id: {name: value}}, msg."""
    m = _MESSAGE.match(line)
    if m is None:
        raise AssertionError(f"not an RFC 5424 message: {line[:200]!r}")
    pri, ts, host, app, procid, msgid, sd_text, msg = m.groups()
    sd: dict[str, dict[str, str]] = {}
    if sd_text != "-":
        for element in _ELEMENT.finditer(sd_text):
            sd[element.group(1)] = {
                name: re.sub(r"\\([\"\\\]])", r"\1", value) for name, value in _PARAM.findall(element.group(2))
            }
    return {"pri": int(pri), "time": ts, "host": host, "app": app, "procid": procid, "msgid": msgid, "sd": sd,
            "msg": msg or ""}  # fmt: skip
