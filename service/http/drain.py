"""Draining on SIGTERM: the requests in flight are answered, new ones get 503 until they are.

uvicorn alone, on SIGTERM, closes its listening socket at once: a connection that arrives while
the last requests finish is refused by the kernel, and a load balancer that has not noticed yet
sends its clients into that. framecast drains first instead (:class:`DrainingServer`):

1. the first SIGTERM (or SIGINT) starts the drain: the socket stays open; every new request but
   ``/healthz`` and ``/metrics`` is answered 503 ``shutting_down`` with ``Retry-After: 1`` and
   ``Connection: close`` (:class:`DrainMiddleware`), ``/readyz`` among them, so probes see it;
2. once no accepted request is in flight (or FRAMECAST_SHUTDOWN_GRACE_S has passed: those left
   are logged), the listening socket stops taking new connections first: on Linux a socket
   filter drops every new SYN (:func:`refuse_new_connections`; the client's retry of its SYN
   finds the socket closed and is refused, as it would be a moment later), and the connections
   the kernel had already completed are accepted until its accept queue is empty
   (:func:`queued_connections`, at most :attr:`DrainingServer.LINGER_S`). Only then does the
   socket close: closing it with connections still queued would reset them, which their
   clients see as a broken connection after sending a request, not as a refusal. Connections
   accepted just before get :attr:`DrainingServer.LINGER_S` to send their request (answered
   503), then uvicorn's own shutdown runs: connections close, the lifespan ends (models
   closed), and ``framecast serve`` exits 0;
3. a second signal skips the drain (uvicorn's way: SIGINT twice forces the exit).

One INFO line when the drain starts (requests in flight) and one when it ends (how long).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ShuttingDown, send_error

log = logging.getLogger("framecast")

EXEMPT = frozenset({"/healthz", "/metrics"})  # liveness and scrapes answer while draining


SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h
TCPI_UNACKED = 24  # offset of tcpi_unacked in struct tcp_info: a listener's accept-queue length


class _SockFilter(ctypes.Structure):  # struct sock_filter (linux/filter.h)
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):  # struct sock_fprog
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


_DROP_ALL = (_SockFilter * 1)(_SockFilter(0x06, 0, 0, 0))  # BPF_RET | BPF_K, 0: keep no byte
_DROP_ALL_PROG = _SockFprog(1, ctypes.cast(_DROP_ALL, ctypes.POINTER(_SockFilter)))


def refuse_new_connections(sock: socket.socket) -> bool:
    """Makes a listening TCP socket drop every packet that would start a new connection (a
    classic BPF filter that keeps nothing), so that its accept queue can be emptied before it
    closes. Connections already accepted are their own sockets and unaffected. False where the
    platform has no socket filters (then closing may reset queued connections)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(_DROP_ALL_PROG))
    except OSError as e:
        log.debug("no socket filter on %s: %s", sock, e)
        return False
    return True


def queued_connections(sock: socket.socket) -> int | None:
    """How many completed connections wait in a listening socket's accept queue (Linux's
    TCP_INFO of a listener), or None where that cannot be known."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < TCPI_UNACKED + 4:
        return None
    return int(struct.unpack_from("I", info, TCPI_UNACKED)[0])


class Drain:
    """Whether the server drains, since when, and how many accepted requests are in flight
    (touched on the event loop only)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.inflight = 0

    @property
    def draining(self) -> bool:
        return self.since is not None

    def start(self) -> None:
        if self.since is None:
            self.since = time.monotonic()


class DrainMiddleware:
    """Counts the requests in flight; while draining, answers new ones 503 (pure ASGI)."""

    def __init__(self, app: ASGIApp, drain: Drain, grace_s: float):
        self.app, self.drain, self.grace_s = app, drain, grace_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        drain = self.drain
        if drain.since is not None and scope["path"] not in EXEMPT:
            message = (
                "the server is shutting down: requests in flight finish, new ones are refused; "
                "retry (another worker or replica answers)"
            )
            await send_error(send, ShuttingDown(message), scope, close=True)
            return
        drain.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            drain.inflight -= 1


class DrainingServer(uvicorn.Server):
    """uvicorn's server with the drain of this module before its shutdown."""

    # after a drain: the listening sockets are closed first, and connections accepted just
    # before get this long to send their request (answered 503) before uvicorn closes every
    # connection without a request in progress (which a client sees as a broken connection)
    LINGER_S = 0.5

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        grace_s: float,
        on_serving: Callable[[], None] | None = None,
    ):
        super().__init__(config)
        self.drain, self.grace_s = drain, grace_s
        self.on_serving = on_serving  # called once the sockets listen (after the lifespan)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)  # the lifespan's start-up, then listen on the sockets
        if self.on_serving is not None and not self.should_exit:
            self.on_serving()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or not self.started or self.should_exit:
            super().handle_exit(sig, frame)  # a second signal, or not serving yet
            return
        captured = getattr(self, "_captured_signals", None)
        if captured is not None:
            captured.append(sig)  # uvicorn re-raises it after its shutdown, as without a drain
        self.drain.start()
        log.info(
            "draining after signal %d: %d request(s) in flight, new ones answered 503 "
            "(at most %g s, FRAMECAST_SHUTDOWN_GRACE_S)",
            sig,
            self.drain.inflight,
            self.grace_s,
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.drain.draining and not self.force_exit:
            await self._empty_accept_queues()
            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            await asyncio.sleep(self.LINGER_S)
        await super().shutdown(sockets)

    async def _empty_accept_queues(self) -> None:
        """New connections dropped at the listening sockets, then the loop goes on accepting
        (answering 503) until no completed connection waits in their queues, at most
        LINGER_S."""
        listening = [s for server in self.servers for s in server.sockets]
        if not listening or not all([refuse_new_connections(s) for s in listening]):
            return
        deadline = time.monotonic() + self.LINGER_S
        while time.monotonic() < deadline:
            if not any(queued_connections(s) for s in listening):
                return
            await asyncio.sleep(0.005)
        log.info("connections still queued after %g s; closing the socket", self.LINGER_S)

    async def on_tick(self, counter: int) -> bool:
        drain = self.drain
        if drain.since is not None and not self.should_exit:
            waited = time.monotonic() - drain.since
            if drain.inflight == 0:
                log.info("drained in %.1f s: no request in flight; stopping", waited)
                self.should_exit = True
            elif waited >= self.grace_s:
                log.warning(
                    "%d request(s) still in flight after %g s (FRAMECAST_SHUTDOWN_GRACE_S): "
                    "stopping without them",
                    drain.inflight,
                    self.grace_s,
                )
                self.config.timeout_graceful_shutdown = 1
                self.should_exit = True
        return await super().on_tick(counter)
