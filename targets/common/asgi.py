"""Helpers shared by the ASGI (Starlette/FastAPI) targets: bounded body reads, replies."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

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
