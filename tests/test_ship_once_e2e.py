"""``mmaplog-ship --once`` into a real rsyslog over RELP: every record on disk, whatever the record sizes, threads and
rotations, arrives exactly once, and the closing line counts them."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from rsyslog_fixture import Rsyslog, running_rsyslog
from test_ship_e2e import record_seqs

import mmaplog
from mmaplog import RingWriter

SHIP = [sys.executable, "-m", "mmaplog.ship.cli"]


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    with running_rsyslog(tmp_path / "rsyslog") as daemon:
        yield daemon


@pytest.mark.slow
def test_once_ships_100k_records_of_mixed_sizes_from_threads_and_rotations(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """100,000 records of one to four slots, written by 8 threads into a rotating ring (records taken before a
    rotation land segments later), shipped with one ``--once``: each arrives once, none is reported lost."""
    path = tmp_path / "app.mmlog"
    threads, per_thread = 8, 12_500
    writer = RingWriter(path, size="4 MiB", rotate=1000)

    def run(t: int) -> None:
        for i in range(per_thread):
            writer.write(f"t{t} i{i} " + "x" * (i * 37 % 900), logger=f"app.t{t % 3}",
                         fields={"i": i} if i % 7 == 0 else None)  # fmt: skip

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    writer.close()
    on_disk = sorted(int(s) for s in mmaplog.read_array(path)["seq"])
    assert len(on_disk) == threads * per_thread
    cursor = tmp_path / "ship.cursor"
    done = subprocess.run([*SHIP, str(path), "--to", rsyslog.relp_url, "--once", "--cursor", str(cursor), "--window",
                           "512"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"mmaplog-ship: shipped {len(on_disk)} records, 0 reported lost"
    lines = rsyslog.wait_for(len(on_disk), timeout=120)
    seqs = record_seqs(lines)
    assert sorted(seqs) == on_disk and max(Counter(seqs).values()) == 1
    again = subprocess.run([*SHIP, str(path), "--to", rsyslog.relp_url, "--once", "--cursor", str(cursor)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert (again.returncode, again.stderr) == (0, "")  # nothing left: the cursor covers everything
