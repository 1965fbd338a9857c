"""Domain errors and the one place that maps them to HTTP status codes.

Routes, codecs and the runtime raise these; :func:`install` registers the handlers that turn them
(and FastAPI's own validation errors) into ``{"error": kind, "message": ..., "status": code}``.
Anything unexpected is logged and answered 500 with the same shape; no input should get there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("framecast.errors")


class FramecastError(Exception):
    """Base class: ``status`` is the HTTP code, ``kind`` the machine-readable name."""

    status = 500
    kind = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers


class InvalidInput(FramecastError):
    """The upload or a parameter is malformed or inconsistent (names the frame and the fault)."""

    status, kind = 422, "invalid_input"


class FrameDecodeError(InvalidInput):
    """One frame (image or array) cannot be decoded."""

    kind = "frame_decode_error"


class FrameSizeError(InvalidInput):
    """Frames of different sizes, or of the wrong size when ``resize=false``."""

    kind = "frame_size_error"


class TooFewFrames(InvalidInput):
    kind = "too_few_frames"


class WrongTask(InvalidInput):
    """The route needs a model of another task (predict on a classifier, ...)."""

    kind = "wrong_task"


class UnsupportedMediaType(FramecastError):
    status, kind = 415, "unsupported_media_type"


class PayloadTooLarge(FramecastError):
    status, kind = 413, "payload_too_large"


class ModelNotFound(FramecastError):
    status, kind = 404, "model_not_found"


class NotReady(FramecastError):
    """Models are still loading or warming up (or failed to load)."""

    status, kind = 503, "not_ready"

    def __init__(self, message: str):
        super().__init__(message, headers={"Retry-After": "5"})


class Overloaded(FramecastError):
    """A model's queue is full or its call took longer than the configured timeout."""

    status, kind = 503, "overloaded"

    def __init__(self, message: str):
        super().__init__(message, headers={"Retry-After": "1"})


class DeadlineExceeded(FramecastError):
    """The request ran past FRAMECAST_REQUEST_TIMEOUT_S; its queued model work was dropped."""

    status, kind = 504, "deadline_exceeded"


class Unauthorized(FramecastError):
    """No API key was sent (``Authorization: Bearer KEY``) where one is needed."""

    status, kind = 401, "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(FramecastError):
    """The API key sent is not one of FRAMECAST_API_KEYS."""

    status, kind = 403, "forbidden"


class InferenceError(FramecastError):
    """The model call for a batch failed; only the requests of that batch get this error."""

    status, kind = 500, "inference_error"


class LoadError(RuntimeError):
    """A model folder could not be loaded; the message names the folder and the fault (a start-up
    or repository fault, not a request's: the repository route answers it 400 in V2's body)."""


def error_body(status: int, kind: str, message: str) -> dict:
    return {"error": kind, "message": message, "status": status}


def _response(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, kind, message), status_code=status, headers=headers)


def error_response(exc: FramecastError) -> JSONResponse:
    """The answer to a domain error (the full app's handler, and service/http/hotpath.py's)."""
    return _response(exc.status, exc.kind, exc.message, exc.headers)


_HTTP_KINDS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(FramecastError)
    async def _domain(request: Request, exc: FramecastError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body")]
            where = ".".join(loc) or "request"
            value = err.get("input")
            shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
            parts.append(f"{where}: {err.get('msg', 'invalid')}{shown}")
        return _response(422, "invalid_parameter", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs"
        return _response(exc.status_code, kind, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _response(
            500,
            "internal_error",
            f"internal error ({type(exc).__name__}); this is a bug, please report it",
        )
