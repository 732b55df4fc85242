"""Reading ring files: validate every slot, assemble records, order and merge them.

The reader never maps a file: it reads with ``pread`` on a read-only descriptor,
so a file that shrinks or disappears under it cannot raise SIGBUS, and it never
touches bytes past the file's current size.  Bad input raises
:class:`mmaplog.FormatError` and nothing else; any other exception escaping
from here on any input is a bug.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import glob
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from . import _codec
from . import layout as L
from ._errors import FormatError
from ._levels import LEVEL_NAMES, level_name, level_number
from ._series import declared_size

__all__ = [
    "LEVEL_NAMES",
    "RECORD_DTYPE",
    "ReadStats",
    "Record",
    "RingFile",
    "Scan",
    "level_name",
    "level_number",
    "read",
    "read_array",
    "scan",
    "unnamed_records",
    "writer_alive",
]

#: Bytes read twice at a time by RingFile._read_slots_into (both copies stay in the CPU cache).
_SEQLOCK_BYTES = 256 << 10

PathArg = Union[str, "os.PathLike[str]"]
Paths = Union[PathArg, Sequence[PathArg]]  # noqa: UP007 - PathArg holds a string forward reference

#: Holes shorter than this between two allocated extents are read rather than skipped (one read beats two).
_EXTENT_MERGE = 1 << 20

#: One row per record, as returned by :func:`read_array` (the fields are the codec's, which the accelerator fills).
RECORD_DTYPE = np.dtype(list(_codec.RECORD_FIELDS))


@dataclass(frozen=True)
class Record:
    """One log record as read back from a ring file."""

    seq: int
    time_ns: int
    level: int
    logger: str
    thread: int
    pid: int
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    exception: str | None = None
    host: str = ""
    process: str = ""
    source: str = ""
    flags: int = 0

    @property
    def level_name(self) -> str:
        """The level as a name ("INFO")."""
        return level_name(self.level)

    @property
    def time(self) -> _dt.datetime:
        """The wall-clock time as an aware UTC datetime (microsecond precision)."""
        return _dt.datetime.fromtimestamp(self.time_ns / 1e9, tz=_dt.timezone.utc)

    @property
    def truncated(self) -> bool:
        """True when the writer cut the message to the maximum record size."""
        return bool(self.flags & L.FLAG_TRUNCATED)


@dataclass
class ReadStats:
    """What a read found besides records: loss and damage are counted, never hidden."""

    files: int = 0
    slots: int = 0
    empty: int = 0
    #: Non-empty slots that failed validation: torn, uncommitted (in flight or dead) or corrupt.
    invalid: int = 0
    records: int = 0
    #: Records some of whose slots were overwritten or invalid.
    incomplete: int = 0
    #: Records older than the oldest one kept (overwritten by the ring or rotated away).
    overwritten: int = 0
    #: Records missing between the oldest and newest kept, with no writer left that could still commit them.
    gaps: int = 0
    #: Records missing between the oldest and newest kept while a live writer holds the file: in flight, not lost.
    pending: int = 0
    duplicates: int = 0
    truncated: int = 0
    #: Records whose logger has no intact entry in the name table (shown as ``<logger N>``): damage.
    unnamed: int = 0
    #: Slots missing because a file is shorter than its header declares (cut by another process): damage.
    short: int = 0
    #: Sealed segments found beside a named file that cannot be read at all (cut into their header): damage.
    unreadable: int = 0

    def add(self, other: ReadStats) -> None:
        """Add another file's or series' counts to these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def lost(self) -> int:
        """Records that existed once and cannot be returned."""
        return self.overwritten + self.gaps


