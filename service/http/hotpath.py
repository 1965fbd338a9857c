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

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import FramecastError, error_response

PREFIX = "/v1/models/"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _boolean(raw: str) -> bool | None:
    value = raw.lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _integer(low: int, high: int | None) -> Callable[[str], int | None]:
    def read(raw: str) -> int | None:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
            return None
        value = int(raw)
        return value if value >= low and (high is None or value <= high) else None

    return read


def _choice(*allowed: str) -> Callable[[str], str | None]:
    return lambda raw: raw if raw in allowed else None


_FIT = _choice("stretch", "pad", "crop")
# each route's query parameters as FastAPI declares them (service/routes/v1/predict.py), with a
# reader that returns None for anything it would not read exactly the same way
PARAMS: dict[str, dict[str, tuple[Callable[[str], Any], Any]]] = {
    "classify": {
        "top_k": (_integer(1, 1000), 3),
        "resize": (_boolean, True),
        "fit": (_FIT, "stretch"),
    },
    "predict": {
        "horizon": (_integer(1, None), 1),
        "output": (_choice("json", "png", "gif", "npy"), "json"),
        "raw": (_boolean, False),
        "resize": (_boolean, True),
        "fit": (_FIT, "stretch"),
    },
}


def query_values(action: str, query_string: bytes) -> dict[str, Any] | None:
    """The route's parameters from the query (defaults for those absent), or None when the
    full app should read them (a value it might read differently, or reject)."""
    spec = PARAMS[action]
    values = {k: default for k, (_, default) in spec.items()}
    if not query_string:
        return values
    seen: set[str] = set()
    for key, raw in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key not in spec:
            continue  # undeclared: FastAPI ignores them (start, stride: read_upload reads them)
        if key in seen:
            return None
        seen.add(key)
        value = spec[key][0](raw)
        if value is None:
            return None
        values[key] = value
    return values


def route_table() -> dict[str, tuple[Any, Callable]]:
    """action → (its APIRoute: the log and metrics read its path template; its endpoint)."""
    from service.routes.v1 import predict

    table = {}
    for route in predict.router.routes:
        for action in PARAMS:
            if route.path == PREFIX + "{name}/" + action and "POST" in route.methods:
                table[action] = (route, route.endpoint)
    if set(table) != set(PARAMS):  # a renamed route must not silently lose its hot path
        raise RuntimeError(
            f"service/http/hotpath.py: routes {sorted(set(PARAMS) - set(table))} moved"
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
