"""An ASGI middleware that bounds request bodies, for servers servecap did not write.

Frameworks such as MLServer and KServe read a whole request body into memory whatever its
size, and MLServer inflates ``Content-Encoding: gzip`` bodies without a bound (a small
request can become gigabytes). Wrapped around such an app, :class:`BodyLimit` reads the body
first and answers

* 413 when ``Content-Length`` or the bytes received exceed ``max_body_bytes`` (the body is
  read no further), and
* 415 to any ``Content-Encoding`` other than ``identity`` (servecap's clients never compress
  requests),

before the app sees the request; the app then gets the body in one piece. Pure ASGI: no
framework import, so it runs in any framework's environment.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _reply(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """``app`` with request bodies of at most ``max_body_bytes`` and no content encoding."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            await _reply(send, 415, "compressed request bodies are not accepted")
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reply(send, 413, f"request body over {self.max_body_bytes} bytes")
            return
        body = bytearray()
        more = True
        while more:  # read the body here, up to the limit, then hand it over whole
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_body_bytes:
                await _reply(send, 413, f"request body over {self.max_body_bytes} bytes")
                return
        handed_over = False

        async def replay() -> Message:
            nonlocal handed_over
            if handed_over:
                return await receive()  # after the body: wait for the disconnect
            handed_over = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)
