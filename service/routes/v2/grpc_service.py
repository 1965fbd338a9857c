"""The V2 protocol over gRPC: ``inference.GRPCInferenceService`` (KServe V2 and Triton's
extensions) on FRAMECAST_GRPC_PORT, served by ``grpcio``'s asyncio server on the same event loop
as HTTP, sharing its runtime, batcher, limits, API keys, drain, metrics and error messages.

Served: ``ServerLive``, ``ServerReady``, ``ModelReady``, ``ServerMetadata``, ``ModelMetadata``,
``ModelInfer`` (raw binary contents, or typed ``fp32_contents`` / ``uint_contents``),
``ModelStreamInfer`` (one answer per request, in order; an error answers that request's
``error_message`` and the stream goes on), ``ModelConfig``, ``ModelStatistics``,
``RepositoryIndex``, ``RepositoryModelLoad`` and ``RepositoryModelUnload``. Shared memory, trace
and log settings answer UNIMPLEMENTED saying so.

- **Errors**: the HTTP route's message with the gRPC status of its HTTP status
  (``grpc_status.py``: 400 → INVALID_ARGUMENT, 404 → NOT_FOUND, 429 → RESOURCE_EXHAUSTED, 503 →
  UNAVAILABLE, ...); a ``retry-after`` trailer where HTTP sends ``Retry-After``.
- **API keys** (FRAMECAST_API_KEYS, FRAMECAST_API_KEYS_FILE): the ``authorization: Bearer KEY``
  metadata on every call, as ``/v2`` over HTTP needs the header (tritonclient:
  ``headers={"authorization": ...}``); the same scopes as HTTP (:data:`NEEDS`: inference needs
  ``infer``, a sequence ``stream`` too, the repository ``admin``), the same per-key quotas, and
  sequences kept per key. UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED (429) with
  HTTP's messages; each refusal is a line of the audit log.
- **Typed contents** (``fp32_contents``, ``uint_contents``) are counted before anything is made
  of them, against FRAMECAST_MAX_JSON_ITEMS as HTTP counts JSON values: a request far past it
  is refused at once (RESOURCE_EXHAUSTED), reading no more than the message grpcio holds.
- **Limits**: a message over FRAMECAST_MAX_UPLOAD_BYTES is refused by grpcio (RESOURCE_EXHAUSTED);
  each call's deadline is FRAMECAST_REQUEST_TIMEOUT_S or the client's own, the sooner; at most
  FRAMECAST_MAX_CONNECTIONS calls at once per process.
- **Drain**: after SIGTERM new calls answer UNAVAILABLE; calls in flight count with HTTP's, and the
  server stops (FRAMECAST_SHUTDOWN_GRACE_S) when the app's lifespan ends.
- **Metrics**: each call is counted as ``framecast_requests_total{route="grpc:<Method>"}``, and the
  inference calls feed the statistics extension as HTTP's do.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

import grpc
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from service.auth.principals import Principal
from service.auth.principals import Scope as Need
from service.errors import (
    Forbidden,
    FramecastError,
    LoadError,
    LoadFailed,
    ModelNotFound,
    ShuttingDown,
)
from service.http.limits import deadline_scope
from service.routes.v2 import grpc_tensors as codec
from service.routes.v2.grpc_status import render_grpc
from service.routes.v2.infer import (
    EXTENSIONS,
    _check_version,
    _runner,
    model_metadata,
    run,
    versions_of,
)
from service.routes.v2.model_config import model_config, stats_rows
from service.routes.v2.repository import manage
from service.routes.v2.tensors import V2Error

log = logging.getLogger("framecast.grpc")
audit = logging.getLogger("framecast.audit")
_caller: ContextVar[Principal | None] = ContextVar("framecast_grpc_caller", default=None)

# the scope each call needs (the others: any valid key), as service/http/security.py's RULES
NEEDS = {
    "ModelInfer": Need.INFER,
    "ModelStreamInfer": Need.INFER,
    "RepositoryIndex": Need.ADMIN,
    "RepositoryModelLoad": Need.ADMIN,
    "RepositoryModelUnload": Need.ADMIN,
}


def _guarded(method: Callable) -> Callable:
    """Keys, drain, deadline, metrics and the error map around one unary call."""
    name = method.__name__

    @functools.wraps(method)
    async def call(self: Servicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        start, status, model = time.perf_counter(), 200, getattr(request, "name", "")
        model = model or getattr(request, "model_name", "")
        self.drain.inflight += 1
        release = None
        try:
            caller, release = self.admit(context, name)
            _caller.set(caller)  # this call's own context: read by the methods that need it
            with deadline_scope(self.timeout(context)):
                return await method(self, request, context)
        except FramecastError as e:
            status = render_grpc(e)[3]
            await self.abort(context, e)
        except asyncio.CancelledError:
            status = 499
            log.info("grpc %s: the client cancelled or left", name)
            raise
        except Exception:
            status = 500
            log.exception("grpc %s failed", name)
            await context.abort(grpc.StatusCode.INTERNAL, f"{name} failed (the server logged why)")
        finally:
            if release is not None:
                release()
            self.drain.inflight -= 1
            self.observe(name, model, status, time.perf_counter() - start)

    return call


class Servicer(pbg.GRPCInferenceServiceServicer):
    """Every call reaches the app's runtime, settings and metrics (``app.state``)."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.runtime = app.state.runtime
        self.settings = app.state.settings
        self.metrics = app.state.metrics
        self.drain = app.state.drain
        self.keys = app.state.keys
        self.quotas = app.state.quotas

    # ------------------------------------------------------------------ shared by every call

    def admit(self, context: grpc.aio.ServicerContext, method: str) -> tuple[Principal | None, Any]:
        """The caller's principal (None: keys off) and what ends its quota count; 401, 403,
        429 as HTTP answers them, 503 while draining."""
        caller, release = None, None
        if self.keys.enabled:
            meta = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
            value = meta.get("authorization")
            try:
                caller = self.keys.authenticate(value.encode() if isinstance(value, str) else value)
                need = NEEDS.get(method)
                if need is not None and not caller.can(need):
                    raise Forbidden(
                        f"key {caller.id!r} may not call {method}: it needs the {need.value} "
                        f"scope (the key has {', '.join(sorted(caller.scopes))})"
                    )
                release = self.quotas.admit(caller)
            except FramecastError as e:
                who = repr(caller.id) if caller is not None else "unknown"
                audit.warning("refused grpc %s: %s, key %s: %s",
                              method, e.kind, who, e.message)  # fmt: skip
                raise
        if self.drain.draining:
            if release is not None:
                release()
            raise ShuttingDown(
                "the server is shutting down: calls in flight finish, new ones are refused; "
                "retry (another worker or replica answers)"
            )
        return caller, release

    def timeout(self, context: grpc.aio.ServicerContext) -> float:
        left = context.time_remaining()
        own = self.settings.request_timeout_s
        return own if left is None else min(own, max(left, 0.0))

    def observe(self, method: str, model: str, status: int, seconds: float) -> None:
        if model and model not in self.runtime.runners:
            model = "unknown"
        self.metrics.observe_request(f"grpc:{method}", model, status, seconds)

    async def abort(self, context: grpc.aio.ServicerContext, e: FramecastError) -> None:
        """End the call with ``e``'s answer (grpc's abort raises; it never returns)."""
        code, message, trailers, _ = render_grpc(e)
        if trailers:
            context.set_trailing_metadata(trailers)
        await context.abort(grpc.StatusCode[code], message)
        raise AssertionError("context.abort returned")  # pragma: no cover

    async def infer(
        self, r: pb.ModelInferRequest, caller: Principal | None
    ) -> pb.ModelInferResponse:
        t_start = time.perf_counter()
        codec.check_refused(r)
        runner = _runner(self.runtime, r.model_name, r.model_version or None)
        req, binary = codec.request_dict(r, self.settings.max_json_items)
        wanted, arrays, answers, params = await run(
            runner,
            req,
            binary,
            self.settings.max_horizon,
            t_start,
            self.app.state.streams,
            self.runtime,
            caller,
        )
        resp = codec.infer_response(req, runner, wanted, arrays, params)
        for answer in answers:
            answer.finish(self.metrics, {})
        return resp

    # ------------------------------------------------------------------ health and metadata

    @_guarded
    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    @_guarded
    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=bool(self.runtime.ready))

    @_guarded
    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        _check_version(self.runtime, request.name, request.version or None)
        models = self.runtime.models
        if models.status(request.name) is None:  # as GET /v2/models/{name}/ready: 404
            known = ", ".join(sorted(models.serving())) or "none"
            raise ModelNotFound(f"no model named {request.name!r}; loaded models: {known}")
        return pb.ModelReadyResponse(ready=request.name in models.serving())

    @_guarded
    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:  # noqa: N802
        return pb.ServerMetadataResponse(
            name="framecast", version=self.app.version, extensions=EXTENSIONS
        )

    @_guarded
    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:  # noqa: N802
        runner = _runner(self.runtime, request.name, request.version or None)
        return codec.metadata_response(model_metadata(runner, versions_of(self.runtime, runner)))

    @_guarded
    async def ModelConfig(self, request: Any, context: Any) -> pb.ModelConfigResponse:  # noqa: N802
        runner = _runner(self.runtime, request.name, request.version or None)
        s = self.settings
        config = model_config(
            runner,
            s.max_batch_size,
            s.max_batch_delay_ms,
            s.version_policy,
            s.stream_idle_timeout_s,
            s.stream_max_per_model,
        )
        return pb.ModelConfigResponse(config=codec.config_message(config))

    @_guarded
    async def ModelStatistics(self, request: Any, context: Any) -> pb.ModelStatisticsResponse:  # noqa: N802
        rows = stats_rows(self.runtime, self.metrics, request.name, request.version or None)
        stats = [codec.stats_message(row) for row in rows]
        return pb.ModelStatisticsResponse(model_stats=stats)

    # ------------------------------------------------------------------ inference

    @_guarded
    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        return await self.infer(request, _caller.get())

    async def ModelStreamInfer(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        try:
            caller, release = self.admit(context, "ModelStreamInfer")
        except FramecastError as e:
            await self.abort(context, e)
        try:
            async for item in self._stream(request_iterator, context, caller):
                yield item
        finally:
            if release is not None:
                release()

    async def _stream(
        self, request_iterator: AsyncIterator[Any], context: Any, caller: Principal | None
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for r in request_iterator:  # one at a time: answers keep the requests' order
            start, status = time.perf_counter(), 200
            self.drain.inflight += 1
            try:
                if self.drain.draining:
                    self.admit(context, "ModelStreamInfer")
                with deadline_scope(self.settings.request_timeout_s):
                    resp = await self.infer(r, caller)
                yield pb.ModelStreamInferResponse(infer_response=resp)
            except FramecastError as e:
                _, message, _, status = render_grpc(e)
                failed = pb.ModelInferResponse(model_name=r.model_name, id=r.id)
                yield pb.ModelStreamInferResponse(error_message=message, infer_response=failed)
            except Exception:  # a bug: logged, answered on the stream, the stream goes on
                status = 500
                log.exception("grpc ModelStreamInfer failed")
                failed = pb.ModelInferResponse(model_name=r.model_name, id=r.id)
                yield pb.ModelStreamInferResponse(
                    error_message="ModelStreamInfer failed (the server logged why)",
                    infer_response=failed,
                )
            finally:
                self.drain.inflight -= 1
                self.observe("ModelStreamInfer", r.model_name, status, time.perf_counter() - start)

    # ------------------------------------------------------------------ repository

    @_guarded
    async def RepositoryIndex(self, request: Any, context: Any) -> pb.RepositoryIndexResponse:  # noqa: N802
        rows = await run_in_threadpool(self.runtime.index)
        if request.ready:
            rows = [row for row in rows if row["state"] == "READY"]
        return pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(**row) for row in rows]
        )

    @_guarded
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:  # noqa: N802
        if "config" in request.parameters or any(k.startswith("file:") for k in request.parameters):
            raise V2Error(
                "loading with a config or files in the request is not supported: put the "
                "checkpoint in the models folder and load it by name"
            )
        try:
            await run_in_threadpool(self.runtime.load_model, request.model_name)
        except LoadError as e:
            manage(_caller.get(), "load", request.model_name, f"failed: {e}")
            raise LoadFailed(f"failed to load {request.model_name!r}: {e}") from None
        manage(_caller.get(), "load", request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_guarded
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:  # noqa: N802
        await run_in_threadpool(self.runtime.unload_model, request.model_name)
        manage(_caller.get(), "unload", request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _unimplemented(what: str) -> Callable:
    async def call(self: Servicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"framecast does not serve {what}; send tensors in the request (raw_input_contents)"
            if "memory" in what
            else f"framecast does not serve {what}",
        )

    return call


for _name, _what in {
    "SystemSharedMemoryStatus": "system shared memory",
    "SystemSharedMemoryRegister": "system shared memory",
    "SystemSharedMemoryUnregister": "system shared memory",
    "CudaSharedMemoryStatus": "CUDA shared memory",
    "CudaSharedMemoryRegister": "CUDA shared memory",
    "CudaSharedMemoryUnregister": "CUDA shared memory",
    "TraceSetting": "trace settings (see /metrics and the Server-Timing header)",
    "LogSettings": "log settings over gRPC (FRAMECAST_LOG_LEVEL sets them)",
}.items():
    setattr(Servicer, _name, _unimplemented(_what))


async def start_server(app: FastAPI) -> grpc.aio.Server:
    """Bind FRAMECAST_HOST:FRAMECAST_GRPC_PORT and start serving (SO_REUSEPORT only under
    ``--workers``, so a second server cannot silently share a port); raises LoadError when the
    port cannot be bound."""
    s = app.state.settings
    server = grpc.aio.server(
        maximum_concurrent_rpcs=s.max_connections,
        options=[
            ("grpc.max_receive_message_length", s.max_upload_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1 if s.reuse_port else 0),
        ],
    )
    parse = codec.guarded_request(s.max_json_items, s.grpc_max_fields)
    codec.add_servicer(Servicer(app), server, parse)
    address = f"{s.host}:{s.grpc_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as e:
        raise LoadError(f"cannot serve gRPC on {address}: {e} (FRAMECAST_GRPC_PORT)") from None
    await server.start()
    log.info("gRPC (V2 GRPCInferenceService) on %s", address)
    return server
