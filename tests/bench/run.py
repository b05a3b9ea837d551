"""Run the benchmarks and print their figures as Markdown (``make bench``).

    python -m tests.bench.run [--only NAME ...] [--quick]

Each benchmark prints its own table and compares against a baseline measured
in the same run (bare Flask, the simulator's own latency, pages × latency …),
because absolute times differ from machine to machine; a summary of every
figure with its goal beside it comes last. Timings never fail the run: the exit
status is 1 only when a benchmark could not measure (a crash, wrong answers).

PostgreSQL and Redis: ``BENCH_DATABASE_URL`` and ``BENCH_REDIS_URL`` (else the
``TEST_*`` ones). The Redis database is flushed and the report benchmark
replaces one day of the ledger: point them at scratch databases.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from tests.bench import (
    bench_buys,
    bench_limits,
    bench_listing,
    bench_listing_vendor_calls,
    bench_report,
    bench_tokens,
)
from tests.bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Goal,
    machine_description,
    migrate_database,
    print_table,
)

Benchmark = Callable[[bool], list[Goal]]
"""Prints its tables and returns its figures; the argument is ``--quick``."""

BENCHMARKS: dict[str, tuple[Benchmark, ...]] = {
    "listing": (bench_listing.bench,),
    "vendor": (bench_listing_vendor_calls.bench, bench_buys.bench_vendor_calls),
    "buys": (bench_buys.bench,),
    "report": (bench_report.bench,),
    "tokens": (bench_tokens.bench,),
    "limits": (bench_limits.bench,),
}


def _redacted(url: str) -> str:
    """``url`` without its password, for the header."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{at}{host}" if at else url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="smaller samples (a smoke run)")
    args = parser.parse_args(argv)
    chosen = args.only or list(BENCHMARKS)
    command = "python -m tests.bench.run" + "".join(f" --only {name}" for name in args.only or [])
    print("## Benchmark run\n")
    print(f"- machine: {machine_description()}")
    print(f"- command: `{command}{' --quick' if args.quick else ''}`")
    print(f"- PostgreSQL {_redacted(DEFAULT_DATABASE_URL)}, Redis {_redacted(DEFAULT_REDIS_URL)}")
    sys.stdout.flush()
    migrate_database()
    goals: list[Goal] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in chosen:
        began = time.perf_counter()
        try:
            for benchmark in BENCHMARKS[name]:
                goals += benchmark(args.quick)
        except Exception:
            failed.append(name)
            print(f"\n### {name}: could not measure\n\n```\n{traceback.format_exc()}```")
        print(f"\n({name}: {time.perf_counter() - began:.0f} s)")
    print_table(
        "Figures and goals",
        ["benchmark", "figure", "measured", "goal", "verdict"],
        [[goal.benchmark, goal.figure, goal.value, goal.goal, goal.verdict] for goal in goals],
    )
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")
    if failed:
        print(f"Could not measure: {', '.join(failed)}.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
