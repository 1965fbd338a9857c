"""Open Inference Protocol (KServe V2, the REST dialect Triton and KServe speak) over every model.

Routes: ``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}``,
``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer`` (each model route also answers
under ``/v2/models/{name}/versions/1/…``); the repository extension is in ``repository.py``, the
same protocol over gRPC in ``grpc_service.py`` (it calls :func:`run` too).

Tensors, per model (``T, H, W, C`` from its manifest):

- input ``frames``: ``[-1, T, H, W, C]`` (T = -1: a free time axis), ``FP32`` in [0, 1] or
  ``UINT8`` 0–255. More than ``T`` frames may be sent; the last ``T`` are used, as ``/v1`` does.
  No resizing: ``H, W, C`` must match.
- next-frame models: output ``next_frame`` ``[-1, H, W, C]`` FP32 (the default), and ``rollout``
  ``[-1, horizon, H, W, C]`` FP32: the request parameter ``horizon`` (1 ≤ k ≤
  FRAMECAST_MAX_HORIZON, default 1) rolls the model out k frames (its ``rollout`` in
  ``/v1/models``). No ``outputs`` listed: every output (``next_frame`` and ``rollout``).
- classify models: output ``scores`` ``[-1, num_classes]`` FP32 (in the order of the model's
  ``class_names``, which the metadata lists under ``parameters.class_names``). The
  classification extension: ``parameters.classification = k`` on the requested ``scores``
  (tritonclient's ``class_count``) answers ``[-1, k]`` BYTES ``"score:index:label"``, best first.

Every clip of a batch goes through the model's runner, the same path and queue as ``/v1``.

Data may be flat (row-major) or nested lists. Triton's binary tensor data extension is accepted
too (``Inference-Header-Content-Length``; ``binary_data_size`` on inputs; ``binary_data`` /
``binary_data_output`` on outputs): ``tritonclient``'s defaults use it.

Errors answer ``{"error": "<message>"}``: 400 for a malformed request or tensor, 404 for an
unknown model, 413 for a body over FRAMECAST_MAX_UPLOAD_BYTES, 503 while models load or when a
queue is full. Health and readiness answer 200 for true and 400 for false, as the protocol says.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service import inference
from service.auth.principals import Principal, principal_of
from service.deps import ModelState, Runtime, RuntimeDep, SettingsDep
from service.errors import ModelNotFound, UnsupportedMediaType
from service.http.limits import check_json
from service.http.uploads import read_body
from service.inference import Runner
from service.routes.v2.tensors import (
    HEADER_LENGTH,
    V2Error,
    encode_response,
    horizon_of,
    input_specs,
    output_specs,
    parse_inputs,
    requested_outputs,
    split_body,
)
from service.streams.sequences import infer_sequence, sequence_of
from service.streams.store import StreamStore

_V2_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    }
}
V2_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        **_V2_ERROR,
        "description": "a malformed request or tensor (or not ready, for readiness)",
    },
    404: {**_V2_ERROR, "description": "unknown model or version"},
    413: {
        **_V2_ERROR,
        "description": "body over FRAMECAST_MAX_UPLOAD_BYTES or JSON over FRAMECAST_MAX_JSON_ITEMS",
    },
    415: {**_V2_ERROR, "description": "a Content-Type that is neither JSON nor binary tensor data"},
    503: {**_V2_ERROR, "description": "models not ready, or the queue is full (Retry-After)"},
    504: {**_V2_ERROR, "description": "past FRAMECAST_REQUEST_TIMEOUT_S; the work was dropped"},
}
router = APIRouter(
    prefix="/v2",
    tags=["open inference protocol (v2)"],
    responses=V2_RESPONSES,
)
# the protocol's extensions served (the repository, config and statistics in their own modules)
EXTENSIONS = [
    "binary_tensor_data",
    "classification",
    "model_repository",
    "model_configuration",
    "statistics",
    "sequence",  # parameters.sequence_id, sequence_start, sequence_end: streams/sequences.py
]
# GET routes answer plain JSON: their return annotations are not response models (schemas)
_get = partial(router.get, response_model=None)


# --------------------------------------------------------------------------- tensor specs


def model_metadata(r: Runner, versions: list[int] | None = None) -> dict:
    """``r``'s V2 metadata; ``versions``: every version of its name served (default: its own)."""
    return {
        "name": r.name,
        "versions": [str(v) for v in versions or [r.version]],
        "platform": f"keras_{r.placement.backend}",
        "inputs": input_specs(r),
        "outputs": output_specs(r),
        "parameters": {"task": r.manifest.task, "architecture": r.manifest.architecture},
    }


