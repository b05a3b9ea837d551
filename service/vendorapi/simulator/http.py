"""The simulator over real HTTP: a threaded server, its handler, and :func:`serve`."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from service.vendorapi.simulator.vendor import Request, Simulator
from service.vendorapi.wire import dumps

_log = logging.getLogger(__name__)

_IDLE_CONNECTION_SECONDS = 60


class _HTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server that knows its simulator and its open connections."""

    daemon_threads = True
    # socketserver's default backlog of 5 overflows under concurrent tests and
    # benchmarks; the kernel then delays reconnects by seconds.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        """Remember (``open_``) or forget a client connection."""
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open client connection (keep-alive ones included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log, instead of printing, errors of a handler thread."""
        if isinstance(sys.exc_info()[1], OSError):
            _log.debug("connection from %s ended early", client_address, exc_info=True)
        else:
            _log.exception("error while answering %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Translates HTTP requests to ``Simulator.respond`` and its replies back."""

    protocol_version = "HTTP/1.1"
    server_version = "VendorSimulator/1.0"
    timeout = _IDLE_CONNECTION_SECONDS
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls
    server: _HTTPServer

    def setup(self) -> None:
        """Register the connection so that ``shutdown`` can close it."""
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def _handle(self) -> None:
        """Answer one request (any method), after the delay the simulator decided."""
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        request = Request(self.command, url.path, url.query, self.headers.get("x-api-key"), body)
        reply = self.server.simulator.respond(request)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status is None:
            self.close_connection = True
        else:
            self._send_json(reply.status, reply.payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _read_body(self) -> bytes | None:
        """The request body per Content-Length, or None after answering 4xx."""
        if "Transfer-Encoding" in self.headers:
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
            return None
        length = self.headers.get("Content-Length", "0").strip()
        if not length.isdecimal():
            self.send_error(HTTPStatus.BAD_REQUEST, "Invalid Content-Length")
            return None
        return self.rfile.read(int(length))

    def _send_json(self, status: int, payload: dict[str, object]) -> None:
        """Write a JSON answer with Content-Length, so the connection can be kept alive."""
        body = dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol-level errors in JSON too, then close the connection."""
        self.close_connection = True
        self._send_json(code, {"message": message or HTTPStatus(code).phrase})

    def log_message(self, format: str, *args: Any) -> None:
        """Send the per-request log line to DEBUG instead of stderr."""
        _log.debug("%s - %s", self.address_string(), format % args)


class SimulatorServer:
    """A running simulator HTTP server (see ``serve``); also a context manager."""

    def __init__(self, httpd: _HTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        host, port = httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.simulator = httpd.simulator

    def shutdown(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def serve(simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    """Serve ``simulator`` over HTTP from a daemon thread; port 0 picks a free port.

    Raises OSError when the address cannot be bound.
    """
    httpd = _HTTPServer((host, port), simulator)
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="vendor-simulator",
        daemon=True,
    )
    thread.start()
    return SimulatorServer(httpd, thread)
