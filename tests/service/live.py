"""A real server for tests that need real HTTP: uvicorn in a thread on 127.0.0.1, a free port."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn


@contextmanager
def live_server(app, timeout: float = 120.0, settings=None):
    """Serve ``app`` on 127.0.0.1 (a port the OS picks); yields the base URL ``http://127.0.0.1:N``.

    With ``settings``, uvicorn is configured as ``framecast serve`` configures it
    (service/http/connections.py: header timeout, connection cap, keep-alive limits).

    The socket is bound before the thread starts, so there is no race for the port. Lifespan runs
    in the server's thread (models load there); the server stops at the end of the block.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if settings is None:
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
    else:
        from service.http.connections import server_config

        metrics = getattr(getattr(app, "state", None), "metrics", None)
        config = server_config(app, settings, metrics, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="framecast-test-server"
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the test server did not start (see the log above)")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
