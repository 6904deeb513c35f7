"""The one shape of every client error: a 4xx JSON body `{"error": "<field>: what is wrong", "field": ...}`."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class UserError(Exception):
    """A client mistake about `field`, answered `status` by the app's handler."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


def _error(status: int, message: str, field: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": f"{field}: {message}", "field": field}, status_code=status, headers=headers)
