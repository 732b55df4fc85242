#!/usr/bin/env python3
"""Turn a pytest-benchmark JSON file of ``bench/`` into markdown tables of ratios, the targets and a latency plot.

Usage::

    python tools/bench_report.py bench/results/latest.json --plot docs/bench-latency.png > table.md

Every figure is a ratio between benchmarks of the same run (the machine is
shared, so absolute times mean little): each logger against the empty
function called with the same arguments, and the standard library's
``FileHandler`` against each logger.  ``--stat`` picks the per-benchmark
statistic the ratios use: min by default (each round averages many calls, and
the least disturbed round is the figure that other load on the machine moves
least; benchmarks of one run are measured minutes apart), or median or mean.
The targets table shows the median-based figure beside it.  ``--icount`` adds instruction counts per call from
``bench/icount.py``, which do not depend on the machine's load at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Order of the rows in the hot-path tables.
SUBJECTS = [
    "noop",
    "mmaplog-direct",
    "mmaplog-writer",
    "mmaplog-async",
    "mmaplog-stdlib",
    "stdlib-file",
    "stdlib-queue",
    "picologging",
    "loguru",
]
DESCRIPTIONS = {
    "noop": "empty function, same arguments (the floor)",
    "mmaplog-direct": "mmaplog `Logger` + `RingHandler`",
    "mmaplog-writer": "mmaplog `RingWriter.write` alone (caller formats)",
    "mmaplog-async": "mmaplog `Logger` + `AsyncHandler` (producer side)",
    "mmaplog-stdlib": "stdlib logger + mmaplog `LoggingHandler`",
    "stdlib-file": "stdlib `logging` + `FileHandler`",
    "stdlib-queue": "stdlib `QueueHandler` + `QueueListener`",
    "picologging": "picologging + `FileHandler`",
    "loguru": "loguru file sink",
}
HOT_GROUPS = [("call: 3 args", "`log.info(\"order %d paid %.2f by %s\", 42, 9.5, \"bob\")`"),
              ("call: no args", "`log.info(\"order 42 paid 9.50 by bob\")`"),
              ("call: disabled level", "`log.debug(...)` with three arguments while the level is INFO")]
BASELINE = "noop"
REFERENCE = "stdlib-file"
LATENCY_KEYS = [("p50", "latency_p50_ns"), ("p99", "latency_p99_ns"), ("p99.9", "latency_p99.9_ns"),
                ("max", "latency_max_ns")]


@dataclass
class Bench:
    """One benchmark of the run: its group, the logger it measured, its statistic and extra info."""

    group: str
    name: str
    subject: str
    value: float  # seconds, the chosen statistic
    stats: dict[str, float]
    extra: dict[str, Any]


@dataclass
class Target:
    """One speed target of the project and what this run measured for it."""

    text: str
    measured: float | None
    limit: float
    at_least: bool
    unit: str = "x"

    @property
    def met(self) -> bool | None:
        """True or False, or None when the run has no measurement for it."""
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def row(self, other: Target | None = None) -> str:
        bound = f"{'>=' if self.at_least else '<='} {_num(self.limit)}{self.unit}"
        if self.met is None:
            return f"| {self.text} | {bound} | not measured | - | - |"
        second = f"{_num(other.measured)}{self.unit}" if other is not None and other.measured is not None else "-"
        verdict = "met" if self.met else "**missed**"
        return f"| {self.text} | {bound} | {_num(self.measured)}{self.unit} | {second} | {verdict} |"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ns(seconds: float) -> str:
    ns = seconds * 1e9
    if ns >= 1e6:
        return f"{ns / 1e6:,.1f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:,.1f} µs"
    return f"{ns:,.0f} ns"


def load(paths: Sequence[Path], stat: str) -> tuple[list[Bench], dict[str, Any]]:
    """The benchmarks of the JSON files (later files override earlier ones by name) and the first file's header."""
    benches: dict[str, Bench] = {}
    header: dict[str, Any] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"bench_report: {path}: cannot read benchmark JSON ({exc})") from None
        if not isinstance(data, dict) or "benchmarks" not in data:
            raise SystemExit(f"bench_report: {path}: not a pytest-benchmark JSON file (no 'benchmarks' key)")
        if not header:
            header = data
        for b in data["benchmarks"]:
            extra = b.get("extra_info") or {}
            stats = b.get("stats") or {}
            if stat not in stats:
                raise SystemExit(f"bench_report: {path}: benchmark {b.get('name')!r} has no statistic {stat!r}")
            benches[b["fullname"]] = Bench(
                group=b.get("group") or "",
                name=b["name"],
                subject=extra.get("subject", b["name"]),
                value=float(stats[stat]),
                stats=stats,
                extra=extra,
            )
    return list(benches.values()), header


