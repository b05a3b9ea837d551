"""A vendor that gives the answers a test sets, over real HTTP: for the precise
answers the simulator never gives (an unreadable page, a gateway's 502 …)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class StubVendor:
    """Answers ``METHOD path`` (query ignored) as set with :meth:`answer`, 404
    otherwise; ``calls`` lists the requests, as ``(method, path with query)``."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.calls: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(
        self, method: str, path: str, status: int = 200, *, json_body: Any = None, body: str = ""
    ) -> None:
        """Answer ``method path`` with ``status`` and ``json_body`` (as JSON) or ``body``."""
        text = json.dumps(json_body) if json_body is not None else body
        self.answers[(method, path)] = (status, text.encode())

    def __enter__(self) -> StubVendor:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(stub: StubVendor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _respond(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            stub.calls.append((self.command, self.path))
            status, body = stub.answers.get(
                (self.command, urlsplit(self.path).path), (404, b'{"message": "not stubbed"}')
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _respond

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
