"""BodyLimit: the ASGI middleware that bounds request bodies of frameworks' servers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from targets.common.body_limit import BodyLimit, Message, Receive, Scope, Send

LIMIT = 10


class EchoApp:
    """A fake app: answers 200 with the body it read (or records that it was never called)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def call(chunks: list[bytes], headers: dict[str, str] | None = None) -> tuple[int, bytes, EchoApp]:
    app = EchoApp()
    sent: list[Message] = []
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]  # fmt: skip

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    asyncio.run(BodyLimit(app, LIMIT)(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, app


def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    status, body, app = call([b"01234", b"56789"], {"Content-Length": "10"})
    assert (status, body, app.calls) == (200, b"0123456789", 1)


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    status, body, app = call([b"x"], {"Content-Length": "11"})
    assert (status, app.calls) == (413, 0)
    assert "over 10 bytes" in json.loads(body)["error"]


def test_a_streamed_body_over_the_limit_is_refused() -> None:
    status, _, app = call([b"012345", b"678901"])  # chunked: no Content-Length
    assert (status, app.calls) == (413, 0)


def test_a_compressed_body_is_refused_and_identity_passes() -> None:
    status, body, app = call([b"x"], {"Content-Encoding": "gzip"})
    assert (status, app.calls) == (415, 0)
    assert "compressed" in json.loads(body)["error"]
    assert call([b"x"], {"Content-Encoding": "identity"})[0] == 200


def test_other_scopes_pass_untouched() -> None:
    seen: list[str] = []

    async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    asyncio.run(BodyLimit(lifespan, LIMIT)({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan"]
