"""API keys and scopes on HTTP and WebSockets (a pure-ASGI layer), and CORS.

With keys on (FRAMECAST_API_KEYS or FRAMECAST_API_KEYS_FILE, ``service/auth/keys.py``), every
``/v1`` and ``/v2`` request needs ``Authorization: Bearer KEY``: 401 without one
(``WWW-Authenticate: Bearer``), 403 for a key that is not listed or whose scopes do not allow the
route (:data:`RULES`: one table, matched once per request; a route it does not name needs any
valid key), 429 past the key's own rate or concurrency (``service/auth/quotas.py``). The key's
principal is then on the request's scope (``service.auth.principals.principal_of``) for the routes
that record or check an owner. Errors answer in the protocol of the path (V2's body under
``/v2``). Every refusal is one line of the audit log (``framecast.audit``) naming the key's id,
never its secret (at most :data:`AUDIT_LINES` a window, then a count).

A WebSocket (``/v1/streams/{id}/ws``) shows its key as the ``Authorization`` header (programs)
or, from a browser (which cannot set headers on one), as a single-use ticket (``?ticket=``,
``service/auth/tickets.py``); ``?api_key=`` is refused naming the ticket route, unless
FRAMECAST_WS_ALLOW_URL_KEY is set (a warning, once). A refused socket is closed before the
handshake (code 1008, the reason saying why).

``/healthz``, ``/readyz``, the web page (``/``, ``/static``) and the API docs stay open;
``/metrics`` too unless FRAMECAST_PROTECT_METRICS is set (then it needs the admin scope). CORS
(FRAMECAST_CORS_ORIGINS) is off by default; preflight ``OPTIONS`` requests are answered by the
CORS layer before any key is asked for. With keys off none of this is installed: no request
pays for it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth.keys import KeyRing
from service.auth.principals import PRINCIPAL, Principal
from service.auth.principals import Scope as Need
from service.auth.quotas import Quotas
from service.auth.tickets import HOW, redeem
from service.errors import Forbidden, FramecastError, Unauthorized, send_error
from service.http.logs import loggable

log = logging.getLogger("framecast.security")
audit = logging.getLogger("framecast.audit")

PROTECTED_PREFIXES = ("/v1", "/v2")

# the scope each route needs, by path (first match wins; a path none names needs any valid key)
RULES: tuple[tuple[str, Need], ...] = (
    (r"/v2/repository(?:/.*)?", Need.ADMIN),  # Triton's model-repository API group
    (r"/metrics", Need.ADMIN),  # only when FRAMECAST_PROTECT_METRICS (else it stays open)
    (r"/v1/models/[^/]+/streams", Need.STREAM),
    (r"/v1/compare/streams", Need.STREAM),
    (r"/v1/streams(?:/.*)?", Need.STREAM),  # the WebSocket and the ticket route too
    (r"/v1/evaluations(?:/.*)?", Need.EVALUATE),
    (r"/v1/models/[^/]+/(?:predict|classify)", Need.INFER),
    (r"/v1/compare/.+", Need.INFER),
    (r"/v2/models/[^/]+(?:/versions/[^/]+)?/infer", Need.INFER),  # sequences: stream too
)
_RULES = re.compile("|".join(f"(?P<r{i}>{pattern})" for i, (pattern, _) in enumerate(RULES)))
AUDIT_LINES, AUDIT_WINDOW_S = 20, 10.0  # refusal lines per window; past them, one count
URL_KEY_REFUSED = (
    f"no API key in a WebSocket URL: get a ticket with {HOW} (key in the Authorization header), "
    "then connect with ?ticket="
)


def scope_for(path: str) -> Need | None:
    """The scope a request to ``path`` needs (None: any valid key)."""
    m = _RULES.fullmatch(path)
    return None if m is None else RULES[int(m.lastgroup[1:])][1]  # type: ignore[index]


def _protected(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v
    return None


class _Audit:
    """Refusal lines, at most AUDIT_LINES per AUDIT_WINDOW_S (a flood of bad keys must not
    flood the log), then one line with the count of the rest."""

    def __init__(self) -> None:
        self.window_at, self.lines, self.unlogged = float("-inf"), 0, 0

    def refused(self, method: str, path: str, e: FramecastError, who: Principal | None) -> None:
        now = time.monotonic()
        if now - self.window_at >= AUDIT_WINDOW_S:
            if self.unlogged:
                audit.warning("%d more refusals in the last %.0f s (not logged one by one)",
                              self.unlogged, AUDIT_WINDOW_S)  # fmt: skip
            self.window_at, self.lines, self.unlogged = now, 0, 0
        self.lines += 1
        if self.lines > AUDIT_LINES:
            self.unlogged += 1
            return
        audit.warning(
            "refused %s %s: %s, key %s: %s",
            method, loggable(path), e.kind,
            repr(who.id) if who is not None else "unknown", e.message,
        )  # fmt: skip


class AuthMiddleware:
    """API keys, scopes and per-key quotas on ``/v1``, ``/v2`` (and ``/metrics`` when asked);
    pure ASGI. ``api``: the FastAPI app (its stream store keeps the WebSocket tickets)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing,
        quotas: Quotas,
        api: FastAPI,
        protect_metrics: bool = False,
        allow_url_key: bool = False,
    ):
        self.app, self.keys, self.quotas, self.api = app, keys, quotas, api
        self.prefixes = PROTECTED_PREFIXES + (("/metrics",) if protect_metrics else ())
        self.allow_url_key, self._warned = allow_url_key, False
        self.audit = _Audit()

    def admit(self, p: Principal, path: str) -> Callable[[], None] | None:
        """403 when ``p``'s scopes do not allow ``path``, 429 past its quotas; what ends the
        request's count (None: nothing)."""
        need = scope_for(path)
        if need is not None and not p.can(need):
            raise Forbidden(
                f"key {p.id!r} may not call this route: it needs the {need.value} scope "
                f"(the key has {', '.join(sorted(p.scopes))})"
            )
        return self.quotas.admit(p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" and _protected(scope["path"], self.prefixes):
            return await self._websocket(scope, receive, send)
        if kind != "http" or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if not _protected(path, self.prefixes):
            return await self.app(scope, receive, send)
        p = None
        try:
            p = self.keys.authenticate(_header(scope, b"authorization"))
            release = self.admit(p, path)
        except FramecastError as e:
            self.audit.refused(scope["method"], path, e, p)
            await send_error(send, e, scope)
            return
        scope[PRINCIPAL] = p
        if release is None:
            return await self.app(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        finally:
            release()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The key as a header, or a ticket; a refusal closes the socket before the handshake
        (HTTP 403 to the client; code 1008 and the reason to an ASGI test client)."""
        path, p = scope["path"], None
        release = None
        try:
            p = await self._ws_principal(scope)
            release = self.admit(p, path)
        except FramecastError as e:
            self.audit.refused("WebSocket", path, e, p)
            await send({"type": "websocket.close", "code": 1008, "reason": e.message[:120]})
            return
        scope[PRINCIPAL] = p
        try:
            await self.app(scope, receive, send)
        finally:
            if release is not None:
                release()

    async def _ws_principal(self, scope: Scope) -> Principal:
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        if "api_key" in query and not self.allow_url_key:  # with a header too: it was sent
            raise Unauthorized(URL_KEY_REFUSED)
        auth = _header(scope, b"authorization")
        if auth is not None:
            return self.keys.authenticate(auth)
        ticket = (query.get("ticket") or [None])[0]
        path: str = scope["path"]
        if ticket is not None:
            sid = path.removeprefix("/v1/streams/").removesuffix("/ws")
            return await redeem(self.api.state.streams, self.keys, ticket, sid)
        key = (query.get("api_key") or [None])[0]
        if key is None:
            raise Unauthorized(f"a WebSocket needs a ticket ({HOW}) or an Authorization header")
        if not self.allow_url_key:
            raise Unauthorized(URL_KEY_REFUSED)
        if not self._warned:
            self._warned = True
            log.warning(
                "a WebSocket sent its API key in its URL (?api_key=), accepted because "
                "FRAMECAST_WS_ALLOW_URL_KEY is set: URLs reach proxies' logs and browser "
                "history; the page uses tickets (%s)",
                HOW,
            )
        return self.keys.check(key.encode("latin-1"))


def add_cors(app: FastAPI, origins: list[str]) -> None:
    """Starlette's CORS middleware for ``origins`` (nothing when empty)."""
    if not origins:
        return
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
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
    """Declare the bearer scheme in the OpenAPI document on the /v1 and /v2 operations, with the
    scope each needs."""
    original = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key (FRAMECAST_API_KEYS, or a key of FRAMECAST_API_KEYS_FILE "
            "with the route's scope): 'Authorization: Bearer KEY'",
        }
        for path, ops in schema.get("paths", {}).items():
            if _protected(path, PROTECTED_PREFIXES):
                need = scope_for(re.sub(r"\{[^}]+\}", "x", path))
                for op in ops.values():
                    if isinstance(op, dict):
                        op["security"] = [{"apiKey": []}]
                        if need is not None:
                            op["x-framecast-scope"] = need.value
                        op.setdefault("responses", {}).update(
                            {
                                "401": {"description": "no API key sent"},
                                "403": {"description": "the API key is not valid, or lacks "
                                        f"the {need.value if need else 'route'} scope"},
                                "429": {"description": "past one of the key's own limits"},
                            }
                        )  # fmt: skip
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
