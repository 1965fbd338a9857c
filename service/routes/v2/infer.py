"""Open Inference Protocol (KServe V2, the REST dialect Triton and KServe speak) over every model.

Routes: ``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}``,
``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer`` (each model route also answers
under ``/v2/models/{name}/versions/1/…``); the repository extension is in ``repository.py``.

Tensors, per model (``T, H, W, C`` from its manifest):

- input ``frames``: ``[-1, T, H, W, C]`` (T = -1: a free time axis), ``FP32`` in [0, 1] or
  ``UINT8`` 0–255. More than ``T`` frames may be sent; the last ``T`` are used, as ``/v1`` does.
  No resizing: ``H, W, C`` must match.
- next-frame models: output ``next_frame`` ``[-1, H, W, C]`` FP32 (the default), and ``rollout``
  ``[-1, horizon, H, W, C]`` FP32: the request parameter ``horizon`` (1 ≤ k ≤
  FRAMECAST_MAX_HORIZON, default 1) rolls the model out k frames (its ``rollout`` in
  ``/v1/models``). No ``outputs`` listed: ``next_frame``, and ``rollout`` if ``horizon`` was given.
- classify models: output ``scores`` ``[-1, num_classes]`` FP32 (in the order of the model's
  ``class_names``, which the metadata lists under ``parameters.class_names``).

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
import json
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from service import inference
from service.checks import require_horizon, require_unit_range
from service.deps import Runtime, RuntimeDep, SettingsDep
from service.errors import FramecastError
from service.http.limits import check_json
from service.http.uploads import read_body
from service.inference import Runner

VERSION = "1"
INPUT = "frames"
HEADER_LENGTH = "Inference-Header-Content-Length"
DTYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


class V2Error(FramecastError):
    """A request that does not follow the protocol (400)."""

    status, kind = 400, "bad_request"


def _v2_status(exc: FramecastError) -> int:
    return 400 if exc.status == 422 else exc.status  # the protocol uses 400 for bad requests


class V2Route(APIRoute):
    """Answers this router's errors in the protocol's form ``{"error": "..."}``."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except FramecastError as e:
                return JSONResponse(
                    {"error": e.message}, status_code=_v2_status(e), headers=e.headers
                )
            except RequestValidationError as e:
                msg = "; ".join(
                    f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
                    for err in e.errors()
                )
                return JSONResponse({"error": msg or "invalid request"}, status_code=400)

        return route


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
V2_RESPONSES = {
    400: {
        **_V2_ERROR,
        "description": "a malformed request or tensor (or not ready, for readiness)",
    },
    404: {**_V2_ERROR, "description": "unknown model or version"},
    413: {
        **_V2_ERROR,
        "description": "body over FRAMECAST_MAX_UPLOAD_BYTES or JSON over FRAMECAST_MAX_JSON_ITEMS",
    },
    503: {**_V2_ERROR, "description": "models not ready, or the queue is full (Retry-After)"},
    504: {**_V2_ERROR, "description": "past FRAMECAST_REQUEST_TIMEOUT_S; the work was dropped"},
}
router = APIRouter(
    prefix="/v2",
    tags=["open inference protocol (v2)"],
    route_class=V2Route,
    responses=V2_RESPONSES,
)
# GET routes answer plain JSON: their return annotations are not response models (schemas)
_get = partial(router.get, response_model=None)


# --------------------------------------------------------------------------- tensor specs


def input_specs(r: Runner) -> list[dict]:
    m = r.manifest
    return [
        {
            "name": INPUT,
            "datatype": "FP32",
            "shape": [-1, m.frames or -1, m.height, m.width, m.channels],
            "parameters": {
                "accepts": ["FP32", "UINT8"],
                "note": "FP32 in [0, 1] or UINT8 0-255; the last frames are used",
            },
        }
    ]


def output_specs(r: Runner) -> list[dict]:
    m = r.manifest
    if m.task == "classify":
        return [
            {
                "name": "scores",
                "datatype": "FP32",
                "shape": [-1, len(m.class_names or [])],
                "parameters": {"class_names": list(m.class_names or [])},
            }
        ]
    return [
        {"name": "next_frame", "datatype": "FP32", "shape": [-1, m.height, m.width, m.channels]},
        {
            "name": "rollout",
            "datatype": "FP32",
            "shape": [-1, -1, m.height, m.width, m.channels],
            "parameters": {"note": "the next `horizon` frames (request parameter, default 1)"},
        },
    ]


def model_metadata(r: Runner) -> dict:
    return {
        "name": r.name,
        "versions": [VERSION],
        "platform": f"keras_{r.placement.backend}",
        "inputs": input_specs(r),
        "outputs": output_specs(r),
        "parameters": {"task": r.manifest.task, "architecture": r.manifest.architecture},
    }


class _NotFound(FramecastError):
    status, kind = 404, "model_not_found"


