"""Record a py-spy flame graph of a hot path under load (the benchmarks' set-up).

    python -m tests.bench.profile listing [--out flame.svg] [--seconds 12] [--gil] [--format raw]
    python -m tests.bench.profile buys    [--out flame.svg] [--seconds 12] [--gil]

Starts the simulator and the service under gunicorn (2 workers × 8 threads,
both limits on but high) exactly as ``make bench`` does, warms the cache,
then runs ``py-spy record --subprocesses`` on gunicorn while the benchmark's
load runs: cached ``GET /stocks`` from 16 clients, or buys with a fresh quote
cached (one vendor call each) from 2 clients. ``--gil`` samples only the
thread holding the GIL: where the CPU goes, without threads waiting on
sockets. py-spy needs ptrace (root, or ``CAP_SYS_PTRACE``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.bench_buys import DAY, VENDOR_LATENCY, _buys
from tests.bench.harness import (
    empty_ledger,
    flush_redis,
    gunicorn_process,
    load,
    service_env,
    simulator_process,
    vendor_quotes,
)

PATHS = ("listing", "buys")


def _py_spy(pid: int, out: str, seconds: int, gil: bool, form: str) -> subprocess.Popen[bytes]:
    # The venv's py-spy (requirements-dev.txt), else one on PATH.
    beside = Path(sys.executable).with_name("py-spy")
    executable = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
    args = [executable, "record", "--pid", str(pid), "--subprocesses", "--output", out]
    args += ["--duration", str(seconds), "--rate", "200", "--format", form]
    args += ["--gil"] if gil else []
    spy = subprocess.Popen(args)
    time.sleep(1.5)  # attached before the load starts
    return spy


def profile(path: str, out: str, seconds: int, gil: bool, form: str = "flamegraph") -> None:
    """Load ``path`` for about ``seconds`` while py-spy records gunicorn into ``out``."""
    flush_redis()
    knobs = {"latency": VENDOR_LATENCY, "reprice_seconds": DAY} if path == "buys" else {}
    with simulator_process(**knobs) as vendor:
        env = service_env(vendor, CACHE_TTL_SECONDS=str(DAY))
        with gunicorn_process(env) as service:
            load(service.url, ["/stocks"], total=200, concurrency=4)  # caches, scripts, quotes
            spy = _py_spy(service.process.pid, out, seconds, gil, form)
            if path == "listing":
                # About a thousand requests a second: enough to outlast py-spy.
                load(service.url, ["/stocks"], total=1000 * seconds, concurrency=16)
            else:
                empty_ledger()
                quotes = vendor_quotes(vendor)
                _buys(service.url, quotes, 40 * seconds, 2, {}, key=f"profile-{time.time()}")
            spy.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=PATHS, help="the hot path to load")
    parser.add_argument("--out", default="flame.svg", help="the flame graph (SVG)")
    parser.add_argument("--seconds", type=int, default=12, help="how long py-spy records")
    parser.add_argument("--gil", action="store_true", help="only threads holding the GIL")
    parser.add_argument(
        "--format",
        default="flamegraph",
        choices=("flamegraph", "raw", "speedscope"),
        help="py-spy's output format (raw: collapsed stacks, one per line)",
    )
    args = parser.parse_args()
    profile(args.path, args.out, args.seconds, args.gil, args.format)


if __name__ == "__main__":
    main()
