"""The batch formatter (RecordBatchFormatter, what the sinks send) against the per-record reference.

``_SyslogItems.encode`` formats one item with :meth:`SyslogFormatter.format`; it
is the reference.  ``encode_many`` formats a whole batch with the cached parts of
:class:`RecordBatchFormatter`.  For any records -- every level, non-ASCII and
lone surrogates, quotes and brackets in loggers and fields, empty messages,
exceptions, truncation flags, times out of range, messages past ``max_size`` --
and gap reports mixed in, both must give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmaplog import RingWriter
from mmaplog.reader import Record
from mmaplog.ship._sinks import _SyslogItems
from mmaplog.ship._source import Gap, Item, RingSource
from mmaplog.ship.syslog import SyslogFormatter

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", " ", 'a"b', "x]y", "back\\slash", "ünï☃", "\ud800 lone", "line\nfeed", "\x00nul", "é" * 300]
)
_value = st.one_of(
    st.integers(-(2**70), 2**70), _text, st.booleans(), st.none(), st.floats(allow_nan=False),
    st.lists(st.integers(0, 9), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
_fields = st.dictionaries(st.text(max_size=40) | st.sampled_from(["seq", "a b", 'q"', "x" * 40, "ü"]), _value, max_size=4)


@st.composite
def _records(draw: st.DrawFn) -> Record:
    return Record(
        seq=draw(st.integers(1, 2**64 - 1)),
        time_ns=draw(st.integers(0, 2**64 - 1) | st.integers(10**18, 10**18 + 3 * 10**9) | st.just(10**30)),
        level=draw(st.sampled_from([0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 255])),
        logger=draw(_text),
        thread=draw(st.integers(0, 2**64 - 1)),
        pid=draw(st.integers(0, 2**31)),
        message=draw(_text | st.text(min_size=500, max_size=3000)),
        fields=draw(_fields),
        exception=draw(st.none() | _text),
        host=draw(st.sampled_from(["web-1", "", "my host", "hôte"])),
        process=draw(st.sampled_from(["api", "", "prög"])),
        source="app.mmlog",
        flags=draw(st.sampled_from([0, 0x08, 0x0F])),
    )


_gap = st.builds(
    Gap, series=st.binary(min_size=16, max_size=16), first_seq=st.integers(1, 100), last_seq=st.integers(100, 200),
    path=st.just("app.mmlog"), host=st.just("h"), process=st.just("p"), pid=st.just(1),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from([b"\x01" * 16, b"\xab" * 16]), _records()) | _gap,
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([480, 1024, 65536]),
    st.sampled_from(["user", "local7"]),
)
def test_batch_formatter_gives_the_reference_bytes(entries: list, max_size: int, facility: str) -> None:
    """Every item of a batch is formatted to exactly the bytes the per-record formatter gives it."""
    items = [
        Item(entry[0], entry[1].seq, record=entry[1]) if isinstance(entry, tuple) else Item(entry.series, entry.last_seq, gap=entry)
        for entry in entries
    ]
    sink = _SyslogItems(SyslogFormatter(facility=facility, enterprise_id=99, max_size=max_size))
    batch = sink.encode_many(items)
    reference = [sink.encode(item) for item in items]
    for item, got, want in zip(items, batch, reference):
        if item.gap is not None:
            # A gap report carries the time it was made: compare everything but the timestamp.
            assert got.split(b" ", 2)[2] == want.split(b" ", 2)[2], item
        else:
            assert got == want, item
    assert len(batch) == len(items)


def test_batch_formatter_over_a_real_ring(tmp_path: Path) -> None:
    """Records read back from a ring (multi-slot, non-ASCII, fields, exceptions, all levels, empty) format the same."""
    path = tmp_path / "app.mmlog"
    levels = [5, 10, 20, 25, 30, 40, 50]
    with RingWriter(path, size="4 MiB", slot_size=256) as writer:
        for i in range(3000):
            writer.write(
                "" if i % 97 == 0 else f"rec {i} ☃ \"q\" ]" + "ü" * (i % 700),
                level=levels[i % len(levels)],
                logger=f"app.l{i % 5}" if i % 11 else 'we"ird]lögger',
                fields={"i": i, "s": f"v]{i}", "f": 1.5, "l": [i]} if i % 3 == 0 else None,
                exception="Traceback (most recent call last):\n  boom" if i % 13 == 0 else None,
            )
    source = RingSource([path], grace=0.0)
    items: list[Item] = []
    while True:
        got = source.poll(limit=512)
        if not got and source.drained:
            break
        items += got
    source.close()
    assert len(items) == 3000
    assert any(len(item.record.message.encode()) > 256 for item in items if item.record)  # multi-slot ones
    for max_size in (2048, 65536):
        sink = _SyslogItems(SyslogFormatter(max_size=max_size))
        for start in range(0, len(items), 700):
            chunk = items[start : start + 700]
            assert sink.encode_many(chunk) == [sink.encode(item) for item in chunk]
