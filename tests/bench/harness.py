"""Shared machinery of the benchmarks and the reliability suite.

Starts the vendor simulator and gunicorn as real processes on free loopback
ports, drives bounded HTTP load from worker threads (one keep-alive
connection each), and prints result tables. Nothing here asserts timings:
benchmarks print figures, tests assert behaviour.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy

from service.config import normalise_database_url
from service.vendorapi.simulator import SIMULATOR_API_KEY

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = normalise_database_url(
    os.environ.get(
        "BENCH_DATABASE_URL",
        os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
)
DEFAULT_REDIS_URL = os.environ.get(
    "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
)

# High limits for throughput figures: the limiter stays in the path, refusing nothing.
HIGH_RATE_LIMIT = "100000/second"
HIGH_CONCURRENCY_LIMIT = 1000


class BenchmarkError(RuntimeError):
    """A benchmark could not measure what it meant to (wrong answers, no data)."""


@dataclass(frozen=True)
class Goal:
    """One figure of a benchmark, with its goal beside it (``met`` is ``None``
    when the figure is only reported)."""

    benchmark: str
    figure: str
    value: str
    goal: str = "—"
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "**fail**", None: "—"}[self.met]


def machine_description() -> str:
    """One line about this machine, for the figures' header."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average before the run {load}"
    )


def flush_redis(url: str = DEFAULT_REDIS_URL) -> None:
    """Empty the benchmark's Redis database (caches, maps, limiter keys)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def migrate_database(url: str = DEFAULT_DATABASE_URL) -> None:
    """Bring the benchmark database's schema up to date (the real migrations)."""
    from flask_migrate import upgrade

    from service.app import create_app
    from service.config import Settings
    from service.extensions import db

    app = create_app(Settings.from_env({}, database_url=url))
    with app.app_context():
        upgrade()
        for engine in db.engines.values():
            engine.dispose()


