"""``mmaplog-read``: show the records of mmaplog ring files, with the conventions of journalctl and tail.

Exit status: 0 when records were shown (or ``--verify`` found the files
intact, or ``--follow`` was ended by Ctrl-C or SIGTERM); 1 when nothing matched
or ``--verify`` found damage; 2 for a usage error or a file that cannot be
read; 130 when Ctrl-C interrupts a listing.  When a reader of the output goes
away (``| head``) the command ends quietly, as coreutils do.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn

from .. import __version__
from .._errors import FormatError
from ._interrupts import quiet_interrupts
from ._when import parse_when

if TYPE_CHECKING:
    import numpy as np

    from ..reader import Record
    from ._output import Formatter, Meta

# numpy, the reader and the formatters are imported by the functions that need them, not here:
# ``--version``, ``--help`` and usage errors answer without loading them (see bench/test_startup.py).

__all__ = ["build_parser", "main"]

PROG = "mmaplog-read"
#: The lnav format definition of the JSON lines, in the package's ``data`` directory.
LNAV_FORMAT = "mmaplog_json.lnav.json"
#: Records rendered per write: bounds the size of one output string.
_BLOCK = 65536
#: Records shown before following when -f is given without -n (as tail and journalctl do).
_FOLLOW_LAST = 10

_EPILOG = """\
times (--since, --until): ISO-8601 such as 2024-05-01T12:00:00 or '2024-05-01 12:00'
(local time unless a zone is given), now, today, yesterday, @SECONDS since the epoch,
or an offset from now: -5min, +1h, '1h 30min ago'.

exit status: 0 records shown (or --verify found no damage, or --follow ended by
Ctrl-C/SIGTERM); 1 nothing matched (or --verify found damage); 2 usage error or
unreadable file; 130 a listing interrupted by Ctrl-C.

Colour is used only when standard output is a terminal and NO_COLOR is not set
(--color=always overrides both).
"""


def _level(text: str) -> int:
    from .._levels import level_number

    try:
        return level_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _time(text: str) -> int:
    try:
        return parse_when(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mmaplog-read``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show the records of mmaplog ring files (their rotated segments included), oldest first.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="ring files; several are merged by time")
    parser.add_argument("-o", "--output", choices=("text", "json", "csv"), default="text", help="output format")
    parser.add_argument("-n", "--lines", type=_count, metavar="N", help="show only the last N matching records")
    parser.add_argument("-p", "--level", type=_level, metavar="LEVEL", help="minimum level: a name (warning) or number")
    parser.add_argument("--logger", metavar="NAME", help="only this logger and its dotted children (app.db: app.db.pool)")
    parser.add_argument("-S", "--since", type=_time, metavar="TIME", help="only records at or after TIME")
    parser.add_argument("-U", "--until", type=_time, metavar="TIME", help="only records at or before TIME")
    parser.add_argument("-g", "--grep", metavar="REGEX", help="only records whose message matches REGEX (Python syntax)")
    parser.add_argument("-i", "--ignore-case", action="store_true", help="match --grep without regard to case")
    parser.add_argument("--utc", action="store_true", help="show times in UTC instead of local time")
    parser.add_argument(
        "--color", "--colour", choices=("auto", "always", "never"), default="auto", help="colour the level (default: auto)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "-f", "--follow", action="store_true", help="keep showing new records as they are written (last 10 first)"
    )
    mode.add_argument("--stats", action="store_true", help="counts per level and logger, time span, rate, loss and damage")
    mode.add_argument("--verify", action="store_true", help="check every slot; exit 1 if any file is damaged")
    parser.add_argument(
        "--interval", type=_seconds, default=0.1, metavar="SECONDS", help="with --follow: seconds between polls (0.1)"
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show the version and whether the C accelerators are in use, and exit"
    )
    parser.add_argument(
        "--lnav-format", action=_LnavFormat, nargs=0,
        help="print the lnav log format of the -o json lines and exit (install: lnav -i FILE)",
    )
    return parser


class _Version(argparse.Action):
    """``--version``: the version, then which C accelerators are in use and why (no numpy imported)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None) -> NoReturn:
        from .._native import summary

        sys.stdout.write(f"{parser.prog} {__version__}\n{summary()}\n")
        sys.stdout.flush()
        parser.exit()


class _LnavFormat(argparse.Action):
    """``--lnav-format``: print the lnav format definition shipped in the package (``mmaplog/data``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None) -> NoReturn:
        from importlib.resources import files

        sys.stdout.write(files("mmaplog").joinpath(f"data/{LNAV_FORMAT}").read_text(encoding="utf-8"))
        sys.stdout.flush()
        parser.exit()


class _Output:
    """Standard output as UTF-8 bytes; text a terminal cannot show is escaped, never an error."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        if text:
            self.stream.write(text.encode("utf-8", "backslashreplace"))

    def write_bytes(self, data: bytes | bytearray) -> None:
        if data:
            self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()


