"""Helpers shared by the ASGI (Starlette/FastAPI) targets: bounded body reads, replies."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from targets.common.payload import error_body
from targets.common.service import Reply


def to_response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, reply.headers, media_type=reply.content_type)


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it exceeds ``limit`` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class JsonOnly:
    """ASGI middleware for a framework's JSON predict route, in front of the framework's own
    body parsing: 415 for another media type, 413 for a body over ``max_body_bytes``, 400 for
    one that is not UTF-8 text (frameworks parse forms as multipart, or hand undecodable bytes
    to their JSON parser, and answer a malformed one with a 500). Other routes pass through."""

    def __init__(self, app: ASGIApp, path: str, max_body_bytes: int) -> None:
        self.app = app
        self.path = path
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        media = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
        if media not in ("application/json", ""):
            fail = Reply(415, error_body(f"unsupported content type {media!r}; send JSON"))
            await to_response(fail)(scope, receive, send)
            return
        body = await self._body(receive)
        problem = self._problem(body)
        if problem is not None:
            await to_response(problem)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _problem(self, body: bytes | None) -> Reply | None:
        if body is None:
            return Reply(413, error_body(f"body exceeds {self.max_body_bytes} bytes"))
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return Reply(400, error_body("body is not UTF-8 JSON text"))
        return None
