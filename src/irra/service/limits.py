"""Request-body caps that hold while the body streams in, with or without a ``Content-Length``.

A body announced as too large is refused before it is read; a body sent without its length
(chunked) is counted as it arrives and cut off at the cap, so no route ever holds more than its
cap in memory.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: ``caps(path) -> (largest body in bytes, the 413 message)``.
Caps = Callable[[str], tuple[int, str]]


class BodyLimit:
    """ASGI middleware: a request body over its path's cap gets a 413 with the path's message.

    Args:
        app: the application it wraps.
        caps: the cap and message of a request path.
    """

    def __init__(self, app: ASGIApp, caps: Caps) -> None:
        self.app = app
        self.caps = caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap, detail = self.caps(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:  # a route reading the body answers 413 from here
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, counted, send)