class RingFile:
    """One ring file opened read-only: its header, name table and slots.

    Opening validates the header; :meth:`slots` reads a range of slots with
    ``pread``, so the file may be written, truncated or replaced meanwhile.
    """

    def __init__(self, path: PathArg) -> None:
        self.path = Path(os.fspath(path))
        try:
            # O_NONBLOCK: opening a FIFO planted at the path must not wait for a writer.
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            raise FormatError(self.path, exc.strerror or str(exc)) from None
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise FormatError(self.path, "not a regular file")
            self.inode = (st.st_dev, st.st_ino)
            self._scratch = bytearray()  # the first of the two reads of _read_slots_into
            raw = self._pread(L.HEADER_CHECK_OFFSET + L.HEADER_CHECK_STRUCT.size, 0)
            try:
                # Checked against the size it declares: a file cut short past its header is read for what it holds.
                self.header = h = L.decode_header(raw, max(st.st_size, declared_size(raw)))
            except L.HeaderError as exc:
                raise FormatError(self.path, exc.reason) from None
            #: Slots the file lacks (a partly cut one included) because it is shorter than its header declares.
            self.missing_slots = 0
            if st.st_size < h.file_size:  # the header is intact (a cut into it fails above): read what is left
                self.missing_slots = h.slot_count - max(0, st.st_size - h.data_offset) // h.slot_size
            self.dtype = L.slot_dtype(self.header.slot_size)
            #: A format 1.x file: its slots carry adler32 checks (see _codec.valid_slots).
            self.legacy = L.legacy_check(self.header.version)
            self.names = self.read_names()
        except BaseException:
            os.close(self._fd)
            self._fd = -1  # else __del__ would close the number again, by then maybe another file's
            raise

    def _pread(self, size: int, offset: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise FormatError(self.path, f"read failed: {exc.strerror or exc}") from None

    def size(self) -> int:
        """The file's current size in bytes."""
        return os.fstat(self._fd).st_size

    def read_names(self) -> dict[int, str]:
        """Read the logger-name table again (it grows while the writer runs)."""
        h = self.header
        # Never past the file's end: a file cut short may end inside the table, or before it.
        size = max(0, min(h.name_entries * L.NAME_ENTRY_SIZE, self.size() - h.name_offset))
        table = self._pread(size, h.name_offset) if size else b""
        return _codec.decode_names(table, h.name_entries)

    def sealed(self) -> bool:
        """True when the writer sealed this file (it was rotated into a segment)."""
        if self.size() < L.STATE_OFFSET + L.STATE_STRUCT.size:  # cut short before it: not sealed
            return False
        raw = self._pread(L.STATE_STRUCT.size, L.STATE_OFFSET)
        if len(raw) < L.STATE_STRUCT.size:
            return False
        pos, check = L.STATE_STRUCT.unpack(raw)
        return bool(pos != 0 and check == ~pos & 0xFFFFFFFFFFFFFFFF)

    def slots(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """Read ``count`` slots from ring index ``start`` (a copy); slots past the file's end are empty."""
        h = self.header
        if count is None:
            count = h.slot_count - start
        count = max(0, min(count, h.slot_count - start))
        size = h.slot_size
        out = np.empty(count, dtype=self.dtype)
        buf = out.view(np.uint8)
        got = self._read_slots_into(buf, h.data_offset + start * size)
        buf[got // size * size :] = 0  # past the file's end, and a partial last slot: empty slots
        return out

    def extents(self, start: int = 0, count: int | None = None) -> list[tuple[int, int]]:
        """The slot ranges (first ring index, count) within ``start..start+count`` that may hold data.

        Holes of a sparse file (``SEEK_DATA``/``SEEK_HOLE``) and slots past the
        file's end read as zeros, that is as empty slots, so a reader skips them:
        a file declaring a terabyte of slots but holding a few records costs a few
        reads, and memory in proportion to what is allocated.  Without hole
        support the whole range is one extent.
        """
        h = self.header
        if count is None:
            count = h.slot_count - start
        count = max(0, min(count, h.slot_count - start))
        if not count:
            return []
        size, base = h.slot_size, h.data_offset
        lo, hi = base + start * size, base + (start + count) * size
        seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
        if seek_data is None or seek_hole is None:
            return [(start, count)]
        out: list[tuple[int, int]] = []
        offset = lo
        try:
            while offset < hi:
                try:
                    data = os.lseek(self._fd, offset, seek_data)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no data from here to the end of the file
                        break
                    raise
                if data >= hi:
                    break
                hole = min(hi, os.lseek(self._fd, data, seek_hole))
                first = max(start, (data - base) // size)
                last = min(start + count, -(-(hole - base) // size))
                if out and first <= out[-1][0] + out[-1][1] + _EXTENT_MERGE // size:
                    prev = out[-1][0]
                    out[-1] = (prev, max(out[-1][1], last - prev))
                elif last > first:
                    out.append((first, last - first))
                offset = max(hole, offset + 1)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                return [(start, count)]  # the filesystem cannot tell: read it all
            raise FormatError(self.path, f"read failed: {exc.strerror or exc}") from None
        return out

    def chunks(self, chunk_bytes: int = 1 << 20) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (ring index of the first slot, bytes of whole slots) over the slots that may hold data.

        Reading a ring in pieces that stay in the CPU cache costs a fraction of
        reading it whole into fresh memory.  Each piece is valid only until the
        next is yielded.  Only :meth:`extents` are read: the slots left out (holes,
        past the file's end) are empty.
        """
        h = self.header
        size = h.slot_size
        per = max(1, min(chunk_bytes // size, h.slot_count))
        buf: np.ndarray | None = None
        for first, count in self.extents():
            for start in range(first, first + count, per):
                if buf is None:
                    buf = np.empty(per * size, dtype=np.uint8)
                part = buf[: min(per, first + count - start) * size]
                got = self._read_slots_into(part, h.data_offset + start * size)
                part[got // size * size :] = 0
                yield start, part

    def slot_chunks(self, start: int = 0, count: int | None = None, chunk_bytes: int = 8 << 20) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (ring index, slots) copies over the :meth:`extents` of ``start..start+count``, bounded pieces each."""
        per = max(1, chunk_bytes // self.header.slot_size)
        for first, n in self.extents(start, count):
            for at in range(first, first + n, per):
                yield at, self.slots(at, min(per, first + n - at))

    def _read_slots_into(self, buf: np.ndarray, offset: int) -> int:
        """Read whole slots into ``buf`` (contiguous uint8) from ``offset`` as a seqlock reader does; return bytes read.

        A writer invalidates a slot's trailer before it touches the body and writes
        the real trailer last (docs/FORMAT.md, "The commit protocol").  The slots
        are read twice, and a slot whose bytes differ between the two reads was
        written meanwhile: it is made to fail the commit test (it counts as invalid,
        as any slot in flight does).  A slot that reads the same twice is whole:
        had the first copy overlapped a write, the second (every load of which comes
        after every load of the first) would see the invalid or the new trailer.
        This needs no order among the loads of one copy (the kernel's copy may load
        a slot's trailer before its body).  Equal reads, the usual case, cost one
        memcmp over the whole buffer.  Done in pieces of at most 256 KiB, which stay
        in the CPU cache between the two reads and bound the extra memory.
        """
        size = self.header.slot_size
        step = max(1, _SEQLOCK_BYTES // size) * size
        total = 0
        for at in range(0, len(buf), step):
            piece = buf[at : at + step]
            got = self._read_twice(piece, offset + at)
            total += got
            if got < len(piece):
                break
        return total

    def _read_twice(self, buf: np.ndarray, offset: int) -> int:
        """One piece of :meth:`_read_slots_into`."""
        size = self.header.slot_size
        if len(self._scratch) != len(buf):
            self._scratch = bytearray(len(buf))
        first = np.frombuffer(self._scratch, dtype=np.uint8)
        got = self._read_into(first, offset)
        whole = got // size * size
        if whole == 0:
            return 0
        again = self._read_into(buf[:whole], offset)
        whole = min(whole, again // size * size)
        if whole != len(buf) or self._scratch != buf.data:
            _codec.drop_changed(first[:whole], buf[:whole], size)
        return again

    def _read_into(self, buf: np.ndarray, offset: int) -> int:
        """Fill ``buf`` from ``offset`` straight into its memory (no intermediate bytes); return bytes read."""
        got = 0
        try:
            while got < len(buf):
                n = os.preadv(self._fd, [buf[got:].data], offset + got)
                if n <= 0:
                    break
                got += n
        except OSError as exc:
            raise FormatError(self.path, f"read failed: {exc.strerror or exc}") from None
        return got

    def close(self) -> None:
        """Close the descriptor; idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RingFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finaliser must never raise
            pass


@dataclass
class Scan:
    """The result of :func:`scan`: records (one array row each) and what else was found."""

    records: np.ndarray
    stats: ReadStats
    files: list[RingFile]

    def iter_records(self) -> Iterator[Record]:
        """Yield the rows as :class:`Record` objects."""
        headers = [f.header for f in self.files]
        paths = [str(f.path) for f in self.files]
        for row in self.records:
            h = headers[row["file"]]
            yield Record(
                seq=int(row["seq"]),
                time_ns=int(row["time_ns"]),
                level=int(row["level"]),
                logger=row["logger"],
                thread=int(row["thread"]),
                pid=int(row["pid"]),
                message=row["message"],
                fields=row["fields"] or {},
                exception=row["exception"],
                host=h.hostname,
                process=h.process_name,
                source=paths[row["file"]],
                flags=int(row["flags"]),
            )


def expand_paths(paths: Paths, segments: bool = True) -> list[Path]:
    """The given paths plus, with ``segments``, the sealed segments beside each (``app.mmlog.000003``)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        path = Path(os.fspath(p))
        found = []
        if segments:
            pattern = glob.escape(str(path)) + ".[0-9][0-9][0-9][0-9][0-9][0-9]"
            found = sorted(Path(s) for s in glob.glob(pattern))
        for candidate in [*found, path]:
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out


def _locked_inodes() -> set[tuple[int, int, int]] | None:
    """(major, minor, inode) of every file someone holds an ``flock`` on, from /proc/locks; None where unavailable."""
    try:
        with open("/proc/locks", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    out = set()
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (waiters carry a "->" field first)
        if "->" in fields:
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK":
            try:
                major, minor, inode = fields[5].split(":")
                out.add((int(major, 16), int(minor, 16), int(inode)))
            except ValueError:
                continue
    return out


def writer_alive(path: PathArg) -> bool:
    """True when a writer holds the file at ``path`` open (its ``flock``): records it claimed may still appear.

    A writer locks its live file for as long as it runs and the lock goes with
    the process, so an unlocked file is one whose writer closed it or died.
    Read from /proc/locks where there is one, so the probe never takes the lock
    itself (a writer opening the file at that moment would find it taken).
    """
    try:
        st = os.stat(path)
    except OSError:
        return False
    locks = _locked_inodes()
    if locks is not None:
        if (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in locks:
            return True
        # A rotation between the stat and the look at the locks puts a new (locked) file at the path and
        # releases the old one: only a file still in place and unlocked has no writer.
        return _inode_at(path) != (st.st_dev, st.st_ino)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        st = os.fstat(fd)
    except OSError:
        return True
    finally:
        os.close(fd)
    return _inode_at(path) != (st.st_dev, st.st_ino)


def _inode_at(path: PathArg) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_COLUMNS = ("seq", "time_ns", "level", "thread", "flags", "logger", "message", "fields", "exception")


def _truncated(rows: np.ndarray) -> int:
    return int(np.count_nonzero(rows["flags"] & L.FLAG_TRUNCATED))


def _read_file(ring: RingFile, index: int) -> tuple[np.ndarray, ReadStats, list[int], bool]:
    """Decode one file: its records as rows in seq order, its stats, seqs of incomplete records, and whether
    every seq is known to be there once (else the caller checks)."""
    h = ring.header
    stats = ReadStats(files=1, slots=h.slot_count, short=ring.missing_slots)
    if _codec.accelerator() is not None:
        fed = [0]

        def pieces() -> Iterator[tuple[int, np.ndarray]]:
            for start, part in ring.chunks():
                fed[0] += len(part) // h.slot_size
                yield start, part

        collected = _codec.collect(pieces(), h.slot_size, h.slot_count, h.pid, index, RECORD_DTYPE, ring.names,
                                   ring.legacy)
        # Slots never read (holes, past the end) are empty.
        stats.empty, stats.invalid = collected.empty + (h.slot_count - fed[0]), collected.invalid
        rows, stats.duplicates, incomplete, unique = _codec.assemble_rows(
            collected, ring.read_names(), h.pid, index, RECORD_DTYPE, h.slot_size
        )
        # Rows as the accelerator found them (no longer records joined in): its count of truncated ones holds.
        stats.truncated = collected.truncated if unique else _truncated(rows)
        stats.unnamed = unnamed_records(rows["logger"], ring.read_names())
        _codec.source_columns(rows)
        return rows, stats, incomplete, unique
    # In bounded pieces over what is allocated: memory follows the data, not the size the header declares.
    kept: list[np.ndarray] = []
    nonempty = 0
    for start, slots in ring.slot_chunks():
        at = np.arange(start, start + len(slots), dtype=np.uint64)
        valid = _codec.valid_slots(slots, h.slot_count, index=at, legacy=ring.legacy)
        nonempty += int(np.count_nonzero(slots["pos"] != 0))
        kept.append(slots if valid.all() else slots[valid])
    good = kept[0] if len(kept) == 1 else (np.concatenate(kept) if kept else np.zeros(0, dtype=ring.dtype))
    stats.empty = h.slot_count - nonempty
    stats.invalid = nonempty - len(good)
    asm = _codec.assemble(good, ring.read_names())
    columns = {name: getattr(asm, name) for name in _COLUMNS}
    columns["pid"] = np.full(len(asm.seq), h.pid, dtype=np.uint32)
    columns["file"] = np.full(len(asm.seq), index, dtype=np.uint32)
    stats.duplicates = asm.duplicates
    rows = _to_rows(columns, None)
    _codec.source_columns(rows, fresh=True)
    stats.truncated = _truncated(rows)
    stats.unnamed = unnamed_records(rows["logger"], ring.read_names())
    return rows, stats, asm.incomplete_seqs, False


_UNNAMED = re.compile(r"<logger ([0-9]+)>")


def unnamed_records(loggers: np.ndarray, names: dict[int, str]) -> int:
    """How many of ``loggers`` (a column of names) stand for an id the name table has no intact entry for."""
    if not len(loggers):
        return 0
    bad = set()
    for name in set(loggers.tolist()):
        match = _UNNAMED.fullmatch(name) if isinstance(name, str) else None
        if match and int(match.group(1)) not in names:
            bad.add(name)
    if not bad:
        return 0
    return int(sum(1 for name in loggers.tolist() if name in bad))


def _to_rows(columns: dict[str, np.ndarray], order: np.ndarray | None) -> np.ndarray:
    """Build the RECORD_DTYPE array once, from columns (np.zeros: far faster than np.empty with objects)."""
    n = len(columns["seq"]) if order is None else len(order)
    rows = np.zeros(n, dtype=RECORD_DTYPE)
    for name, column in columns.items():
        rows[name] = column if order is None else column[order]
    return rows


def scan(paths: Paths, *, segments: bool = True) -> Scan:
    """Read every record of ``paths`` (and their sealed segments) with the counts of what was lost.

    Records of one series (one writer, its rotated segments) are ordered by seq;
    several series (one file per process, say) are merged by time.
    """
    files: list[RingFile] = []
    skipped = 0
    named = {Path(os.fspath(p)) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)}
    try:
        for path in expand_paths(paths, segments):
            try:
                files.append(RingFile(path))
            except FormatError:
                if path in named:
                    raise
                # A sealed segment someone cut into its header holds nothing readable: counted, and the rest
                # of its series is still read (a file named by the caller still raises).
                skipped += 1
        series: dict[bytes, list[int]] = {}
        for i, ring in enumerate(files):
            series.setdefault(ring.header.series_id, []).append(i)
        total = ReadStats(unreadable=skipped)
        parts: list[np.ndarray] = []
        dropped = False
        for members in series.values():
            decoded = []
            incomplete: set[int] = set()
            unique = True
            for i in members:
                rows, stats, unfinished, once = _read_file(files[i], i)
                decoded.append(rows)
                incomplete.update(unfinished)
                unique &= once
                total.add(stats)
            rows = decoded[0] if len(decoded) == 1 else np.concatenate(decoded)
            seq = rows["seq"]
            # One file's records come ordered by seq, but a seq can be both a one-slot and a multi-slot record.
            if len(decoded) > 1 or (not unique and len(seq) > 1 and bool((seq[1:] == seq[:-1]).any())):
                order = np.argsort(seq, kind="stable")
                seq = seq[order]
                keep = np.ones(len(seq), dtype=bool)
                keep[1:] = seq[1:] != seq[:-1]
                repeats = int(len(seq) - keep.sum())
                total.duplicates += repeats
                dropped |= repeats > 0
                rows = rows[order[keep]]
                seq = rows["seq"]
            # A record the writer wrote again in the next segment (rotation mid-record) is not lost.
            total.incomplete += len(incomplete.difference(seq.tolist())) if incomplete else 0
            if len(seq):
                first, last = int(seq[0]), int(seq[-1])
                total.overwritten += first - 1
                missing = (last - first + 1) - len(seq)
                # A seq a live writer claimed may still be committed (in a later segment, even): not lost yet.
                if missing and any(writer_alive(files[i].path) for i in members):
                    total.pending += missing
                else:
                    total.gaps += missing
            parts.append(rows)
        if not parts:
            records = np.zeros(0, dtype=RECORD_DTYPE)
        elif len(parts) == 1:
            records = parts[0]
        else:
            merged = np.concatenate(parts)
            records = merged[np.argsort(merged["time_ns"], kind="stable")]
        total.records = len(records)
        if dropped:
            total.truncated = _truncated(records)
        return Scan(records, total, files)
    finally:
        for ring in files:
            ring.close()


def read_array(paths: Paths, *, segments: bool = True) -> np.ndarray:
    """Every record of ``paths`` as a numpy structured array of :data:`RECORD_DTYPE`, in order."""
    return scan(paths, segments=segments).records


def read(
    paths: Paths,
    *,
    segments: bool = True,
    min_level: int | str = 0,
    logger: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> Iterator[Record]:
    """Yield the records of ``paths`` in order as :class:`Record` objects, optionally filtered.

    ``logger`` keeps a dotted-name prefix ("app.db" keeps "app.db" and
    "app.db.pool", not "app.dbx").
    """
    result = scan(paths, segments=segments)
    mask = filter_mask(result.records, min_level=min_level, logger=logger, since_ns=since_ns, until_ns=until_ns)
    result.records = result.records[mask]
    return result.iter_records()


def filter_mask(
    records: np.ndarray,
    *,
    min_level: int | str = 0,
    logger: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> np.ndarray:
    """A boolean mask over ``records`` for the common filters (vectorised where the columns allow)."""
    mask = records["level"] >= level_number(min_level)
    if since_ns is not None:
        mask &= records["time_ns"] >= since_ns
    if until_ns is not None:
        mask &= records["time_ns"] <= until_ns
    if logger:
        mask &= logger_prefix_mask(records["logger"], logger)
    return mask


def logger_prefix_mask(loggers: np.ndarray, prefix: str) -> np.ndarray:
    """True where the logger name equals ``prefix`` or is a dotted child of it."""
    unique = {name: (name == prefix or name.startswith(prefix + ".")) for name in set(loggers.tolist())}
    return np.fromiter((unique[name] for name in loggers.tolist()), dtype=bool, count=len(loggers))
