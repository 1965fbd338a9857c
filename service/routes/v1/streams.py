"""Live streams: frames that keep arriving, each predicted as it comes, with the state kept here.

``POST /v1/models/{name}/streams`` opens one (and may take its first frames, or a snapshot),
``POST /v1/streams/{id}/frames`` feeds it (any upload form predict takes), ``POST
/v1/compare/streams`` opens one over several models, ``GET /v1/streams/{id}/snapshot`` takes one
out, ``POST /v1/streams/{id}/ticket`` gives a browser a ticket for its WebSocket. ``/v1/streams/
{id}/ws`` (the same over a WebSocket) is ``stream_socket.py``'s. The stream's state, limits and
lifetimes are ``service/streams/``'s; this module parses HTTP.

With keys on, a stream belongs to the key that opened it: every route here passes the caller to
the store, which answers a stream of another key (to any key but an admin) as an unknown id.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from service.auth import tickets
from service.auth.principals import owner_of, principal_of
from service.checks import require_horizon
from service.deps import RuntimeDep, SettingsDep, StreamsDep
from service.errors import InvalidInput
from service.http.uploads import read_upload
from service.inference import Fit
from service.media.fitting import FitMode
from service.routes import params
from service.routes.openapi import error_responses, upload_openapi
from service.routes.v1.compare import ARCHS, choose
from service.routes.v1.predict import FitQuery, ResizeQuery
from service.streams import snapshot as snapshots
from service.streams.feeding import Options, feed, new_group, new_stream
from service.streams.records import Group, Stream
from service.streams.schemas import (
    CompareStreamAnswer,
    StreamAnswer,
    StreamInfo,
    StreamList,
    StreamOpened,
)

HOW_TO = "POST /v1/models/{name}/streams"

log = logging.getLogger("framecast.streams")
audit = logging.getLogger("framecast.audit")
router = APIRouter(tags=["streams"])

PastContext = Query(
    None,
    description="carried-state models only: past the model's context, carry the state on "
    "(one step per frame) or keep a window of the last context frames (a context pass per "
    "frame); default FRAMECAST_STREAM_PAST_CONTEXT",
    pattern="^(carry|window)$",
)
StepQuery = Query(
    None,
    ge=0,
    description="frames you sent before these: a mismatch (a lost or repeated frame) is a 409",
)


IdleQuery = Query(
    None,
    gt=0,
    description="seconds without a frame after which the stream expires (default "
    "FRAMECAST_STREAM_IDLE_TIMEOUT_S, at most FRAMECAST_STREAM_MAX_IDLE_TIMEOUT_S)",
)


def _log_model(request: Request, entry: Any) -> None:
    """The access log's model= for a route named by stream id: the stream's model(s)."""
    request.state.model = ",".join(entry.members)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return bool(request.headers.get("content-type")) and (length is None or int(length) > 0)


def _opts(settings: Any, horizon: int, raw: bool, resize: bool, fit: str, step: int | None):
    require_horizon(horizon, settings.max_horizon)
    return Options(horizon, raw, Fit(resize, fit), step)


def _opened(entry: Any, store: Any, answer: dict | None, restored: bool = False) -> JSONResponse:
    info = entry.info(store.clock())
    where = f"/v1/streams/{entry.id}"
    body = {**info, "location": f"{where}/frames", "answer": answer, "restored": restored}
    return JSONResponse(body, status_code=201, headers={"Location": where})


@router.post(
    "/v1/models/{name}/streams",
    status_code=201,
    response_model=StreamOpened,
    summary="Open a live stream on a next-frame model (optionally with its first frames, or "
    "from a snapshot)",
    description="Answers 201 with the stream's id and a `Location`. The body, when sent, holds "
    "the first frames in any upload form predict takes; the answer to them is `answer`. A "
    "multipart file part named `snapshot` (what `GET /v1/streams/{id}/snapshot` gave) opens "
    "the stream where that one stood: its next prediction is the uninterrupted stream's.",
    openapi_extra=upload_openapi(with_truth=False),
    responses=error_responses(404, 413, 415, 422, 503),
)
async def open_one(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    streams: StreamsDep,
    name: str = Path(description="a next-frame model", examples=["convlstm2d_next_frame"]),
    past_context: str | None = PastContext,
    horizon: int = params.HORIZON.query(),
    raw: bool = params.RAW.query(),
    resize: bool = ResizeQuery,
    fit: FitMode = FitQuery,
    version: str | None = params.VERSION.query(),
    idle_timeout_s: float | None = IdleQuery,
) -> JSONResponse:
    runner = runtime.get(name, version)
    opts = _opts(settings, horizon, raw, resize, fit, None)
    caller = principal_of(request.scope)
    stream = new_stream(
        streams,
        runner,
        past_context,
        idle_timeout_s=idle_timeout_s,
        pinned=version or None,
        owner=owner_of(caller),
    )
    upload = (
        await read_upload(request, settings, allow_truth=False, allow_snapshot=True)
        if _has_body(request)
        else None
    )
    if upload is not None and upload.snapshot is not None:
        stream = snapshots.restore(upload.snapshot, runner, settings, stream)
    await streams.create(stream, caller)  # the limits and the insert: one step
    answer: dict | None = None
    entry: Stream | Group = stream
    if upload is not None and upload.frames:
        try:
            answer = await feed(runtime, streams, stream.id, upload.frames, opts)
            entry = await streams.get(stream.id)  # as the frames left it
        except BaseException:
            await streams.end(stream.id, "was never opened: its first frames were refused")
            raise
    return _opened(entry, streams, answer, upload is not None and upload.snapshot is not None)


@router.post(
    "/v1/compare/streams",
    status_code=201,
    summary="Open one live stream over several next-frame models, side by side",
    description="`models=a,b[,c…]` (default: the Conv2D+LSTM and ConvLSTM2D next-frame pair). "
    "Every frame posted to it goes to each model; answers put their predictions and surprises "
    "side by side, with the winner of each metric.",
    responses=error_responses(404, 422, 503),
)
async def open_compare(
    request: Request,
    runtime: RuntimeDep,
    streams: StreamsDep,
    models: str | None = Query(None, description="comma-separated next-frame models"),
    past_context: str | None = PastContext,
    idle_timeout_s: float | None = IdleQuery,
) -> JSONResponse:
    runners = list(choose(runtime, "next_frame", models, dict.fromkeys(ARCHS)).values())
    caller = principal_of(request.scope)
    group = new_group(
        streams, runners, past_context, idle_timeout_s=idle_timeout_s, owner=owner_of(caller)
    )
    await streams.create(group, caller)
    _log_model(request, group)
    return _opened(group, streams, None)


@router.post(
    "/v1/streams/{stream_id}/frames",
    response_model=StreamAnswer | CompareStreamAnswer,
    summary="Send a stream its next frame(s); answers the next prediction and the surprise",
    description="One or more frames in any upload form predict takes. `step` in the answer is "
    "the frames received so far; `frames` the prediction of the next `horizon` frame(s) (empty "
    "until the model's context is full: `needs` says how many more); `surprise` the error of the "
    "prediction made for each frame just received (null when none had been). With `step=` (the "
    "frames sent before these) a post is safe to retry: sent again after a timeout it is "
    "answered again, never applied twice.",
    openapi_extra=upload_openapi(with_truth=False),
    responses=error_responses(404, 409, 410, 413, 415, 422, 503, 504),
)
async def post_frames(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    streams: StreamsDep,
    stream_id: str,
    horizon: int = params.HORIZON.query(),
    raw: bool = params.RAW.query(),
    resize: bool = ResizeQuery,
    fit: FitMode = FitQuery,
    step: int | None = StepQuery,
) -> Response:
    opts = _opts(settings, horizon, raw, resize, fit, step)
    caller = principal_of(request.scope)  # 404 / 410 before the upload is read, and with keys
    if caller is not None or not streams.shared:  # on a stream the caller may not see is a 404
        _log_model(request, await streams.peek(stream_id, caller))  # (keys off, a shared store:
    # a round trip saved, the step answers 404 / 410 itself)
    frames = (await read_upload(request, settings, allow_truth=False)).frames
    headers: dict[str, str] = {}
    body = await feed(runtime, streams, stream_id, frames, opts, headers)
    request.state.model = ",".join(body["models"]) if "models" in body else body["model"]
    return Response(json.dumps(body), media_type="application/json", headers=headers)


@router.get(
    "/v1/streams",
    response_model=StreamList,
    summary="The open streams (with keys on: the caller's; an admin's: all)",
)
async def list_streams(request: Request, streams: StreamsDep) -> dict:
    return {"streams": await streams.listing(principal_of(request.scope))}


@router.get(
    "/v1/streams/{stream_id}",
    response_model=StreamInfo | dict,
    summary="One stream: model, step, idle time, expiry, memory held",
    responses=error_responses(404, 410),
)
async def get_stream(request: Request, streams: StreamsDep, stream_id: str) -> dict:
    entry = await streams.get(stream_id, caller=principal_of(request.scope))
    _log_model(request, entry)
    return entry.info(streams.clock())


@router.get(
    "/v1/streams/{stream_id}/snapshot",
    summary="The stream as a file, to open it again here or on another server",
    description="numpy's `.npz` (never a pickle): the stream's description, its window, "
    "recurrent states and expected frame. Send it as the form field `snapshot` of "
    "`POST /v1/models/{name}/streams` to continue the stream there.",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the snapshot"},
        **error_responses(404, 410, 422),
    },
)
async def get_snapshot(request: Request, streams: StreamsDep, stream_id: str) -> Response:
    entry = await streams.get(stream_id, caller=principal_of(request.scope))
    _log_model(request, entry)
    if isinstance(entry, Group):
        raise InvalidInput(
            "a compare stream has no single snapshot; snapshot the stream of one of its "
            f"models: {', '.join(s.id for s in entry.members.values())} are not separate streams"
            ", so open them separately to move them"
        )
    return Response(
        snapshots.take(entry),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="stream-{entry.step}.npz"',
            "X-Stream-Step": str(entry.step),
        },
    )


@router.delete(
    "/v1/streams/{stream_id}",
    summary="Close a stream and free its state",
    responses=error_responses(404, 410),
)
async def delete_stream(request: Request, streams: StreamsDep, stream_id: str) -> dict:
    caller = principal_of(request.scope)
    entry = await streams.get(stream_id, caller=caller)
    _log_model(request, entry)
    async with streams.exclusive(stream_id):  # a post under way finishes first
        entry = await streams.get(stream_id, caller=caller)
        again = "POST /v1/compare/streams" if isinstance(entry, Group) else HOW_TO
        await streams.end(stream_id, f"was deleted; open a new one with {again}")
    if caller is not None and entry.owner != caller.id:  # an admin ended another key's stream
        audit.info("key %r: deleted stream %r of key %r", caller.id, stream_id, entry.owner)
    return {"id": stream_id, "deleted": True, "step": entry.step}


@router.post(
    "/v1/streams/{stream_id}/ticket",
    summary="A single-use ticket for the stream's WebSocket (for browsers: no key in a URL)",
    description='With the key in the `Authorization` header, answers `{"ticket", '
    '"expires_in_s"}`: connect to `/v1/streams/{id}/ws?ticket=…` within `expires_in_s` '
    "(FRAMECAST_WS_TICKET_TTL_S); the ticket is good for one connection, to this stream.",
    responses=error_responses(404, 410, 503),
)
async def ticket(
    request: Request, settings: SettingsDep, streams: StreamsDep, stream_id: str
) -> JSONResponse:
    caller = principal_of(request.scope)
    entry = await streams.get(stream_id, caller=caller)
    _log_model(request, entry)
    given = await tickets.issue(streams, caller, stream_id, settings)
    return JSONResponse(given, headers={"Cache-Control": "no-store"})
