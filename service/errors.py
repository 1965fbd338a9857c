"""Domain errors and the one map from each failure to its HTTP answer.

Every failure kind is a :class:`FramecastError` subclass whose ``status`` and ``kind`` are the
map. Routes, codecs, the runtime and the pure-ASGI layers (body limit, API keys, the hot path)
raise them; FastAPI's own faults (validation, routing) become them (:func:`from_validation`,
:func:`from_http`). The answer is rendered in one place, :func:`render`, in the protocol of the
path (:func:`protocol_for`, whichever layer answers: a route, a layer in front of the router, the
connection layer below ASGI): ``{"error": kind, "message": ..., "status": code}`` for framecast's
own API, and under ``/v2`` the Open Inference Protocol's ``{"error": "..."}`` (with 400 for a bad
request, as the protocol asks). :func:`install` registers the app's handlers; :func:`send_error`
answers from an ASGI layer. Anything unexpected is logged and answered 500; no input should get
there. The gRPC status of each error is ``service/routes/v2/grpc_status.py``'s.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from http import HTTPStatus

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


class InvalidParameter(InvalidInput):
    """A query, path or form parameter FastAPI's validation refused."""

    kind = "invalid_parameter"


class BadRequest(FramecastError):
    """A request that does not follow its protocol (a V2 body, a repository request)."""

    status, kind = 400, "bad_request"


class LoadFailed(BadRequest):
    """A repository load whose model could not be loaded or warmed (Triton answers 400)."""

    kind = "load_failed"


class HTTPError(FramecastError):
    """A fault the router itself found (no such route, a method not allowed, ...)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message, headers=headers)
        self.status, self.kind = status, _HTTP_KINDS.get(status, "http_error")


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


class BodyTimeout(FramecastError):
    """The body stalled or missed the request deadline; the connection closes after the answer."""

    status, kind = 408, "request_timeout"

    def __init__(self, message: str):
        super().__init__(message, headers={"Connection": "close"})


class HeaderTimeout(BodyTimeout):
    """The request line and headers were not complete within FRAMECAST_HEADER_TIMEOUT_S (a client
    trickling them, e.g. slowloris); answered below ASGI (:func:`raw_answer`), then closed."""


class TooManyConnections(FramecastError):
    """FRAMECAST_MAX_CONNECTIONS connections are open: a new one is answered at once, closed."""

    status, kind = 503, "too_many_connections"

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(
            message, headers={"Retry-After": str(retry_after_s), "Connection": "close"}
        )


class ShuttingDown(FramecastError):
    """The server is draining after SIGTERM: requests in flight finish, new ones are refused so
    that the client retries elsewhere (another worker, another replica)."""

    status, kind = 503, "shutting_down"

    def __init__(self, message: str):
        super().__init__(message, headers={"Retry-After": "1", "Connection": "close"})


class ClientGone(Exception):
    """The client disconnected before its body was complete: nothing to answer.
    :class:`~service.http.limits.BodyLimitMiddleware` logs it as one INFO line and records
    status 499 (nginx's 'client closed request') for the access log and metrics, never a 500."""

    status = 499

    def __init__(self, received: int):
        super().__init__(f"client disconnected after {received} bytes of the body")
        self.received = received


class ModelNotFound(FramecastError):
    status, kind = 404, "model_not_found"


class _RetryLater(FramecastError):  # 503 with Retry-After
    status = 503

    def __init__(self, message: str, retry_after_s: int = 5):
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class NotReady(_RetryLater):  # models are still loading or warming up (or failed to load)
    kind = "not_ready"


class Overloaded(_RetryLater):
    """A model's queue is full or its call took longer than the configured timeout."""

    kind = "overloaded"

    def __init__(self, message: str):
        super().__init__(message, 1)


class DeadlineExceeded(FramecastError):
    """The request ran past FRAMECAST_REQUEST_TIMEOUT_S; its queued model work was dropped."""

    status, kind = 504, "deadline_exceeded"


class Unauthorized(FramecastError):
    """No API key was sent (``Authorization: Bearer KEY``) where one is needed."""

    status, kind = 401, "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(FramecastError):  # a key that is not valid, or whose scopes forbid the route
    status, kind = 403, "forbidden"


class TooManyRequests(FramecastError):
    """A key's own limit (its streams, requests per second, requests in flight, jobs): 429 with
    Retry-After and a message naming the limit."""

    status, kind = 429, "too_many_requests"

    def __init__(self, message: str, retry_after_s: float = 1):
        super().__init__(message, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class StreamNotFound(FramecastError):
    """No stream has this id in this server (never opened, or forgotten long ago)."""

    status, kind = 404, "stream_not_found"


class StreamGone(FramecastError):
    """The stream expired, was deleted, or its model was unloaded or swapped."""

    status, kind = 410, "stream_gone"


class StreamConflict(FramecastError):
    """``step=`` says the client is at another step than the stream (a frame was lost), or the
    stream was ended or started again while a request was applied to it."""

    status, kind = 409, "step_mismatch"


class TooManyStreams(_RetryLater):  # the server (or a model) holds all the streams it may
    kind = "too_many_streams"


class StoreUnavailable(_RetryLater):  # the stream store did not answer: the stream stays
    kind = "store_unavailable"


class UnsafeArchive(InvalidInput):  # an archive member path with '..', a link, a lying header
    kind = "unsafe_archive"


class JobNotFound(FramecastError):
    status, kind = 404, "job_not_found"


class JobNotDone(FramecastError):  # a report asked for before its job is done
    status, kind = 409, "job_not_done"


class TooManyJobs(_RetryLater):  # FRAMECAST_JOB_MAX_CONCURRENT jobs are queued or running
    kind = "too_many_jobs"


class InferenceError(FramecastError):
    """The model call for a batch failed; only the requests of that batch get this error."""

    status, kind = 500, "inference_error"


class LoadError(RuntimeError):
    """A model folder could not be loaded; the message names the folder and the fault (a start-up
    or repository fault, not a request's: the repository route answers it 400 in V2's body)."""


_HTTP_KINDS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


class Protocol(StrEnum):
    """Whose error body an answer takes."""

    FRAMECAST = "framecast"  # {"error": kind, "message": ..., "status": code}
    V2 = "v2"  # the Open Inference Protocol: {"error": "..."}


def protocol_for(path: str) -> Protocol:
    """The protocol of ``path``: V2 under ``/v2`` (every route, an unknown one, and whatever
    layer answers), framecast's own elsewhere."""
    return Protocol.V2 if path == "/v2" or path.startswith("/v2/") else Protocol.FRAMECAST


def protocol_of(request: Request) -> Protocol:
    return protocol_for(request.scope.get("path", ""))


def render(
    exc: FramecastError, protocol: Protocol = Protocol.FRAMECAST
) -> tuple[int, dict, Mapping[str, str] | None]:
    """The status, body and headers that answer ``exc`` in ``protocol``."""
    if protocol is Protocol.V2:
        status = 400 if exc.status == 422 else exc.status  # V2 uses 400 for bad requests
        return status, {"error": exc.message}, exc.headers
    body = {"error": exc.kind, "message": exc.message, "status": exc.status}
    return exc.status, body, exc.headers


def render_websocket(exc: FramecastError) -> tuple[str, int | None]:
    """How a WebSocket answers ``exc``: the error's JSON text (as the HTTP routes answer), and
    the close code (:func:`websocket_close_code`) when the socket cannot go on (no such stream,
    it ended), else None (the socket stays open for the next message)."""
    _, body, _ = render(exc)
    return json.dumps(body), (websocket_close_code(exc) if exc.status in (404, 410) else None)


def websocket_close_code(exc: FramecastError) -> int:
    """A WebSocket's close code for ``exc``: 4000 + the HTTP status (4404, 4410, 4422, …)."""
    return 4000 + exc.status


def error_response(exc: FramecastError, protocol: Protocol = Protocol.FRAMECAST) -> JSONResponse:
    """The answer to a domain error (the app's handlers, and service/http/hotpath.py's)."""
    status, body, headers = render(exc, protocol)
    return JSONResponse(body, status_code=status, headers=headers)


async def send_error(
    send: Callable[[dict], Awaitable[None]],
    exc: FramecastError,
    scope: Mapping | None = None,
    *,
    close: bool = False,
    more_body: bool = False,
) -> None:
    """Answer ``exc`` from a pure-ASGI layer in front of the router, in the protocol of the
    request's path (``scope``); ``close`` asks the server to close the connection after it,
    ``more_body`` leaves the response open for the caller to end."""
    protocol = protocol_for(scope.get("path", "")) if scope is not None else Protocol.FRAMECAST
    status, body, headers = render(exc, protocol)
    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    extra = {k.lower(): v for k, v in (headers or {}).items()}
    if close:
        extra["connection"] = "close"
    head += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw, "more_body": more_body})


