"""Wire time: each request timed at the socket, from its first byte sent to the last received.

Locust's FastHttpSession times a request from before the request is built to after the
answer is parsed, so its figure holds the generator's own Python work (about 0.15 ms a
request here) as well as the target's. An independent generator such as wrk times from the
first write to the last read. servecap does the same: the HTTP client's sockets stamp the
first ``sendall`` of a request and every ``recv`` after it, per greenlet (a connection is
used by one greenlet at a time), and the user reads the stamps back once the answer is in.

The recorder then keeps both: ``service_ms`` is the wire time, ``client_ms`` the rest (the
generator's own overhead, reported instead of hidden in the latency).

Usage, inside one greenlet::

    wiretime.begin()
    ... send a request through a session whose pool is a WireTimedClientPool ...
    stamps = wiretime.read()  # {"sent_ts": ..., "wire_ms": ...} or {} (nothing was sent)
"""

from __future__ import annotations

import time
from typing import Any

import gevent.local
import gevent.socket
from geventhttpclient.client import HTTPClient, HTTPClientPool
from geventhttpclient.connectionpool import ConnectionPool
from geventhttpclient.url import URL

from loadtests import clock


class _Stamps(gevent.local.local):
    sent_ts: float | None = None
    """Wall-clock time (Unix s) of the request's first byte sent."""
    sent_pc: float | None = None
    last_recv_pc: float | None = None


_stamps = _Stamps()


def begin() -> None:
    """Forget the previous request's stamps in this greenlet."""
    _stamps.sent_ts = _stamps.sent_pc = _stamps.last_recv_pc = None


def read() -> dict[str, float]:
    """``sent_ts`` and ``wire_ms`` of the request since :func:`begin`, or {} if none answered."""
    if _stamps.sent_pc is None or _stamps.last_recv_pc is None or _stamps.sent_ts is None:
        return {}
    return {
        "sent_ts": _stamps.sent_ts,
        "wire_ms": (_stamps.last_recv_pc - _stamps.sent_pc) * 1000,
    }


class WireTimedSocket(gevent.socket.socket):
    """A gevent socket stamping the first send and the last receive of each request."""

    def sendall(self, data: Any, flags: int = 0) -> None:
        if _stamps.sent_pc is None:
            _stamps.sent_ts = clock.now()
            _stamps.sent_pc = time.perf_counter()
        super().sendall(data, flags)

    def recv(self, *args: Any) -> bytes:
        data: bytes = super().recv(*args)
        if _stamps.sent_pc is not None:
            _stamps.last_recv_pc = time.perf_counter()
        return data

    def recv_into(self, *args: Any) -> int:
        size: int = super().recv_into(*args)
        if _stamps.sent_pc is not None:
            _stamps.last_recv_pc = time.perf_counter()
        return size


class WireTimedConnectionPool(ConnectionPool):
    """geventhttpclient's plain-TCP pool, making :class:`WireTimedSocket` connections."""

    def _create_tcp_socket(self, family: int, socktype: int, protocol: int) -> WireTimedSocket:
        return WireTimedSocket(family, socktype, protocol)


class OneRequestConnectionPool(WireTimedConnectionPool):
    """A wire-timed pool that closes each connection after its answer (``connections:
    per-request``). The request says ``Connection: close``, but geventhttpclient keeps the
    socket unless the *answer* says so too, and servers need not (Python's http.server does
    not): the next request then went down the socket the server had closed and failed
    (HTTPConnectionClosed, 2 runs in 20 against http.server)."""

    def return_socket(self, sock: gevent.socket.socket) -> None:
        self.release_socket(sock)


class WireTimedClientPool(HTTPClientPool):
    """An HTTPClientPool whose plain-HTTP clients use wire-timed sockets, kept alive or closed
    after each answer (``keep_alive``).

    geventhttpclient builds its connection pool inside ``HTTPClient.__init__``; the pool is
    re-classed to a subclass above (they add no state, only the socket factory and what
    happens to a socket after its answer). TLS pools are left alone: their requests fall back
    to the session's own timing.
    """

    def __init__(self, keep_alive: bool = True, **client_args: Any) -> None:
        super().__init__(**client_args)
        self.keep_alive = keep_alive

    def get_client(self, url: str | URL) -> HTTPClient:
        client = super().get_client(url)
        pool = client._connection_pool
        if type(pool) is ConnectionPool:
            pool.__class__ = WireTimedConnectionPool if self.keep_alive else \
                OneRequestConnectionPool  # fmt: skip
        return client