def _say(message: str) -> None:
    """One line on standard error, prefixed with the program's name."""
    from ._output import escape

    try:
        sys.stderr.write(f"{PROG}: {escape(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _use_color(choice: str, stream: IO[bytes]) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _formatter(args: argparse.Namespace, stream: IO[bytes]) -> Formatter:
    from ._output import CsvFormatter, JsonFormatter, TextFormatter

    if args.output == "json":
        return JsonFormatter()
    if args.output == "csv":
        return CsvFormatter(utc=args.utc)
    return TextFormatter(utc=args.utc, color=_use_color(args.color, stream))


def _matcher(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Callable[[np.ndarray], np.ndarray]:
    """The filter of the command line as a function from rows to a boolean mask."""
    import numpy as np

    from ..reader import filter_mask

    pattern = None
    if args.grep is not None:
        try:
            pattern = re.compile(args.grep, re.IGNORECASE if args.ignore_case else 0)
        except re.error as exc:
            parser.error(f"argument -g/--grep: bad regular expression {args.grep!r}: {exc}")

    def match(rows: np.ndarray) -> np.ndarray:
        mask = filter_mask(
            rows, min_level=args.level or 0, logger=args.logger, since_ns=args.since, until_ns=args.until
        )
        if pattern is not None and len(rows):
            search = pattern.search
            found = np.fromiter(
                (search(m) is not None for m in rows["message"].tolist()), dtype=bool, count=len(rows)
            )
            mask &= found
        return mask

    return match


def _write_rows(out: _Output, formatter: Formatter, rows: np.ndarray, meta: Meta) -> None:
    formatter.see(rows)
    for start in range(0, len(rows), _BLOCK):
        out.write_bytes(formatter.encoded(rows[start : start + _BLOCK], meta))


def _records_to_rows(records: list[Record], meta_index: dict[tuple[str, str], int], meta: list[tuple[str, str]]) -> np.ndarray:
    """Records from the follower as rows of RECORD_DTYPE (the formatters' input)."""
    import numpy as np

    from .. import _codec
    from ..reader import RECORD_DTYPE

    rows = np.empty(len(records), dtype=RECORD_DTYPE)
    files = []
    for record in records:
        key = (record.host, record.process)
        index = meta_index.get(key)
        if index is None:
            index = meta_index[key] = len(meta)
            meta.append(key)
        files.append(index)
    rows["seq"] = [r.seq for r in records]
    rows["time_ns"] = [r.time_ns for r in records]
    rows["level"] = [r.level for r in records]
    rows["thread"] = [r.thread for r in records]
    rows["pid"] = [r.pid for r in records]
    rows["flags"] = [r.flags for r in records]
    rows["file"] = files
    for name in ("logger", "message", "fields", "exception"):
        column = np.empty(len(records), dtype=object)
        column[:] = [getattr(r, name) for r in records]
        rows[name] = column
    rows["lineno"] = 0
    _codec.source_columns(rows, fresh=True)
    return rows


class _Stop:
    """Turns SIGINT and SIGTERM into a request to stop following, checked between polls."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Stop:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _last(rows: np.ndarray, count: int | None) -> np.ndarray:
    """The last ``count`` rows (all of them when there are fewer; every row for None)."""
    if count is None:
        return rows
    return rows[max(0, len(rows) - count) :] if count else rows[:0]


def _expand(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """FILE arguments as paths: a glob pattern naming no file literally (quoted) is expanded, as the shell would.

    Returns (paths, patterns that matched nothing).
    """
    paths: list[str] = []
    unmatched: list[str] = []
    for name in names:
        if glob.has_magic(name) and not os.path.lexists(name):
            found = sorted(glob.glob(name))
            if not found:
                unmatched.append(name)
            paths += [p for p in found if p not in paths]
        elif name not in paths:
            paths.append(name)
    return paths, unmatched


def _readable(paths: Sequence[str]) -> tuple[list[str], bool]:
    """The paths that open as ring files; each one that does not gets its line on stderr.  (paths, any failed)."""
    from ..reader import RingFile

    good: list[str] = []
    failed = False
    for path in paths:
        try:
            RingFile(path).close()
        except FormatError as exc:
            _say(str(exc))
            failed = True
            continue
        good.append(path)
    return good, failed


def _follow(
    args: argparse.Namespace, out: _Output, formatter: Formatter, match: Callable[[np.ndarray], np.ndarray]
) -> int:
    """Show the last N records, then new ones as they are committed, until SIGINT or SIGTERM.

    A file that does not exist yet (or a pattern that matches none) is waited
    for, as ``tail -F`` does; it is said once on stderr.
    """
    import numpy as np

    from ..follow import Follower, FollowEvent
    from ..reader import RECORD_DTYPE, scan

    paths, unmatched = _expand(args.files)
    existing = [p for p in paths if os.path.lexists(p)]
    absent = [p for p in paths if p not in existing]  # looked at once: one may appear any moment now
    for name in [*absent, *unmatched]:
        _say(f"{name}: does not exist yet; waiting for it")
    good, failed = _readable(existing)
    if failed and not good and len(existing) == len(paths) and not unmatched:
        return 2  # nothing readable and nothing to wait for
    result = scan(good) if good else None
    with _Stop() as stop:
        rows = result.records if result is not None else np.zeros(0, dtype=RECORD_DTYPE)
        files = result.files if result is not None else []
        # Resume each series after the newest record seen, whatever the filters showed.
        cursor: dict[str, int] = {}
        if len(rows):
            series = [f.header.series_id.hex() for f in files]
            for index, seq in zip(rows["file"].tolist(), rows["seq"].tolist()):
                key = series[index]
                if seq > cursor.get(key, 0):
                    cursor[key] = seq
        meta = [(f.header.hostname, f.header.process_name) for f in files]
        shown = _last(rows[match(rows)], _FOLLOW_LAST if args.lines is None else args.lines)
        out.write(formatter.header())
        _write_rows(out, formatter, shown, meta)
        out.flush()
        # Patterns stay patterns (matched again on every poll); files not there yet are waited for.
        watched = [*good, *absent, *unmatched]
        follower = Follower(
            watched, after=cursor, from_start=True, poll_interval=args.interval, ordered=True, watch=True
        )
        live_meta: list[tuple[str, str]] = []
        meta_index: dict[tuple[str, str], int] = {}

        def emit(items: Sequence[Record | FollowEvent]) -> None:
            records = []
            for item in items:
                if isinstance(item, FollowEvent):
                    if item.warning:
                        _say(item.message)
                else:
                    records.append(item)
            if records:
                new = _records_to_rows(records, meta_index, live_meta)
                _write_rows(out, formatter, new[match(new)], live_meta)
            out.flush()

        said: set[tuple[str, str]] = set()
        try:
            while not stop.requested:
                items = follower.poll()
                for path, reason in follower.problems.items():
                    if (path, reason) not in said:
                        said.add((path, reason))
                        _say(f"{path}: {reason}")
                emit(items)
                if not items and follower.idle and not stop.requested:
                    time.sleep(args.interval)
        finally:
            emit(follower.close())
        if follower.stats.missed:
            _say(f"missed {follower.stats.missed} records while following ({follower.stats.overwritten} overwritten)")
        if follower.stats.pending:
            _say(f"{follower.stats.pending} records were still being written when following stopped")
    return 2 if failed else 0


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..reader import scan

    stream = sys.stdout.buffer
    out = _Output(stream)
    if args.follow:
        return _follow(args, out, _formatter(args, stream), _matcher(args, parser))
    paths, unmatched = _expand(args.files)
    for name in unmatched:
        _say(f"{name}: no file matches")
    # Each unreadable file gets its line; the readable ones are still shown, and the exit status is 2 at the end.
    good, failed = _readable(paths)
    failed |= bool(unmatched)
    if args.verify:
        from ._report import verify_path

        damaged = False
        for path in good:
            try:
                checks = verify_path(path)
            except FormatError as exc:
                _say(str(exc))
                failed = True
                continue
            for check in checks:
                damaged |= not check.ok
                out.write(check.line() + "\n")
        out.flush()
        return 2 if failed else 1 if damaged else 0
    formatter = _formatter(args, stream)
    match = _matcher(args, parser)
    if not good:
        return 2
    result = scan(good)
    rows = result.records
    shown = match(rows)
    if not shown.all():
        rows = rows[shown]
    rows = _last(rows, args.lines)
    if args.stats:
        from ._report import stats_report

        out.write(stats_report(rows, result.stats, as_json=args.output == "json", utc=args.utc))
    else:
        meta = [(f.header.hostname, f.header.process_name) for f in result.files]
        out.write(formatter.header())
        _write_rows(out, formatter, rows, meta)
    out.flush()
    if failed:
        return 2
    return 0 if len(rows) else 1


def _pipe_closed() -> int:
    """The reader of our output went away: stop quietly, as ``cat`` does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return 128 + signal.SIGPIPE


def _attach_offsets(argv: Sequence[str]) -> list[str]:
    """Keep ``--since -5min`` working: argparse would take ``-5min`` for an option."""
    out: list[str] = []
    items = iter(argv)
    for arg in items:
        out.append(arg)
        if arg == "--":
            out.extend(items)
            break
        if arg in ("-S", "--since", "-U", "--until"):
            value = next(items, None)
            if value is None:
                break
            if value[:1] == "-" and value[1:2].isdigit():
                out[-1] = f"{arg}={value}" if arg.startswith("--") else f"{arg}{value}"
            else:
                out.append(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mmaplog-read`` with ``argv`` (default: the command line); returns the exit status."""
    if argv is None:
        quiet_interrupts()  # Ctrl-C while starting up (imports included): status 130, no traceback
    if argv is None and hasattr(signal, "SIGPIPE"):
        # Die of SIGPIPE like coreutils when `| head` closes the pipe: no traceback, no error message.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    args = parser.parse_args(_attach_offsets(sys.argv[1:] if argv is None else argv))
    try:
        return _run(args, parser)
    except BrokenPipeError:
        return _pipe_closed()
    except FormatError as exc:
        _say(str(exc))
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"{where}{exc.strerror or exc}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
