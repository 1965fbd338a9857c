"""Request-wide limits: the body size (checked while the body streams in), JSON shape, deadlines.

- :class:`BodyLimitMiddleware` (pure ASGI) answers 413 at once when ``Content-Length`` is over
  FRAMECAST_MAX_UPLOAD_BYTES, and otherwise counts the bytes of the ``http.request`` messages as
  the app reads them: the read that crosses the limit raises :class:`PayloadTooLarge`, so at most
  one chunk past the limit is ever held (a chunked body without a length is caught the same way).
  It also sets the request's deadline (FRAMECAST_REQUEST_TIMEOUT_S from arrival).

  After a declared-oversize 413 the connection is closed. Closing a socket whose peer is still
  sending makes the kernel reset it, and the client then loses the answer it had not read yet
  (``Connection reset by peer``). So when the body is declared over the limit by at most
  FRAMECAST_OVERSIZE_DRAIN_BYTES, the 413 is sent at once and the body is then read and dropped
  (until it ends, or no byte comes for :data:`DRAIN_IDLE_S`, or the deadline) before the close:
  a client that sends it whole reads the 413. A body declared larger still, or one sent with
  ``Expect: 100-continue`` (its client waits for leave to send), is cut off at once.
- :func:`current_deadline` is that deadline (a ``time.monotonic()`` value, or None outside a
  request). It lives in a context variable, so the runtime reads it without every route passing
  it along; ``asyncio.gather`` copies the context, so it holds inside compare's concurrent calls.
- :func:`check_json` bounds a JSON body before it is parsed: its values (commas) and its nesting.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTimeout, ClientGone, InvalidInput, PayloadTooLarge, send_error

log = logging.getLogger("framecast.http")

_deadline: ContextVar[float | None] = ContextVar("framecast_deadline", default=None)

# after a declared-oversize 413: stop reading the body when no byte arrives for this long
DRAIN_IDLE_S = 1.0


def current_deadline() -> float | None:
    """When the current request must be answered (``time.monotonic()``), or None."""
    return _deadline.get()


@contextmanager
def deadline_scope(seconds: float | None) -> Iterator[float | None]:
    """The deadline of work begun in the block, ``seconds`` from now (None: none), for callers
    outside the HTTP layers (the gRPC service)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes`` (declared or streamed) and the per-request deadline.

    The deadline covers reading the body too: a body that sends nothing for ``body_idle_s``, or
    is not complete by the deadline, is answered 408 and its connection closed
    (:class:`~service.errors.BodyTimeout`); a client that leaves mid-body raises
    :class:`~service.errors.ClientGone`, logged as one line (no answer: nobody reads it)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_s: float | None = None,
        drain_bytes: int = 0,
        drain_idle_s: float = DRAIN_IDLE_S,
        body_idle_s: float | None = None,
        wide: dict[str, tuple[int, float, str, str]] | None = None,
    ) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.drain_bytes, self.drain_idle_s = drain_bytes, drain_idle_s
        self.body_idle_s = body_idle_s
        # POST paths with limits of their own: path → (max bytes, deadline s, their settings)
        self.wide = wide or {}

    def _limits(self, scope: Scope) -> tuple[int, float | None, str, str]:
        wide = self.wide.get(scope.get("path", "")) if scope.get("method") == "POST" else None
        if wide is not None:
            return wide
        return (
            self.max_bytes,
            self.timeout_s,
            "FRAMECAST_MAX_UPLOAD_BYTES",
            "FRAMECAST_REQUEST_TIMEOUT_S",
        )

    def _stall(self, seen: int, deadline: float | None, timeout: float | None, name: str) -> str:
        """Why a body that stopped coming is answered 408."""
        if deadline is not None and time.monotonic() >= deadline - 1e-3:
            return (
                f"the request body was not complete within the request deadline "
                f"({timeout:g} s, {name}) after {seen} bytes"
            )
        return (
            f"the request body stalled: no bytes for {self.body_idle_s:g} s after {seen} bytes "
            "(FRAMECAST_BODY_IDLE_TIMEOUT_S)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, timeout, limit_name, timeout_name = self._limits(scope)
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            size = int(declared)
            drain = (
                size - limit <= self.drain_bytes
                and headers.get(b"expect", b"").lower() != b"100-continue"
            )
            deadline = time.monotonic() + timeout if timeout else None
            return await _send_413(
                send,
                scope,
                f"the body is {size} bytes; at most {limit} ({limit_name})",
                drain=(receive, size, self.drain_idle_s, deadline) if drain else None,
            )
        seen, body_done = 0, False
        t0 = time.monotonic()
        deadline = t0 + timeout if timeout else None

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:  # after the body: waiting for a disconnect is the caller's business
                return await receive()
            waits = [self.body_idle_s] if self.body_idle_s else []
            if deadline is not None:
                waits.append(deadline - time.monotonic())
            try:
                async with asyncio.timeout(max(min(waits), 0.0) if waits else None):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self._stall(seen, deadline, timeout, timeout_name)) from None
            if message["type"] == "http.disconnect":
                raise ClientGone(seen)
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the body exceeds {limit} bytes ({limit_name})")
                body_done = not message.get("more_body", False)
            return message

        token = _deadline.set(deadline)
        try:
            await self.app(scope, limited_receive, send)
        except ClientGone as gone:  # from a route or the hot path: nobody to answer
            log.info("%s %s: %s", scope.get("method"), scope.get("path"), gone)
            try:  # recorded as 499 by the log and metrics layers outside; the client never reads it
                await send({"type": "http.response.start", "status": ClientGone.status})
                await send({"type": "http.response.body", "body": b""})
            except Exception:  # noqa: BLE001 - the server may refuse sends after a disconnect
                pass
        finally:
            _deadline.reset(token)


