"""Reading one upload from a request, whatever its form, with the size limits applied.

Accepted bodies (for every predict/classify/compare route):

- ``multipart/form-data``: file parts in order (several images, or one multi-frame file, or one
  ``.npy``); file parts named ``truth`` are the true future frames (compare only);
- ``application/json``: :class:`~service.schemas.FramesRequest` (base64 files);
- a raw file body (``image/*``, ``video/*``, ``application/octet-stream``, ``application/x-npy``):
  one file.

Video files (MP4, WebM, AVI, MOV) are accepted in every form; the query parameters ``start`` (the
first decoded frame kept) and ``stride`` (keep every stride-th frame) pick their frames.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from service.config import Settings
from service.errors import InvalidInput, PayloadTooLarge, TooFewFrames, UnsupportedMediaType
from service.http.limits import check_json
from service.media.decode import SUPPORTED, b64decode_item, decode_parts
from service.media.frames import Frame, Limits, Offload
from service.media.video import VideoOptions
from service.schemas import FramesRequest

T = TypeVar("T")
RAW_TYPES = (
    "image/",
    "video/",
    "application/octet-stream",
    "application/x-npy",
    "application/npy",
)


@dataclass
class Upload:
    frames: list[Frame]
    truth: list[Frame] | None  # None: no truth part was sent
    snapshot: bytes | None = None  # a stream's snapshot (the form field ``snapshot``)


SNAPSHOT = "snapshot"  # the form field that carries a stream's snapshot (opening a stream)


async def offload(small: bool, fn: Callable[[], T]) -> T:
    """``fn()`` here when the work is ``small`` (the thread hop would cost more than the work),
    else in a worker thread so the event loop keeps serving."""
    return fn() if small else await run_in_threadpool(fn)


INLINE_FIT_BYTES = 1 << 20  # fitting frames whose float32 output is this small stays inline


async def decode_bounded(
    parts: list[tuple[str, bytes]],
    limits: Limits,
    settings: Settings,
    size: int,
    video: VideoOptions | None = None,
) -> list[Frame]:
    """The frames of ``parts`` (``size``: their bytes). Decoded on the event loop while the work
    is small: bytes within FRAMECAST_INLINE_WORK_BYTES, and pixels within
    FRAMECAST_INLINE_WORK_PIXELS as each frame's header declares them before it is decoded (a
    small file may hold huge frames: an APNG of 4096x4096 pages); past either, or for a video, in
    a worker thread, within FRAMECAST_DECODE_TIMEOUT_S (413 past it: the thread stops at its next
    frame). So no upload stalls the other clients, and none decodes for ever."""
    if size <= settings.inline_work_bytes:
        start = limits.used_pixels[0]
        trial = Limits(  # the same limits, counting on a copy (dataclasses.replace is slow)
            max_frames=limits.max_frames,
            max_frame_pixels=limits.max_frame_pixels,
            max_total_pixels=limits.max_total_pixels,
            used_pixels=[start],
            deadline=limits.deadline,
            timeout_s=limits.timeout_s,
            inline_pixels=start + settings.inline_work_pixels,
        )
        try:
            frames = decode_parts(parts, trial, video=video)
        except Offload:
            pass  # nothing large was decoded here: the thread decodes it all
        else:
            limits.used_pixels[0] = trial.used_pixels[0]
            return frames
    limits.timeout_s = settings.decode_timeout_s
    limits.deadline = time.monotonic() + settings.decode_timeout_s
    work = run_in_threadpool(lambda: decode_parts(parts, limits, video=video))
    try:
        return await asyncio.wait_for(work, settings.decode_timeout_s + 0.5)
    except TimeoutError:  # one frame took the whole time: it stops at the next one
        raise PayloadTooLarge(
            f"decoding the upload took longer than {settings.decode_timeout_s:g} s "
            "(FRAMECAST_DECODE_TIMEOUT_S); send fewer or smaller frames"
        ) from None


async def read_body(request: Request) -> bytes:
    """The whole body, read from ``request.stream()``. Its size is bounded once, by
    :class:`~service.http.limits.BodyLimitMiddleware` (FRAMECAST_MAX_UPLOAD_BYTES), whose
    receive raises PayloadTooLarge at the chunk that crosses the limit."""
    chunks = [chunk async for chunk in request.stream()]
    return b"".join(chunks)


def _query_int(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    """The integer query parameter ``name`` in [low, high]; 422 naming it otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    allowed = f"an integer from {low}" + (f" to {high}" if high is not None else " up")
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidInput(
            f"query parameter {name}={raw!r} is not an integer; send {allowed}"
        ) from None
    if value < low or (high is not None and value > high):
        cap = " (FRAMECAST_MAX_VIDEO_STRIDE)" if name == "stride" else ""
        raise InvalidInput(f"query parameter {name}={value} is out of range; send {allowed}{cap}")
    return value


