"""``create_app(settings)`` and the lifespan; nothing heavy happens at import time.

Start it with ``framecast serve`` (service/cli/serve.py) or
``uvicorn service.app:create_app --factory``.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors
from service.config import Settings, load_settings
from service.errors import FramecastError
from service.runtime.server import Runtime
from service.telemetry import REACHED, Metrics

log = logging.getLogger("framecast")

DESCRIPTION = """\
Serves Conv2D+LSTM and ConvLSTM2D video models: next-frame prediction and direction
classification on Moving MNIST clips, one model at a time or both side by side.

Upload frames as multipart files (in order), one multi-frame file (GIF, APNG, WebP, TIFF),
one `.npy` array, or JSON with base64 files. Frames are fitted to each model's input; what that
changed is in every answer (JSON fields, and the `X-Conversion` header: PNG, GIF and .npy answers
too). Errors answer `{"error", "message", "status"}`.
"""


def _configure_logging(level: str, fmt: str = "text") -> None:
    from service.http.logs import configure_logging

    configure_logging(level, fmt)


_PILLOW_LIMIT = [0]


def _guard_pillow(max_frame_pixels: int) -> None:
    """Pillow's decompression-bomb guard at our per-frame limit: ``Image.open`` refuses an image
    that claims more than twice the limit before decoding a byte of it (codecs refuses anything
    over the limit itself, so the between-limits warning is noise). The setting is process-wide:
    with several apps in one process (tests) it is the largest of their limits, so it never
    refuses what an app allows; a server has one app, so it is exactly
    FRAMECAST_MAX_FRAME_PIXELS."""
    import warnings

    from PIL import Image

    _PILLOW_LIMIT[0] = max(_PILLOW_LIMIT[0], max_frame_pixels)
    Image.MAX_IMAGE_PIXELS = _PILLOW_LIMIT[0]
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class _MetricsMiddleware:
    """Counts requests and their latency per route template, model and status (pure ASGI)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, runtime: Runtime):
        self.app, self.metrics, self.runtime = app, metrics, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        token = REACHED.set(set())  # the models this request reaches (Metrics.observe_phases)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            reached = REACHED.get() or set()
            REACHED.reset(token)
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            params = scope.get("path_params") or {}
            name = params.get("name")
            known = self.runtime.models.knows
            model = "" if name is None else (name if known(name) else "unknown")
            version = _version(self.runtime, model, params.get("version") or _query(scope))
            self.metrics.observe_request(
                path, model, status["code"], time.perf_counter() - start, version, reached
            )


def _query(scope: Scope) -> str | None:
    """The ``version`` query parameter of a request (``/v1/…?version=``), if any."""
    from urllib.parse import parse_qs

    raw = scope.get("query_string") or b""
    if b"version=" not in raw:
        return None
    return (parse_qs(raw.decode("latin-1")).get("version") or [None])[0]


