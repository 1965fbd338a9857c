"""Connections, below ASGI: a header timeout, a cap on open connections, keep-alive limits.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) and nothing else: a
connection that opens and sends nothing, or trickles its request line and headers a byte every few
seconds (slowloris), is held for ever, and nothing bounds how many one client holds. The body is
bounded above the protocol (service/http/limits.py: body-idle timeout and request deadline); this
module bounds what comes before it, in uvicorn's httptools protocol (the C parser that
``uvicorn[standard]`` brings), which :func:`server_config` hands to uvicorn:

- **header timeout** (FRAMECAST_HEADER_TIMEOUT_S): the request line and headers must be complete
  within it, counted from the connection opening (its first request) or from the first byte of a
  later request on a kept-alive connection. Past it the connection is answered 408
  (:class:`~service.errors.HeaderTimeout`) and closed, with one INFO line; a connection that sent
  nothing at all is closed quietly (DEBUG: browsers open spare connections). One sweep per server
  every ``min(1 s, timeout / 4)`` checks every connection, so a request costs no timer.
- **connection cap** (FRAMECAST_MAX_CONNECTIONS, per process): a connection beyond it is answered
  503 (:class:`~service.errors.TooManyConnections`, ``Retry-After``) and closed as soon as its
  request line is read (so the answer takes the protocol of its path: V2's body under ``/v2``;
  one that sends none within :data:`REFUSED_WAIT_S` gets framecast's); refusals are logged as
  one WARNING line per 10 s with their count.
- **WebSockets apart** (FRAMECAST_WS_MAX_CONNECTIONS): an open WebSocket counts against its own
  cap, not against FRAMECAST_MAX_CONNECTIONS, so idle sockets never starve HTTP; an upgrade
  beyond it is answered 503 and closed. (Their idle timeout and the end of their stream close
  them: ``service/routes/v1/stream_socket.py``.)
- **keep-alive limits**: the idle timeout (FRAMECAST_KEEP_ALIVE_TIMEOUT_S, uvicorn's) and the
  requests one connection may carry (FRAMECAST_KEEP_ALIVE_MAX_REQUESTS): the last is answered
  with ``Connection: close``.

``/metrics`` counts what is closed (``framecast_connections_closed_total{reason}``) and the open
connections (``framecast_open_connections``, as of the last sweep).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

import uvicorn

from service.config import Settings
from service.errors import HeaderTimeout, TooManyConnections, raw_answer
from service.http.logs import install_redaction
from service.telemetry import Metrics

log = logging.getLogger("framecast.http")

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

REFUSAL_LOG_EVERY_S = 10.0
# header timeouts logged one line each, at most this many per REFUSAL_LOG_EVERY_S (a slowloris
# opens hundreds); past them one line says the rest are counted in /metrics only
HEADER_TIMEOUT_LINES = 5
FILES_RESERVE = 128  # file descriptors kept for models, logs and sockets besides connections
REFUSED_PENDING = 64  # refused connections waiting for their request line (then closed at once)
# how long a refused connection may take to send its request line (a client sends it as soon as
# it connects): past it, the answer is framecast's form, for no path was read
REFUSED_WAIT_S = 0.25


class _Sweeper:
    """One per server: closes connections whose request head is overdue, while any are open."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set, timeout_s: float):
        self.loop, self.connections, self.timeout_s = loop, connections, timeout_s
        self.interval = min(1.0, timeout_s / 4)
        self.handle: asyncio.TimerHandle | None = None
        self.metrics: Metrics | None = None

    def ensure(self) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(self.interval, self.sweep)

    def sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            since = getattr(conn, "_head_since", None)
            if since is not None and now - since >= self.timeout_s:
                conn._head_overdue(now - since)
        if self.metrics is not None:
            self.metrics.set_open_connections(len(self.connections))
        self.handle = self.loop.call_later(self.interval, self.sweep) if self.connections else None


_sweepers: weakref.WeakKeyDictionary[Any, _Sweeper] = weakref.WeakKeyDictionary()