def _in_group(benches: Iterable[Bench], group: str) -> dict[str, Bench]:
    return {b.subject: b for b in benches if b.group == group}


def _ratio(numerator: Bench | None, denominator: Bench | None) -> float | None:
    if numerator is None or denominator is None or not denominator.value:
        return None
    return numerator.value / denominator.value


def _rate(bench: Bench | None) -> float | None:
    """Records per second of a benchmark whose round handles ``extra['records']`` records."""
    if bench is None or not bench.value or "records" not in bench.extra:
        return None
    return bench.extra["records"] / bench.value


def machine_line(header: dict[str, Any]) -> str:
    """Machine, Python and date of the run, for the heading of the tables."""
    m = header.get("machine_info", {})
    cpu = m.get("cpu", {}) if isinstance(m.get("cpu"), dict) else {}
    brand = cpu.get("brand_raw") or m.get("processor") or "unknown CPU"
    cores = cpu.get("count")
    python = f"{m.get('python_implementation', 'Python')} {m.get('python_version', '?')}"
    when = str(header.get("datetime", "unknown date"))[:16].replace("T", " ")
    commit = header.get("commit_info", {}) or {}
    rev = str(commit.get("id") or "")[:9]
    dirty = " (uncommitted changes)" if commit.get("dirty") else ""
    cores_text = f", {cores} cores" if cores else ""
    commit_text = f", commit {rev}{dirty}" if rev else ""
    return f"{brand}{cores_text}, {m.get('system', '')} {m.get('release', '')}, {python}; {when} UTC{commit_text}"


def hot_path_tables(benches: list[Bench], icount: dict[str, dict[str, float]], stat: str) -> list[str]:
    out: list[str] = []
    for group, call in HOT_GROUPS:
        rows = _in_group(benches, group)
        if not rows:
            continue
        base, ref = rows.get(BASELINE), rows.get(REFERENCE)
        counts = icount.get(group, {})
        out.append(f"**{group}**: {call}\n")
        head = f"| logger | {stat} per call | x empty function | stdlib FileHandler ÷ this |"
        rule = "| --- | ---: | ---: | ---: |"
        if counts:
            head += " instructions per call | x empty function (instructions) |"
            rule += " ---: | ---: |"
        out += [head, rule]
        for subject in SUBJECTS + sorted(set(rows) - set(SUBJECTS)):
            b = rows.get(subject)
            if b is None:
                continue
            line = (f"| {DESCRIPTIONS.get(subject, subject)} | {_ns(b.value)} | {_num(_ratio(b, base))}x "
                    f"| {_num(_ratio(ref, b))}x |")
            if counts:
                n, floor = counts.get(subject), counts.get(BASELINE)
                line += f" {_num(n)} | {_num(n / floor) + 'x' if n and floor else '-'} |"
            out.append(line)
        out.append("")
    return out


