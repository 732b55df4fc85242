"""The files of a ring series on disk: atomic creation, rotation steps, orphan removal and pruning.

A ring file becomes visible at its path only when it is complete: it is built
under a temporary name nobody else can know (``.NAME.PID.TOKEN.new`` in the same
directory), locked with ``flock`` by its builder for as long as the builder
lives, and then published with ``link`` (creation: fails if someone published
first) or ``rename`` (rotation: replaces the full file, which already has its
segment name).  Every step leaves a state the next opener can recover from;
``docs/FORMAT.md`` ("Creation and rotation") lists them.

Nothing here deletes a path that might belong to a live process: a temporary
file is removed only by its builder or, once its builder is dead (its ``flock``
can be taken), by the next writer that opens the series.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import resource
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from . import layout as L
from ._errors import MmaplogError, WriterBusyError

__all__ = [
    "blank",
    "build",
    "create_ring",
    "declared_size",
    "ensure_parent",
    "explain",
    "link_segment",
    "lock",
    "names_file",
    "open_existing",
    "prune",
    "publish",
    "remove_orphans",
    "restore_size",
    "segment_path",
    "set_state",
    "unlink_quietly",
]

_OPEN = os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
#: ``link`` failing with these means the file system has no hard links (some FUSE and network mounts).
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV})
_ATTEMPTS = 8
#: Seconds a named temporary file of a live pid is taken to be still in the making.
_YOUNG = 60.0


def segment_path(path: str | os.PathLike[str], segment: int) -> Path:
    """The name a sealed segment of ``path`` gets: ``app.mmlog.000003`` for segment 3."""
    return Path(f"{os.fspath(path)}.{segment:06d}")


def _temp_path(path: Path) -> Path:
    # The pid tells a person whose file it is; the token makes the name unknowable to anyone else.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.new")


def _temp_pattern(path: Path) -> re.Pattern[str]:
    # Today's names, and the pid-only names of earlier versions.
    return re.compile(r"\." + re.escape(path.name) + r"\.[0-9]+(?:\.[0-9a-f]+)?\.new")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def explain(path: Path, exc: OSError) -> OSError:
    """The error with the path in its message (and the reason for refusing a symlink)."""
    if exc.errno == errno.ELOOP:
        return OSError(exc.errno, f"{path}: refusing to open a symbolic link (possible symlink attack)")
    return OSError(exc.errno, f"{path}: {exc.strerror}")


def unlink_quietly(path: Path) -> None:
    """Remove a name we created ourselves; a name already gone is fine."""
    try:
        os.unlink(path)
    except OSError:
        pass


def ensure_parent(path: Path, mode: int) -> None:
    """Create the missing directories above ``path`` (readable and searchable where the file is readable).

    A file mode of 0o640 gives directories 0o750.  Raises OSError with one
    line naming the directory and what to do when it cannot be created.
    """
    parent = path.parent
    if parent.is_dir():
        return
    dir_mode = 0o700 | (0o050 if mode & 0o040 else 0) | (0o005 if mode & 0o004 else 0)
    missing = []
    for d in (parent, *parent.parents):
        if d.is_dir():
            break
        missing.append(d)
    for d in reversed(missing):
        try:
            os.mkdir(d, dir_mode)  # os.makedirs would give the intermediate directories the default mode
        except FileExistsError:
            if not d.is_dir():
                raise OSError(errno.ENOTDIR, f"{d}: exists and is not a directory; cannot create the ring {path} "
                                             f"under it (choose another path)") from None
        except OSError as exc:
            raise OSError(exc.errno, f"{d}: cannot create the directory for the ring {path} ({exc.strerror}); "
                                     f"create it with write permission for this user, or choose another path") from None


def open_existing(path: Path) -> int | None:
    """Open the regular file at ``path`` for read/write without following a symlink; None if there is none."""
    try:
        fd = os.open(path, _OPEN)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise explain(path, exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise MmaplogError(f"{path}: not a regular file")
    return fd


def lock(fd: int, path: Path) -> None:
    """Take the writer's lock on ``fd`` (flock, not waiting); WriterBusyError naming the owner when held."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = ""
        try:
            raw = os.pread(fd, 52, 0)
            if raw[:8] == L.MAGIC and len(raw) >= 52:
                owner = f" (created by pid {int.from_bytes(raw[48:52], 'little')})"
        except OSError:
            pass
        raise WriterBusyError(f"{path}: already open for writing by another writer{owner}") from None


