"""The one shape of every client error: a 4xx JSON body `{"error": "<field>: what is wrong", "field": ...}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from serving.batching import ScoringError

log = logging.getLogger("serving")


class UserError(Exception):
    """A client mistake about `field`, answered `status` by the app's handler."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


def _error(status: int, message: str, field: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": f"{field}: {message}", "field": field}, status_code=status, headers=headers)


def add_handlers(app: FastAPI) -> None:
    """Every error the app can meet, in the JSON shape: Starlette's own 4xx, validation, UserError, and a
    failed scoring (the server's fault, 500)."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        """Starlette's own 4xx (unknown path, wrong method, a body FastAPI cannot parse) in the JSON shape."""
        path = request.url.path
        if exc.status_code == 404:
            return _error(404, f"no endpoint {path[:200]!r}", "path")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {path}", "method", exc.headers)
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {str(cause)[:200]}" if cause is not None else str(exc.detail)
        if exc.status_code == 400:
            return _error(400, f"invalid JSON ({reason})", "body")
        return _error(exc.status_code, reason, "body")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return _error(400, f"invalid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", "body")
        field = ".".join(str(x) for x in first.get("loc", ())[1:]) or "body"
        return _error(422, first.get("msg", "invalid"), field)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(ScoringError)
    async def scoring_error(request: Request, exc: ScoringError):
        # Validation admits only what the tokenizer takes, so this is the server's fault: one log line, and
        # the batcher has already kept it from the other requests of its batch.
        log.error("%s %s: scoring failed: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": "internal error while scoring this request", "field": None}, status_code=500)