def _path_of(head: bytes) -> str:
    """The path of a request line (``GET /v2/x HTTP/1.1``), or "" when it is not one."""
    parts = head.split(b" ", 2)
    return parts[1].decode("latin-1").split("?", 1)[0] if len(parts) == 3 else ""


def guarded_ws_protocol(open_ws: list[int]) -> type[asyncio.Protocol]:
    """uvicorn's WebSocket protocol, counting the open sockets in ``open_ws[0]``."""
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    base: Any = AutoWebSocketsProtocol
    if base is None:  # pragma: no cover - uvicorn[standard] brings websockets
        raise RuntimeError("no WebSocket library: pip install 'uvicorn[standard]'")

    class GuardedWebSocket(base):
        _counted = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            open_ws[0] += 1
            self._counted = True
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._counted:
                self._counted = False
                open_ws[0] -= 1
            super().connection_lost(exc)

    return GuardedWebSocket


def guarded_protocol(
    settings: Settings, metrics: Metrics | None = None, open_ws: list[int] | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the header timeout, the connection cap, the WebSocket
    cap and the keep-alive request limit of ``settings`` (a class: uvicorn makes one per
    connection). ``open_ws``: the open WebSockets (:func:`guarded_ws_protocol` counts them)."""
    if HttpToolsProtocol is None:  # pragma: no cover
        raise RuntimeError("httptools is not installed: pip install 'uvicorn[standard]'")
    timeout_s = settings.header_timeout_s
    cap, max_requests = settings.max_connections, settings.keep_alive_max_requests
    ws_cap = settings.ws_max_connections
    sockets = open_ws if open_ws is not None else [0]
    refusals = {"count": 0, "logged_at": float("-inf")}
    timeouts = {"lines": 0, "window_at": float("-inf")}
    pending = [0]  # refused connections waiting for their request line

    class GuardedProtocol(HttpToolsProtocol):
        _refused = False
        _head_since: float | None = None
        _head_bytes = 0
        _requests = 0
        _held = b""
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) - sockets[0] >= cap:  # WebSockets have their own cap
                self._refused = True
                self.transport = transport
                _refused_one(metrics, refusals, cap)
                if pending[0] >= REFUSED_PENDING:
                    self._refuse()
                else:
                    pending[0] += 1
                    self._timer = self.loop.call_later(min(timeout_s, REFUSED_WAIT_S), self._refuse)
                return
            super().connection_made(transport)
            self._head_since = self.loop.time()
            sweeper = _sweepers.get(self.server_state)
            if sweeper is None:
                sweeper = _sweepers[self.server_state] = _Sweeper(
                    self.loop, self.connections, timeout_s
                )
                sweeper.metrics = metrics
            sweeper.ensure()

        def _refuse(self, path: str = "") -> None:
            """Answer a connection over the cap (in the protocol of ``path``) and close it."""
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                pending[0] -= 1
            if self.transport.is_closing():
                return
            self.transport.write(
                raw_answer(
                    TooManyConnections(
                        f"the server holds {cap} open connections, its limit "
                        "(FRAMECAST_MAX_CONNECTIONS); retry shortly"
                    ),
                    path,
                )
            )
            self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                    pending[0] -= 1
                return
            self._head_since = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:  # read its request line, to answer in the protocol of its path
                self._held += data[:4096]
                line, newline, _ = self._held.partition(b"\n")
                if newline or len(self._held) >= 4096:
                    self._refuse(_path_of(line.strip()))
                return
            if self._head_since is not None:
                self._head_bytes += len(data)
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_since is None:  # a later request on a kept-alive connection
                self._head_since, self._head_bytes = self.loop.time(), 0

        def on_headers_complete(self) -> None:
            self._head_since, self._head_bytes = None, 0
            self._requests += 1
            before = self.cycle
            super().on_headers_complete()
            if self._requests >= max_requests and self.cycle is not before:
                self.cycle.keep_alive = False  # the answer says Connection: close

        def handle_websocket_upgrade(self) -> None:
            if sockets[0] >= ws_cap:
                path = self.url.decode("latin-1").split("?", 1)[0]
                self.transport.write(
                    raw_answer(
                        TooManyConnections(
                            f"the server holds {ws_cap} open WebSockets, its limit "
                            "(FRAMECAST_WS_MAX_CONNECTIONS); retry shortly"
                        ),
                        path,
                    )
                )
                self.transport.close()
                if metrics is not None:
                    metrics.connection_closed("ws_max_connections")
                return
            super().handle_websocket_upgrade()

        def _head_overdue(self, waited_s: float) -> None:
            self._head_since = None
            if self.transport.is_closing():
                return
            peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            if self._head_bytes == 0 and self._requests == 0:
                log.debug("closed an idle connection from %s: no request in %.0f s", peer, waited_s)
            else:
                _log_header_timeout(timeouts, peer, waited_s, self._head_bytes, timeout_s)
                self.transport.write(
                    raw_answer(
                        HeaderTimeout(
                            f"the request headers were not complete within {timeout_s:g} s "
                            f"(FRAMECAST_HEADER_TIMEOUT_S); {self._head_bytes} bytes received"
                        ),
                        getattr(self, "url", b"").decode("latin-1").split("?", 1)[0],
                    )
                )
            self.transport.close()
            if metrics is not None:
                metrics.connection_closed("header_timeout")

    return GuardedProtocol


def _log_header_timeout(
    timeouts: dict, peer: str, waited_s: float, received: int, timeout_s: float
) -> None:
    now = time.monotonic()
    if now - timeouts["window_at"] >= REFUSAL_LOG_EVERY_S:
        timeouts["window_at"], timeouts["lines"] = now, 0
    timeouts["lines"] += 1
    if timeouts["lines"] <= HEADER_TIMEOUT_LINES:
        log.info(
            "closed a connection from %s: request headers not complete after %.1f s "
            "(%d bytes received; FRAMECAST_HEADER_TIMEOUT_S=%g)",
            peer,
            waited_s,
            received,
            timeout_s,
        )
    elif timeouts["lines"] == HEADER_TIMEOUT_LINES + 1:
        log.info(
            "more connections closed by the header timeout in the last %.0f s: counted in "
            'framecast_connections_closed_total{reason="header_timeout"}, not logged',
            REFUSAL_LOG_EVERY_S,
        )


def fit_file_limit(max_connections: int) -> None:
    """Raise this process's soft limit on open files (often 1024) towards its hard limit so that
    ``max_connections`` connections fit; a WARNING when they cannot (the kernel would refuse
    connections with EMFILE before the cap answers 503)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    need = max_connections + FILES_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning(
            "FRAMECAST_MAX_CONNECTIONS=%d needs about %d open files, but this process may open "
            "%d (ulimit -n): connections past it are refused by the kernel, not answered 503",
            max_connections,
            need,
            soft,
        )


def _refused_one(metrics: Metrics | None, refusals: dict, cap: int) -> None:
    refusals["count"] += 1
    if metrics is not None:
        metrics.connection_closed("max_connections")
    now = time.monotonic()
    if now - refusals["logged_at"] >= REFUSAL_LOG_EVERY_S:
        log.warning(
            "refused %d connection(s) in the last %.0f s: %d open, the limit "
            "(FRAMECAST_MAX_CONNECTIONS)",
            refusals["count"],
            REFUSAL_LOG_EVERY_S,
            cap,
        )
        refusals["count"], refusals["logged_at"] = 0, now


def server_config(
    app: Any, settings: Settings, metrics: Metrics | None = None, **overrides: Any
) -> uvicorn.Config:
    """The uvicorn configuration framecast serves with (``framecast serve`` and the tests' live
    server): the guarded protocol, the keep-alive timeout and the shutdown grace of ``settings``."""
    fit_file_limit(settings.max_connections + settings.ws_max_connections)
    install_redaction()  # uvicorn's WebSocket lines write the URL: no ?ticket= in the log
    open_ws = [0]
    kwargs: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # our middleware logs each request
        http=guarded_protocol(settings, metrics, open_ws),
        ws=guarded_ws_protocol(open_ws),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        # uvicorn annotates an int; it hands the value to asyncio.wait_for, which takes a float
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    kwargs.update(overrides)
    return uvicorn.Config(app, **kwargs)
