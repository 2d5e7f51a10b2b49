"""A limit on the size of every request body, enforced before a route reads it.

A body whose declared ``Content-Length`` passes the limit is refused at once with 413, without
reading it; a body sent without a length (chunked) is counted as it streams and refused the
moment it passes the limit. Routes that take files (the FHIR NDJSON import) have a larger limit.
The refusal is the same 413 whatever the route: RFC 9457 problem+json for the API, a FHIR
OperationOutcome under /fhir/, an error page for people.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ketacare.config import Settings
from ketacare.web.problems import handle_http_error

# Paths whose routes take files; everything else gets the default limit.
IMPORT_PATHS = frozenset({"/fhir/R4/$import", "/fhir-exchange/imports"})


def limit_for(settings: Settings, path: str) -> int:
    return settings.max_import_body_bytes if path in IMPORT_PATHS else settings.max_request_body_bytes


def size_text(limit: int) -> str:
    """A limit as people read it: "50 MB", "16 kB"."""
    return f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024 else f"{limit // 1024} kB"


def too_large(limit: int) -> HTTPException:
    """An HTTPException, so that FastAPI passes it on unchanged when it is raised while a route's
    body is parsed (any other exception there becomes a 400)."""
    return HTTPException(
        413, f"The request body is larger than {size_text(limit)}; nothing was read or saved."
    )


class BodySizeLimit:
    """Pure ASGI middleware (it must see the body as it streams, which ``@app.middleware`` cannot)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(self.settings, scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, limit)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's reading of the body: the app's error handlers turn
                    # it into the 413 (and the request's transaction rolls back).
                    raise too_large(limit)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = await handle_http_error(Request(scope, receive), too_large(limit))
    response.headers["Connection"] = "close"  # the unread body must not be taken as a next request
    await response(scope, receive, send)
