"""Reading one upload from a request, whatever its form, with the size limits applied.

Accepted bodies (for every predict/classify/compare route):

- ``multipart/form-data``: file parts in order (several images, or one multi-frame file, or one
  ``.npy``); file parts named ``truth`` are the true future frames (compare only);
- ``application/json``: :class:`~service.schemas.FramesRequest` (base64 files);
- a raw file body (``image/*``, ``application/octet-stream``, ``application/x-npy``): one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from service.codecs import SUPPORTED, Frame, Limits, b64decode_item, conform, decode_parts
from service.config import Settings
from service.errors import InvalidInput, PayloadTooLarge, TooFewFrames, UnsupportedMediaType
from service.limits import check_json
from service.schemas import FramesRequest

if TYPE_CHECKING:
    from service.runner import Runner

RAW_TYPES = ("image/", "application/octet-stream", "application/x-npy", "application/npy")


@dataclass
class Upload:
    frames: list[Frame]
    truth: list[Frame] | None  # None: no truth part was sent


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, read from ``request.stream()``; 413 when it is (or says it is) over
    ``limit`` bytes (the read stops at the chunk that crosses it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the body is {int(declared)} bytes; at most {limit} (FRAMECAST_MAX_UPLOAD_BYTES)"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes (FRAMECAST_MAX_UPLOAD_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


def replayed(request: Request, body: bytes) -> Request:
    """A new request with ``request``'s scope whose body is ``body`` (already read), so that
    Starlette's parsers (``form()``) can read it again."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


async def read_upload(request: Request, settings: Settings, *, allow_truth: bool) -> Upload:
    """The request's frames (and truth frames), decoded; raises 413/415/422 with a message."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request, settings.max_upload_bytes)
    limits = Limits(
        max_frames=settings.max_frames,
        max_frame_pixels=settings.max_frame_pixels,
        max_total_pixels=settings.max_total_pixels,
    )
    parts: list[tuple[str, bytes]] = []
    truth_parts: list[tuple[str, bytes]] | None = None

    if ctype == "multipart/form-data":
        try:
            form = await replayed(request, body).form(
                max_files=settings.max_files,
                max_fields=100,
                max_part_size=settings.max_upload_bytes,
            )
        except StarletteHTTPException as e:
            raise InvalidInput(f"malformed multipart body: {e.detail}") from None
        try:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    continue  # plain form fields carry no frames
                data = await value.read()
                name = value.filename or key
                if key == "truth":
                    truth_parts = (truth_parts or []) + [(name, data)]
                else:
                    parts.append((name, data))
        finally:
            await form.close()
    elif ctype == "application/json":
        check_json(body, max_depth=settings.max_json_depth, max_items=settings.max_json_items)
        try:
            req = FramesRequest.model_validate_json(body)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in err['loc']) or 'body'}: {err['msg']}"
                for err in e.errors()[:5]
            )
            raise InvalidInput(
                f'JSON body does not match {{"frames": [base64, ...], "truth": [...]}}: {problems}'
            ) from None
        n_items = len(req.frames) + len(req.truth or ())
        if n_items > settings.max_files:
            raise InvalidInput(
                f"the JSON body holds {n_items} base64 files; at most "
                f"{settings.max_files} (FRAMECAST_MAX_FILES)"
            )
        parts = [
            (f"frames[{i}]", b64decode_item(s, f"JSON frames[{i}]"))
            for i, s in enumerate(req.frames)
        ]
        if req.truth is not None:
            truth_parts = [
                (f"truth[{i}]", b64decode_item(s, f"JSON truth[{i}]"))
                for i, s in enumerate(req.truth)
            ]
    elif ctype.startswith(RAW_TYPES):
        parts = [("body", body)]
    else:
        shown = ctype or "none"
        raise UnsupportedMediaType(
            f"Content-Type {shown!r} is not accepted; send multipart/form-data (files in order), "
            f'application/json ({{"frames": [base64, ...]}}) or one raw file '
            f"(image/*, application/octet-stream). File formats: {SUPPORTED}"
        )

    if not parts:
        raise TooFewFrames(
            "no frames were uploaded; send image files, one multi-frame file, "
            "an .npy array or a JSON body with base64 frames"
        )
    if truth_parts is not None and not allow_truth:
        raise InvalidInput("truth frames are only accepted by POST /v1/compare/next-frame")
    frames = await run_in_threadpool(decode_parts, parts, limits)
    truth = None
    if truth_parts is not None:
        left = Limits(
            max_frames=max(0, settings.max_frames - len(frames)),
            max_frame_pixels=settings.max_frame_pixels,
            max_total_pixels=settings.max_total_pixels,
            used_pixels=limits.used_pixels,
        )
        try:
            truth = await run_in_threadpool(decode_parts, truth_parts, left)
        except InvalidInput as e:
            raise type(e)(f"truth: {e.message}") from None
    return Upload(frames, truth)


def take_context(frames: list[Frame], needed: int, model: str) -> tuple[list[Frame], int]:
    """The last ``needed`` frames and the index of the first; 422 when fewer were sent."""
    if len(frames) < needed:
        raise TooFewFrames(
            f"{len(frames)} frame(s) of context were uploaded; model {model!r} "
            f"needs {needed} (when more are sent it uses the last {needed})"
        )
    return frames[-needed:], len(frames) - needed


def _needs_change(frames: list[Frame], height: int, width: int, channels: int) -> bool:
    return any(f.data.shape != (height, width, channels) for f in frames)


async def fit_context(frames: list[Frame], runner: Runner, resize: bool) -> tuple[np.ndarray, bool]:
    """The model's context window ``(frames, H, W, C)`` from the upload, and whether any frame
    was resized or colour-converted."""
    m = runner.manifest
    chosen, first = take_context(frames, m.frames, m.name)
    arr = await fit_frames(chosen, runner, resize, offset=first)
    return arr, _needs_change(chosen, m.height, m.width, m.channels)


async def fit_frames(
    frames: list[Frame], runner: Runner, resize: bool, offset: int = 0
) -> np.ndarray:
    """Any frames (e.g. truth) fitted to the model's (H, W, C)."""
    m = runner.manifest
    return await run_in_threadpool(
        lambda: conform(
            frames,
            height=m.height,
            width=m.width,
            channels=m.channels,
            resize=resize,
            model=f"model {m.name!r}",
            offset=offset,
        )
    )
