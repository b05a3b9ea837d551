"""Slow and oversized requests against real gunicorn (issue 12, points 2 and 4).

* 5 connections that send a buy's headers (``Content-Length: 100``) and one
  byte, and 50 that trickle their headers, held open: other clients are still
  served (no 429: nobody holds a concurrency slot without a body), the probes
  answer in time, and once ``GUNICORN_READ_TIMEOUT`` has passed the slow
  bodies get ``408 request_timeout`` and the slow headers are closed.
* A 200 MB body, declared or chunked, is refused with ``413 request_too_large``
  and the workers' memory stays where it was (within 10 MB).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.reliability.rig import Rig

READ_TIMEOUT = 10  # GUNICORN_READ_TIMEOUT's default
PROBE_SECONDS = 2  # an answer later than this counts as a failed probe
SLOW_BODIES = 5
SLOW_HEADERS = 50
BIG = 200 * 1024 * 1024
MEGABYTE = 1024 * 1024
BUY_HEAD = (
    "POST /stocks/AAPL/buy HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    "Idempotency-Key: slow-{n}\r\n"
)


def _connect(rig: Rig, head: str) -> socket.socket:
    host, port = rig.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=READ_TIMEOUT + 10)
    sock.sendall(head.encode())
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the response on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {data!r}")


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@contextmanager
def _trickling(socks: list[socket.socket]) -> Iterator[None]:
    """Send one more header byte on each of ``socks`` every half second."""
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for sock in socks:
                with contextlib.suppress(OSError):  # closed by the server: the point
                    sock.sendall(b"a")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_slow_clients_hold_no_slot_and_do_not_starve_the_probes(
    make_rig: Callable[..., Rig],
) -> None:
    # The production defaults of the worker (GUNICORN_THREADS empty: its default).
    rig = make_rig(
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT="1000/second",
        MAX_CONCURRENT_REQUESTS=str(SLOW_BODIES),
        GUNICORN_THREADS="",
    )
    assert rig.get("/stocks").status_code == 200  # the catalogue is cached
    started = time.monotonic()
    bodies = [
        _connect(rig, BUY_HEAD.format(n=n) + "Content-Length: 100\r\n\r\n{")
        for n in range(SLOW_BODIES)
    ]
    headers = [
        _connect(rig, "GET /stocks HTTP/1.1\r\nHost: test\r\nX-Slow: ") for _ in range(SLOW_HEADERS)
    ]
    with _trickling(headers):
        time.sleep(1)  # every slow connection is being read
        while time.monotonic() - started < READ_TIMEOUT - 2:
            assert requests.get(rig.url + "/stocks", timeout=5).status_code == 200
            for probe in ("/healthz", "/readyz"):
                assert requests.get(rig.url + probe, timeout=PROBE_SECONDS).status_code == 200
            time.sleep(0.2)

        for sock in bodies:
            status, body = _answer(sock)
            assert status == 408
            assert body["error"]["code"] == "request_timeout"
        assert all(_closed_by_server(sock) for sock in headers)
    waited = time.monotonic() - started
    assert waited < READ_TIMEOUT + 5, f"the slow connections were cut after {waited:.1f} s"
    for sock in bodies + headers:
        sock.close()


def _workers(rig: Rig) -> list[int]:
    pid = rig.service.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _send_big(rig: Rig, size: int, *, chunked: bool) -> tuple[int, dict[str, Any]]:
    """A buy with a ``size``-byte body, sent while the answer is read."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock = _connect(rig, BUY_HEAD.format(n=f"big-{chunked}") + framing + "\r\n\r\n")
    piece = b"1" * MEGABYTE
    if chunked:
        piece = b"%x\r\n%s\r\n" % (len(piece), piece)

    def send() -> None:
        try:
            for _ in range(size // MEGABYTE):
                sock.sendall(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server stopped reading, as it should

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        return _answer(sock)
    finally:
        sock.close()
        sender.join()


def test_a_200_mb_body_is_refused_unread_and_the_workers_keep_their_memory(rig: Rig) -> None:
    for framing in (False, True):  # the limit's own code paths, before measuring
        _send_big(rig, MEGABYTE, chunked=framing)
    workers = _workers(rig)
    before = {pid: _rss_bytes(pid) for pid in workers}

    for chunked in (False, True):
        status, body = _send_big(rig, BIG, chunked=chunked)
        assert status == 413, body
        assert body["error"]["code"] == "request_too_large"
        assert body["error"]["details"] == {"limit": 65536}

    grown = {pid: (_rss_bytes(pid) - before[pid]) / MEGABYTE for pid in workers}
    assert all(abs(change) <= 10 for change in grown.values()), f"RSS change (MB): {grown}"
    assert _workers(rig) == workers  # no worker died on the way
