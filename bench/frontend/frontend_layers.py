"""What each pure-ASGI layer of framecast costs a classify request, in CPU microseconds, measured
in this process: every layer alone around an app that reads the body and answers 200, called
``n`` times with the same request, less the same app called alone (bench/frontend/frontend.py
writes the result under ``"layers"``; ``python3 bench/frontend/frontend_layers.py`` prints it).

The key layer is measured as a server runs it in each configuration: keys off (not installed:
0), FRAMECAST_API_KEYS (a principal with every scope: one hash, one lookup, no scope check), and
a keys file with the route's scope checked, with and without per-key limits (a rate and a cap on
requests in flight). These are the layers' own costs; bench/frontend/frontend.py's wrk rows measure
the whole server (the HTTP parser, routing, decoding, the model, the answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECRET = "fc_bench-layer-key-0123456789abcdef"
BODY = b'{"frames": ["' + b"A" * 6000 + b'"]}'  # about the bench's JSON body, for the receive
PATH = "/v1/models/conv2d_lstm_classify/classify"


def _scope(auth: bool) -> dict:
    """The request as wrk sends the bench's (no Accept-Encoding), with the key when ``auth``."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"user-agent", b"wrk"),
    ]
    if auth:
        headers.append((b"authorization", f"Bearer {SECRET}".encode()))
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _null_app(scope: dict, receive: Callable, send: Callable) -> None:
    """What the layers wrap: reads the body, answers a small JSON 200 (a classify answer)."""
    while (await receive()).get("more_body"):
        pass
    body = b'{"model": "m", "scores": [0.1, 0.9]}' * 8
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def _drive(app: Callable, scope: dict, n: int) -> float:
    """CPU seconds of ``n`` requests through ``app``."""

    async def receive() -> dict:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict) -> None:
        return None

    cpu0 = time.thread_time()
    for _ in range(n):
        await app(dict(scope, state={}), receive, send)
    return time.thread_time() - cpu0


def _keys_file(folder: Path, limits: str) -> Path:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    path = folder / "keys.toml"
    path.write_text(f'[[keys]]\nid = "bench"\nsha256 = "{digest}"\nscopes = ["infer"]\n{limits}\n')
    return path


def layers(folder: Path) -> dict[str, tuple[Callable[[Callable], Callable], bool]]:
    """name → (wrap(app) → the layer around app, whether the request carries a key)."""
    import logging

    from service.app import _MetricsMiddleware
    from service.auth.keys import KeyRing
    from service.auth.quotas import Quotas
    from service.config import Settings
    from service.http.compression import CompressionMiddleware
    from service.http.drain import Drain, DrainMiddleware
    from service.http.limits import BodyLimitMiddleware
    from service.http.logs import RequestLogMiddleware
    from service.http.security import AuthMiddleware
    from service.runtime.server import Runtime
    from service.telemetry import Metrics

    logging.getLogger("framecast.access").setLevel(logging.WARNING)  # a line built, not written
    s = Settings(models_dir=folder)
    metrics = Metrics()
    runtime = Runtime(s, metrics=metrics)

    class _Api:  # what the key layer reads of the app (the stream store, for tickets)
        state = None

    def auth(settings: Settings) -> Callable[[Callable], Callable]:
        ring = KeyRing(settings)
        return lambda app: AuthMiddleware(app, keys=ring, quotas=Quotas(), api=_Api())  # type: ignore[arg-type]

    env = Settings(models_dir=folder, api_keys=SECRET)
    scoped = Settings(models_dir=folder, api_keys_file=_keys_file(folder, ""))
    (folder / "limited").mkdir(exist_ok=True)
    limited = Settings(
        models_dir=folder,
        api_keys_file=_keys_file(folder / "limited", "rate_per_s = 1e9\nmax_concurrent = 100000"),
    )
    return {
        "request_log": (lambda app: RequestLogMiddleware(app, models=lambda: ()), False),
        "drain": (lambda app: DrainMiddleware(app, drain=Drain(), grace_s=30), False),
        "metrics": (lambda app: _MetricsMiddleware(app, metrics, runtime), False),
        "keys_off": (lambda app: app, False),  # not installed
        "keys_env": (auth(env), True),
        "keys_file_scoped": (auth(scoped), True),
        "keys_file_scoped_with_limits": (auth(limited), True),
        "compression": (lambda app: CompressionMiddleware(app, min_bytes=1024), False),
        "body_limit_and_deadline": (
            lambda app: BodyLimitMiddleware(
                app, max_bytes=64 << 20, timeout_s=30.0, body_idle_s=10.0
            ),
            False,
        ),  # fmt: skip
    }


def layer_costs(n: int = 20000, rounds: int = 5) -> dict:
    """Each layer's CPU per request (µs): the median of ``rounds`` runs of ``n`` requests, less
    the wrapped app's own (the ``app_alone_us`` figure)."""
    with tempfile.TemporaryDirectory(prefix="framecast-layers-") as tmp:
        table = layers(Path(tmp))

        async def measure() -> dict:
            runs: dict[str, list[float]] = {name: [] for name in ["app_alone", *table]}
            for _ in range(rounds):  # interleaved: a slow moment falls on every layer alike
                runs["app_alone"].append(await _drive(_null_app, _scope(False), n))
                for name, (wrap, keyed) in table.items():
                    runs[name].append(await _drive(wrap(_null_app), _scope(keyed), n))
            return {k: statistics.median(v) / n * 1e6 for k, v in runs.items()}

        per = asyncio.run(measure())
    alone = per.pop("app_alone")
    out: dict[str, Any] = {
        "what": "CPU microseconds one classify request spends in each pure-ASGI layer alone "
        "(median of rounds, less the wrapped app's own), measured in-process by "
        "bench/frontend/frontend_layers.py",
        "requests_per_round": n,
        "rounds": rounds,
        "app_alone_us": round(alone, 2),
        "us_per_request": {k: round(max(0.0, v - alone), 2) for k, v in per.items()},
    }
    keys_off = out["us_per_request"]
    out["all_layers_keys_off_us"] = round(
        sum(v for k, v in keys_off.items() if not k.startswith("keys_")), 2
    )
    return out


def main() -> int:
    import json

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(json.dumps(layer_costs(n), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
