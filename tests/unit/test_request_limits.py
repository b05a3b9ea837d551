"""MAX_REQUEST_BYTES and the gunicorn worker's read deadline and body buffering."""

from __future__ import annotations

import contextlib
import io
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from service.config import ConfigError, Settings
from service.gunicorn_worker import BufferedBody, ReadDeadlines


def test_max_request_bytes_defaults_to_64_kib_and_is_parsed_strictly() -> None:
    assert Settings.from_env({}).max_request_bytes == 65536
    assert Settings.from_env({"MAX_REQUEST_BYTES": "1024"}).max_request_bytes == 1024
    for raw in ("64k", "0", "-1", "1.5"):
        with pytest.raises(ConfigError, match="MAX_REQUEST_BYTES"):
            Settings.from_env({"MAX_REQUEST_BYTES": raw})


@pytest.fixture
def deadlines() -> ReadDeadlines:
    return ReadDeadlines(0.3)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def _read_in_thread(
    deadlines: ReadDeadlines, sock: socket.socket, read: Callable[[], Any]
) -> dict[str, Any]:
    """Arm a deadline for ``sock`` and ``read()`` in a thread, as a worker thread does."""
    result: dict[str, Any] = {}

    def work() -> None:
        deadlines.arm(sock)
        started = time.monotonic()
        result["read"] = read()
        result["seconds"] = time.monotonic() - started
        result["expired"] = deadlines.disarm()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(5)
    return result


def test_a_trickling_read_is_cut_at_the_deadline(
    deadlines: ReadDeadlines, pair: tuple[socket.socket, socket.socket]
) -> None:
    server, client = pair
    stop = threading.Event()

    def trickle() -> None:  # a byte every 0.1 s: a socket timeout would never fire
        while not stop.wait(0.1):
            with contextlib.suppress(OSError):  # the read side is shut: the point
                client.send(b"a")

    threading.Thread(target=trickle, daemon=True).start()

    def read_all() -> bytes:
        data = b""
        while chunk := server.recv(1):
            data += chunk
        return data

    result = _read_in_thread(deadlines, server, read_all)
    stop.set()
    assert result["expired"] is True
    assert 0.3 <= result["seconds"] < 1.0
    assert result["read"].startswith(b"a")
    server.sendall(b"408")  # the answer can still be written
    assert client.recv(3) == b"408"


def test_a_read_that_finishes_in_time_is_left_alone(
    deadlines: ReadDeadlines, pair: tuple[socket.socket, socket.socket]
) -> None:
    server, client = pair
    client.sendall(b"whole")
    result = _read_in_thread(deadlines, server, lambda: server.recv(5))
    assert result == {"read": b"whole", "seconds": pytest.approx(0, abs=0.2), "expired": False}
    time.sleep(0.5)  # past the deadline, disarmed: the socket still reads
    client.sendall(b"more")
    assert server.recv(4) == b"more"


class _App:
    """A WSGI app that keeps the environ and body it was called with."""

    def __init__(self) -> None:
        self.environ: dict[str, Any] = {}
        self.unread = b""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.environ = environ
        self.unread = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b""]


def _call(
    buffered: BufferedBody, environ: dict[str, Any]
) -> tuple[str, list[tuple[str, str]], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=headers)

    body = b"".join(buffered(environ, start_response))
    return answer["status"], answer["headers"], body


def test_a_chunked_body_reaches_the_app_whole_and_declared_by_its_length() -> None:
    app = _App()
    buffered = BufferedBody(app, 10, ReadDeadlines(5))
    environ = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"x" * 50)}
    assert _call(buffered, environ)[0] == "200 OK"
    # limit + 1 bytes, declared: the app refuses it from Content-Length (413).
    assert app.unread == b"x" * 11
    assert app.environ["CONTENT_LENGTH"] == "11"
    assert "HTTP_TRANSFER_ENCODING" not in app.environ


def test_a_declared_oversized_body_is_not_read() -> None:
    app = _App()
    body = io.BytesIO(b"x" * 50)
    _call(BufferedBody(app, 10, ReadDeadlines(5)), {"CONTENT_LENGTH": "50", "wsgi.input": body})
    assert app.unread == b"x" * 50  # left for the app, which refuses it unread
    assert app.environ["CONTENT_LENGTH"] == "50"


def test_a_body_cut_by_the_deadline_is_408_in_the_envelope(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    client.sendall(b"{")
    deadlines = ReadDeadlines(0.3)
    app = _App()
    buffered = BufferedBody(app, 100, deadlines)
    environ = {"CONTENT_LENGTH": "100", "wsgi.input": server.makefile("rb")}
    answer: dict[str, Any] = {}

    def work() -> None:
        deadlines.arm(server)
        answer["response"] = _call(buffered, environ)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(5)
    status, headers, body = answer["response"]
    assert status == "408 Request Timeout"
    assert ("Content-Type", "application/json") in headers
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert app.environ == {}  # the app never ran


def test_a_stopping_worker_cuts_every_read_at_once(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, _client = pair
    deadlines = ReadDeadlines(60)
    threading.Timer(0.2, deadlines.expire_overdue, kwargs={"now": math.inf}).start()
    result = _read_in_thread(deadlines, server, lambda: server.recv(1))
    assert result["read"] == b""
    assert result["expired"] is True
    assert result["seconds"] < 1