def _check_version(version: str | None) -> None:
    if version is not None and version != VERSION:
        raise _NotFound(
            f"model version {version!r} is not served; every model has version {VERSION!r}"
        )


def _runner(runtime: Runtime, name: str, version: str | None = None) -> Runner:
    _check_version(version)
    return runtime.get(name)  # 503 while loading, 404 for an unknown name


# --------------------------------------------------------------------------- health, metadata


@_get("", summary="Server metadata")
async def server_metadata(request: Request) -> dict:
    return {
        "name": "framecast",
        "version": request.app.version,
        "extensions": ["binary_tensor_data"],
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
    return model_metadata(_runner(runtime, name, version))


@_get("/models/{name}/ready", summary="Model readiness: 200 when ready, else 400")
@_get("/models/{name}/versions/{version}/ready", include_in_schema=False)
async def model_ready(
    runtime: RuntimeDep, name: str, version: str | None = None
) -> dict | JSONResponse:
    _check_version(version)
    runner = runtime.runners.get(name)
    if runner is None and name not in runtime.status.models:  # failed/unloaded: ready false
        known = ", ".join(sorted(runtime.runners)) or "none"
        raise _NotFound(f"no model named {name!r}; loaded models: {known}")
    if runner is not None and runner.ready:
        return {"name": name, "ready": True}
    return JSONResponse(
        {"name": name, "ready": False}, status_code=400, headers={"Retry-After": "5"}
    )


# --------------------------------------------------------------------------- infer: parsing


def _split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON inference header and the binary tensor data after it."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise V2Error(f"{HEADER_LENGTH}={header_length!r} is not an integer") from None
        if not 0 < n <= len(body):
            raise V2Error(f"{HEADER_LENGTH}={n} does not fit a body of {len(body)} bytes")
        head, rest = body[:n], body[n:]
    else:
        head, rest = body, b""
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise V2Error(f"the inference request is not valid JSON ({e})") from None
    if not isinstance(req, dict):
        raise V2Error('the inference request must be a JSON object {"inputs": [...]}')
    return req, rest


def _shape(t: dict, label: str) -> list[int]:
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise V2Error(f"{label}: 'shape' must be a list of non-negative integers, got {shape!r}")
    return shape


def _decode_tensor(t: dict, binary: bytes, offset: int, label: str) -> tuple[np.ndarray, int]:
    """One input tensor as float32 in [0, 1], with its shape; returns the new binary offset."""
    datatype = t.get("datatype")
    if datatype not in DTYPES:
        raise V2Error(
            f"{label}: datatype {datatype!r} is not supported; send FP32 (0-1) or UINT8 (0-255)"
        )
    shape = _shape(t, label)
    count = math.prod(shape)
    dtype = DTYPES[datatype]
    params = t.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise V2Error(
                f"{label}: binary_data_size={size!r} runs past the {len(binary)} bytes "
                f"of binary data after the JSON header"
            )
        if size != count * dtype.itemsize:
            raise V2Error(
                f"{label}: binary_data_size={size} but shape {shape} of {datatype} "
                f"needs {count * dtype.itemsize} bytes"
            )
        a = np.frombuffer(binary, dtype=dtype, count=count, offset=offset)
        offset += size
    else:
        if "data" not in t:
            raise V2Error(f"{label}: no 'data' (and no binary_data_size parameter)")
        try:
            a = np.asarray(t["data"], dtype=np.float64).reshape(-1)
        except (ValueError, TypeError):
            raise V2Error(
                f"{label}: 'data' must be numbers, flat or nested (rectangular) lists"
            ) from None
        if a.size != count:
            raise V2Error(f"{label}: 'data' holds {a.size} values but shape {shape} needs {count}")
        if datatype == "UINT8" and (np.any(a != np.round(a)) or np.any(a < 0) or np.any(a > 255)):
            raise V2Error(f"{label}: UINT8 data must be integers 0-255")
    a = a.reshape(shape)
    if datatype == "UINT8":
        x = a.astype(np.float32) / 255.0
    else:
        x = a.astype(np.float32)
        require_unit_range(x, label, kind="FP32", hint="or send UINT8 0-255", error=V2Error)
        x = np.clip(x, 0.0, 1.0)
    return x, offset


def _parse_inputs(req: dict, binary: bytes, runner: Runner) -> np.ndarray:
    """The request's clips as (batch, T, H, W, C) float32 in [0, 1] (the last T frames)."""
    m = runner.manifest
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error(f'the request needs "inputs": [{{"name": "{INPUT}", ...}}]')
    found, offset = None, 0
    for i, t in enumerate(inputs):
        if not isinstance(t, dict):
            raise V2Error(f"inputs[{i}] must be an object with name, shape, datatype and data")
        label = f"input {t.get('name', i)!r}"
        x, offset = _decode_tensor(t, binary, offset, label)
        if t.get("name") != INPUT:
            raise V2Error(f"{label}: model {m.name!r} has one input, {INPUT!r}")
        found = x
    reads = m.reads or 1  # a free time axis without a context reads every frame sent
    want = f"[batch, ≥{reads}, {m.height}, {m.width}, {m.channels}]"
    if found.ndim != 5:
        raise V2Error(
            f"input {INPUT!r} has shape {list(found.shape)}; model {m.name!r} takes {want}"
        )
    b, t, h, w, c = found.shape
    if b < 1:
        raise V2Error(f"input {INPUT!r} has an empty batch; send at least one clip")
    if t < reads or (h, w, c) != (m.height, m.width, m.channels):
        raise V2Error(
            f"input {INPUT!r} has shape {list(found.shape)}; model {m.name!r} takes "
            f"{want} (frames are not resized here; /v1 resizes)"
        )
    return found[:, -(m.reads or t) :]


def _horizon(req: dict, max_horizon: int) -> int | None:
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error("'parameters' must be an object")
    k = params.get("horizon")
    if k is None:
        return None
    return require_horizon(k, max_horizon, label="parameter horizon", error=V2Error)


def _requested(req: dict, runner: Runner, horizon: int | None) -> list[tuple[str, bool]]:
    """[(output name, binary?)] in the order asked (default: the model's default outputs)."""
    params = req.get("parameters") or {}
    binary_default = bool(params.get("binary_data_output", False))
    names = [o["name"] for o in output_specs(runner)]
    outputs = req.get("outputs")
    if outputs is None:
        if runner.manifest.task == "classify":
            return [("scores", binary_default)]
        chosen = ["next_frame"] + (["rollout"] if horizon is not None else [])
        return [(n, binary_default) for n in chosen]
    if not isinstance(outputs, list):
        raise V2Error("'outputs' must be a list of {\"name\": ...}")
    out = []
    for i, o in enumerate(outputs):
        name = o.get("name") if isinstance(o, dict) else None
        if name not in names:
            raise V2Error(
                f"outputs[{i}]: unknown output {name!r}; model {runner.name!r} has "
                f"{', '.join(names)}"
            )
        p = o.get("parameters") or {}
        out.append((name, bool(p.get("binary_data", binary_default))))
    return out


# --------------------------------------------------------------------------- infer


@router.post("/models/{name}/infer", summary="Run the model on a batch of clips (V2 JSON tensors)")
@router.post("/models/{name}/versions/{version}/infer", include_in_schema=False)
async def infer(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    name: str,
    version: str | None = None,
) -> Response:
    t_start = time.perf_counter()
    runner = _runner(runtime, name, version)
    body = await read_body(request, settings.max_upload_bytes)
    n = request.headers.get(HEADER_LENGTH)
    head = body[: int(n)] if n is not None and n.isdigit() else body
    check_json(head, max_depth=settings.max_json_depth, max_items=settings.max_json_items)
    req, binary = _split_body(body, n)
    clips = await run_in_threadpool(_parse_inputs, req, binary, runner)  # (batch, T, H, W, C)
    horizon = _horizon(req, settings.max_horizon)
    wanted = _requested(req, runner, horizon)
    if runner.manifest.task == "classify":
        if horizon is not None:
            raise V2Error(
                f"model {name!r} classifies; the parameter horizon is for next-frame models"
            )
        answers = await asyncio.gather(*(inference.call(runner, c, t_start=t_start) for c in clips))
        arrays = {"scores": np.stack([a.output for a in answers])}  # (batch, num_classes)
    else:
        answers = await asyncio.gather(
            *(inference.call(runner, c, horizon=horizon or 1, t_start=t_start) for c in clips)
        )
        rollout = np.stack([a.output for a in answers])  # (batch, horizon, H, W, C)
        arrays = {"rollout": rollout, "next_frame": rollout[:, 0]}  # (batch, H, W, C)
    response = _response(req, runner, wanted, arrays)
    for answer in answers:  # each clip's phases into /metrics, as /v1 records them
        answer.finish(runtime.metrics, {})
    return response


def _response(
    req: dict, runner: Runner, wanted: list[tuple[str, bool]], arrays: dict[str, np.ndarray]
) -> Response:
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary in wanted:
        a = np.ascontiguousarray(arrays[name], dtype="<f4")
        out = {"name": name, "datatype": "FP32", "shape": list(a.shape)}
        if binary:
            raw = a.tobytes()
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            out["data"] = a.reshape(-1).tolist()
        outputs.append(out)
    body: dict[str, Any] = {"model_name": runner.name, "model_version": VERSION, "outputs": outputs}
    if "id" in req:
        body["id"] = req["id"]
    head = json.dumps(body, separators=(",", ":")).encode()
    if not chunks:
        return Response(head, media_type="application/json")
    return Response(
        head + b"".join(chunks),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(head))},
    )