def _check_version(runtime: Runtime, name: str, version: str | None) -> None:
    """ModelNotFound when ``name`` serves but not ``version`` (a number or a label)."""
    if version not in (None, "") and name in runtime.models.serving():
        runtime.models.get(name, version)


def _runner(runtime: Runtime, name: str, version: str | None = None) -> Runner:
    """The runner of ``name`` (``version``: a number or a label; none: the highest served):
    503 while loading, 404 for an unknown name or version."""
    return runtime.get(name, version or None)


def versions_of(runtime: Runtime, r: Runner) -> list[int]:
    """The versions of ``r``'s model served, ascending."""
    return list(runtime.models.versions(r.name)) or [r.version]


# --------------------------------------------------------------------------- health, metadata


@_get("", summary="Server metadata")
async def server_metadata(request: Request) -> dict:
    return {
        "name": "framecast",
        "version": request.app.version,
        "extensions": EXTENSIONS,
    }


@_get("/health/live", summary="Liveness: 200 while the process lives")
async def live() -> dict:
    return {"live": True}


@_get("/health/ready", summary="Readiness: 200 once every model is warm, else 400")
async def ready(runtime: RuntimeDep) -> dict | JSONResponse:
    if runtime.ready:
        return {"ready": True}
    return JSONResponse({"ready": False}, status_code=400, headers={"Retry-After": "5"})


@_get("/models/{name}", summary="Model metadata: versions, platform, input/output tensors")
@_get("/models/{name}/versions/{version}", include_in_schema=False)
async def metadata(runtime: RuntimeDep, name: str, version: str | None = None) -> dict:
    r = _runner(runtime, name, version)
    return model_metadata(r, versions_of(runtime, r))


@_get("/models/{name}/ready", summary="Model readiness: 200 when ready, else 400")
@_get("/models/{name}/versions/{version}/ready", include_in_schema=False)
async def model_ready(
    runtime: RuntimeDep, name: str, version: str | None = None
) -> dict | JSONResponse:
    _check_version(runtime, name, version)
    st = runtime.models.status(name)
    if st is None:  # known but failed, loading or unloaded: ready false
        known = ", ".join(sorted(runtime.models.serving())) or "none"
        raise ModelNotFound(f"no model named {name!r}; loaded models: {known}")
    if st.state is ModelState.READY:
        return {"name": name, "ready": True}
    return JSONResponse(
        {"name": name, "ready": False}, status_code=400, headers={"Retry-After": "5"}
    )


# --------------------------------------------------------------------------- infer: parsing


_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string", "enum": ["frames"], "description": "the one input"},
        "shape": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "description": "[batch, frames, height, width, channels]",
            "minItems": 5,
            "maxItems": 5,
        },
        "datatype": {"type": "string", "enum": ["FP32", "UINT8"]},
        "data": {
            "type": "array",
            "description": "row-major values, flat or nested (FP32 in [0, 1], UINT8 0-255); "
            "absent with parameters.binary_data_size (the binary tensor data extension)",
            "items": {},
        },
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
    },
}
INFER_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string", "description": "echoed in the answer"},
                        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
                        "outputs": {
                            "type": "array",
                            "description": "outputs to return (default: every output)",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {
                                        "type": "object",
                                        "properties": {
                                            "binary_data": {"type": "boolean"},
                                            "classification": {"type": "integer", "minimum": 1},
                                        },
                                    },
                                },
                            },
                        },
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "horizon": {"type": "integer", "minimum": 1},
                                "binary_data_output": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "the binary tensor data extension: the JSON header, then the "
                "raw tensors; Inference-Header-Content-Length says where the JSON ends",
            },
        },
    }
}