def thread_table(benches: list[Bench]) -> list[str]:
    groups = sorted({b.group for b in benches if b.group.startswith("threads: ")})
    if not groups:
        return []
    out = ["**Threads**: a fixed number of three-argument INFO records split between N threads logging at once "
           "(records per second, all threads together; ratio against one thread)\n",
           "| logger | 1 thread | 2 threads | 4 threads | 8 threads |", "| --- | ---: | ---: | ---: | ---: |"]
    for group in groups:
        rows = {b.extra.get("threads"): b for b in benches if b.group == group}
        one = _rate(rows.get(1))
        cells = []
        for n in (1, 2, 4, 8):
            rate = _rate(rows.get(n))
            share = f" ({rate / one:.2f}x)" if rate and one and n != 1 else ""
            cells.append(f"{_num(rate)}/s{share}" if rate else "-")
        out.append(f"| {group.removeprefix('threads: ')} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def ring_table(benches: list[Bench], stat: str) -> list[str]:
    rows = [b for b in benches if b.group.startswith("ring size")]
    if not rows:
        return []
    rows.sort(key=lambda b: _size_bytes(b.extra.get("ring", "0")))
    first = rows[0]
    out = ["**Ring size**: one three-argument INFO call into rings of growing size (must stay flat)\n",
           f"| ring | {stat} per call | x smallest ring |", "| --- | ---: | ---: |"]
    for b in rows:
        out.append(f"| {b.extra.get('ring', b.name)} | {_ns(b.value)} | {_num(_ratio(b, first))}x |")
    out.append("")
    return out


def _size_bytes(text: str) -> float:
    number, _, unit = str(text).partition(" ")
    return float(number) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}.get(unit, 1)


def reader_table(benches: list[Bench]) -> list[str]:
    rows = [b for b in benches if b.group == "reader"]
    if not rows:
        return []
    out = ["**Reading**: the same records from a ring file, and from a stdlib text log parsed with a regular "
           "expression\n", "| path | records per second |", "| --- | ---: |"]
    for b in sorted(rows, key=lambda b: -(_rate(b) or 0)):
        out.append(f"| {b.subject} | {_num(_rate(b))}/s |")
    out.append("")
    return out


def latency_table(benches: list[Bench]) -> list[str]:
    rows = _in_group(benches, "latency burst")
    if not rows:
        return []
    calls = next(iter(rows.values())).extra.get("calls", "?")
    out = [f"**Latency**: each call of a burst of {calls:,} three-argument INFO calls timed with "
           "`perf_counter_ns` (timer cost included: see the empty function)\n",
           "| logger | " + " | ".join(k for k, _ in LATENCY_KEYS) + " |", "| --- |" + " ---: |" * len(LATENCY_KEYS)]
    for subject in SUBJECTS:
        b = rows.get(subject)
        if b is None:
            continue
        out.append(f"| {DESCRIPTIONS.get(subject, subject)} | "
                   + " | ".join(_ns(b.extra[key] / 1e9) if key in b.extra else "-" for _, key in LATENCY_KEYS) + " |")
    out.append("")
    return out


ASYNC_GROUP = "async native"


def _async(benches: Iterable[Bench]) -> dict[str, dict[str, Any]]:
    """The extra info of the async front's benchmarks (bench/test_async_native.py), by test name."""
    return {b.name: b.extra for b in benches if b.group == ASYNC_GROUP}


def _extra(found: dict[str, dict[str, Any]], test: str, key: str) -> float | None:
    value = found.get(test, {}).get(key)
    return float(value) if isinstance(value, (int, float)) and value == value else None


