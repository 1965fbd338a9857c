"""A real server for tests that need real HTTP: uvicorn in a thread on 127.0.0.1, a free port."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parents[2]


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


def connect(url: str) -> socket.socket:
    """A raw TCP connection to a live server's ``http://host:port``."""
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer read off ``sock``: status, headers (lower-case names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


@contextmanager
def served_process(models_dir, log_path, env: dict | None = None, grpc: bool = False,
                   timeout: float = 240.0):  # fmt: skip
    """``framecast serve`` as its own process (as an operator runs it: uvicorn's own loggers, the
    WebSocket protocol, signals), every line it writes kept in ``log_path``. Yields
    ``(url, grpc_address or None, process)`` once /readyz answers 200; stopped with SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from tests.redis_server import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", str(models_dir)]
    cmd += ["--port", str(port)]
    gport = None
    if grpc:
        gport = free_port()
        cmd += ["--grpc-port", str(gport)]
    full_env = {**os.environ, "FRAMECAST_LOAD_MODE": "blocking", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"framecast serve exited {proc.returncode}: "
                                   + open(log_path, errors="replace").read()[-3000:])  # fmt: skip
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("framecast serve did not get ready in time")
            time.sleep(0.2)
        yield url, (f"127.0.0.1:{gport}" if gport else None), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")
