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
framework import, so it runs in any framework's environment. :class:`JsonOnly` is the same in
front of one JSON route (BentoML's and LitServe's predict), which it also keeps to JSON text.
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
        problem = self.refuse(bytes(body))
        if problem is not None:
            await _reply(send, *problem)
            return
        handed_over = False

        async def replay() -> Message:
            nonlocal handed_over
            if handed_over:
                return await receive()  # after the body: wait for the disconnect
            handed_over = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def refuse(self, body: bytes) -> tuple[int, str] | None:
        """The status and error a whole body gets instead of reaching the app (None: none)."""
        return None


class JsonOnly(BodyLimit):
    """:class:`BodyLimit` on the JSON route ``path`` (other routes pass through untouched),
    which also answers 415 to another media type and 400 to a body that is not UTF-8 text:
    frameworks parse a form body as multipart, or hand undecodable bytes to their JSON parser,
    and answered a malformed one with a 500."""

    def __init__(self, app: ASGIApp, path: str, max_body_bytes: int) -> None:
        super().__init__(app, max_body_bytes)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media not in (b"application/json", b""):
            await _reply(send, 415, f"unsupported content type {media.decode('latin-1')!r}; "
                                    "send application/json")  # fmt: skip
            return
        await super().__call__(scope, receive, send)

    def refuse(self, body: bytes) -> tuple[int, str] | None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "body is not UTF-8 JSON text"
        return None
