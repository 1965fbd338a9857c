"""Optional API keys and CORS.

With FRAMECAST_API_KEYS set, every ``/v1`` and ``/v2`` request needs ``Authorization: Bearer KEY``:
401 without one (``WWW-Authenticate: Bearer``), 403 for a key that is not listed. Keys are compared
with ``hmac.compare_digest`` against every configured key (no early exit), and are never logged.
``/healthz``, ``/readyz``, the web page (``/``, ``/static``) and the API docs stay open;
``/metrics`` too unless FRAMECAST_PROTECT_METRICS is set. CORS (FRAMECAST_CORS_ORIGINS) is off by
default; preflight ``OPTIONS`` requests are answered by the CORS layer before any key is asked for.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Forbidden, FramecastError, Unauthorized, send_error

log = logging.getLogger("framecast.security")

PROTECTED_PREFIXES = ("/v1", "/v2")


def _protected(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def check_key(keys: list[bytes], authorization: bytes | None) -> None:
    """Raise 401/403 unless ``authorization`` is ``Bearer KEY`` with one of ``keys`` (the HTTP
    header, or the gRPC ``authorization`` metadata)."""
    if not authorization:
        raise Unauthorized("this route needs an API key: send 'Authorization: Bearer KEY'")
    scheme, _, token = authorization.partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer KEY'")
    ok = False
    for key in keys:  # every key is compared: the time does not say which one matched
        ok |= hmac.compare_digest(token, key)
    if not ok:
        raise Forbidden("the API key is not valid for this server")


class AuthMiddleware:
    """Bearer API keys on ``/v1``, ``/v2`` (and ``/metrics`` when asked); pure ASGI."""

    def __init__(self, app: ASGIApp, keys: list[str], protect_metrics: bool = False):
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.prefixes = PROTECTED_PREFIXES + (("/metrics",) if protect_metrics else ())

    def check(self, authorization: bytes | None) -> None:
        check_key(self.keys, authorization)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _protected(scope.get("path", ""), self.prefixes):
            return await self._websocket(scope, receive, send)
        if (
            scope["type"] != "http"
            or scope.get("method") == "OPTIONS"
            or not _protected(scope.get("path", ""), self.prefixes)
        ):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        try:
            self.check(headers.get(b"authorization"))
        except FramecastError as e:
            await send_error(send, e)
            return
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket sends its key as ``Authorization: Bearer KEY`` or, from a browser (which
        cannot set headers on one), ``?api_key=KEY``; a missing or wrong key is refused before
        the handshake (HTTP 403 to the client)."""
        from urllib.parse import parse_qs

        auth = dict(scope.get("headers") or ()).get(b"authorization")
        if auth is None:
            query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
            key = (query.get("api_key") or [None])[0]
            auth = None if key is None else b"Bearer " + key.encode("latin-1")
        try:
            self.check(auth)
        except FramecastError as e:
            log.info("websocket %s refused: %s", scope.get("path"), e.message)
            await send({"type": "websocket.close", "code": 1008, "reason": e.message[:120]})
            return
        await self.app(scope, receive, send)


def add_cors(app: FastAPI, origins: list[str]) -> None:
    """Starlette's CORS middleware for ``origins`` (nothing when empty)."""
    if not origins:
        return
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "X-Request-ID",
            "Inference-Header-Content-Length",
        ],
        expose_headers=[
            "X-Request-ID",
            "X-Model",
            "X-Latency-Ms",
            "X-Inference-Ms",
            "X-Batch-Size",
            "X-Winner",
            "Server-Timing",
            "Retry-After",
            "Inference-Header-Content-Length",
        ],
        max_age=600,
    )


def document_security(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI document on the /v1 and /v2 operations."""
    original = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "one of FRAMECAST_API_KEYS: 'Authorization: Bearer KEY'",
        }
        for path, ops in schema.get("paths", {}).items():
            if _protected(path, PROTECTED_PREFIXES):
                for op in ops.values():
                    if isinstance(op, dict):
                        op["security"] = [{"apiKey": []}]
                        op.setdefault("responses", {}).update(
                            {
                                "401": {"description": "no API key sent"},
                                "403": {"description": "the API key is not valid"},
                            }
                        )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
