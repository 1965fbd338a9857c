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
  503 (:class:`~service.errors.TooManyConnections`, ``Retry-After``) at once and closed, before a
  byte is read; refusals are logged as one WARNING line per 10 s with their count.
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


def guarded_protocol(settings: Settings, metrics: Metrics | None = None) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the header timeout, the connection cap and the
    keep-alive request limit of ``settings`` (a class: uvicorn makes one per connection)."""
    if HttpToolsProtocol is None:  # pragma: no cover
        raise RuntimeError("httptools is not installed: pip install 'uvicorn[standard]'")
    timeout_s = settings.header_timeout_s
    cap, max_requests = settings.max_connections, settings.keep_alive_max_requests
    refusals = {"count": 0, "logged_at": float("-inf")}
    timeouts = {"lines": 0, "window_at": float("-inf")}

    class GuardedProtocol(HttpToolsProtocol):
        _refused = False
        _head_since: float | None = None
        _head_bytes = 0
        _requests = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= cap:
                self._refused = True
                transport.write(
                    raw_answer(
                        TooManyConnections(
                            f"the server holds {cap} open connections, its limit "
                            "(FRAMECAST_MAX_CONNECTIONS); retry shortly"
                        )
                    )
                )
                transport.close()
                _refused_one(metrics, refusals, cap)
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

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._head_since = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
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
                        )
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
    fit_file_limit(settings.max_connections)
    kwargs: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # our middleware logs each request
        http=guarded_protocol(settings, metrics),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        # uvicorn annotates an int; it hands the value to asyncio.wait_for, which takes a float
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    kwargs.update(overrides)
    return uvicorn.Config(app, **kwargs)