@router.post(
    "/models/{name}/infer",
    summary="Run the model on a batch of clips (V2 JSON tensors)",
    openapi_extra=INFER_OPENAPI,
)
@router.post("/models/{name}/versions/{version}/infer", include_in_schema=False)
async def infer(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    name: str,
    version: str | None = None,
) -> Response:
    t_start = time.perf_counter()
    check_media_type(request.headers.get("content-type"))
    runner = _runner(runtime, name, version)
    body = await read_body(request)
    n = request.headers.get(HEADER_LENGTH)
    head = body[: int(n)] if n is not None and n.isdigit() else body
    check_json(head, max_depth=settings.max_json_depth, max_items=settings.max_json_items)
    req, binary = split_body(body, n)
    streams = request.app.state.streams
    wanted, arrays, answers, params = await run(
        runner, req, binary, settings.max_horizon, t_start, streams, runtime,
        principal_of(request.scope),
    )  # fmt: skip
    response = encode_response(req, runner, wanted, arrays, params)
    for answer in answers:  # each clip's phases into /metrics, as /v1 records them
        answer.finish(runtime.metrics, {})
    return response


# what an infer request's body may be declared as: JSON, the binary tensor data extension, or
# what `curl -d` declares by default (Triton reads the body whatever it is declared as)
MEDIA_TYPES = ("application/json", "application/octet-stream", "application/x-www-form-urlencoded")


def check_media_type(content_type: str | None) -> None:
    """An infer body declared as something else (XML, a form, an image) is answered 415 before
    it is read; no Content-Type, JSON (``+json`` too) and octet-stream are read."""
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if not media or media in MEDIA_TYPES or media.endswith("+json"):
        return
    raise UnsupportedMediaType(
        f"Content-Type {media[:80]!r} is not an inference request; send application/json "
        "(the JSON request), or application/octet-stream with Inference-Header-Content-Length "
        "(the binary tensor data extension)"
    )


async def run(
    runner: Runner,
    req: dict,
    binary: bytes,
    max_horizon: int,
    t_start: float,
    streams: StreamStore | None = None,
    runtime: Any = None,
    caller: Principal | None = None,
) -> tuple[list[tuple[str, bool, int | None]], dict[str, np.ndarray], list[inference.Answer], dict]:
    """One V2 inference request, parsed (``req`` as the JSON header, ``binary`` the tensor bytes
    after it): the outputs asked for, the arrays, each clip's answer and the response's
    parameters. A request with a ``sequence_id`` is one step of a stream in ``streams``
    (``service/streams/sequences.py``; its phases into ``runtime.metrics``, as a stream's), the
    sequence of ``caller`` (the key that sent it). HTTP (above) and gRPC (grpc_service.py) both
    call it."""
    chars = streams.settings.stream_max_id_chars if streams is not None else 128
    seq = sequence_of(req, chars)
    if seq is not None and streams is not None:
        clips = await run_in_threadpool(partial(parse_inputs, whole=True), req, binary, runner)
        steps = horizon_of(req, max_horizon) or 1
        wanted = requested_outputs(req, runner, steps)
        arrays, params = await infer_sequence(runtime, streams, runner, seq, clips, steps, caller)
        return wanted, arrays, [], params
    clips = await run_in_threadpool(parse_inputs, req, binary, runner)  # (batch, T, H, W, C)
    horizon = horizon_of(req, max_horizon)
    wanted = requested_outputs(req, runner, horizon)
    if runner.manifest.task == "classify":
        if horizon is not None:
            raise V2Error(
                f"model {runner.name!r} classifies; the parameter horizon is for next-frame models"
            )
        answers = await asyncio.gather(*(inference.call(runner, c, t_start=t_start) for c in clips))
        arrays = {"scores": np.stack([a.output for a in answers])}  # (batch, num_classes)
    else:
        answers = await asyncio.gather(
            *(inference.call(runner, c, horizon=horizon or 1, t_start=t_start) for c in clips)
        )
        rollout = np.stack([a.output for a in answers])  # (batch, horizon, H, W, C)
        arrays = {"rollout": rollout, "next_frame": rollout[:, 0]}  # (batch, H, W, C)
    return wanted, arrays, list(answers), {}
