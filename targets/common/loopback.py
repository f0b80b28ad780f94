"""How the harness's own requests travel: straight to the server named, and only there.

Every request servecap itself sends (health checks, metadata, warm-up, ``verify``, metrics
scrapes; the Locust users share the redirect rule and the gRPC options) follows three rules:

* never through a proxy: ``http_proxy`` and friends are for reaching the outside world, and
  a target's answers must come from the target, by the same path the load generator takes
  (which connects directly), so the opener has no proxy handler and gRPC channels turn the
  proxy off (:data:`GRPC_OPTIONS`);
* never redirected: a redirect is an answer, and an error (:func:`redirect_error`). Not even
  to the same origin: a followed redirect is two requests timed as one, a 301/302/303 turns a
  POST into a GET without its body, and one to another origin sends the load, bodies
  included, to a server the scenario does not name (:data:`MAX_REDIRECTS` for Locust);
* metadata and metrics reads are capped (:data:`MAX_READ_BYTES`): a server answering without
  end cannot fill the harness's memory.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 0
"""Redirects any servecap client follows (Locust's ``max_redirects``): none."""
MAX_READ_BYTES = 4 * 1024**2
"""The most bytes read from a metadata, health, job-status or metrics answer (4 MiB: a
Prometheus page of one server is tens of KiB)."""
GRPC_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.enable_http_proxy", 0),)
"""Options of every gRPC channel servecap opens: no proxy, whatever the environment says."""


class RefusedAnswer(ValueError):
    """An answer servecap does not take: a redirect (never followed), or too large."""


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def checked_port(url: str, field: str) -> int | None:
    """The port ``url`` names (None: none, the scheme's); ValueError naming ``field`` when it
    is not a port number (config validation: a bad port is said there, not at first use)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is not None and not 1 <= port <= 65535:
        given = parts.netloc.rpartition(":")[2]
        raise ValueError(f"{field} {url}: port '{given}' is not a number from 1 to 65535")
    return port


def redirect_error(url: str, status: int, location: str | None) -> str:
    """The error of a redirect answer to a request for ``url`` (short: it is a record's error
    text, and it reaches the summary's top_error)."""
    if not location:
        return f"HTTP {status} redirect without a Location: not followed"
    target = urljoin(url, location)
    where = "the same origin" if origin(target) == origin(url) else "another origin"
    return (f"HTTP {status} redirect to {where} ({target[:80]}): servecap follows no "
            "redirect; point the target at the server that answers")  # fmt: skip


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: Any, newurl: str,
    ) -> urllib.request.Request | None:  # fmt: skip
        fp.close()
        raise RefusedAnswer(redirect_error(req.full_url, code, newurl))


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def urlopen(request: str | urllib.request.Request, timeout_s: float) -> Any:
    """``urllib.request.urlopen`` without proxies or redirects (RefusedAnswer on one);
    HTTPError for other non-2xx answers, as urlopen."""
    return _OPENER.open(request, timeout=timeout_s)


def read_capped(resp: Any, url: str, limit: int = MAX_READ_BYTES) -> bytes:
    """The body of ``resp``; RefusedAnswer past ``limit`` bytes (nothing more is read)."""
    data: bytes = resp.read(limit + 1)
    if len(data) > limit:
        raise RefusedAnswer(
            f"{url} answered more than {limit} bytes, the most servecap reads from a "
            "metadata or metrics endpoint (targets.common.loopback.MAX_READ_BYTES)"
        )
    return data


def http_post(
    url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
) -> tuple[int, bytes]:
    """(status, body) of a POST; HTTP errors are answers too. URLError/OSError when there is
    none; RefusedAnswer for a redirect."""
    req = urllib.request.Request(url, body, dict(headers), method="POST")
    try:
        with urlopen(req, timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), read_capped(err, url)


def http_get(url: str, timeout_s: float, limit: int = MAX_READ_BYTES) -> tuple[int, bytes]:
    """(status, body) of a GET, the body capped at ``limit`` bytes (RefusedAnswer past it)."""
    try:
        with urlopen(url, timeout_s) as resp:
            return int(resp.status), read_capped(resp, url, limit)
    except urllib.error.HTTPError as err:
        return int(err.code), read_capped(err, url, limit)
