"""The one error format of jetfleet's HTTP APIs, and the request id that ties an answer to the service log.

Every error an HTTP API answers has the body

    {"error": "<what went wrong and what to do, for the client>", "status": <HTTP status>, "request_id": "<id>"}

(plus, for answers from the scheduler, `reason`: a machine-readable code such as `queue_full`, and
`retry_after_s`). The body never carries internals: no tracebacks, paths, actor ids, pids, addresses or object
reprs. What the client is not told goes to the service log (`log_detail`) under the same request id, which every
response also carries in the `X-Request-Id` header; a client may choose the id by sending that header (as Ray
Serve's proxy, which sets and echoes that header, allows).

`RequestIdMiddleware` gives each request its id; `install_error_handlers` turns FastAPI's own errors (unknown
route, wrong method, validation, anything unexpected) into this format. A second API (e.g. KServe v2) reuses
both and `error_response`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "REQUEST_ID_HEADER",
    "ErrorBody",
    "RequestIdMiddleware",
    "error_response",
    "install_error_handlers",
    "log_detail",
    "new_request_id",
    "request_id_of",
]

REQUEST_ID_HEADER = "X-Request-Id"
log = logging.getLogger("ray.serve")  # in a Serve replica, this logger writes to the replica's log file


class ErrorBody(BaseModel):
    """The body of every error answer (4xx, 5xx) of jetfleet's HTTP APIs."""

    error: str = Field(description="what went wrong and what to do about it")
    status: int = Field(description="the HTTP status code, repeated")
    request_id: str = Field(description="the id of this request in the service log (also the X-Request-Id header)")
    reason: str | None = Field(None, description="machine-readable cause for scheduler answers, e.g. queue_full")
    retry_after_s: float | None = Field(None, description="seconds after which a retry may succeed")


def new_request_id() -> str:
    """A fresh request id: 32 random hex digits."""
    return uuid.uuid4().hex


def request_id_of(request: Request) -> str:
    """The id `RequestIdMiddleware` gave this request (a fresh one outside the middleware)."""
    rid = request.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else new_request_id()


def error_response(
    status: int,
    message: str,
    request_id: str,
    *,
    headers: dict[str, str] | None = None,
    reason: str | None = None,
    retry_after_s: float | None = None,
) -> JSONResponse:
    """A JSON error answer in the one format (see the module docstring); `message` must hold no internals."""
    body: dict[str, Any] = {"error": message, "status": status, "request_id": request_id}
    if reason is not None:
        body["reason"] = reason
    if retry_after_s is not None:
        body["retry_after_s"] = retry_after_s
    return JSONResponse(body, status_code=status, headers=headers)


def log_detail(request_id: str, what: str, detail: object) -> None:
    """Record for operators what the client's error body leaves out, under the request's id."""
    log.warning("request %s: %s: %s", request_id, what, detail)


class RequestIdMiddleware:
    """Pure ASGI middleware (request bodies still stream to the route): the request's id is its `X-Request-Id`
    header when it has one, else a fresh one, stored in `scope["state"]["request_id"]`.

    Serve's HTTP proxy always sets that header on the request (the client's own, or one it generates) and echoes
    it on the response, so behind Serve the body's id is the header's id. Where no proxy did it (a request
    without the header), this middleware sets the response header itself."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), None)
        rid = given or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        if given:  # an upstream proxy (Serve's) echoes it on the response
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


_STATUS_MESSAGES = {
    404: "no such route; see /docs for the API",
    405: "method not allowed on this route; see /docs for the API",
}


def install_error_handlers(app: FastAPI) -> None:
    """Answer FastAPI's own errors and any unexpected exception in the one format; log what is left out."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = _STATUS_MESSAGES.get(exc.status_code, "request refused")
        return error_response(exc.status_code, message, request_id_of(request), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return error_response(422, f"invalid {where}: {first.get('msg', 'invalid value')}", request_id_of(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id_of(request)
        log.error("request %s: unexpected error", rid, exc_info=exc)
        # this answer bypasses RequestIdMiddleware (Starlette sends it from its outermost layer)
        headers = None if "x-request-id" in request.headers else {REQUEST_ID_HEADER: rid}
        return error_response(500, f"internal error; quote request id {rid} when reporting it", rid, headers=headers)
