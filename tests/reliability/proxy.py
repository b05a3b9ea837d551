"""A TCP proxy the reliability tests control, to take a server away and back.

The shared PostgreSQL (and the simulator) must not be restarted by a test, so
the service reaches them through a :class:`TcpProxy`: :meth:`TcpProxy.cut`
resets every open connection and refuses new ones, as a server that goes down
does; :meth:`TcpProxy.restore` accepts again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from tests.bench.harness import free_port

_CHUNK = 65536


class TcpProxy:
    """Forwards connections from ``127.0.0.1:port`` to ``target`` (host, port)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.connections = 0  # accepted so far, across cuts

    def __enter__(self) -> Self:
        self.restore()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cut()

    def restore(self) -> None:
        """Listen (again) on ``port``; a no-op while listening."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(128)
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and reset every open connection (both sides)."""
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        for sock in doomed:
            _reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _reset(client)
                    _reset(upstream)
                    return
                self._sockets |= {client, upstream}
                self.connections += 1
            pair = _Pair(client, upstream, self._forget)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pair.pump, args=(source, sink), daemon=True).start()

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.difference_update(socks)


class _Pair:
    """Both sockets of one proxied connection; closed when both directions end."""

    def __init__(
        self, client: socket.socket, upstream: socket.socket, forget: Callable[..., None]
    ) -> None:
        self.sockets = (client, upstream)
        self.forget = forget
        self.open_directions = 2
        self.lock = threading.Lock()

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # pass the end of the stream on
        except OSError:
            for sock in self.sockets:
                _reset(sock)
        with self.lock:
            self.open_directions -= 1
            done = self.open_directions == 0
        if done:
            self.forget(*self.sockets)
            for sock in self.sockets:
                sock.close()


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset, as a dying server's kernel would.

    ``shutdown`` first: a ``close`` alone does not end a socket that a pump
    thread is blocked reading (the kernel keeps it open for that ``recv``), so
    the peer would never hear of it — a PostgreSQL session would stay idle in
    its transaction, holding its row locks.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
