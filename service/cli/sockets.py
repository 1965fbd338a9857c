"""The listening socket of ``framecast serve``, bound before anything loads, and what to say
when it cannot be: a port in use, a host that does not resolve or is not this machine's; and the
URLs at which this machine reaches a server listening on a host and port."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from service.config import Settings


class ListenError(OSError):
    """The server cannot listen on ``host:port``; the message says why and what to do."""


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``SO_REUSEADDR``, as uvicorn binds; with
    ``reuse_port`` also ``SO_REUSEPORT``, so that every worker of ``--workers N`` listens on
    it). Raises :class:`ListenError` naming the cause."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(
            f"cannot listen on {host}:{port}: the host {host!r} does not resolve ({e.strerror}); "
            "give an address of this machine with --host or FRAMECAST_HOST (127.0.0.1, 0.0.0.0)"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ListenError(bind_problem(host, port, e)) from None
    sock.set_inheritable(True)
    return sock


def check_free(host: str, port: int) -> None:
    """Raise :class:`ListenError` unless ``host:port`` could be bound now by a plain socket (one
    that a server holding the port with ``SO_REUSEPORT`` would not share either)."""
    listening_socket(host, port).close()


def bind_problem(host: str, port: int, e: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if e.errno == errno.EADDRINUSE:
        return (
            f"{where}: port {port} is already in use (another server, perhaps an earlier "
            "framecast serve? stop it, or choose another port with --port or FRAMECAST_PORT)"
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: {host} is not an address of this machine (use --host or FRAMECAST_HOST: "
            "127.0.0.1, 0.0.0.0 or one of this machine's addresses)"
        )
    if e.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges; use --port)"
    return f"{where}: {e.strerror or e}"


WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def url_for(host: str, port: int, scheme: str = "http") -> str:
    """The URL a client on this machine reaches ``host:port`` at: a wildcard host (every
    interface) is reached at the loopback address, an IPv6 address is bracketed."""
    if host in WILDCARDS:
        host = "[::1]" if ":" in host else "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def served_urls(settings: Settings) -> str:
    """Where a browser and clients on this machine reach the server, in one line."""
    base = url_for(settings.host, settings.port)
    said = f"{base} (the page {base}/, API docs {base}/docs, REST API {base}/v1/models"
    if settings.grpc_port is not None:
        said += f", V2 gRPC {url_for(settings.host, settings.grpc_port).removeprefix('http://')}"
    said += ")"
    if settings.host in WILDCARDS:
        said += f"; bound to every interface ({settings.host or '0.0.0.0'})"
    return said