async def _send_413(
    send: Send,
    scope: Scope,
    message: str,
    drain: tuple[Receive, int, float, float | None] | None = None,
) -> None:
    """The 413 answer, then (``drain``) the body read and dropped before the response ends and
    the server closes the connection."""
    await send_error(send, PayloadTooLarge(message), scope, close=True, more_body=drain is not None)
    if drain is None:
        return
    try:
        await drain_body(*drain)
    finally:
        await send({"type": "http.response.body", "body": b""})


async def drain_body(
    receive: Receive, max_bytes: int, idle_s: float, deadline: float | None = None
) -> int:
    """Read and drop the request body until it ends, ``max_bytes`` were read, no byte came for
    ``idle_s`` seconds, the client left or ``deadline`` (``time.monotonic()``) passed; returns
    the bytes read."""
    seen = 0
    while seen < max_bytes:
        wait = idle_s if deadline is None else min(idle_s, deadline - time.monotonic())
        if wait <= 0:
            break
        try:
            message = await asyncio.wait_for(receive(), wait)
        except TimeoutError:
            break
        if message["type"] != "http.request":
            break  # http.disconnect
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return seen


# --------------------------------------------------------------------------- JSON bodies

_ESCAPE = re.compile(rb"\\.", re.S)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")
_PAIR = re.compile(rb"\[\]|\{\}")


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether arrays/objects nest deeper than ``max_depth`` (strings are skipped).

    Works on the bytes with C-speed regex passes: drop escapes, strings and everything but
    brackets, then peel innermost ``[]``/``{}`` pairs once per level. Unbalanced input is too
    deep when it opens more than ``max_depth`` in a row; any other fault is the parser's to report.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:  # cannot nest deeper than it opens
        return False
    s = _NOT_BRACKET.sub(b"", _STRING.sub(b"", _ESCAPE.sub(b"", body)))
    for _ in range(max_depth):
        peeled = _PAIR.sub(b"", s)
        if peeled == s:  # fully peeled, or unbalanced: too deep only if it opens too many
            return re.search(rb"[\[{]{%d}" % (max_depth + 1), s) is not None
        s = peeled
    return _PAIR.search(s) is not None or re.search(rb"[\[{]{%d}" % (max_depth + 1), s) is not None


def check_json(body: bytes, *, max_depth: int, max_items: int) -> None:
    """413 for more than ``max_items`` values, 422 for nesting deeper than ``max_depth``."""
    items = body.count(b",") + 1
    if items > max_items:
        raise PayloadTooLarge(
            f"the JSON body holds about {items} values; at most {max_items} "
            "(FRAMECAST_MAX_JSON_ITEMS); send binary data (.npy, or V2 binary "
            "tensors) instead"
        )
    if json_depth_exceeds(body, max_depth):
        raise InvalidInput(
            f"the JSON body nests arrays/objects deeper than {max_depth} levels "
            "(FRAMECAST_MAX_JSON_DEPTH)"
        )
