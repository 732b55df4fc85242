"""``mmaplog-ship FILE... --to URL``: forward ring files to rsyslog (RELP or TCP) or as JSON lines, at least once.

Exit status: 0 everything available was shipped (or the shipper was stopped
cleanly, or the reader of stdout went away); 1 the collector stayed unavailable
for ``--retry-for`` seconds and the shipper gave up (the cursor keeps the
position, so the next run continues); 2 usage error, unreadable input or an
unusable cursor, with a one-line message; 3 (``--once``) everything that
exists was shipped but some records were reported lost.  With ``--once`` the
last line on stderr says how many were shipped and how many reported lost.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from .._errors import FormatError
from ..reader import RingFile
from ._shipper import Shipper, StopSignal
from ._sinks import open_sink, parse_destination
from ._source import RingSource
from .cursor import Cursor, CursorError, CursorLock, load_cursor
from .relp import DEFAULT_WINDOW
from .syslog import DEFAULT_ENTERPRISE_ID, DEFAULT_MAX_SIZE, SyslogFormatter, facility_number

__all__ = ["EXIT_GAVE_UP", "EXIT_LOST", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_GAVE_UP = 1
EXIT_USAGE = 2
EXIT_LOST = 3
PROG = "mmaplog-ship"


class _UsageError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds >= 0")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def _size(text: str) -> int:
    try:
        from ..writer import parse_size  # the writer's import costs a tenth of a second; only this option needs it

        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _facility(text: str) -> int:
    try:
        return facility_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mmaplog-ship``."""
    parser = _Parser(
        prog=PROG,
        description="Forward mmaplog ring files to a log collector: RFC 5424 over RELP (acknowledged, "
        "at least once), RFC 5424 over TCP (best effort), or JSON lines on stdout.",
        epilog="Exit status: 0 done or stopped cleanly, 1 gave up on an unavailable collector, "
        "2 usage error or unreadable input, 3 (--once) done but some records were reported lost.  "
        "See docs/SHIPPING.md.",
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE",
        help="ring files to ship (their sealed segments are included); a quoted glob pattern such as "
        "'/var/log/app-*.mmlog' is matched again while following, so new processes' files are picked up",
    )  # fmt: skip
    parser.add_argument(
        "--to", required=True, metavar="URL", dest="destination",
        help="relp://HOST:PORT (rsyslog imrelp), tcp://HOST:PORT (RFC 6587 octet counting) or - (JSON lines on stdout)",
    )  # fmt: skip
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--cursor", metavar="PATH", type=Path,
        help="file that keeps the last acknowledged record per series (default for relp/tcp: FILE.ship-cursor "
        "beside the first FILE; none for -)",
    )  # fmt: skip
    where.add_argument("--no-cursor", action="store_true", help="keep no cursor (every run starts from --start)")
    parser.add_argument("--once", action="store_true", help="ship what exists now, then exit (for cron and tests)")
    parser.add_argument(
        "--start", choices=("oldest", "end"), default="oldest",
        help="where to begin in a series the cursor does not know: its oldest record (default) or its end",
    )  # fmt: skip
    parser.add_argument(
        "--window", type=_positive_int, default=DEFAULT_WINDOW, metavar="N",
        help="records sent ahead of the saved cursor, and RELP messages awaiting acknowledgement "
        f"(default {DEFAULT_WINDOW})",
    )  # fmt: skip
    parser.add_argument("--facility", type=_facility, default=1, metavar="NAME", help="syslog facility (default user)")
    parser.add_argument(
        "--enterprise-id", type=_positive_int, default=DEFAULT_ENTERPRISE_ID, metavar="PEN",
        help=f"private enterprise number in the SD-IDs mmaplog@PEN and fields@PEN (default {DEFAULT_ENTERPRISE_ID}, "
        "the number RFC 5612 reserves for documentation)",
    )  # fmt: skip
    parser.add_argument(
        "--max-message-size", type=_size, default=DEFAULT_MAX_SIZE, metavar="BYTES",
        help="longest syslog message; longer messages are cut with a marker (default 64 KiB; "
        "rsyslog's maxMessageSize must be at least this)",
    )  # fmt: skip
    parser.add_argument(
        "--poll-interval", type=_positive_seconds, default=0.2, metavar="SECONDS",
        help="pause between looks at the files when there is nothing new (default 0.2)",
    )  # fmt: skip
    parser.add_argument(
        "--retry-for", type=_seconds, default=None, metavar="SECONDS",
        help="give up (exit 1) after the collector was unavailable this long (default: never; 30 with --once)",
    )  # fmt: skip
    parser.add_argument(
        "--ack-timeout", type=_positive_seconds, default=30.0, metavar="SECONDS",
        help="reconnect when a RELP collector acknowledges nothing for this long (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--drain-timeout", type=_seconds, default=10.0, metavar="SECONDS",
        help="on SIGTERM, wait this long for outstanding acknowledgements (default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--grace", type=_seconds, default=1.0, metavar="SECONDS",
        help="how long a missing record may still be in flight before it is reported lost (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="no progress line (it is shown only on a terminal) and no closing count line with --once",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _check_files(files: Sequence[str], once: bool) -> list[str]:
    """Open every FILE once: unreadable or foreign files are usage errors; missing ones too with --once.

    A glob pattern that names no file (quoted, ``'/var/log/app-*.mmlog'``) is
    matched again on every poll and is not checked here.
    """
    missing = []
    for name in files:
        if glob.has_magic(name) and not os.path.lexists(name):
            continue
        try:
            RingFile(name).close()
        except FormatError as exc:
            if not once and not os.path.lexists(name):
                missing.append(name)
                continue
            raise _UsageError(str(exc)) from None
    return missing


def _default_cursor(scheme: str, files: Sequence[str]) -> Path | None:
    if scheme == "-":
        return None
    first = Path(files[0])
    name = re.sub(r"[*?\[\]]", "_", first.name)  # a pattern's cursor: app-*.mmlog -> app-_.mmlog.ship-cursor
    return first.with_name(name + ".ship-cursor")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the shipper; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except _UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CursorError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    try:
        scheme, _, _ = parse_destination(args.destination)
        formatter = SyslogFormatter(
            facility=args.facility, enterprise_id=args.enterprise_id, max_size=args.max_message_size
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    missing = _check_files(args.files, args.once)
    for name in missing:
        print(f"{PROG}: {name}: does not exist yet; waiting for it", file=sys.stderr)

    cursor_path = None if args.no_cursor else (args.cursor or _default_cursor(scheme, args.files))
    lock = None
    cursor: Cursor | None = None
    if cursor_path is not None:
        lock = CursorLock(cursor_path)
        lock.acquire()
        cursor = load_cursor(cursor_path)
        cursor.destination = args.destination
    try:
        source = RingSource(
            args.files,
            positions=cursor.positions() if cursor is not None else None,
            start=args.start,
            grace=args.grace,
        )
        sink = open_sink(args.destination, formatter, window=args.window, timeout=args.ack_timeout)
        retry_for = args.retry_for if args.retry_for is not None else (30.0 if args.once else None)
        progress = sys.stderr if (not args.quiet and sys.stderr.isatty()) else None
        stop = StopSignal()
        stop.install()
        try:
            shipper = Shipper(
                source,
                sink,
                cursor=cursor,
                cursor_path=cursor_path,
                window=args.window,
                stop=stop,
                once=args.once,
                poll_interval=args.poll_interval,
                retry_for=retry_for,
                drain_timeout=args.drain_timeout,
                progress=progress,
            )
            stats = shipper.run()
        finally:
            stop.restore()
            source.close()
        if args.once and not args.quiet and (stats.shipped or stats.lost or stats.in_flight):
            line = f"{PROG}: shipped {stats.shipped} records, {stats.lost} reported lost"
            if stats.gaps:
                line += f" (in {stats.gaps} gap{'s' if stats.gaps != 1 else ''})"
            if stats.in_flight:
                line += f", {stats.in_flight} still in flight (left for the next run)"
            print(line, file=sys.stderr)
        if stats.unconfirmed_at_exit:
            print(
                f"{PROG}: {stats.unconfirmed_at_exit} messages were not acknowledged before exit; "
                "they will be sent again on the next start",
                file=sys.stderr,
            )
        if stats.gave_up:
            return EXIT_GAVE_UP
        return EXIT_LOST if args.once and stats.lost else EXIT_OK
    finally:
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    sys.exit(main())