def names_file(fd: int, path: Path) -> bool:
    """True while ``path`` still names the file open on ``fd`` (False: moved away, deleted or replaced)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell (permissions): assume nothing changed
    return _same(st, os.fstat(fd))


def blank(fd: int, size: int) -> bool:
    """True for a file with no ring in it yet: empty, or its header page all zeros (``touch``, a cut creation)."""
    if size == 0:
        return True
    head = os.pread(fd, min(size, L.NAME_OFFSET), 0)
    return not head.strip(b"\0")


def create_ring(fd: int, path: Path, header: L.FileHeader) -> mmap.mmap:
    """Reserve the whole file on disk, write the header and map it; a full disk fails here."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and header.file_size > limit:
        # Growing a file past RLIMIT_FSIZE raises SIGXFSZ, which kills a process that did not ignore it.
        raise OSError(errno.EFBIG, f"{path}: cannot reserve {header.file_size} bytes for the ring "
                                   f"(the file size limit, ulimit -f, is {limit} bytes)")
    try:
        os.posix_fallocate(fd, 0, header.file_size)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"{path}: cannot reserve {header.file_size} bytes for the ring ({exc.strerror})",
        ) from None
    os.pwrite(fd, L.encode_header(header), 0)
    return mmap.mmap(fd, header.file_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def build(path: Path, mode: int, header: L.FileHeader, names: bytes = b"") -> tuple[int, Path, mmap.mmap]:
    """A complete ring file (header, name table ``names``, space reserved) under a temporary name beside ``path``.

    Returns its descriptor (locked with flock for as long as it stays open),
    the temporary name and the mapping.  On failure nothing is left behind.
    """
    for _ in range(_ATTEMPTS):
        temp = _temp_path(path)
        try:
            fd = os.open(temp, _OPEN | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        except OSError as exc:
            raise explain(temp, exc) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # Between create and lock, an opener may have taken the file for an orphan and removed it.
                kept = _same(os.stat(temp, follow_symlinks=False), os.fstat(fd))
            except (BlockingIOError, FileNotFoundError):
                kept = False
            if not kept:
                os.close(fd)
                continue
            mm = create_ring(fd, path, header)
            if names:
                os.pwrite(fd, names, header.name_offset)
            return fd, temp, mm
        except BaseException:
            os.close(fd)
            unlink_quietly(temp)
            raise
    raise OSError(errno.EAGAIN, f"{path}: could not set up a temporary file beside it")


def publish(temp: Path, path: Path) -> bool | None:
    """Give the built file at ``temp`` the name ``path`` unless something is there; drop the temporary name.

    True: published.  False: ``path`` exists (someone else published first).
    None: the file system has no hard links.  The temporary name is gone in
    every case (the caller still holds the file open).
    """
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno in _NO_LINKS:
            return None
        raise explain(path, exc) from None
    finally:
        unlink_quietly(temp)
    return True


def set_state(mm: mmap.mmap, sealed_pos: int) -> None:
    """Write the mutable state: sealed at ``sealed_pos``, or live again with 0."""
    check = ~sealed_pos & 0xFFFFFFFFFFFFFFFF if sealed_pos else 0
    mm[L.STATE_OFFSET : L.STATE_OFFSET + L.STATE_STRUCT.size] = L.STATE_STRUCT.pack(sealed_pos, check)


def link_segment(fd: int, path: Path, segment: int) -> bool:
    """Give the file open on ``fd`` (named ``path``) its segment name as a second link.

    A link that exists already to this file (a rotation cut short) is kept; a
    stale file under that name is replaced.  False when ``path`` no longer
    names our file (it was moved or deleted meanwhile): no link is left.
    """
    sealed = segment_path(path, segment)
    mine = os.fstat(fd)
    for _ in range(_ATTEMPTS):
        try:
            os.link(path, sealed)
        except FileExistsError:
            try:
                if _same(os.stat(sealed, follow_symlinks=False), mine):
                    return True
            except FileNotFoundError:
                continue
            unlink_quietly(sealed)
            continue
        except FileNotFoundError:
            return False
        try:
            if _same(os.stat(sealed, follow_symlinks=False), mine):
                return True
        except FileNotFoundError:
            return False
        unlink_quietly(sealed)  # the path was replaced between our check and the link: not our file
        return False
    raise OSError(errno.EAGAIN, f"{sealed}: could not give the full file its segment name")


def declared_size(raw: bytes) -> int:
    """The file size the header in ``raw`` declares (0 when too short to say), to decode a header over a file cut short."""
    try:
        fields = L.HEADER_STRUCT.unpack_from(raw)
    except Exception:  # noqa: BLE001 - any header decode_header will reject
        return 0
    data_offset, slot_size, slot_count = fields[3], fields[4], fields[6]
    return int(data_offset) + int(slot_size) * int(slot_count)


def _write_head(fd: int, header: L.FileHeader, names: Mapping[str, int], have: int) -> None:
    """Write the header and the entries of ``names`` that lie (partly) at or past offset ``have`` again."""
    if have >= header.data_offset:
        return
    if have < L.HEADER_CHECK_OFFSET + L.HEADER_CHECK_STRUCT.size:
        os.pwrite(fd, L.encode_header(header), 0)
    for name, ident in names.items():
        raw = name.encode("utf-8", "backslashreplace")
        off = header.name_offset + (ident - 1) * L.NAME_ENTRY_SIZE
        if 1 <= ident <= header.name_entries and 0 < len(raw) <= L.NAME_MAX and off + L.NAME_ENTRY_SIZE > have:
            os.pwrite(fd, L.NAME_STRUCT.pack(len(raw), 0, L.name_check(raw), raw), off)


def _first_damage(fd: int, header: L.FileHeader, names: Mapping[str, int]) -> int:
    """The offset of the first byte of the header or of a name entry that does not read as written (past them: none)."""
    head = L.encode_header(header)
    if os.pread(fd, len(head), 0) != head:
        return 0
    entries = sorted((ident, name) for name, ident in names.items() if 1 <= ident <= header.name_entries)
    if not entries:
        return header.data_offset
    table = os.pread(fd, entries[-1][0] * L.NAME_ENTRY_SIZE, header.name_offset)
    for ident, name in entries:
        raw = name.encode("utf-8", "backslashreplace")
        off = (ident - 1) * L.NAME_ENTRY_SIZE
        if 0 < len(raw) <= L.NAME_MAX and table[off : off + L.NAME_ENTRY_SIZE] != L.NAME_STRUCT.pack(
                len(raw), 0, L.name_check(raw), raw):
            return header.name_offset + off
    return header.data_offset


def restore_size(fd: int, header: L.FileHeader, names: Mapping[str, int], mm: mmap.mmap | None = None) -> int | None:
    """Extend the ring file on ``fd`` back to the size its header declares if someone cut it short.

    Returns the size found (None: the file had its size).  The space is
    reserved again (``posix_fallocate``; ``ftruncate``, sparse, if that fails),
    and the header and the entries of ``names`` (logger name -> id) are written
    again where the cut reached them.  What the cut removed reads as zeros: empty
    slots.  A truncation that spared the pages the writer stores into never
    faults, so the SIGBUS guard never sees it: the writer calls this at its
    transitions (open, rotation, flush, close) and from its periodic check.
    ``mm``, the writer's shared mapping of the file, supplies the bytes stored
    past the cut within the page that holds the new end.
    """
    have = os.fstat(fd).st_size
    size = header.file_size
    if have >= size:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size > limit:  # growing past it would raise SIGXFSZ
        raise OSError(errno.EFBIG, f"cannot extend the ring back to {size} bytes (the file size limit is {limit})")
    _write_head(fd, header, names, have)  # first: a reader meanwhile sees a short file with its header, not zeros
    if mm is not None and header.data_offset <= have < size and have % mmap.PAGESIZE:
        # Stores past the cut within its page did not fault and are in the map only; extending the file would
        # zero that page's tail on some file systems (ext4).  Writing the tail from the map first extends the
        # file to the page's end with exactly those bytes, so a reader never sees them vanish.
        end = min(size, have - have % mmap.PAGESIZE + mmap.PAGESIZE)
        os.pwrite(fd, mm[have:end], have)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:
        os.ftruncate(fd, size)
    # A cut between the fstat above and the extension left zeros where the header or names were: write them again.
    _write_head(fd, header, names, _first_damage(fd, header, names))
    return have


def remove_orphans(path: Path, live_fd: int) -> list[str]:
    """Remove the temporary files beside ``path`` whose builders are dead; return their names.

    A builder holds its file's flock for as long as it lives, so a file whose
    lock we can take is an orphan (the pid in its name is only a hint: pids are
    reused).  A temporary name of the live file itself (a creation cut short
    after publishing) is only a second name and goes too.
    """
    pattern = _temp_pattern(path)
    live = os.fstat(live_fd)
    removed: list[str] = []
    try:
        entries = [e.name for e in os.scandir(path.parent) if pattern.fullmatch(e.name)]
    except OSError:
        return removed
    for name in entries:
        temp = path.parent / name
        try:
            fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError:
            continue  # gone, a symlink, or not ours to read: leave it
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            if not _same(st, live):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its builder is alive
                if _maybe_unlocked_yet(name, st):
                    continue
            if _same(os.stat(temp, follow_symlinks=False), st):
                os.unlink(temp)
                removed.append(name)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _maybe_unlocked_yet(name: str, st: os.stat_result) -> bool:
    """A named temporary file may be one a live builder created and has not locked yet (a few microseconds).

    Only a hint: the file is young and the pid in its name is alive (it may be
    reused).  Removing such a file would still be safe (its builder checks its
    name after locking and starts again), only wasteful.
    """
    found = re.search(r"\.([0-9]+)(?:\.[0-9a-f]+)?\.new$", name)
    if found is None:
        return False
    pid = int(found.group(1))
    if pid == os.getpid() or time.time() - st.st_mtime > _YOUNG:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def prune(path: Path, header: L.FileHeader, keep: int) -> list[str]:
    """Delete segments of ``path`` that a series keeping ``keep`` files (the live one included) no longer keeps.

    Kept: the ``keep - 1`` segments just below the live file's, of its series.
    Deleted: every other ``PATH.NNNNNN`` that is an mmaplog file or a symlink
    (older segments, leftovers of an earlier series); anything else is left alone.
    """
    pattern = re.compile(re.escape(path.name) + r"\.([0-9]{6,})")
    lowest = header.segment - (keep - 1)
    removed: list[str] = []
    try:
        entries = [(e.name, int(m.group(1))) for e in os.scandir(path.parent) if (m := pattern.fullmatch(e.name))]
    except OSError:
        return removed
    for name, segment in entries:
        target = path.parent / name
        try:
            st = os.stat(target, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                if not stat.S_ISREG(st.st_mode):
                    continue
                with open(target, "rb") as f:
                    raw = f.read(L.HEADER_CHECK_OFFSET)
                if raw[:8] != L.MAGIC:
                    continue
                ours = len(raw) >= 88 and raw[56:72] == header.series_id
                if ours and lowest <= segment < header.segment:
                    continue
            os.unlink(target)
            removed.append(name)
        except OSError:
            continue
    return removed
