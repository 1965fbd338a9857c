"""The two busiest routes without the router: ``POST /v1/models/{name}/classify`` and
``/predict`` (pure ASGI, the innermost middleware).

On a GPU the model is cheap and the CPU a request costs outside it decides how many requests a
box answers. For these two routes most of that CPU went to the framework, not to the work:
matching the path against every route in turn, solving the dependencies, validating the query
through pydantic, the exception layer. This layer answers them directly: it matches the path
with one split, reads the query with the same rules, and calls the very route functions of
``service/routes/v1/predict.py`` (so the answers are the same, byte for byte). The middlewares
outside it (request log, metrics, API keys, CORS, body limit and deadline) run as before.

Anything it is not sure of goes to the full app, untouched: a query value FastAPI might read
differently or reject (then FastAPI answers, with its usual 422), a repeated parameter, a
``root_path``, another method or path. So a request gets the same answer with
FRAMECAST_HOT_PATH=false (the bench and the tests compare both).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import FramecastError, error_response

PREFIX = "/v1/models/"


@functools.cache
def _specs() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """action → (its parameters by name, their defaults): read once."""
    from service.routes.params import ROUTES

    out = {}
    for action, params in ROUTES.items():
        spec = {p.name: p for p in params}
        out[action] = (spec, {k: p.default for k, p in spec.items()})
    return out


def query_values(action: str, query_string: bytes) -> dict[str, Any] | None:
    """The route's parameters from the query (defaults for those absent), or None when the
    full app should read them (a value it might read differently, or reject)."""
    spec, defaults = _specs()[action]
    values = dict(defaults)
    if not query_string:
        return values
    seen: set[str] = set()
    for key, raw in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key not in spec:
            continue  # undeclared: FastAPI ignores them (start, stride: read_upload reads them)
        if key in seen:
            return None
        seen.add(key)
        value = spec[key].read(raw)
        if value is None:
            return None
        values[key] = value
    return values


def route_table() -> dict[str, tuple[Any, Callable]]:
    """action → (its APIRoute: the log and metrics read its path template; its endpoint)."""
    import inspect

    from fastapi.routing import APIRoute

    from service.routes.params import ROUTES
    from service.routes.v1 import predict

    table = {}
    for route in predict.router.routes:
        if not isinstance(route, APIRoute):  # every route of the router is one (router.post)
            continue
        for action in ROUTES:
            if route.path == PREFIX + "{name}/" + action and "POST" in (route.methods or ()):
                table[action] = (route, route.endpoint)
    if set(table) != set(ROUTES):  # a renamed route must not silently lose its hot path
        raise RuntimeError(
            f"service/http/hotpath.py: routes {sorted(set(ROUTES) - set(table))} moved"
        )
    for action, (_, endpoint) in table.items():  # the table is the routes' own declaration
        declared = set(inspect.signature(endpoint).parameters) - {
            "request", "runtime", "settings", "name"
        }  # fmt: skip
        if declared != {p.name for p in ROUTES[action]}:
            raise RuntimeError(
                f"service/routes/params.py: ROUTES[{action!r}] does not match the route's "
                f"query parameters {sorted(declared)}"
            )
    return table


class HotPathMiddleware:
    """Answers classify and predict without the router; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, *, api: Any) -> None:
        self.app, self.api = app, api  # api: the FastAPI app (its state)
        self.routes = route_table()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return await self.app(scope, receive, send)
        name, _, action = path[len(PREFIX) :].partition("/")
        target = self.routes.get(action) if name else None
        if target is None:
            return await self.app(scope, receive, send)
        values = query_values(action, scope.get("query_string", b""))
        if values is None:
            return await self.app(scope, receive, send)
        route, endpoint = target
        scope["route"] = route  # what the router would set: the log and metrics read them
        scope["path_params"] = {"name": name}
        state = self.api.state
        try:
            response = await endpoint(
                Request(scope, receive), state.runtime, state.settings, name=name, **values
            )
        except FramecastError as e:  # what errors.install answers for the full app
            response = error_response(e)
        await response(scope, receive, send)