def raw_answer(exc: FramecastError, path: str = "") -> bytes:
    """``exc`` as a whole HTTP/1.1 response, for the connection layer below ASGI
    (service/http/connections.py), in the protocol of ``path`` (the request line's, when it was
    read; framecast's form when not)."""
    status, body, headers = render(exc, protocol_for(path))
    raw = json.dumps(body).encode()
    phrase = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {phrase}", "content-type: application/json"]
    lines += [f"content-length: {len(raw)}", "connection: close"]
    lines += [f"{k.lower()}: {v}" for k, v in (headers or {}).items() if k.lower() != "connection"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + raw


def from_validation(exc: RequestValidationError) -> InvalidParameter:
    """FastAPI's validation error as one message naming each parameter and its fault."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body")]
        where = ".".join(loc) or "request"
        value = err.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
        parts.append(f"{where}: {err.get('msg', 'invalid')}{shown}")
    return InvalidParameter("; ".join(parts) or "invalid request")


def from_http(exc: StarletteHTTPException, request: Request) -> HTTPError:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs"
    return HTTPError(exc.status_code, message, headers=getattr(exc, "headers", None))


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``: every fault rendered in the protocol of its path."""

    def answer(request: Request, exc: FramecastError) -> JSONResponse:
        return error_response(exc, protocol_of(request))

    @app.exception_handler(FramecastError)
    async def _domain(request: Request, exc: FramecastError):
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return answer(request, from_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return answer(request, from_http(exc, request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return answer(
            request,
            FramecastError(
                f"internal error ({type(exc).__name__}); this is a bug, please report it"
            ),
        )