def empty_ledger(url: str = DEFAULT_DATABASE_URL) -> None:
    """Empty every table of the service's models (ledger, holdings, summaries …)."""
    import service.models  # noqa: F401 (registers every table)
    from service.models.base import Base

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
            conn.execute(sqlalchemy.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


def service_env(vendor_url: str, **overrides: str) -> dict[str, str]:
    """The service's environment for a benchmark run: the benchmark database and
    Redis, the simulator at ``vendor_url``, both limits on but set high."""
    return {
        "DATABASE_URL": DEFAULT_DATABASE_URL,
        "REDIS_URL": DEFAULT_REDIS_URL,
        "VENDOR_BASE_URL": vendor_url,
        "VENDOR_API_KEY": SIMULATOR_API_KEY,
        "RATE_LIMIT": HIGH_RATE_LIMIT,
        "MAX_CONCURRENT_REQUESTS": str(HIGH_CONCURRENCY_LIMIT),
        "RATE_LIMIT_ENABLED": "true",
        **overrides,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Poll ``url`` until it answers 2xx; fail if the process dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=1, headers={"x-api-key": SIMULATOR_API_KEY}).ok:
                return
        except requests.RequestException:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up in {timeout} s")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def simulator_process(**knobs: Any) -> Iterator[str]:
    """Run ``python -m service.vendorapi.simulator`` with ``knobs`` (e.g.
    ``latency=0.05``); yields its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "service.vendorapi.simulator", "--port", str(port)]
    for name, value in knobs.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        args += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/_sim/stats", process)
        yield url
    finally:
        _stop(process)


def simulator_admin(url: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
    """Call a simulator admin route (``/_sim/...``): GET without payload, POST with."""
    headers = {"x-api-key": SIMULATOR_API_KEY}
    if payload is None:
        response = requests.get(url + path, headers=headers, timeout=10)
    else:
        response = requests.post(url + path, json=payload, headers=headers, timeout=10)
    response.raise_for_status()
    return response.json()


def vendor_quotes(vendor_url: str) -> list[tuple[str, str]]:
    """Symbol and price (exact decimal text) of each stock on the simulator's first page."""
    response = requests.get(
        vendor_url + "/stocks", headers={"x-api-key": SIMULATOR_API_KEY}, timeout=10
    )
    response.raise_for_status()
    items = json.loads(response.text, parse_float=Decimal)["data"]["items"]
    return [(item["symbol"], str(item["price"])) for item in items]


@dataclass(frozen=True)
class ServerProcess:
    """A server running as a process: its base ``url`` and the ``process``."""

    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process and its live
        children (gunicorn's workers)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ticks = 0
        for each in [str(pid), *children]:
            try:
                fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a worker that just exited
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def gunicorn_process(
    env: Mapping[str, str], app: str = "service.wsgi:app", workers: int = 2, threads: int = 8
) -> Iterator[ServerProcess]:
    """Run gunicorn with the project's config and ``env`` on top of the
    environment; yields it once ``/healthz`` answers."""
    port = free_port()
    metrics_dir = Path(f"/tmp/trading-bench-metrics-{port}")
    full_env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "LOG_LEVEL": "warning",
        "GUNICORN_CMD_ARGS": "--log-level warning",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", app],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process)
        yield ServerProcess(url, process)
    finally:
        _stop(process)


class RedisServer:
    """A ``redis-server`` of one's own on a fixed free port, without persistence,
    that can be stopped and started again (a Redis outage on demand)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 10) -> None:
        """Start the server and return once it answers PING."""
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError as exc:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server :{self.port} did not start") from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server (no shutdown courtesy: everything in it is lost)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class LoadResult:
    """What a load run saw: per-request latencies (seconds), status counts,
    connection errors, and each request's status by its index (``None``: no
    answer)."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    outcomes: dict[int, int | None] = field(default_factory=dict)

    @classmethod
    def combined(cls, results: Sequence[LoadResult]) -> LoadResult:
        """Several runs against one target as one (their times added up)."""
        total = cls(seconds=sum(result.seconds for result in results))
        for result in results:
            total.latencies += result.latencies
            total.statuses.update(result.statuses)
            total.errors += result.errors
        return total

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")


def load(
    base_url: str,
    paths: Sequence[str],
    *,
    total: int,
    concurrency: int = 8,
    method: str = "GET",
    bodies: Sequence[Any] | None = None,
    headers: Mapping[str, str] | None = None,
    headers_for: Callable[[int], Mapping[str, str]] | None = None,
    rate_per_second: float | None = None,
) -> LoadResult:
    """Send ``total`` requests cycling through ``paths`` (and ``bodies``: JSON
    values, or strings already encoded) from ``concurrency`` threads, each on
    its own keep-alive connection.

    ``headers_for(index)`` adds headers to request ``index`` (e.g. an
    ``Idempotency-Key``). ``rate_per_second`` paces the whole run (open
    loop); otherwise each thread sends as fast as answers come back (closed
    loop).
    """
    host, port = base_url.removeprefix("http://").split(":")
    result = LoadResult(seconds=0.0)
    lock = threading.Lock()
    counter = iter(range(total))
    start = time.perf_counter()

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        local_latencies: list[float] = []
        local_statuses: Counter[int] = Counter()
        local_errors = 0
        local_outcomes: dict[int, int | None] = {}
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            if rate_per_second:
                delay = start + index / rate_per_second - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            body = None
            request_headers = dict(headers or {})
            if headers_for is not None:
                request_headers.update(headers_for(index))
            if bodies is not None:
                body = bodies[index % len(bodies)]
                body = body if isinstance(body, str) else json.dumps(body)
                request_headers["Content-Type"] = "application/json"
            sent = time.perf_counter()
            try:
                conn.request(method, paths[index % len(paths)], body=body, headers=request_headers)
                response = conn.getresponse()
                response.read()
                local_statuses[response.status] += 1
                local_latencies.append(time.perf_counter() - sent)
                local_outcomes[index] = response.status
            except (OSError, http.client.HTTPException):
                local_errors += 1
                local_outcomes[index] = None
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.close()
        with lock:
            result.latencies.extend(local_latencies)
            result.statuses.update(local_statuses)
            result.errors += local_errors
            result.outcomes.update(local_outcomes)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    return result


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table (so BENCHMARKS.md can quote it as is)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(_cell(value) for value in row) + " |")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)
