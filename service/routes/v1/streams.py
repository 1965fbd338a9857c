"""Live streams: frames that keep arriving, each predicted as it comes, with the state kept here.

``POST /v1/models/{name}/streams`` opens one (and may take its first frames), ``POST
/v1/streams/{id}/frames`` feeds it (any upload form predict takes), ``/v1/streams/{id}/ws`` does
the same over a WebSocket, ``POST /v1/compare/streams`` opens one over several models. The
stream's state, limits and lifetimes are ``service/streams/``'s; this module parses HTTP.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

from service.checks import require_horizon
from service.deps import RuntimeDep, SettingsDep, StreamsDep
from service.errors import FramecastError, InvalidInput, render_websocket, websocket_close_code
from service.http.uploads import read_upload
from service.inference import Fit
from service.media.decode import decode_parts, sniff
from service.media.fitting import FitMode
from service.media.frames import Frame, Limits
from service.routes import params
from service.routes.openapi import error_responses, upload_openapi
from service.routes.v1.compare import ARCHS, choose
from service.routes.v1.predict import FitQuery, ResizeQuery
from service.streams.feeding import Options, feed, open_group, open_stream
from service.streams.schemas import (
    CompareStreamAnswer,
    StreamAnswer,
    StreamInfo,
    StreamList,
    StreamOpened,
)
from service.streams.store import Group

log = logging.getLogger("framecast.streams")
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


def _log_model(request: Request, entry: Any) -> None:
    """The access log's model= for a route named by stream id: the stream's model(s)."""
    request.state.model = ",".join(entry.members) if isinstance(entry, Group) else entry.model


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return bool(request.headers.get("content-type")) and (length is None or int(length) > 0)


def _opts(settings: Any, horizon: int, raw: bool, resize: bool, fit: str, step: int | None):
    require_horizon(horizon, settings.max_horizon)
    return Options(horizon, raw, Fit(resize, fit), step)


def _opened(entry: Any, store: Any, answer: dict | None) -> JSONResponse:
    info = entry.info(store.clock(), store.settings.stream_idle_timeout_s)
    where = f"/v1/streams/{entry.id}"
    body = {**info, "location": f"{where}/frames", "answer": answer}
    return JSONResponse(body, status_code=201, headers={"Location": where})


@router.post(
    "/v1/models/{name}/streams",
    status_code=201,
    response_model=StreamOpened,
    summary="Open a live stream on a next-frame model (optionally with its first frames)",
    description="Answers 201 with the stream's id and a `Location`. The body, when sent, holds "
    "the first frames in any upload form predict takes; the answer to them is `answer`.",
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
) -> JSONResponse:
    runner = runtime.get(name, version)
    opts = _opts(settings, horizon, raw, resize, fit, None)
    stream = open_stream(streams, runner, past_context)
    streams.check_room([name])
    frames = (
        (await read_upload(request, settings, allow_truth=False)).frames
        if _has_body(request)
        else []
    )
    streams.add(stream)
    answer = None
    if frames:
        try:
            answer = await feed(streams, stream.id, frames, opts, runtime.metrics)
        except BaseException:
            streams.end(stream.id, "was never opened: its first frames were refused")
            raise
    return _opened(stream, streams, answer)


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
) -> JSONResponse:
    runners = list(choose(runtime, "next_frame", models, dict.fromkeys(ARCHS)).values())
    group = open_group(streams, runners, past_context)
    streams.check_room([r.name for r in runners])
    streams.add(group)
    _log_model(request, group)
    return _opened(group, streams, None)


@router.post(
    "/v1/streams/{stream_id}/frames",
    response_model=StreamAnswer | CompareStreamAnswer,
    summary="Send a stream its next frame(s); answers the next prediction and the surprise",
    description="One or more frames in any upload form predict takes. `step` in the answer is "
    "the frames received so far; `frames` the prediction of the next `horizon` frame(s) (empty "
    "until the model's context is full: `needs` says how many more); `surprise` the error of the "
    "prediction made for each frame just received (null when none had been predicted).",
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
    _log_model(request, streams.get(stream_id))  # 404 / 410 before the upload is read
    frames = (await read_upload(request, settings, allow_truth=False)).frames
    headers: dict[str, str] = {}
    body = await feed(streams, stream_id, frames, opts, runtime.metrics, headers)
    return Response(json.dumps(body), media_type="application/json", headers=headers)


@router.get("/v1/streams", response_model=StreamList, summary="The open streams")
async def list_streams(streams: StreamsDep) -> dict:
    return {"streams": streams.listing()}


@router.get(
    "/v1/streams/{stream_id}",
    response_model=StreamInfo | dict,
    summary="One stream: model, step, idle time, expiry, memory held",
    responses=error_responses(404, 410),
)
async def get_stream(request: Request, streams: StreamsDep, stream_id: str) -> dict:
    entry = streams.get(stream_id)
    _log_model(request, entry)
    return entry.info(streams.clock(), streams.settings.stream_idle_timeout_s)


@router.delete(
    "/v1/streams/{stream_id}",
    summary="Close a stream and free its state",
    responses=error_responses(404, 410),
)
async def delete_stream(request: Request, streams: StreamsDep, stream_id: str) -> dict:
    async with streams.hold(stream_id) as entry:  # a post under way finishes first
        _log_model(request, entry)
        again = (
            "POST /v1/compare/streams"
            if isinstance(entry, Group)
            else "POST /v1/models/{name}/streams"
        )
        streams.end(stream_id, f"was deleted; open a new one with {again}")
    return {"id": stream_id, "deleted": True, "step": entry.step}


# ------------------------------------------------------------------------------ WebSocket


def ws_frames(
    data: bytes | None, text: str | None, shape: tuple[int, int, int], settings: Any
) -> list:
    """One WebSocket message's frames: binary PNG (or any file predict takes), raw uint8 bytes of
    whole frames at the model's size (H x W x C each), or text JSON ``{"frames": [base64]}``."""
    limits = Limits(settings.max_frames, settings.max_frame_pixels, settings.max_total_pixels)
    if text is not None:
        from service.http.uploads import json_parts

        return decode_parts(json_parts(text.encode(), settings)[0], limits)
    assert data is not None
    if sniff(data) is not None:
        return decode_parts([("message", data)], limits)
    size = int(np.prod(shape))
    if not data or len(data) % size:
        raise InvalidInput(
            f"a binary message of {len(data)} bytes is neither an image nor whole raw frames of "
            f"{shape[0]}x{shape[1]}x{shape[2]} uint8 ({size} bytes each)"
        )
    raw = np.frombuffer(data, np.uint8).reshape((-1, *shape))
    return [Frame(None, f"message frame {i}", u8=f) for i, f in enumerate(raw)]


