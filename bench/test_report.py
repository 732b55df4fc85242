"""tools/bench_report.py: ratios, targets and the plot from a pytest-benchmark JSON file (not a benchmark)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "bench_report.py"
_spec = importlib.util.spec_from_file_location("bench_report", _TOOL)
assert _spec is not None and _spec.loader is not None
bench_report = importlib.util.module_from_spec(_spec)
sys.modules["bench_report"] = bench_report
_spec.loader.exec_module(bench_report)


def _bench(group: str, subject: str, median: float, **extra: Any) -> dict[str, Any]:
    return {
        "group": group,
        "name": f"test[{subject}-{group}]",
        "fullname": f"bench/test_x.py::test[{subject}-{group}-{sorted(extra.items())}]",
        "extra_info": {"subject": subject, **extra},
        "stats": {"median": median, "min": median * 0.9, "mean": median * 1.1},
    }


def _run_file(tmp_path: Path, benchmarks: list[dict[str, Any]]) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({
        "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "system": "Linux", "release": "6",
                         "python_implementation": "CPython", "python_version": "3.11.7"},
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "datetime": "2024-05-01T12:00:00.000000",
        "benchmarks": benchmarks,
    }))
    return path


def _sample(tmp_path: Path) -> Path:
    g = "call: 3 args"
    return _run_file(tmp_path, [
        _bench(g, "noop", 100e-9),
        _bench(g, "mmaplog-direct", 700e-9),
        _bench(g, "stdlib-file", 21e-6),
        _bench(g, "picologging", 4.2e-6),
        _bench(g, "mmaplog-async", 500e-9),
        _bench("call: disabled level", "noop", 100e-9),
        _bench("call: disabled level", "mmaplog-direct", 150e-9),
        *(_bench("threads: mmaplog-direct", "mmaplog-direct", 1.0 / share, threads=n, records=1000)
          for n, share in ((1, 1.0), (2, 0.95), (4, 0.9), (8, 0.85))),
        _bench("reader", "mmaplog read_array", 0.1, records=1_000_000),
        _bench("reader", "mmaplog-read -o json", 1.0, records=1_000_000),
        _bench("reader", "stdlib text + regex -> json", 8.0, records=1_000_000),
        _bench("latency burst", "mmaplog-direct", 1.0, calls=100, **{"latency_p50_ns": 700.0, "latency_p99_ns": 900.0,
                                                                    "latency_p99.9_ns": 30_000.0, "latency_max_ns": 9e6}),
        _bench("latency burst", "stdlib-file", 1.0, calls=100, **{"latency_p50_ns": 20_000.0, "latency_p99_ns": 4e4,
                                                                 "latency_p99.9_ns": 9e4, "latency_max_ns": 9e6}),
    ])


def test_targets_are_judged_from_the_ratios(tmp_path: Path) -> None:
    """Each target's measured ratio comes from the run's numbers and is marked met or missed against its bound."""
    benches, _ = bench_report.load([_sample(tmp_path)], "median")
    stdlib, pico, floor, async_, disabled, threads, array, json_, p999 = bench_report.targets(benches)
    assert stdlib.measured == pytest.approx(30.0) and stdlib.met
    assert pico.measured == pytest.approx(6.0) and pico.met is False
    assert floor.measured == pytest.approx(7.0) and floor.met
    assert async_.measured == pytest.approx(5.0) and async_.met is False
    assert disabled.measured == pytest.approx(1.5) and disabled.met
    assert threads.measured == pytest.approx(0.9) and threads.met
    assert array.measured == pytest.approx(10e6) and array.met
    assert json_.measured == pytest.approx(8.0) and json_.met is False
    assert p999.measured == pytest.approx(1.5) and p999.met is False


def test_report_shows_ratios_and_marks_missed_targets(tmp_path: Path) -> None:
    """The markdown names the machine and date, shows each logger's ratio to the floor and flags missed targets."""
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (pip install -e '.[bench]')")
    out = tmp_path / "table.md"
    plot = tmp_path / "latency.png"
    assert bench_report.main([str(_sample(tmp_path)), "--stat", "median", "--plot", str(plot), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "Test CPU" in text and "2024-05-01 12:00" in text
    assert "| mmaplog `Logger` + `RingHandler` | 700 ns | 7.00x | 30.0x |" in text
    assert "| measured (median) | (min) |" in text
    assert text.count("**missed**") == 4
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_measurements_are_not_judged(tmp_path: Path) -> None:
    """A run without picologging reports that target as not measured instead of guessing."""
    path = _run_file(tmp_path, [_bench("call: 3 args", "noop", 100e-9), _bench("call: 3 args", "mmaplog-direct", 1e-6)])
    benches, _ = bench_report.load([path], "median")
    pico = bench_report.targets(benches)[1]
    assert pico.measured is None and pico.met is None
    assert "not measured" in pico.row()


def test_unreadable_input_is_one_line(tmp_path: Path) -> None:
    """A file that is not pytest-benchmark JSON ends the tool with a one-line message naming the file."""
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match=r"bad\.json: not a pytest-benchmark JSON file"):
        bench_report.load([bad], "median")


def test_default_statistic_is_the_minimum(tmp_path: Path) -> None:
    """Without --stat the tables use each benchmark's least disturbed round, and the targets show the median beside it."""
    g = "call: 3 args"
    path = _run_file(tmp_path, [_bench(g, "noop", 100e-9), _bench(g, "mmaplog-direct", 900e-9)])
    data = json.loads(path.read_text())
    data["benchmarks"][1]["stats"]["min"] = 500e-9  # a disturbed run: the median is far above the best round
    path.write_text(json.dumps(data))
    out = tmp_path / "table.md"
    assert bench_report.main([str(path), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| mmaplog `Logger` + `RingHandler` | 500 ns | 5.56x |" in text
    floor_row = next(line for line in text.splitlines() if "mmaplog time ÷ empty function" in line)
    assert "| 5.56x | 9.00x | met |" in floor_row


def test_compact_drops_round_times_and_keeps_the_figures(tmp_path: Path) -> None:
    """--compact removes the per-round times pytest-benchmark stores, and the report from the file is unchanged."""
    path = _sample(tmp_path)
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        bench["stats"]["data"] = [1e-6] * 1000
    path.write_text(json.dumps(data))
    before = tmp_path / "before.md"
    after = tmp_path / "after.md"
    assert bench_report.main([str(path), "-o", str(before)]) == 0
    size = path.stat().st_size
    assert bench_report.main([str(path), "--compact", "-o", str(after)]) == 0
    assert path.stat().st_size < size / 10
    assert all("data" not in b["stats"] for b in json.loads(path.read_text())["benchmarks"])
    assert before.read_text() == after.read_text()


def _async_bench(test: str, **extra: Any) -> dict[str, Any]:
    return {"group": "async native", "name": test, "fullname": f"bench/test_async_native.py::{test}",
            "extra_info": {"load_1min": 0.4, **extra}, "stats": {"median": 1.0, "min": 1.0, "mean": 1.0}}


def test_async_goals_come_from_the_async_benchmarks_extra_info(tmp_path: Path) -> None:
    """Each async goal is read from its benchmark's ratio, judged against its bound and shown with the load."""
    path = _run_file(tmp_path, [
        _async_bench("test_producer_cost", ratio_async_to_empty_wall=1.2, ratio_async_to_direct_wall=0.5,
                     wall_empty_ns=200.0, wall_direct_ns=480.0, wall_async_ns=240.0),
        _async_bench("test_sustained_throughput", ratio_sustained_1_thread=1.3, ratio_sustained_2_threads=1.2,
                     records_per_s_direct_1=2e6, records_per_s_async_1=2.6e6,
                     records_per_s_direct_2_one_core=1.9e6, records_per_s_async_2_one_core=2.5e6),
        _async_bench("test_burst_tail_latency", **{"ratio_p99.9_async_to_direct": 0.5, "async_max_ns": 150_000.0,
                                                   "direct_p50_ns": 400.0, "direct_p99_ns": 600.0,
                                                   "direct_p99.9_ns": 2000.0, "direct_max_ns": 9e4,
                                                   "async_p50_ns": 200.0, "async_p99_ns": 300.0,
                                                   "async_p99.9_ns": 1000.0}),
        _async_bench("test_gil_freedom_while_draining[native]", ratio_loop_speed_while_draining=0.95,
                     ratio_loop_speed_while_draining_median=0.93),
    ])
    benches, _ = bench_report.load([path], "min")
    goals = bench_report.async_targets(benches, {"call: 3 args": {"mmaplog-direct": 4000.0, "mmaplog-async": 2400.0}})
    assert [t.met for t in goals] == [True, True, True, False, True, False, True, True]
    assert goals[5].measured == pytest.approx(150.0)  # µs
    assert goals[-1].measured == pytest.approx(0.6)  # instructions, async ÷ direct
    out = tmp_path / "table.md"
    assert bench_report.main([str(path), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "**Async front**" in text and "load average during the run: 0.4" in text
    assert "| async sustained, 2 producer threads: records/s ÷ direct path's (1 thread) | >= 1.50x | 1.20x | **missed** |" in text
    assert "| sustained, 1 thread: records/s (direct / async) | 2.00 M/s / 2.60 M/s |" in text
    assert "| sustained, 2 threads kept on one core: records/s (direct / async) | 1.90 M/s / 2.50 M/s |" in text
    assert "rounds whose producers ended on two cores" not in text  # not measured: no row
