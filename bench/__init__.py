"""peergrid benchmarks. Each `bench/bench_<name>.py` exposes `run(quick: bool) -> str`, a Markdown section."""
