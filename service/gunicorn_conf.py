"""gunicorn settings, read from the environment (``gunicorn -c python:service.gunicorn_conf``).

Requests mostly wait on the vendor, so workers are threaded (gthread), with a
read deadline and JSON errors (service/gunicorn_worker.py). A connection has
a thread while its request arrives, so there are many threads: a slow client
holds one for at most ``GUNICORN_READ_TIMEOUT`` seconds, and it takes
``WEB_CONCURRENCY`` x ``GUNICORN_THREADS`` of them at once to delay anybody.
Threads are started as connections need them.
Prometheus multiprocess mode is switched on here, before the app is imported,
so ``/metrics`` aggregates every worker; the directory is emptied at start
and a dead worker's live gauges are dropped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(
            f"configuration error: {name}={raw!r} is invalid: expected a whole number"
        ) from None
    if value < 1:
        raise SystemExit(f"configuration error: {name}={raw!r} is invalid: must be at least 1")
    return value


# Without REDIS_URL the limits and caches are per process: keep one worker.
_default_workers = 2 if os.environ.get("REDIS_URL") else 1

_port = _int_env("PORT", 8000)
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{_port}"
workers = _int_env("WEB_CONCURRENCY", _default_workers)
worker_class = "service.gunicorn_worker.ReadDeadlineWorker"
threads = _int_env("GUNICORN_THREADS", 64)
# Seconds for a request (line, headers and body) to arrive once a thread reads it.
read_timeout = _int_env("GUNICORN_READ_TIMEOUT", 10)
timeout = _int_env("GUNICORN_TIMEOUT", 60)
graceful_timeout = 30
keepalive = 5
accesslog = None  # the app logs each request as JSON itself
errorlog = "-"
control_socket_disable = True
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or None

# One directory per port, so two servers on one machine never wipe each other's.
# Set before anything imports prometheus_client: it picks its storage (memory
# or the shared directory) when first imported, and the workers inherit it.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"trading-metrics-{_port}")
)


def on_starting(server: Any) -> None:
    """Start with an empty metrics directory: old files would be summed in."""
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
