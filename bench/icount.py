#!/usr/bin/env python3
"""Instructions per logging call, counted by valgrind's callgrind: figures that do not depend on the machine's load.

Usage::

    python bench/icount.py --json bench/results/icount.json [--calls 2000]

Each logger of the hot-path benchmarks (``bench/_subjects.py``) is called
``--calls`` times through ``itertools.starmap`` in one process run under
callgrind, which counts only inside ``starmap_next`` (the call and nothing
else: set-up, imports and the interpreter's start are left out) and writes one
profile per loop.  Instructions per call are the loop's count divided by the
number of calls.  ``tools/bench_report.py --icount`` puts them beside the times.
Needs ``valgrind`` on the PATH; takes a few minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: (group, subject, message shape) in the order the child process runs them.
CASES = [
    *(("call: 3 args", name, "args") for name in ("noop", "mmaplog-direct", "mmaplog-writer", "mmaplog-async",
                                                 "mmaplog-stdlib", "stdlib-file", "stdlib-queue", "picologging",
                                                 "loguru")),
    *(("call: no args", name, "plain") for name in ("noop", "mmaplog-direct", "mmaplog-writer", "mmaplog-async",
                                                   "stdlib-file", "picologging")),
    *(("call: disabled level", name, "disabled") for name in ("noop", "mmaplog-direct", "stdlib-file", "picologging")),
]
WARMUP = 200


def child(calls: int, workdir: Path) -> None:
    """Run every case: a warm-up loop, then the counted loop; print one label per case."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench._subjects import SUBJECTS, args_for, installed

    for group, name, shape in CASES:
        if name in ("picologging", "loguru") and not installed(name):
            print(f"skip\t{group}\t{name}", flush=True)
            continue
        folder = workdir / f"{len(os.listdir(workdir))}"
        folder.mkdir()
        subject = SUBJECTS[name](folder)
        call = subject.debug if shape == "disabled" else subject.info
        args = args_for(subject, shape != "plain")
        for loops in (WARMUP, calls):
            for _ in itertools.starmap(call, itertools.repeat(args, loops)):
                pass
        subject.flush()
        subject.close()
        print(f"case\t{group}\t{name}", flush=True)


def _totals(prefix: str) -> list[int]:
    """The event totals of callgrind's numbered dump files, in dump order."""
    files = [f for f in Path(prefix).parent.glob(Path(prefix).name + ".*") if re.fullmatch(r"\d+", f.suffix[1:])]
    files.sort(key=lambda f: int(f.suffix[1:]))
    out = []
    for f in files:
        match = re.search(r"^(?:summary|totals):\s+(\d+)", f.read_text(errors="replace"), re.M)
        out.append(int(match.group(1)) if match else 0)
    return out


def counted_run(script: str, calls: int, tool: str) -> tuple[list[tuple[str, ...]], list[int]]:
    """Run ``script --child CALLS WORKDIR`` under callgrind, counting only inside ``itertools.starmap``.

    Returns the child's ``case`` lines (tab-split, without the word ``case``) and the totals of its dumps:
    two per case (the warm-up loop, then the counted one).  ``tool`` names the caller in errors.
    """
    if shutil.which("valgrind") is None:
        raise SystemExit(f"{tool}: valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"{tmp}/callgrind.out"
        workdir = Path(tmp, "logs")
        workdir.mkdir()
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}", "--toggle-collect=starmap_next",
             "--dump-after=starmap_dealloc", sys.executable, script, "--child", str(calls), str(workdir)],
            capture_output=True, text=True, env=env, check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{tool}: the counted run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        cases = [tuple(line.split("\t")[1:]) for line in proc.stdout.splitlines() if line.startswith("case\t")]
        totals = _totals(prefix)
        if len(totals) < 2 * len(cases):
            raise SystemExit(f"{tool}: expected {2 * len(cases)} profiles, callgrind wrote {len(totals)}")
        return cases, totals


def measure(calls: int) -> dict[str, dict[str, float]]:
    """Run the child under callgrind and return instructions per call by group and subject."""
    cases, totals = counted_run(__file__, calls, "icount")
    out: dict[str, dict[str, float]] = {}
    for i, (group, name) in enumerate(cases):
        out.setdefault(group, {})[name] = totals[2 * i + 1] / calls
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        child(int(args[1]), Path(args[2]))
        return 0
    parser = argparse.ArgumentParser(prog="icount", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="counted calls per logger (default 2000)")
    parser.add_argument("--json", type=Path, help="write the counts here (for tools/bench_report.py --icount)")
    options = parser.parse_args(args)
    groups = measure(options.calls)
    for group, values in groups.items():
        floor = values.get("noop")
        for name, count in values.items():
            ratio = f"  {count / floor:6.2f}x empty function" if floor else ""
            print(f"{group:22s} {name:16s} {count:10,.0f} instructions per call{ratio}")
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps({"calls": options.calls, "python": sys.version.split()[0], "groups": groups},
                                           indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