_EVERY_FRAME = VideoOptions()  # no query: every frame from the first (most requests)


def video_options(request: Request, settings: Settings) -> VideoOptions:
    """``start`` and ``stride`` from the query: which decoded frames of a video upload are kept."""
    if not request.scope.get("query_string"):  # nothing to parse (QueryParams costs µs a call)
        return _EVERY_FRAME
    return VideoOptions(
        start=_query_int(request, "start", 0, 0, None),
        stride=_query_int(request, "stride", 1, 1, settings.max_video_stride),
    )


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


_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# the Content-Disposition every client writes; anything else is read by python-multipart
_DISPOSITION = re.compile(rb'form-data; name="([^"\\]*)"(?:; filename="([^"\\]*)")?')


def split_multipart(
    request: Request, body: bytes, settings: Settings, snapshots: list[bytes] | None = None
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]] | None] | None:
    """A plain multipart body's file parts (and ``truth`` parts), as Starlette's ``form()``
    gives them, cut from the bytes at each delimiter (``bytes.split``, no copy per byte, no
    spooled file per part). Plain is what browsers, curl, requests and httpx send: no
    preamble, no transport padding, ``Name: value`` header lines, one Content-Disposition per
    part (read by python-multipart's ``parse_options_header``), the close delimiter last.
    Anything else — and more files or fields than allowed, a field over its size, a charset —
    gives None: ``form()`` then reads it and words any fault, so no answer changes."""
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 256 or b"charset" in params:
        return None
    pieces = (b"\r\n" + body).split(b"\r\n--" + boundary)
    if len(pieces) < 3 or pieces[0] or pieces[-1] not in (b"--", b"--\r\n"):
        return None
    if len(pieces) - 2 > settings.max_files + 100:
        return None
    parts: list[tuple[str, bytes]] = []
    truth: list[tuple[str, bytes]] | None = None
    snapshots = [] if snapshots is None else snapshots  # file parts named "snapshot"
    files = fields = 0
    for piece in pieces[1:-1]:
        head, sep, data = piece.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"\r\n"):
            return None
        disposition = None
        lines = head[2:].split(b"\r\n")
        if len(lines) > 8:  # python-multipart's limits: 8 header lines of at most 4224 bytes
            return None
        for line in lines:
            key, colon, value = line.partition(b":")
            if not colon or len(line) > 4096 or b"\r" in line or b"\n" in line:
                return None
            if not _TOKEN.fullmatch(key):
                return None
            if key.lower() == b"content-disposition":
                if disposition is not None:
                    return None
                disposition = value.strip(b" \t")
        if disposition is None:
            return None
        plain = _DISPOSITION.fullmatch(disposition)
        if plain:
            options = (
                {b"name": plain[1]}
                if plain[2] is None
                else {b"name": plain[1], b"filename": plain[2]}
            )
        else:
            kind, options = parse_options_header(disposition)
            if kind != b"form-data" or b"name" not in options:
                return None
        if b"filename" not in options:
            fields += 1
            if fields > 100 or len(data) > settings.max_upload_bytes:
                return None
            continue  # plain form fields carry no frames
        files += 1
        if files > settings.max_files:
            return None
        name = _decoded(options[b"name"])
        item = (_decoded(options[b"filename"]) or name, data)
        if name == "truth":
            truth = (truth or []) + [item]
        elif name == SNAPSHOT:
            snapshots.append(data)
        else:
            parts.append(item)
    return parts, truth