def async_targets(benches: list[Bench], icount: dict[str, dict[str, float]] | None = None) -> list[Target]:
    """The async front's goals (docs/ASYNC.md), each a ratio measured inside one benchmark of the run."""
    found = _async(benches)
    gil = "test_gil_freedom_while_draining[native]"
    max_ns = _extra(found, "test_burst_tail_latency", "async_max_ns")
    out = [
        Target("async producer, 3 args: time ÷ empty function (wall)",
               _extra(found, "test_producer_cost", "ratio_async_to_empty_wall"), 2, False),
        Target("async producer, 3 args: time ÷ direct path (wall)",
               _extra(found, "test_producer_cost", "ratio_async_to_direct_wall"), 0.7, False),
        Target("async sustained, 1 producer thread: records/s ÷ direct path's",
               _extra(found, "test_sustained_throughput", "ratio_sustained_1_thread"), 1, True),
        Target("async sustained, 2 producer threads: records/s ÷ direct path's (1 thread)",
               _extra(found, "test_sustained_throughput", "ratio_sustained_2_threads"), 1.5, True),
        Target("async burst of 100,000 calls: p99.9 ÷ direct path's p99.9",
               _extra(found, "test_burst_tail_latency", "ratio_p99.9_async_to_direct"), 1, False),
        Target("async burst of 100,000 calls: max per call", max_ns / 1000 if max_ns is not None else None, 100, False,
               " µs"),
        Target("pure-Python loop while the worker drains 1,000,000 records ÷ alone (speed)",
               _extra(found, gil, "ratio_loop_speed_while_draining"), 0.9, True),
    ]
    counts = (icount or {}).get("call: 3 args", {})
    direct, queued = counts.get("mmaplog-direct"), counts.get("mmaplog-async")
    if direct and queued:
        out.append(Target("async producer, 3 args: instructions ÷ direct path's", queued / direct, 0.7, False))
    return out


def async_table(benches: list[Bench], icount: dict[str, dict[str, float]]) -> list[str]:
    """The async front's figures: each goal with its measurement, and the raw figures behind the ratios."""
    found = _async(benches)
    if not found:
        return []
    loads = sorted({str(extra.get("load_1min")) for extra in found.values() if "load_1min" in extra})
    out = ["**Async front** (`AsyncHandler` over one `RingHandler`, native queue; bench/test_async_native.py; "
           f"1-minute load average during the run: {', '.join(loads) or 'not recorded'})\n",
           "| goal | bound | measured | |", "| --- | ---: | ---: | --- |"]
    for t in async_targets(benches, icount):
        bound = f"{'>=' if t.at_least else '<='} {_num(t.limit)}{t.unit}"
        verdict = "-" if t.met is None else ("met" if t.met else "**missed**")
        out.append(f"| {t.text} | {bound} | {_num(t.measured)}{t.unit if t.measured is not None else ''} | {verdict} |")
    out.append("")
    rows = [("producer: per call, wall (empty / direct / async)", "test_producer_cost",
             ["wall_empty_ns", "wall_direct_ns", "wall_async_ns"], "ns"),
            ("producer: per call, own CPU time (empty / direct / async)", "test_producer_cost",
             ["cpu_empty_ns", "cpu_direct_ns", "cpu_async_ns"], "ns"),
            ("sustained, 1 thread: records/s (direct / async)", "test_sustained_throughput",
             ["records_per_s_direct_1", "records_per_s_async_1"], "/s"),
            ("sustained, 2 threads: records/s (direct / async)", "test_sustained_throughput",
             ["records_per_s_direct_2", "records_per_s_async_2"], "/s"),
            ("sustained, 2 threads kept on one core: records/s (direct / async)", "test_sustained_throughput",
             ["records_per_s_direct_2_one_core", "records_per_s_async_2_one_core"], "/s"),
            ("sustained, 2 threads: rounds whose producers ended on two cores (direct / async)",
             "test_sustained_throughput",
             ["rounds_2_threads_on_two_cores_direct", "rounds_2_threads_on_two_cores_async"], ""),
            ("sustained: worker's wait for a CPU, µs per 1,000 records (1 thread / 2 threads / 2 on one core)",
             "test_sustained_throughput",
             ["worker_runqueue_wait_us_per_1k_records_1", "worker_runqueue_wait_us_per_1k_records_2",
              "worker_runqueue_wait_us_per_1k_records_2_one_core"], ""),
            ("burst p99.9 (direct / async)", "test_burst_tail_latency", ["direct_p99.9_ns", "async_p99.9_ns"], "ns"),
            ("burst max (direct / async)", "test_burst_tail_latency", ["direct_max_ns", "async_max_ns"], "ns"),
            ("loop while draining ÷ alone, speed (best loop / median loop), native worker",
             "test_gil_freedom_while_draining[native]",
             ["ratio_loop_speed_while_draining", "ratio_loop_speed_while_draining_median"], "x"),
            ("the same with the Python worker (the reference)", "test_gil_freedom_while_draining[python]",
             ["ratio_loop_speed_while_draining", "ratio_loop_speed_while_draining_median"], "x"),
            ("GIL taken by the native worker while draining (times)", "test_gil_freedom_while_draining[native]",
             ["worker_gil_takes"], "")]
    lines = []
    for text, test, keys, unit in rows:
        values = [_extra(found, test, key) for key in keys]
        if all(v is None for v in values):
            continue
        shown = [("-" if v is None else _ns(v / 1e9) if unit == "ns" else f"{_num(v)}{unit}") for v in values]
        lines.append(f"| {text} | " + " / ".join(shown) + " |")
    if lines:
        out += ["| figure | value |", "| --- | ---: |", *lines, ""]
    return out


