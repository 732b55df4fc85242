"""Opening a writer's ring at its path: creating and publishing it, or taking over the one there."""

from __future__ import annotations

import mmap
import os
import socket
import time
import uuid

import numpy as np

from . import _codec, _series, _shortfile
from . import layout as L
from ._errors import FormatError, MmaplogError
from ._process import process_name as _process_name
from ._ringmap import NEVER as _NEVER
from ._shortfile import cut_loss as _cut_loss
from ._writerbase import WriterBase
from ._writerbase import report as _report

__all__ = ["OpeningMixin"]


class OpeningMixin(WriterBase):
    """Opening or creating the ring file at the writer's path."""

    def _acquire(self) -> tuple[int, L.FileHeader, mmap.mmap, int, int, bool]:
        """Open the ring at the path, or create and publish it; the writer's lock is held on return.

        Returns (fd, header, map, next position, next seq, sealed).  A file that
        someone else publishes first, or that changes between open and lock, is
        opened again (bounded); a file locked by a live writer raises WriterBusyError.
        """
        for _ in range(16):
            fd = _series.open_existing(self.path)
            if fd is None:
                header = self._new_header(segment=0, series_id=uuid.uuid4().bytes, first_seq=1)
                fd, temp, mm = _series.build(self.path, self._mode, header)
                try:
                    published = _series.publish(temp, self.path)
                except BaseException:
                    mm.close()
                    os.close(fd)
                    raise
                if published:
                    return fd, header, mm, 1, 1, False
                mm.close()
                os.close(fd)
                if published is None:  # no hard links here: an empty file, set up below under its lock
                    try:
                        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                                         | getattr(os, "O_NOFOLLOW", 0), self._mode))
                    except FileExistsError:
                        pass
                    except OSError as exc:
                        raise _series.explain(self.path, exc) from None
                continue  # someone published first: open theirs
            try:
                _series.lock(fd, self.path)
                if not _series.names_file(fd, self.path):  # rotated, moved or replaced since we opened it
                    os.close(fd)
                    continue
                size = os.fstat(fd).st_size
                if _series.blank(fd, size):  # touched, or cut short by an older version: no ring to keep
                    header = self._new_header(segment=0, series_id=uuid.uuid4().bytes, first_seq=1)
                    if size:
                        os.ftruncate(fd, 0)
                    return fd, header, _series.create_ring(fd, self.path, header), 1, 1, False
                header, mm, next_pos, next_seq, sealed = self._reopen(fd, size)
                return fd, header, mm, next_pos, next_seq, sealed
            except BaseException:
                os.close(fd)
                raise
        raise MmaplogError(f"{self.path}: the file kept changing while it was being opened; try again")

    def _new_header(self, segment: int, series_id: bytes, first_seq: int) -> L.FileHeader:
        slot_size, slot_count = self._requested
        return L.FileHeader(
            version=L.FORMAT_VERSION,
            data_offset=L.DATA_OFFSET,
            slot_size=slot_size,
            name_offset=L.NAME_OFFSET,
            slot_count=slot_count,
            created_ns=time.time_ns(),
            created_mono_ns=time.monotonic_ns(),
            pid=os.getpid(),
            name_entries=L.NAME_ENTRIES,
            series_id=series_id,
            segment=segment,
            first_seq=first_seq,
            hostname=socket.gethostname(),
            process_name=_process_name(),
        )

    def _reopen(self, fd: int, size: int) -> tuple[L.FileHeader, mmap.mmap, int, int, bool]:
        raw = os.pread(fd, L.HEADER_CHECK_OFFSET + 4, 0)
        try:
            # Checked against the size its header declares: a valid header over a file cut short is repaired below.
            header = L.decode_header(raw, max(size, _series.declared_size(raw)))
        except L.HeaderError as exc:
            raise FormatError(self.path, f"{exc.reason}; refusing to overwrite a file that is not a valid mmaplog ring") from None
        if L.legacy_check(header.version):
            # Its slots carry adler32 checks: records written now (CRC-32) would read as corrupt, and
            # rewriting the header would hide the old ones.  The file stays as it is, readable.
            major, minor = header.version
            raise FormatError(self.path, f"format {major}.{minor} ring written by an older mmaplog; this writer writes "
                                         f"{L.FORMAT_VERSION[0]}.{L.FORMAT_VERSION[1]}: read it, then move it away")
        if size < header.file_size and (header.slot_size, header.slot_count) != self._requested:
            # Extend a cut file only to the size this writer was asked for: a header is no licence to take disk.
            raise FormatError(self.path, f"truncated file: header declares {header.file_size} bytes, file has "
                                         f"{size}, and this writer was asked for {self._requested[1]} slots of "
                                         f"{self._requested[0]} bytes; refusing to extend or overwrite it")
        saved = _shortfile.page_cache_tail(fd, header, size) if size < header.file_size else {}
        have = _series.restore_size(fd, header, {})
        if (header.slot_size, header.slot_count) != self._requested:
            _report(
                f"{self.path}: existing ring has {header.slot_count} slots of {header.slot_size} bytes "
                f"(requested {self._requested[1]} of {self._requested[0]}); continuing with the existing layout"
            )
        mm = mmap.mmap(fd, header.file_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        if have is not None and saved:  # records a killed writer stored past the cut, zeroed by extending
            gone = set(saved) - set(_shortfile.readable_valid(mm, header, have))
            rescued = _shortfile.put_back(mm, header, have, saved, gone)
            if rescued:
                self._report_once("rescued", f"{self.path}: put back {len(rescued)} slots stored past the end of the "
                                             f"cut file, from the page cache")
        table = mm[header.name_offset : header.name_offset + header.name_entries * L.NAME_ENTRY_SIZE]
        for ident, name in _codec.decode_names(table, header.name_entries).items():
            self._names[name] = ident
        self._next_name_id = max(self._names.values()) + 1
        slots = np.frombuffer(mm, dtype=L.slot_dtype(header.slot_size), count=header.slot_count, offset=header.data_offset).copy()
        valid = _codec.valid_slots(slots, header.slot_count)
        good = slots[valid]
        next_pos = int(good["pos"].max()) + 1 if len(good) else 1
        # After every seq of the series, not only after the file's highest: a record that took its seq before a
        # rotation and its position after it starts the new file below seqs sealed in the segment, so the file's
        # highest seq can be lower than the segment's.  A rotation sets first_seq past every seq taken before it.
        next_seq = max(int(good["seq"].max()) + 1 if len(good) else 0, header.first_seq)
        del slots, good
        # A sealed file at the path: a rotation was cut short after step 2; the caller finishes it.
        sealed_pos, check = L.STATE_STRUCT.unpack(mm[L.STATE_OFFSET : L.STATE_OFFSET + L.STATE_STRUCT.size])
        sealed = sealed_pos != 0 and check == ~sealed_pos & 0xFFFFFFFFFFFFFFFF
        if not sealed and (sealed_pos or check):
            _series.set_state(mm, 0)
        if have is not None:
            lost = _cut_loss(header, have, valid, next_pos)
            self.cut_slots += lost
            self._report_once("cut", f"{self.path}: the ring file was found truncated to {have} bytes (header "
                                     f"declares {header.file_size}); extended it back, {lost} used slots lost")
        return header, mm, next_pos, next_seq, sealed

    def _limit(self, header: L.FileHeader) -> int:
        return header.slot_count if self.rotate else _NEVER
