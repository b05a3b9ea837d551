"""gunicorn's threaded worker, with a read deadline and JSON errors (``worker_class``
in service/gunicorn_conf.py).

gthread gives each connection a thread while it reads the request. It waits
5 s for a new connection's first byte and then parks it, but once bytes come
the thread reads with no limit on how long: a client that trickles its headers
or its body holds a thread for as long as it likes, and one whose body was
still arriving when the app started held a global concurrency slot (issue 12).
(``timeout``, the worker heartbeat, only notices a worker that stopped
altogether; ``keepalive`` only idle connections.) This subclass, through
gunicorn's documented extension points (``worker_class``, methods of the
documented worker classes), adds:

* **A read deadline.** The request line, headers and body must all have
  arrived within ``GUNICORN_READ_TIMEOUT`` seconds of the thread taking the
  connection. A watchdog thread shuts the socket's read side when the deadline
  passes: the blocked read ends at once, however slowly bytes were trickling
  (a socket timeout would start again with every byte). Headers that do not
  arrive in time close the connection; a body that does not is answered
  ``408 request_timeout``.
* **The body before the app.** :class:`BufferedBody` reads the whole body
  (at most ``MAX_REQUEST_BYTES`` + 1 bytes, the app's ``MAX_CONTENT_LENGTH``)
  before the app runs, so the app — and its concurrency limit — only sees
  requests that have fully arrived. A body declared larger is never read: the
  app answers ``413 request_too_large`` from ``Content-Length`` alone.
* **JSON errors.** gunicorn answers a request it cannot parse (bad request
  line 400, URI too long 414, header fields too large 431 …) with an HTML
  page; :meth:`ReadDeadlineWorker.handle_error` keeps gunicorn's status,
  logging and access log and sends the JSON error envelope instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from service.api.errors import code_of, envelope

# How often the watchdog looks for connections past their deadline.
WATCH_INTERVAL_SECONDS = 0.2
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class _Watch:
    sock: socket.socket
    deadline: float
    expired: bool = False


class ReadDeadlines:
    """The deadline of each thread's request read, enforced by one watchdog thread.

    :meth:`arm` starts the deadline of the calling thread's connection,
    :meth:`disarm` ends it (and tells whether it had passed). Past its
    deadline, a connection's read side is shut: a blocked ``recv`` returns
    end-of-file, while the response can still be written.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}  # thread id -> its connection
        threading.Thread(target=self._watch, name="read-deadlines", daemon=True).start()

    def arm(self, sock: socket.socket) -> None:
        with self._lock:
            self._watches[threading.get_ident()] = _Watch(sock, time.monotonic() + self.seconds)

    def disarm(self) -> bool:
        """End the calling thread's deadline; whether it had passed (the read was cut)."""
        with self._lock:
            watch = self._watches.pop(threading.get_ident(), None)
        return watch is not None and watch.expired

    def expire_overdue(self, now: float | None = None) -> None:
        """Cut the reads whose deadline is past at ``now`` (default: the present)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for watch in self._watches.values():
                if not watch.expired and watch.deadline <= now:
                    watch.expired = True
                    with contextlib.suppress(OSError):  # closed meanwhile: nothing to cut
                        watch.sock.shutdown(socket.SHUT_RD)

    def _watch(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL_SECONDS)
            self.expire_overdue()


class BufferedBody:
    """WSGI wrapper: the app is called once the body has arrived, read into
    memory (at most ``limit`` + 1 bytes) within the read deadline."""

    def __init__(self, app: WsgiApp, limit: int, deadlines: ReadDeadlines) -> None:
        self.app = app
        self.limit = limit
        self.deadlines = deadlines

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        declared = int(environ.get("CONTENT_LENGTH") or 0)
        if declared > self.limit:
            self.deadlines.disarm()
            return self.app(environ, start_response)  # 413 from Content-Length alone
        try:
            body = environ["wsgi.input"].read(self.limit + 1)
        except OSError:  # a chunked body cut short (gunicorn's NoMoreData)
            if self.deadlines.disarm():
                return self._timed_out(start_response)
            raise
        if self.deadlines.disarm() and len(body) < declared:
            return self._timed_out(start_response)
        # The body is now of known length, a chunked one too: declared so, the
        # app refuses limit + 1 bytes from Content-Length (werkzeug would read a
        # chunked body up to its limit and silently drop the rest).
        if environ.pop("HTTP_TRANSFER_ENCODING", None) is not None:
            environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    def _timed_out(self, start_response: StartResponse) -> Iterable[bytes]:
        message = f"The request body did not arrive within {self.deadlines.seconds:g} seconds."
        body = json.dumps(envelope("request_timeout", message)).encode()
        # No "Connection: close" (gunicorn drops the app's): the read side is
        # shut, so gunicorn closes the connection after this answer.
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),  # as the app's answers
        ]
        start_response("408 Request Timeout", headers)
        return [body]


class _Page:
    """Stands in for the client socket while gunicorn writes its HTML error page,
    to learn the status it chose (``util.write_error`` calls ``sendall``)."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0  # non-blocking already: gunicorn writes at once

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status(self) -> tuple[int, str]:
        """The status code and reason of the page, 500 if there is none."""
        parts = self.data.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if len(parts) == 3 and parts[1].isdigit():
            return int(parts[1]), parts[2]
        return 500, "Internal Server Error"


class ReadDeadlineWorker(ThreadWorker):
    """gthread with a read deadline, the body read before the app, and JSON errors."""

    deadlines: ReadDeadlines
    wsgi: WsgiApp

    def init_process(self) -> None:
        # The settings module gunicorn loaded (imported here, not at the top:
        # importing it sets PROMETHEUS_MULTIPROC_DIR, a gunicorn process's business).
        from service.gunicorn_conf import read_timeout

        # In the worker process (threads do not survive the fork); the parent's
        # init_process then loads the app and runs the worker until it stops.
        self.deadlines = ReadDeadlines(read_timeout)
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = self.wsgi  # service.wsgi:app, a Flask app
        self.wsgi = BufferedBody(app, app.config["MAX_CONTENT_LENGTH"], self.deadlines)

    def handle(self, conn: Any) -> Any:
        self.deadlines.arm(conn.sock)
        try:
            return super().handle(conn)
        finally:
            self.deadlines.disarm()

    def handle_quit(self, sig: int, frame: Any) -> None:
        # Stopping now (SIGINT, SIGQUIT): slow clients are not waited for (the
        # interpreter's exit waits for every thread of the pool).
        self.deadlines.expire_overdue(now=math.inf)
        super().handle_quit(sig, frame)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's answer to a request it refuses, as the JSON error envelope."""
        page = _Page()
        super().handle_error(req, page, addr, exc)
        status, reason = page.status()
        if status == 500:
            error = envelope("internal_error", "Internal server error.")
        else:
            error = envelope(code_of(reason), f"{reason}: {exc}")
        body = json.dumps(error).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "X-Content-Type-Options: nosniff\r\n\r\n"
        )
        try:
            client.sendall(head.encode("latin-1") + body)
        except OSError:
            self.log.debug("Failed to send error message.")
