"""``make run`` as a newcomer uses it: the address once it answers, readable logs,
``make tokens`` against the same simulator, and a quiet Ctrl-C that stops only
what it started."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.functional.servers import ROOT, free_port

pytestmark = pytest.mark.slow

START_SECONDS = 60


class _Lines:
    """The lines a process writes, readable with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line)
        self._queue.put(None)

    def until(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r}:\n{''.join(self.seen)}")
            if line is None:
                pytest.fail(f"output ended before {pattern!r}:\n{''.join(self.seen)}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def rest(self) -> str:
        while (line := self._queue.get(timeout=30)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def make_run(database_url: str, redis_url: str) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """``make run`` on free ports against the test PostgreSQL and Redis, in its own
    process group (as a terminal runs it), output merged."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    port, vendor_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "-o",
            ".venv/bin/.runtime",  # never reinstall the shared virtualenv here
            "run",
            f"PORT={port}",
            f"VENDOR_PORT={vendor_port}",
            f"DATABASE_URL={database_url}",
            f"REDIS_URL={redis_url}",
        ],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    yield process, port, vendor_port
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.stdout is not None
    process.stdout.close()


def test_make_run_announces_itself_once_up_and_ctrl_c_stops_what_it_started(
    make_run: tuple[subprocess.Popen[str], int, int], redis_url: str
) -> None:
    process, port, vendor_port = make_run
    lines = _Lines(process)
    gunicorn_pid = int(lines.until(r"Starting gunicorn", START_SECONDS).split("[")[2].split("]")[0])
    announced = lines.until(r"^listening on ", START_SECONDS)
    assert f"http://127.0.0.1:{port}" in announced
    # Announced only once it answers.
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    assert requests.get(f"http://127.0.0.1:{port}/stocks?limit=1", timeout=10).status_code == 200
    request_line = lines.until(r"service\.requests", 10)
    assert "GET /stocks 200" in request_line
    assert "route=/stocks" in request_line  # LOG_FORMAT=text: key=value, not JSON
    assert not request_line.lstrip().startswith("{")

    tokens = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            ".venv/bin/.runtime",
            "tokens",
            f"VENDOR_PORT={vendor_port}",
            f"REDIS_URL={redis_url}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tokens.returncode == 0, tokens.stdout + tokens.stderr
    assert "tokens refresh done: " in tokens.stdout

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    process.wait(timeout=60)
    output = lines.rest()
    # make re-raises the SIGINT it got, like any program stopped by Ctrl-C, but
    # says nothing: the recipe stopped its servers and exited 0.
    assert process.returncode == -signal.SIGINT
    for noise in ("make: ***", "Terminated", "Interrupt", "Traceback", "Error"):
        assert noise not in output
    assert not _listening(port)
    assert not _listening(vendor_port)
    with pytest.raises(ProcessLookupError):
        os.kill(gunicorn_pid, 0)
