"""Every error leaves the server as `{"error": {"code", "message", "details"}}`.

Engram's exceptions map to 4xx by class; FastAPI's request validation and Starlette's HTTP
errors (unknown route, wrong method) are rewritten into the same shape. Anything else is a
bug: logged with its traceback and answered 500 without internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from engram.errors import (
    ConfigError,
    EngramError,
    NotFoundError,
    StoreError,
    ValidationError,
)
from engram.server.access import ForbiddenError

log = logging.getLogger("engram.server")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable machine-readable code, e.g. not_found, invalid_input.")
    message: str = Field(description="What went wrong, for people.")
    details: Any = Field(default=None, description="Structured extras (e.g. field errors).")


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class ApiError(Exception):
    """An error the server raises itself (auth, limits): status, code, message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


_STATUS: list[tuple[type[EngramError], int]] = [
    (ValidationError, 422),
    (NotFoundError, 404),
    (ForbiddenError, 403),
    (StoreError, 503),  # locked past the timeout, disk full: the client may retry
    (ConfigError, 500),  # the server is misconfigured, not the request
]

# Documented on every route (the OpenAPI spec lists what a client can meet).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in [
        (400, "The body is not valid JSON (or not UTF-8)."),
        (401, "Missing, unknown or revoked API key."),
        (403, "The key's scope does not allow this operation."),
        (404, "No such memory or owner for this key."),
        (413, "Request body larger than server.max_body_bytes."),
        (415, "The body was not sent as Content-Type: application/json."),
        (422, "Invalid input."),
        (429, "Rate limit of this key exceeded; see Retry-After."),
        (503, "The store is busy or failing (locked past its timeout, disk full); retry."),
    ]
}


def status_of(exc: EngramError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _json_safe(errors: list[Any]) -> list[dict[str, Any]]:
    """FastAPI's field errors without the echoed input (it may be huge or binary)."""
    out = []
    for err in errors:
        if isinstance(err, dict):
            loc = [p if isinstance(p, int | str) else str(p) for p in err.get("loc", ())]
            out.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type"))})
    return out


async def _engram_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngramError)
    status = status_of(exc)
    if status >= 500:
        log.error("request failed: %s", exc)
    details = {"index": exc.index} if hasattr(exc, "index") else None
    return error_response(status, exc.code, str(exc), details)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _json_safe(list(exc.errors()))
    body_errors = [e for e in errors if e["loc"][:1] == ["body"]]
    if any(e["type"] == "json_invalid" for e in body_errors):  # malformed JSON: a 400
        bad = next(e for e in body_errors if e["type"] == "json_invalid")
        where = ".".join(str(p) for p in bad["loc"][1:])
        at = f" at character {where}" if where else ""
        return error_response(400, "invalid_json", f"the body is not valid JSON{at}")
    content_type = request.headers.get("content-type", "")
    if body_errors and not _is_json(content_type):
        got = f"got {content_type!r}" if content_type else "none was given"
        return error_response(
            415,
            "unsupported_media_type",
            f"send the body as JSON with Content-Type: application/json ({got})",
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return error_response(422, "invalid_request", message, {"errors": errors})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names one route's methods; list every route's
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(exc.status_code, code, str(exc.detail), None, headers or None)


def _allowed_methods(request: Request) -> list[str]:
    allowed: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        methods = getattr(route, "methods", None)
        if match is not Match.NONE and methods:
            allowed |= set(methods)
    return sorted(allowed)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected server error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EngramError, _engram_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
