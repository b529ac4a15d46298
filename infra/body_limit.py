"""Request bodies over their route's limit are refused with 413 before they are read.

Uploads are parsed in memory (identified data never reaches a temporary file), so without a bound
any client, signed in or not, could make the server hold a large body before a single check ran.
``BodyLimitMiddleware`` sits in front of the routes (it runs before authentication) and answers
``413`` with the product's problem document (``reason: body_too_large``, ``limit_bytes``):

* at once, without reading anything, when ``Content-Length`` declares more than the route allows;
* otherwise (a chunked body) by counting the bytes as the route reads them: the read that goes over
  the limit fails, whatever the route answers then is replaced by the 413, and nothing more is read.

The answer closes the connection, so the rest of a refused body is never read either. Each route
gets the ordinary limit unless a ``RouteLimit`` (method and path pattern) gives it another one, or
none (``max_bytes=None``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.errors import PayloadTooLarge
from infra.logging import get_logger, request_id_var

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
REASON = "body_too_large"


class BodyTooLarge(PayloadTooLarge):
    """The request body went over its route's limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(_detail(limit), extra={"reason": REASON, "limit_bytes": limit})
        self.limit = limit


@dataclass(frozen=True)
class RouteLimit:
    """The body limit of the requests whose method and whole path match (``None``: no limit)."""

    method: str
    path: str
    """A regular expression matched against the whole request path."""
    max_bytes: int | None
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", re.compile(self.path))

    def matches(self, method: str, path: str) -> bool:
        """True when this limit applies to the request."""
        return method == self.method and self.pattern.fullmatch(path) is not None


def _size(count: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"


def _detail(limit: int) -> str:
    return f"the request body is larger than this route accepts ({_size(limit)})"


class BodyLimitMiddleware:
    """ASGI middleware refusing request bodies over their route's limit with 413."""

    def __init__(self, app: ASGIApp, *, default_bytes: int, routes: Sequence[RouteLimit] = ()) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.routes = tuple(routes)

    def limit_for(self, method: str, path: str) -> int | None:
        """The largest body accepted by this method and path (``None``: unbounded)."""
        for route in self.routes:
            if route.matches(method, path):
                return route.max_bytes
        return self.default_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the route's own answer to a cut-off body (often a parse error) is replaced
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send, limit)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        error = BodyTooLarge(limit)
        log.warning("request.body_too_large", path=scope["path"], limit_bytes=limit)
        body = {
            "type": f"/problems/{error.type_slug}",
            "title": error.title,
            "status": error.status_code,
            "detail": error.detail,
            "instance": scope["path"],
            "request_id": request_id_var.get(),
            "retryable": error.retryable,
            **error.extra,
        }
        # Closing the connection is what keeps the server from reading the rest of the body.
        response = JSONResponse(
            body, status_code=error.status_code, media_type=PROBLEM_JSON, headers={"Connection": "close"}
        )
        await response(scope, receive, send)