def _version(runtime: Runtime, model: str, asked: str | None) -> str:
    """The version a request to ``model`` reached ("1" when none is known)."""
    if not model or model == "unknown":
        return "1"
    try:
        return str(runtime.models.get(model, asked).version)
    except FramecastError:  # a version not served: the request was answered 404
        return "1"


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Assemble the app. Models load in the lifespan (``settings.load_mode`` says how)."""
    if settings is None:
        settings = load_settings()
    _configure_logging(settings.log_level, settings.log_format)
    _guard_pillow(settings.max_frame_pixels)
    metrics = runtime.metrics if runtime is not None else Metrics()
    runtime = runtime or Runtime(settings, metrics=metrics)
    from service.auth.keys import KeyRing
    from service.auth.quotas import Quotas

    keys = KeyRing(settings)  # FRAMECAST_API_KEYS or the keys file (raises: it cannot be used)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        keys.start()  # the keys file is watched, and read again when it changes
        blocking = settings.load_mode == "blocking"
        if blocking:  # every model loaded and warm (else it raises and aborts start-up) before
            runtime.start()  # the gRPC port below and the HTTP socket (after this) listen
        grpc_server = None
        if settings.grpc_port is not None:  # V2 over gRPC beside HTTP, on this event loop
            from service.routes.v2.grpc_service import start_server

            try:
                grpc_server = await start_server(app)
            except BaseException:
                if blocking:  # its models are loaded: close them with the failed start-up
                    runtime.close()
                raise
        if not blocking:
            runtime.start()  # a background thread: both ports answer (503) while it loads
        try:
            yield
        finally:
            if grpc_server is not None:  # HTTP has drained (its in-flight count holds gRPC's)
                await grpc_server.stop(settings.shutdown_grace_s)
            await app.state.streams.close()  # the store's connections (Redis), if any
            await app.state.jobs.close()  # running jobs stop and say why, before the models go
            runtime.close()
            keys.stop()

    from service.routes import docs, health, ui
    from service.routes import metrics as metrics_routes
    from service.routes.v1 import compare, evaluations, models, predict, stream_socket, streams

    app = FastAPI(
        title="framecast",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: service/routes/docs.py, assets served here, no CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.keys = keys  # the gRPC service and SIGHUP (service/cli/serve.py) reach them here
    app.state.quotas = Quotas()
    from service.streams.stores import open_store

    # the stream table: this process's memory, a folder (--workers), or Redis (many machines)
    app.state.streams = open_store(settings)
    from service.jobs.manager import JobManager

    app.state.jobs = JobManager(settings, runtime)  # evaluation jobs (service/jobs/)
    errors.install(app)
    from service.routes.v2 import infer as v2  # Open Inference Protocol (KServe V2) under /v2
    from service.routes.v2 import model_config, repository

    app.include_router(repository.router)
    app.include_router(model_config.router)  # before /v2/models/{name}: /v2/models/stats
    app.include_router(v2.router)
    routes = [health, models, predict, streams, stream_socket, compare, evaluations]
    routes += [metrics_routes, ui, docs]
    for module in routes:
        app.include_router(module.router)
    ui.mount_static(app)
    docs.mount_assets(app)
    # pure-ASGI layers, innermost first: the hot path (classify, predict), body limit +
    # deadline, compression, API keys + scopes + per-key quotas, CORS, metrics, drain, log
    from service.http.limits import BodyLimitMiddleware
    from service.http.logs import RequestLogMiddleware
    from service.http.security import AuthMiddleware, add_cors, document_security

    if settings.hot_path:
        from service.http.hotpath import HotPathMiddleware

        app.add_middleware(HotPathMiddleware, api=app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        timeout_s=settings.request_timeout_s,
        drain_bytes=settings.oversize_drain_bytes,
        body_idle_s=settings.body_idle_timeout_s,
        wide={
            evaluations.PATH: (
                settings.job_max_dataset_bytes,
                settings.job_upload_timeout_s,
                "FRAMECAST_JOB_MAX_DATASET_BYTES",
                "FRAMECAST_JOB_UPLOAD_TIMEOUT_S",
            )
        },
    )
    from service.http.compression import CompressionMiddleware

    # outside the body limit: the limit counts the inflated bytes of a compressed body
    app.add_middleware(CompressionMiddleware, min_bytes=settings.compress_min_bytes)
    if keys.enabled:  # keys off: no layer, no principal, nothing a request pays for
        app.add_middleware(
            AuthMiddleware,
            keys=keys,
            quotas=app.state.quotas,
            api=app,
            protect_metrics=settings.protect_metrics,
            allow_url_key=settings.ws_allow_url_key,
        )
        document_security(app)
    add_cors(app, settings.cors_origins)
    app.add_middleware(_MetricsMiddleware, metrics=metrics, runtime=runtime)
    from service.http.drain import Drain, DrainMiddleware

    app.state.drain = Drain()  # started by service.http.drain.DrainingServer on SIGTERM
    app.add_middleware(DrainMiddleware, drain=app.state.drain, grace_s=settings.shutdown_grace_s)
    app.add_middleware(
        RequestLogMiddleware, models=runtime.models.names, log_probes=settings.log_probes
    )
    return app
