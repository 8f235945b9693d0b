"""Run the benchmarks and write their figures.

`python -m bench` runs every `bench/bench_<name>.py`; `python -m bench ledger sim` runs those named;
`--quick` asks each for a shorter run. Each module's `run(quick) -> str` returns a Markdown section that
reports ratios against a baseline measured in the same run (these machines are noisy). The section is
saved as `bench/results/<name>.md`, and `bench/RESULTS.md` is rebuilt from every saved section so that
running one benchmark never erases another's figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def rebuild_results() -> Path:
    sections = [p.read_text(encoding="utf-8").rstrip() for p in sorted(RESULTS_DIR.glob("*.md"))]
    text = "# peergrid benchmark results\n\n"
    text += "Each section is written by `make bench` (or `.venv/bin/python -m bench NAME`) and says when and where it ran.\n\n"
    text += "\n\n".join(sections) + "\n"
    out = HERE / "RESULTS.md"
    out.write_text(text, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})"
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke check")
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    RESULTS_DIR.mkdir(exist_ok=True)
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        started = time.monotonic()
        print(f"== bench {name}", flush=True)
        section = module.run(quick=args.quick)
        took = time.monotonic() - started
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        footer = f"\n\n_Run {stamp} on {platform.machine()}, {platform.python_version()}, took {took:.0f} s{' (quick)' if args.quick else ''}._"
        (RESULTS_DIR / f"{name}.md").write_text(section.rstrip() + footer + "\n", encoding="utf-8")
        print(section, flush=True)
    print(f"wrote {rebuild_results()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