def targets(benches: list[Bench]) -> list[Target]:
    """The project's speed targets, each with what this run measured."""
    args = _in_group(benches, "call: 3 args")
    off = _in_group(benches, "call: disabled level")
    direct = args.get("mmaplog-direct")
    threads = {b.extra.get("threads"): b for b in benches if b.group == "threads: mmaplog-direct"}
    reader = {b.subject: b for b in benches if b.group == "reader"}
    latency = _in_group(benches, "latency burst")

    def rate_ratio(a: str, b: str) -> float | None:
        ra, rb = _rate(reader.get(a)), _rate(reader.get(b))
        return ra / rb if ra and rb else None

    one, four = _rate(threads.get(1)), _rate(threads.get(4))
    lat_direct, lat_std = latency.get("mmaplog-direct"), latency.get("stdlib-file")
    p999 = lat_direct.extra.get("latency_p99.9_ns") if lat_direct else None
    std_p50 = lat_std.extra.get("latency_p50_ns") if lat_std else None
    return [
        Target("direct `log.info`, 3 args: stdlib `FileHandler` time ÷ mmaplog time", _ratio(args.get("stdlib-file"), direct), 25, True),
        Target("direct `log.info`, 3 args: picologging time ÷ mmaplog time", _ratio(args.get("picologging"), direct), 8, True),
        Target("direct `log.info`, 3 args: mmaplog time ÷ empty function", _ratio(direct, args.get(BASELINE)), 8, False),
        Target("async producer side, 3 args: time ÷ empty function", _ratio(args.get("mmaplog-async"), args.get(BASELINE)), 4, False),
        Target("disabled level (`debug` at INFO): time ÷ empty function", _ratio(off.get("mmaplog-direct"), off.get(BASELINE)), 2, False),
        Target("4 threads: total records/s ÷ one thread's", four / one if four and one else None, 0.8, True),
        Target("`read_array`: records per second", _rate(reader.get("mmaplog read_array")), 5e6, True, "/s"),
        Target("`mmaplog-read -o json` ÷ stdlib text + regex producing the same JSON (records/s)",
               rate_ratio("mmaplog-read -o json", "stdlib text + regex -> json"), 10, True),
        Target("direct path p99.9 ÷ stdlib median, burst latency", p999 / std_p50 if p999 and std_p50 else None, 1, False),
    ]


def target_table(benches: list[Bench], stat: str, others: list[Bench] | None = None, other_stat: str = "") -> list[str]:
    out = ["**Targets**\n", f"| target | goal | measured ({stat}) | ({other_stat or '-'}) | |",
           "| --- | ---: | ---: | ---: | --- |"]
    second = targets(others) if others is not None else [None] * len(targets(benches))
    out += [t.row(o) for t, o in zip(targets(benches), second)]
    out.append("")
    return out


