"""mmaplog's benchmark suite (pytest-benchmark): run ``pytest bench/ --benchmark-only``; see docs/BENCHMARKS.md."""
