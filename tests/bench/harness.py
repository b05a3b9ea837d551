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
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from service.vendor.simulator import SIMULATOR_API_KEY

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL",
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
DEFAULT_REDIS_URL = os.environ.get(
    "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
)


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
    """Run ``python -m service.vendor.simulator`` with ``knobs`` (e.g.
    ``latency=0.05``); yields its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "service.vendor.simulator", "--port", str(port)]
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


@contextmanager
def gunicorn_process(
    env: Mapping[str, str], app: str = "service.wsgi:app", workers: int = 2, threads: int = 8
) -> Iterator[str]:
    """Run gunicorn with the project's config and ``env`` on top of the
    environment; yields the base URL once ``/healthz`` answers."""
    port = free_port()
    metrics_dir = Path(f"/tmp/trading-bench-metrics-{port}")
    full_env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "LOG_LEVEL": "warning",
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
        yield url
    finally:
        _stop(process)


@dataclass
class LoadResult:
    """What a load run saw: per-request latencies (seconds) and status counts."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

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
    rate_per_second: float | None = None,
) -> LoadResult:
    """Send ``total`` requests cycling through ``paths`` (and ``bodies``, JSON)
    from ``concurrency`` threads, each on its own keep-alive connection.

    ``rate_per_second`` paces the whole run (open loop); otherwise each
    thread sends as fast as answers come back (closed loop).
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
            if bodies is not None:
                body = json.dumps(bodies[index % len(bodies)])
                request_headers["Content-Type"] = "application/json"
            sent = time.perf_counter()
            try:
                conn.request(method, paths[index % len(paths)], body=body, headers=request_headers)
                response = conn.getresponse()
                response.read()
                local_statuses[response.status] += 1
                local_latencies.append(time.perf_counter() - sent)
            except (OSError, http.client.HTTPException):
                local_errors += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.close()
        with lock:
            result.latencies.extend(local_latencies)
            result.statuses.update(local_statuses)
            result.errors += local_errors

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
