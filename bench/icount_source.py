#!/usr/bin/env python3
"""Instructions per logging call with and without the caller's location, counted by callgrind (load-independent).

Usage::

    python bench/icount_source.py [--calls 2000]

Four loggers log ``"order %d paid %.2f by %s", 42, 9.5, "bob"`` (and ``"user %s logged in", "bob"``) into a ring:
``accelerated`` and ``accelerated-source`` (a stdlib logger with an accelerated
``mmaplog.LoggingHandler``, ``capture_source`` off and on), ``logger`` and
``logger-source`` (mmaplog's own ``Logger``, ``capture_source`` off and on).
As in ``bench/icount.py``, each is called ``--calls`` times through
``itertools.starmap`` under callgrind, which counts only inside ``starmap_next``.
docs/BENCHMARKS.md ("Standard-library loggers, accelerated") records the figures.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import logging.config
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._subjects import ARGS, MESSAGE
from bench.icount import WARMUP, counted_run

CASES = ["accelerated", "accelerated-source", "logger", "logger-source"]
#: The calls' arguments: the hot-path benchmarks' three, and one (a lone argument takes a check of its own).
SHAPES = {"3 args": (MESSAGE, *ARGS), "1 arg": ("user %s logged in", "bob")}


def build(kind: str, folder: Path, n: int) -> Callable[..., Any]:
    """The INFO method of logger ``kind`` (the ``n``-th built), writing into a ring in ``folder``."""
    import mmaplog
    from mmaplog import stdlib

    path = folder / f"{kind}{n}.mmlog"
    if kind.startswith("accelerated"):
        top = f"bench.{kind.replace('-', '_')}{n}"
        logging.config.dictConfig({
            "version": 1, "incremental": False, "disable_existing_loggers": False,
            "handlers": {"out": {"class": "mmaplog.LoggingHandler", "path": str(path), "size": "16 MiB",
                                 "accelerate": True, "capture_source": kind.endswith("source")}},
            "loggers": {top: {"level": "INFO", "handlers": ["out"], "propagate": False}},
        })
        logger = logging.getLogger(f"{top}.orders")
        if "ring path" not in stdlib.explain(logger.name):
            raise SystemExit(f"icount_source: {kind} is not accelerated here:\n{stdlib.explain(logger.name)}")
        return logger.info
    ring = mmaplog.RingHandler(path, size="16 MiB")
    return mmaplog.Logger(f"bench.{kind}{n}", [ring], "INFO", capture_source=kind.endswith("source")).info


def child(calls: int, workdir: Path) -> None:
    """Run every case: a warm-up loop, then the counted loop; print one label per case."""
    for n, (shape, args) in enumerate(SHAPES.items()):
        for kind in CASES:
            call = build(kind, workdir, n)
            for loops in (WARMUP, calls):
                for _ in itertools.starmap(call, itertools.repeat(args, loops)):
                    pass
            print(f"case\t{shape}\t{kind}", flush=True)


def measure(calls: int) -> dict[tuple[str, str], float]:
    """Run the child under callgrind and return instructions per call by (shape, logger)."""
    cases, totals = counted_run(__file__, calls, "icount_source")
    return {(shape, kind): totals[2 * i + 1] / calls for i, (shape, kind) in enumerate(cases)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        child(int(args[1]), Path(args[2]))
        return 0
    parser = argparse.ArgumentParser(prog="icount_source", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="counted calls per logger (default 2000)")
    options = parser.parse_args(args)
    counts = measure(options.calls)
    for (shape, kind), count in counts.items():
        plain = counts.get((shape, kind.removesuffix("-source")))
        ratio = f"  {count / plain:5.2f}x without the location" if plain and kind.endswith("source") else ""
        print(f"{shape:7s} {kind:20s} {count:10,.0f} instructions per call{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
