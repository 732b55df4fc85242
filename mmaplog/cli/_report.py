"""``mmaplog-read --stats`` and ``--verify``: summaries of what a file holds and whether it is intact."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _codec
from ..reader import PathArg, ReadStats, RingFile, expand_paths, level_name, unnamed_records
from ._output import escape, iso_times

__all__ = ["FileCheck", "stats_report", "verify_path"]


def stats_report(rows: np.ndarray, stats: ReadStats, as_json: bool, utc: bool) -> str:
    """Counts per level and logger, time span and rate of ``rows``, and the loss and damage ``stats`` found."""
    levels = Counter(rows["level"].tolist())
    loggers = Counter(rows["logger"].tolist())
    doc: dict[str, Any] = {"files": stats.files, "records": len(rows)}
    if len(rows):
        first, last = int(rows["time_ns"].min()), int(rows["time_ns"].max())
        span = (last - first) / 1e9
        first_text, last_text = iso_times(np.array([first, last], dtype=np.int64), utc)
        doc.update(first=first_text, last=last_text, span_seconds=round(span, 6))
        doc["rate_per_second"] = round(len(rows) / span, 3) if span > 0 else None
    doc["levels"] = {level_name(level): count for level, count in sorted(levels.items())}
    doc["loggers"] = dict(sorted(loggers.items(), key=lambda item: (-item[1], item[0])))
    doc["invalid_slots"] = stats.invalid
    doc["incomplete"] = stats.incomplete
    doc["overwritten"] = stats.overwritten
    doc["gaps"] = stats.gaps
    doc["pending"] = stats.pending
    doc["duplicates"] = stats.duplicates
    doc["truncated"] = stats.truncated
    doc["unnamed"] = stats.unnamed
    doc["slots"] = stats.slots
    doc["empty_slots"] = stats.empty
    doc["short_slots"] = stats.short
    doc["unreadable_segments"] = stats.unreadable
    if as_json:
        return json.dumps(doc, ensure_ascii=False) + "\n"
    lines = [
        f"files:          {stats.files}",
        f"records:        {len(rows)}",
    ]
    if len(rows):
        rate = doc["rate_per_second"]
        lines.append(f"first:          {doc['first']}")
        lines.append(f"last:           {doc['last']}")
        lines.append(f"span:           {_duration(doc['span_seconds'])}")
        lines.append(f"rate:           {'-' if rate is None else f'{rate:.1f} records/s'}")
    lines.append("levels:         " + (", ".join(f"{k} {v}" for k, v in doc["levels"].items()) or "-"))
    lines.append("loggers:        " + (", ".join(f"{escape(k) or '-'} {v}" for k, v in doc["loggers"].items()) or "-"))
    lines.append(f"invalid slots:  {stats.invalid} (torn, uncommitted or corrupt)")
    lines.append(f"incomplete:     {stats.incomplete} (records missing some of their slots)")
    lines.append(f"overwritten:    {stats.overwritten} (older than the oldest record kept)")
    lines.append(f"gaps:           {stats.gaps} (missing between the oldest and the newest)")
    if stats.pending:
        lines.append(f"pending:        {stats.pending} (missing, but a live writer may still commit them)")
    lines.append(f"duplicates:     {stats.duplicates}")
    lines.append(f"truncated:      {stats.truncated} (messages cut to the maximum record size)")
    lines.append(f"unnamed:        {stats.unnamed} (records whose logger name is missing from a damaged name table)")
    lines.append(f"slots:          {stats.slots} ({stats.empty} empty)")
    if stats.short:
        lines.append(f"cut short:      {stats.short} slot{'s' if stats.short != 1 else ''} missing "
                     "(a file is shorter than its header declares)")
    if stats.unreadable:
        lines.append(f"unreadable:     {stats.unreadable} sealed segment{'s' if stats.unreadable != 1 else ''} "
                     "(cut into the header: nothing in them can be read)")
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3f}s"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    days, hours = divmod(hours, 24)
    text = f"{hours}h {minutes}m {secs:.0f}s" if hours or days else f"{minutes}m {secs:.1f}s"
    return f"{days}d {text}" if days else text


@dataclass
class FileCheck:
    """The integrity of one file: what could be read and what is damaged."""

    path: Path
    records: int = 0
    slots: int = 0
    empty: int = 0
    invalid: int = 0
    incomplete: list[int] = field(default_factory=list)
    #: Records whose first slots the ring overwrote (normal for a wrapped ring, not damage).
    cut_by_wrap: int = 0
    #: Records whose logger id has no intact entry in the name table (a damaged or zeroed table).
    unnamed: int = 0
    #: Slots missing because the file is shorter than its header declares (cut by another process).
    short: int = 0

    @property
    def ok(self) -> bool:
        """True when no slot is invalid or missing, no record is incomplete (but for the wrap) and every logger has its name."""
        return not self.invalid and not self.incomplete and not self.unnamed and not self.short

    def line(self) -> str:
        """One line for people: ``app.mmlog: ok: ...`` or ``app.mmlog: CORRUPT: ...``."""
        name = escape(str(self.path))
        readable = f"{self.records} records in {self.slots} slots ({self.empty} empty)"
        if self.ok:
            return f"{name}: ok: {readable}"
        problems = []
        if self.invalid:
            problems.append(f"{self.invalid} invalid slot{'s' if self.invalid != 1 else ''} (torn, uncommitted or corrupt)")
        if self.incomplete:
            seqs = ", ".join(str(s) for s in self.incomplete[:5]) + (", ..." if len(self.incomplete) > 5 else "")
            count = len(self.incomplete)
            problems.append(f"{count} incomplete record{'s' if count != 1 else ''} (seq {seqs})")
        if self.unnamed:
            problems.append(
                f"{self.unnamed} record{'s' if self.unnamed != 1 else ''} whose logger name is missing "
                "from the name table (damaged name table)"
            )
        if self.short:
            problems.append(f"file cut short: {self.short} slot{'s' if self.short != 1 else ''} missing "
                            "(shorter than its header declares)")
        return f"{name}: CORRUPT: {'; '.join(problems)}; {readable}"


def verify_path(path: PathArg) -> list[FileCheck]:
    """Check every slot of ``path`` and its sealed segments; raises FormatError for an unreadable file.

    A record counts as incomplete only when its missing slots cannot be explained
    by normal operation: the ring overwriting a record's first slots, or a
    rotation cutting a record that was then written whole into the next segment.
    """
    checks: list[tuple[FileCheck, bytes, list[int]]] = []
    complete: dict[bytes, set[int]] = {}
    for file_path in expand_paths(path):
        with RingFile(file_path) as ring:
            h = ring.header
            kept, nonempty = [], 0
            # Only the allocated extents, in bounded pieces: a sparse file costs what it holds.
            for start, slots in ring.slot_chunks():
                index = np.arange(start, start + len(slots), dtype=np.uint64)
                valid = _codec.valid_slots(slots, h.slot_count, index=index, legacy=ring.legacy)
                nonempty += int(np.count_nonzero(slots["pos"] != 0))
                kept.append(slots[valid])
            good = np.concatenate(kept) if kept else np.zeros(0, dtype=ring.dtype)
            check = FileCheck(
                file_path, slots=h.slot_count, empty=h.slot_count - nonempty, invalid=nonempty - len(good),
                short=ring.missing_slots,
            )
            names = ring.read_names()
            asm = _codec.assemble(good, names)
        check.records = len(asm.seq)
        check.unnamed = unnamed_records(asm.logger, names)
        complete.setdefault(h.series_id, set()).update(asm.seq.tolist())
        wrapped = bool(len(good)) and int(good["pos"].max()) > h.slot_count
        heads = set(good["seq"][good["part"] == 0].tolist())
        suspects = []
        for seq in asm.incomplete_seqs:
            if wrapped and seq not in heads:
                check.cut_by_wrap += 1
            else:
                suspects.append(int(seq))
        checks.append((check, h.series_id, suspects))
    for check, series, suspects in checks:
        check.incomplete = sorted(s for s in suspects if s not in complete[series])
    return [check for check, _series, _suspects in checks]
