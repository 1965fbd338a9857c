"""Triton's model repository extension on the V2 routes: index, load, unload.

``POST /v2/repository/index`` lists every model folder and known model with its state
(``READY``, ``LOADING``, ``UNAVAILABLE`` and why); ``POST /v2/repository/models/{name}/load``
loads or reloads a folder (the new copy is swapped in once warm; requests in flight finish on the
old one; a failed reload leaves the old one serving and answers why); ``…/unload`` stops serving
one; ``GET …/labels`` and ``PUT …/labels/{label}`` (``{"version": n}``) read and move a
model's version labels (kept in its folder's labels.json). ``tritonclient``'s
``get_model_repository_index``, ``load_model`` and ``unload_model`` call these. With keys on
they need the ``admin`` scope (Triton's restricted ``model-repository`` API group: inference keys
cannot manage models), and each load, unload and label move is one line of the audit log
(``framecast.audit``) naming the key's id.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.auth.principals import Principal, principal_of
from service.deps import RuntimeDep
from service.errors import LoadError, LoadFailed
from service.http.logs import loggable
from service.http.uploads import read_body
from service.routes.v2.infer import V2_RESPONSES, V2Error

audit = logging.getLogger("framecast.audit")
router = APIRouter(
    prefix="/v2/repository",
    tags=["open inference protocol (v2)"],
    responses=V2_RESPONSES,
)


def manage(caller: Principal | None, action: str, name: str, detail: str = "") -> None:
    """One audit line for a management action (HTTP and gRPC alike)."""
    who = repr(caller.id) if caller is not None else "none (keys off)"
    audit.info("key %s: %s model %s%s", who, action, loggable(repr(name), 120),
               f": {loggable(detail)}" if detail else "")  # fmt: skip


async def _options(request: Request) -> dict:
    """The optional JSON body (``{"ready": bool}``, ``{"parameters": {...}}``)."""
    body = await read_body(request)
    if not body.strip():
        return {}
    try:
        raw = json.loads(body)
    except ValueError as e:
        raise V2Error(f"the body is not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise V2Error("the body must be a JSON object")
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error('"parameters" must be an object')
    if "config" in params or any(k.startswith("file:") for k in params):
        raise V2Error(
            "loading with a config or files in the request is not supported: put the "
            "checkpoint in the models folder and load it by name"
        )
    return raw


@router.post("/index", summary="Every model folder and model, with its state", response_model=None)
async def index(request: Request, runtime: RuntimeDep) -> list[dict]:
    opts = await _options(request)
    ready_only = opts.get("ready") is True
    rows = await run_in_threadpool(runtime.index)
    return [r for r in rows if r["state"] == "READY"] if ready_only else rows


@router.post(
    "/models/{name}/load",
    summary="Load or reload a model folder; swapped in once warm",
    response_model=None,
)
async def load(request: Request, name: str, runtime: RuntimeDep) -> dict:
    await _options(request)
    caller = principal_of(request.scope)
    try:
        await run_in_threadpool(runtime.load_model, name)
    except LoadError as e:
        manage(caller, "load", name, f"failed: {e}")
        raise LoadFailed(f"failed to load {name!r}: {e}") from None
    manage(caller, "load", name)
    return {}


@router.post("/models/{name}/unload", summary="Stop serving a model", response_model=None)
async def unload(request: Request, name: str, runtime: RuntimeDep) -> dict:
    await _options(request)
    await run_in_threadpool(runtime.unload_model, name)
    manage(principal_of(request.scope), "unload", name)
    return {}


@router.get(
    "/models/{name}/labels",
    summary="A model's version labels (stable, canary…) and the versions they name",
    response_model=None,
)
async def labels(name: str, runtime: RuntimeDep) -> dict:
    runtime.get(name)  # 404 for a model not served
    return {"name": name, "labels": runtime.models.labels(name)}


@router.put(
    "/models/{name}/labels/{label}",
    summary='Point a label at a served version (body {"version": 2}); written to labels.json',
    response_model=None,
)
async def move_label(request: Request, name: str, label: str, runtime: RuntimeDep) -> dict:
    opts = await _options(request)
    version = opts.get("version")
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise V2Error(f'the body must be {{"version": N}} with N a served version, got {version!r}')
    persisted = await run_in_threadpool(runtime.set_label, name, label, version)
    manage(principal_of(request.scope), "set label", name, f"{label} -> version {version}")
    return {"name": name, "labels": runtime.models.labels(name), "persisted": persisted}
