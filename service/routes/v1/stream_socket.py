"""A live stream over a WebSocket: ``/v1/streams/{id}/ws``, frames in, one answer out each.

Messages are binary PNG (or any file predict takes), raw uint8 bytes of whole frames at the
model's size, or text JSON ``{"frames": [base64]}``; each is answered as ``POST
/v1/streams/{id}/frames`` answers. The socket is accepted first, so that a browser (which cannot
read a refused handshake) learns why it is closed: the error as a message, then the close code
4000 + the HTTP status (4404 no such stream, 4410 it ended, 4422 a bad parameter).

A socket is bounded like a request: its frames are decoded off the event loop when they are
large (as uploads are: ``service/http/uploads.py``), a socket that sends nothing for
FRAMECAST_WS_IDLE_TIMEOUT_S is closed (4408), and an idle socket looks at its stream every
FRAMECAST_WS_CHECK_S, closing once the stream ended, expired or was deleted (4410, 4404). Open
sockets count against FRAMECAST_WS_MAX_CONNECTIONS, apart from HTTP's connections
(``service/http/connections.py``). With keys on, the socket's key (a header, or the key behind
its ticket) must own the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from service.auth.principals import Principal, Scope, principal_of
from service.errors import (
    BodyTimeout,
    Forbidden,
    FramecastError,
    InvalidInput,
    StreamGone,
    StreamNotFound,
    Unauthorized,
    render_websocket,
    websocket_close_code,
)
from service.http.uploads import decode_bounded, offload
from service.media.decode import sniff
from service.media.fitting import FITS
from service.media.frames import Frame, Limits
from service.routes.v1.streams import _opts
from service.streams.feeding import Options, feed
from service.streams.store import how_to_reopen

log = logging.getLogger("framecast.streams")
router = APIRouter(tags=["streams"])


async def ws_frames(
    data: bytes | None, text: str | None, shape: tuple[int, int, int], settings: Any
) -> list:
    """One WebSocket message's frames: binary PNG (or any file predict takes), raw uint8 bytes of
    whole frames at the model's size (H x W x C each), or text JSON ``{"frames": [base64]}``;
    decoded as an upload is (off the event loop when large, within the decoding deadline)."""
    limits = Limits(settings.max_frames, settings.max_frame_pixels, settings.max_total_pixels)
    if text is not None:
        from service.http.uploads import json_parts

        raw = text.encode()
        small = len(raw) <= settings.inline_work_bytes
        parts = (await offload(small, lambda: json_parts(raw, settings)))[0]
        return await decode_bounded(parts, limits, settings, len(raw))
    assert data is not None
    if sniff(data) is not None:
        return await decode_bounded([("message", data)], limits, settings, len(data))
    size = int(np.prod(shape))
    if not data or len(data) % size:
        raise InvalidInput(
            f"a binary message of {len(data)} bytes is neither an image nor whole raw frames of "
            f"{shape[0]}x{shape[1]}x{shape[2]} uint8 ({size} bytes each)"
        )
    pixels = np.frombuffer(data, np.uint8).reshape((-1, *shape))
    return [Frame(None, f"message frame {i}", u8=f) for i, f in enumerate(pixels)]


async def _refuse(websocket: WebSocket, e: FramecastError) -> None:
    """Answer a socket that cannot go on: the error as a message, then the close code (4000 +
    the HTTP status: 4404 no such stream, 4410 it ended, 4422 a bad parameter, …)."""
    text, _ = render_websocket(e)
    try:
        await websocket.send_text(text)
        await websocket.close(code=websocket_close_code(e), reason=e.message[:120])
    except (WebSocketDisconnect, RuntimeError):  # the client left first
        pass


@router.websocket("/v1/streams/{stream_id}/ws")
async def stream_ws(
    websocket: WebSocket,
    stream_id: str,
    horizon: str = "1",
    raw: str = "false",
    resize: str = "true",
    fit: str = "stretch",
    on_close: str = "keep",
) -> None:
    """Frames in (binary PNG or raw uint8, or JSON text), one answer out per message, as the
    HTTP route answers; an error answers that message and the socket stays open, except for a
    stream that ended (closed with code 4410) or one that does not exist (4404). A bad
    parameter is closed with 4422 once open (browsers cannot read a refused handshake).
    ``on_close``: ``keep`` the stream when the socket closes (for a reconnect; the default) or
    ``end`` it."""
    app = websocket.app
    store, settings, runtime = app.state.streams, app.state.settings, app.state.runtime
    caller = principal_of(websocket.scope)
    await websocket.accept()
    try:
        opts = _opts(
            settings,
            _ws_int("horizon", horizon),
            _ws_bool("raw", raw),
            _ws_bool("resize", resize),
            _ws_choice("fit", fit, FITS),
            None,
        )
        ending = _ws_choice("on_close", on_close, ("keep", "end")) == "end"
        entry = await store.get(stream_id, caller=caller)
    except FramecastError as e:
        await _refuse(websocket, e)
        return
    first = next(iter(entry.members.values()))
    shape = tuple(first.frame_shape)
    try:
        await _serve_ws(websocket, store, runtime, settings, stream_id, shape, opts, caller)
    finally:
        if ending:
            why = "was ended when its WebSocket closed (on_close=end); " + how_to_reopen(entry)
            try:
                if await store.end(stream_id, why):
                    log.info("stream %s ended with its websocket (on_close=end)", stream_id)
            except FramecastError as e:  # the store is away: it expires by itself
                log.warning("stream %s: not ended with its websocket: %s", stream_id, e.message)


def _ws_int(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise InvalidInput(f"{name}={raw[:20]!r}: give a whole number")
    return int(raw)


def _ws_bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise InvalidInput(f"{name}={raw[:20]!r}: give true or false")


def _revoked(keys: Any, caller: Principal | None) -> FramecastError | None:
    """Why an open socket's key may no longer send (removed from the keys file, or its
    ``stream`` scope taken away: the file is re-read without a restart); None while it may."""
    if caller is None or keys is None:
        return None
    now = keys.by_id(caller.id)
    if now is None:
        return Unauthorized(f"key {caller.id!r} was removed; this WebSocket is closed")
    if not now.can(Scope.STREAM):
        return Forbidden(f"key {caller.id!r} no longer has the stream scope; this WebSocket is "
                         "closed")  # fmt: skip
    return None


def _ws_choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise InvalidInput(f"{name}={raw[:20]!r}: choose one of {', '.join(choices)}")
    return raw


async def _serve_ws(
    websocket: WebSocket,
    store: Any,
    runtime: Any,
    settings: Any,
    stream_id: str,
    shape: tuple,
    opts: Options,
    caller: Principal | None,
) -> None:
    idle_s, check_s = settings.ws_idle_timeout_s, settings.ws_check_s
    keys = getattr(websocket.app.state, "keys", None)
    last = time.monotonic()
    while True:
        revoked = _revoked(keys, caller)
        if revoked is not None:  # its key left the keys file (or its stream scope) meanwhile
            log.info("stream %s: websocket closed: %s", stream_id, revoked.message)
            await _refuse(websocket, revoked)
            return
        left = last + idle_s - time.monotonic()
        try:
            msg = await asyncio.wait_for(websocket.receive(), max(0.0, min(check_s, left)))
        except TimeoutError:
            if time.monotonic() - last >= idle_s:
                gone: FramecastError = BodyTimeout(
                    f"the WebSocket sent no message for {idle_s:g} s "
                    "(FRAMECAST_WS_IDLE_TIMEOUT_S); connect again to go on"
                )
                log.info("stream %s: websocket closed after %.0f s idle", stream_id, idle_s)
                await _refuse(websocket, gone)
                return
            try:  # still open? (ended, expired or deleted meanwhile: closed with why)
                await store.peek(stream_id, caller)
            except FramecastError as e:
                if isinstance(e, (StreamNotFound, StreamGone)):
                    await _refuse(websocket, e)
                    return
            continue
        except (WebSocketDisconnect, RuntimeError):
            return
        if msg["type"] == "websocket.disconnect":
            return
        if _revoked(keys, caller) is not None:
            continue  # refused at the top, this message unanswered
        last = time.monotonic()
        try:
            frames = await ws_frames(msg.get("bytes"), msg.get("text"), shape, settings)
            body = await feed(runtime, store, stream_id, frames, opts)
        except FramecastError as e:
            text, close = render_websocket(e)
            try:
                await websocket.send_text(text)
                if close is not None:
                    await websocket.close(code=close, reason=e.message[:120])
                    return
            except (WebSocketDisconnect, RuntimeError):
                log.info("stream %s: websocket client left before its answer", stream_id)
                return
            continue
        try:
            await websocket.send_text(json.dumps(body))
        except (WebSocketDisconnect, RuntimeError):  # the client left mid-answer
            log.info("stream %s: websocket client left before its answer", stream_id)
            return
