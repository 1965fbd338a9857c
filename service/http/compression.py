"""Compressed requests and responses (``Content-Encoding`` / ``Accept-Encoding``: gzip, deflate),
as tritonclient's ``request_compression_algorithm`` and ``response_compression_algorithm`` send.

- **Requests**: a body sent with ``Content-Encoding: gzip`` or ``deflate`` is inflated as it
  streams in, at most :data:`CHUNK` bytes of output per step (``zlib``'s ``max_length``), and
  the inflated bytes are what :class:`~service.http.limits.BodyLimitMiddleware` (inside this one)
  counts: a small gzip that inflates past FRAMECAST_MAX_UPLOAD_BYTES is a 413 after at most one
  chunk past the limit, never a memory spike. ``Content-Length`` and ``Content-Encoding`` are
  dropped from the request the app sees (the length it declared was the compressed one). Data
  that is not valid gzip/deflate is a 400; another encoding (``br``, ``zstd``) a 415.
- **Responses**: a client that accepts ``gzip`` (or else ``deflate``) gets JSON and text answers
  of at least FRAMECAST_COMPRESS_MIN_BYTES compressed (Starlette's GZip responder; deflate is
  the same with a zlib header). Images, videos, ``.npy`` and binary tensors are sent as they are:
  compressing them costs CPU for little.
"""

from __future__ import annotations

import zlib

from starlette.middleware.gzip import GZipResponder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BadRequest, UnsupportedMediaType, send_error

CHUNK = 1 << 20  # most inflated bytes handed on per step
NOT_COMPRESSED = (
    "image/png",
    "image/gif",
    "image/jpeg",
    "image/webp",
    "video/mp4",
    "video/webm",
    "application/octet-stream",
    "application/x-npy",
    "text/event-stream",
)
ENCODINGS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class DeflateResponder(GZipResponder):
    """Starlette's gzip responder with HTTP's ``deflate``: the zlib format (RFC 9110)."""

    content_encoding = "deflate"

    @property
    def compressor(self) -> zlib._Compress:
        if self._compressor is None:
            self._compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, zlib.MAX_WBITS)
        return self._compressor


def _inflating(receive: Receive, encoding: str) -> Receive:
    """``receive`` with each body chunk inflated, at most :data:`CHUNK` bytes a message."""
    wbits = ENCODINGS[encoding]
    inflater = zlib.decompressobj(wbits)
    pending = b""  # compressed input zlib has not consumed yet (output was capped)
    done = False
    produced = 0  # inflated bytes so far
    fed = False  # any compressed byte seen

    def inflate(data: bytes) -> bytes:
        nonlocal inflater, produced, fed
        fed = fed or bool(data)
        try:
            out = inflater.decompress(data, CHUNK)
            produced += len(out)
            return out
        except zlib.error as e:
            if encoding == "deflate" and produced == 0:
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some send it
                return inflate(data)
            raise BadRequest(
                f"the body is not valid {encoding} data (Content-Encoding: {encoding}): {e}"
            ) from None

    async def receive_inflated() -> Message:
        nonlocal pending, done
        if pending:
            out = inflate(pending)
            pending = inflater.unconsumed_tail
            return {"type": "http.request", "body": out, "more_body": bool(pending) or not done}
        if done:
            return {"type": "http.request", "body": b"", "more_body": False}
        message = await receive()
        if message["type"] != "http.request":
            return message
        more = message.get("more_body", False)
        out = inflate(message.get("body", b""))
        pending = inflater.unconsumed_tail
        if not more:
            done = True
            if not pending and not inflater.eof and fed:
                raise BadRequest(
                    f"the {encoding} body ends before its compressed stream does "
                    "(truncated upload?)"
                )
        return {"type": "http.request", "body": out, "more_body": bool(pending) or more}

    return receive_inflated


class CompressionMiddleware:
    """Inflate compressed request bodies; compress JSON/text answers for clients that accept it
    (pure ASGI; outside the body limit, so that the limit counts inflated bytes)."""

    def __init__(self, app: ASGIApp, min_bytes: int = 1024, level: int = 6):
        self.app, self.min_bytes, self.level = app, min_bytes, level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sent, accept = b"", b""  # two headers read off the list: no Headers object a request
        for k, v in scope["headers"]:
            if k == b"content-encoding":
                sent = v
            elif k == b"accept-encoding":
                accept = v
        encoding = sent.decode("latin-1").strip().lower()
        if encoding not in ("", "identity"):
            if encoding not in ENCODINGS:
                message = (
                    f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or "
                    "identity"
                )
                await send_error(send, UnsupportedMediaType(message), scope, close=True)
                return
            scope = dict(scope)
            scope["headers"] = [
                (k, v)
                for k, v in scope["headers"]
                if k not in (b"content-length", b"content-encoding")
            ]
            receive = _inflating(receive, encoding)
        accept = accept.lower()
        responder: ASGIApp
        if b"gzip" in accept:
            responder = GZipResponder(
                self.app, self.min_bytes, compresslevel=self.level,
                exclude_content_types=NOT_COMPRESSED,
            )  # fmt: skip
        elif b"deflate" in accept:
            responder = DeflateResponder(
                self.app, self.min_bytes, compresslevel=self.level,
                exclude_content_types=NOT_COMPRESSED,
            )  # fmt: skip
        else:  # nothing to compress: no responder in the way (the hot path's usual case)
            return await self.app(scope, receive, send)
        await responder(scope, receive, send)