def plot_latency(benches: list[Bench], path: Path, title: str) -> bool:
    """Write a PNG of the latency percentiles per logger (log scale); False when the run has no latency data."""
    rows = _in_group(benches, "latency burst")
    if not rows and "test_burst_tail_latency" not in _async(benches):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    labels = [k for k, _ in LATENCY_KEYS]
    for subject in SUBJECTS:
        b = rows.get(subject)
        if b is None or not all(key in b.extra for _, key in LATENCY_KEYS):
            continue
        values = [b.extra[key] / 1000 for _, key in LATENCY_KEYS]
        ax.plot(labels, values, marker="o", label=DESCRIPTIONS.get(subject, subject).replace("`", ""))
    burst = _async(benches).get("test_burst_tail_latency", {})
    for name, label in (("direct", "burst of 100,000: direct path"), ("async", "burst of 100,000: async front (native)")):
        keys = [f"{name}_{k}_ns" for k, _ in LATENCY_KEYS]
        if all(key in burst for key in keys):
            ax.plot(labels, [burst[key] / 1000 for key in keys], marker="s", linestyle="--", label=label)
    ax.set_yscale("log")
    ax.set_ylabel("latency per call (µs, log scale)")
    ax.set_xlabel("percentile of a burst of calls")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def compact(path: Path) -> None:
    """Rewrite a pytest-benchmark JSON file without each benchmark's per-round times (often megabytes); stats stay."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for bench in data["benchmarks"]:
            bench.get("stats", {}).pop("data", None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"bench_report: {path}: cannot compact ({exc})") from None
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load_icount(path: Path | None) -> dict[str, dict[str, float]]:
    """Instructions per call by group and logger, from ``bench/icount.py --json``."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"bench_report: {path}: cannot read instruction counts ({exc})") from None
    return {group: {k: float(v) for k, v in values.items()} for group, values in data.get("groups", {}).items()}


def report(benches: list[Bench], header: dict[str, Any], stat: str, icount: dict[str, dict[str, float]],
           plot: str | None, others: list[Bench] | None = None, other_stat: str = "") -> str:
    sections: list[Callable[[], list[str]]] = [
        lambda: target_table(benches, stat, others, other_stat),
        lambda: hot_path_tables(benches, icount, stat),
        lambda: thread_table(benches),
        lambda: ring_table(benches, stat),
        lambda: reader_table(benches),
        lambda: latency_table(benches),
        lambda: async_table(benches, icount),
    ]
    lines = [f"Measured on {machine_line(header)}. Ratios use the {stat} of each benchmark.\n"]
    for section in sections:
        lines += section()
    if plot:
        lines.append(f"![Latency percentiles per call]({plot})\n")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark JSON file(s) (--benchmark-json)")
    parser.add_argument("--stat", default="min", choices=["min", "median", "mean"], help="statistic for ratios (min)")
    parser.add_argument("--plot", type=Path, help="write the latency plot (PNG) here")
    parser.add_argument("--plot-link", help="path of the plot as the markdown should link it (default: --plot)")
    parser.add_argument("--icount", type=Path, help="instruction counts from bench/icount.py --json")
    parser.add_argument("-o", "--output", type=Path, help="write the markdown here instead of standard output")
    parser.add_argument("--compact", action="store_true",
                        help="first rewrite the JSON files without the time of every round (what bench/results keeps)")
    args = parser.parse_args(argv)
    if args.compact:
        for path in args.json:
            compact(path)
    benches, header = load(args.json, args.stat)
    other_stat = "median" if args.stat != "median" else "min"
    others, _ = load(args.json, other_stat)
    link = None
    title = "Latency per call in a burst\n" + machine_line(header).replace("; ", "\n", 1)
    if args.plot and plot_latency(benches, args.plot, title):
        link = args.plot_link or str(args.plot)
    text = report(benches, header, args.stat, load_icount(args.icount), link, others, other_stat)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
