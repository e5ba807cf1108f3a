"""The HTTP edge of the app: the bearer token, JSON-only request bodies with a size cap, and refusals
answered as JSON with their status code."""

from __future__ import annotations

import hmac
import json
from typing import Any, Final

from pydantic import JsonValue
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from durapod.errors import InvalidInput, InvalidJobId, JobConflictError, JobNotFound, JobStateError

__all__ = ["REFUSALS", "Guard", "HTTPProblem", "json_response", "problem_response", "read_json"]


class HTTPProblem(Exception):
    """A request the API refuses: its HTTP status and a JSON body saying why."""

    def __init__(self, status_code: int, error: str, **details: JsonValue) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.body: dict[str, JsonValue] = {"error": error, **details}


def json_response(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status_code)


async def read_json(request: Request, max_body: int) -> Any:
    """The request's JSON body: only ``application/json`` (a form post from another site is refused),
    at most ``max_body`` bytes, counted as it arrives (a lying ``Content-Length`` does not help)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HTTPProblem(415, "write requests must send a JSON body with Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise HTTPProblem(413, f"request body over {max_body} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise HTTPProblem(413, f"request body over {max_body} bytes")
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HTTPProblem(422, f"the body is not JSON: {exc}") from None


class Guard:
    """ASGI middleware: the bearer token on every request but the dashboard's own files, and the API's
    refusals (:class:`HTTPProblem`, durapod errors) as JSON."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        local = path[len(root) :] if root and path.startswith(root) else path
        if self.token is not None and not _is_public_file(local) and not self._authorized(scope):
            response = json_response({"error": "missing or wrong bearer token"}, 401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="durapod"'
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        assert self.token is not None
        expected = f"Bearer {self.token}".encode()
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return hmac.compare_digest(value, expected)
        return False


def _is_public_file(path: str) -> bool:
    """The dashboard's page, script and stylesheet hold no data: a browser loads them without a token."""
    return path in ("", "/", "/favicon.ico") or path.startswith("/static/")


#: The exceptions the API answers with a 4xx status (see :func:`problem_response`).
REFUSALS: Final = (HTTPProblem, JobNotFound, JobStateError, JobConflictError, InvalidInput, InvalidJobId, ValueError)


async def problem_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPProblem):
        return json_response(exc.body, exc.status_code)
    if isinstance(exc, JobNotFound):
        return json_response({"error": str(exc), "job_id": exc.job_id}, 404)
    if isinstance(exc, JobStateError):
        return json_response(
            {"error": str(exc), "job_id": exc.job_id, "status": exc.status, "request": exc.request}, 409
        )
    if isinstance(exc, JobConflictError):
        return json_response({"error": str(exc), "job_id": exc.job_id}, 409)
    return json_response({"error": str(exc)}, 422)  # InvalidInput, InvalidJobId, ValueError: bad input