async def form_parts(
    request: Request, body: bytes, settings: Settings, snapshots: list[bytes] | None = None
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]] | None]:
    """The file parts (and ``truth`` parts) of any multipart body, through Starlette's
    ``form()``, which words every fault (422)."""
    try:
        form = await replayed(request, body).form(
            max_files=settings.max_files,
            max_fields=100,
            max_part_size=settings.max_upload_bytes,
        )
    except StarletteHTTPException as e:
        raise InvalidInput(f"malformed multipart body: {e.detail}") from None
    parts: list[tuple[str, bytes]] = []
    truth: list[tuple[str, bytes]] | None = None
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                continue  # plain form fields carry no frames
            item = (value.filename or key, await value.read())
            if key == "truth":
                truth = (truth or []) + [item]
            elif key == SNAPSHOT and snapshots is not None:
                snapshots.append(item[1])
            else:
                parts.append(item)
    finally:
        await form.close()
    return parts, truth


def _decoded(raw: bytes) -> str:
    """A part's name as Starlette decodes it (UTF-8, else Latin-1)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def json_parts(
    body: bytes, settings: Settings
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]] | None]:
    """The files of a JSON upload (``{"frames": [base64, ...], "truth": [...]}``), checked
    against the JSON limits: (frames' parts, truth's parts or None)."""
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
        (f"frames[{i}]", b64decode_item(s, f"JSON frames[{i}]")) for i, s in enumerate(req.frames)
    ]
    truth_parts = None
    if req.truth is not None:
        truth_parts = [
            (f"truth[{i}]", b64decode_item(s, f"JSON truth[{i}]")) for i, s in enumerate(req.truth)
        ]
    return parts, truth_parts


async def read_upload(
    request: Request, settings: Settings, *, allow_truth: bool, allow_snapshot: bool = False
) -> Upload:
    """The request's frames (and truth frames), decoded; raises 413/415/422 with a message.
    ``allow_snapshot``: a multipart file part named ``snapshot`` is a stream's snapshot, kept as
    bytes (opening a stream), and no frames need come with it."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    video = video_options(request, settings)  # before the body: a bad value costs no read
    body = await read_body(request)
    limits = Limits(
        max_frames=settings.max_frames,
        max_frame_pixels=settings.max_frame_pixels,
        max_total_pixels=settings.max_total_pixels,
    )
    parts: list[tuple[str, bytes]] = []
    truth_parts: list[tuple[str, bytes]] | None = None
    snapshots: list[bytes] = []

    if ctype == "multipart/form-data":
        plain = split_multipart(request, body, settings, snapshots)
        if plain is None:
            snapshots.clear()
            plain = await form_parts(request, body, settings, snapshots)
        parts, truth_parts = plain
    elif ctype == "application/json":  # parsing a large one (base64) is work: off the loop
        small = len(body) <= settings.inline_work_bytes
        parts, truth_parts = await offload(small, lambda: json_parts(body, settings))
    elif ctype.startswith(RAW_TYPES):
        parts = [("body", body)]
    else:
        shown = ctype or "none"
        raise UnsupportedMediaType(
            f"Content-Type {shown!r} is not accepted; send multipart/form-data (files in order), "
            f'application/json ({{"frames": [base64, ...]}}) or one raw file '
            f"(image/*, video/*, application/octet-stream). File formats: {SUPPORTED}"
        )

    if snapshots and not allow_snapshot:
        raise InvalidInput(
            "a snapshot is taken only when opening a stream: POST /v1/models/{name}/streams"
        )
    if len(snapshots) > 1:
        raise InvalidInput(f"{len(snapshots)} snapshot parts were sent; send one")
    if snapshots and not parts:
        return Upload([], None, snapshots[0])
    if not parts:
        raise TooFewFrames(
            "no frames were uploaded; send image files, one multi-frame file, a video, "
            "an .npy array or a JSON body with base64 frames"
        )
    if truth_parts is not None and not allow_truth:
        raise InvalidInput("truth frames are only accepted by POST /v1/compare/next-frame")
    frames = await decode_bounded(parts, limits, settings, len(body), video)
    truth = None
    if truth_parts is not None:
        left = Limits(
            max_frames=max(0, settings.max_frames - len(frames)),
            max_frame_pixels=settings.max_frame_pixels,
            max_total_pixels=settings.max_total_pixels,
            used_pixels=limits.used_pixels,
        )
        try:
            truth = await decode_bounded(truth_parts, left, settings, len(body), video)
        except InvalidInput as e:
            raise type(e)(f"truth: {e.message}") from None
    return Upload(frames, truth, snapshots[0] if snapshots else None)
