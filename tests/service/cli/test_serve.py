"""Graceful shutdown: `framecast serve` in a subprocess gets SIGTERM while a request is in flight;
the request completes, new connections are refused, and the process exits 0."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from tests.service.helpers import clip, npy

NF = "convlstm2d_next_frame"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_finishes_the_request_in_flight_then_exits_0(models_dir, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(models_dir / NF, root / NF)
    port = free_port()
    exe = shutil.which("framecast")
    cmd = ([exe] if exe else [sys.executable, "-m", "service.cli"]) + [
        "serve",
        "--models-dir",
        str(root),
        "--port",
        str(port),
        "--log-level",
        "info",
    ]
    env = {
        **os.environ,
        "FRAMECAST_LOAD_MODE": "blocking",
        "FRAMECAST_SHUTDOWN_GRACE_S": "20",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, open(tmp_path / "server.log").read()
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.3)

        body = npy(clip())
        sending = threading.Event()

        def slow_body():  # the upload trickles in over ~2 s
            for i in range(0, len(body), 256):
                yield body[i : i + 256]
                sending.set()
                time.sleep(0.4)

        result = {}

        def call():
            try:
                result["r"] = httpx.post(
                    url + f"/v1/models/{NF}/predict",
                    content=slow_body(),
                    params={"output": "npy"},
                    timeout=60,
                    headers={"content-type": "application/x-npy", "X-Request-ID": "in-flight"},
                )
            except Exception as e:  # noqa: BLE001 - reported below
                result["error"] = e

        t = threading.Thread(target=call)
        t.start()
        assert sending.wait(10)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        refused = False  # no longer accepting: poll (bounded) until a new connection is refused
        stop_polling = time.monotonic() + 20
        while not refused and time.monotonic() < stop_polling:
            try:
                httpx.get(url + "/healthz", timeout=2)
            except httpx.TransportError:
                refused = True
        assert refused, "the server kept accepting new connections after SIGTERM"
        t.join(timeout=60)
        assert "error" not in result, result.get("error")
        r = result["r"]
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "in-flight"
        pred = np.load(__import__("io").BytesIO(r.content))
        assert pred.shape == (1, 16, 16, 1)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        text = log.read()
        log.close()
    assert "request_id=in-flight" in text  # its access line was written before the exit