@router.websocket("/v1/streams/{stream_id}/ws")
async def stream_ws(
    websocket: WebSocket,
    stream_id: str,
    horizon: int = 1,
    raw: bool = False,
    resize: bool = True,
    fit: str = "stretch",
) -> None:
    """Frames in (binary PNG or raw uint8, or JSON text), one answer out per message, as the
    HTTP route answers; an error answers that message and the socket stays open, except for a
    stream that ended (closed with code 4410) or one that does not exist (4404)."""
    app = websocket.app
    store, settings = app.state.streams, app.state.settings
    try:
        opts = _opts(settings, horizon, raw, resize, fit, None)
        entry = store.get(stream_id)
    except FramecastError as e:
        await websocket.close(code=websocket_close_code(e), reason=e.message[:120])
        return
    first = next(iter(entry.members.values())) if isinstance(entry, Group) else entry
    m = first.runner.manifest
    await websocket.accept()
    while True:
        try:
            msg = await websocket.receive()
        except WebSocketDisconnect:
            return
        if msg["type"] == "websocket.disconnect":
            return
        try:
            frames = ws_frames(
                msg.get("bytes"), msg.get("text"), (m.height, m.width, m.channels), settings
            )
            body = await feed(store, stream_id, frames, opts, app.state.metrics)
        except FramecastError as e:
            text, close = render_websocket(e)
            await websocket.send_text(text)
            if close is not None:
                await websocket.close(code=close, reason=e.message[:120])
                return
            continue
        try:
            await websocket.send_text(json.dumps(body))
        except (WebSocketDisconnect, RuntimeError):  # the client left mid-answer
            log.info("stream %s: websocket client left before its answer", stream_id)
            return
