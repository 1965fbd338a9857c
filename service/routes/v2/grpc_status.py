"""The gRPC status of each domain error, as the V2 gRPC service answers (the message is the same
as over HTTP): the map from an HTTP status to ``grpc.StatusCode``'s name, beside the one error map
of ``service/errors.py``, which renders the HTTP protocols."""

from __future__ import annotations

from service.errors import FramecastError

# the gRPC status (grpc.StatusCode's name) of each HTTP status; any other status is INTERNAL
GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "FAILED_PRECONDITION",
    410: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def render_grpc(exc: FramecastError) -> tuple[str, str, tuple[tuple[str, str], ...], int]:
    """How the gRPC service answers ``exc``: the status name (``grpc.StatusCode[...]``), the
    message, trailing metadata (``retry-after`` where HTTP sends ``Retry-After``) and the HTTP
    status it stands for (for the metrics)."""
    retry = (exc.headers or {}).get("Retry-After")
    trailers = () if retry is None else (("retry-after", str(retry)),)
    return GRPC_CODES.get(exc.status, "INTERNAL"), exc.message, trailers, exc.status
