"""`framecast serve` in a subprocess: graceful shutdown (SIGTERM while a request is in flight: the
request completes, new requests get 503 meanwhile, then new connections are refused, exit 0),
start-up that says why it cannot listen (a port in use, a host that does not resolve), and two
workers sharing the port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.streams.folder import _key
from tests.service.helpers import clip, npy, require

NF = "convlstm2d_next_frame"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_drains_the_request_in_flight_answering_new_ones_503_then_exits_0(
    models_dir, tmp_path
):
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
        # draining: the upload in flight goes on; a new request is answered 503 at once, while
        # liveness still answers
        drained, stop_polling = None, time.monotonic() + 10
        while drained is None and time.monotonic() < stop_polling:
            r = httpx.get(url + "/v1/models", timeout=2)
            if r.status_code == 503:
                drained = r
            time.sleep(0.05)
        assert drained is not None, "no 503 for a new request while draining"
        assert drained.json()["error"] == "shutting_down" and drained.headers["retry-after"] == "1"
        assert drained.headers["connection"] == "close"
        assert httpx.get(url + "/healthz", timeout=2).status_code == 200
        assert t.is_alive(), "the request in flight ended before the drain was seen"
        refused = False  # once it is answered: poll (bounded) until a new connection is refused
        stop_polling = time.monotonic() + 40
        while not refused and time.monotonic() < stop_polling:
            try:
                httpx.get(url + "/healthz", timeout=2)
                time.sleep(0.05)
            except httpx.TransportError:
                refused = True
        assert refused, "the server kept accepting new connections after the drain"
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


def _serve(args: list[str], models: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", models, *args]
    env = {**os.environ, "FRAMECAST_LOAD_MODE": "blocking", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_stops_start_up_at_once_with_one_line_naming_it(models_dir, workers):
    """A port held by another server: one line naming the port, exit 1, before any model
    loads (uvicorn alone logged the bind error only at debug and exited 3)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve(["--port", str(port), "--workers", workers], str(models_dir))
    assert r.returncode == 1, r.stderr
    assert f"port {port} is already in use" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "loading" not in r.stderr, r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_grpc_port_in_use_stops_start_up_at_once_too(models_dir, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--port", str(free_port()), "--grpc-port", str(port), "--workers", workers]
        r = _serve(args, str(models_dir))
    assert r.returncode == 1, r.stderr
    assert f"port {port} is already in use" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "loading" not in r.stderr, r.stderr


def test_a_host_that_does_not_resolve_stops_start_up_with_one_line(models_dir):
    r = _serve(["--host", "no-such-host.invalid", "--port", str(free_port())], str(models_dir))
    assert r.returncode == 1, r.stderr
    assert "no-such-host.invalid" in r.stderr and "does not resolve" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] not in ("Z", "X"):
                out.append(int(entry))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, SO_REUSEPORT")
def test_two_workers_share_the_port_then_stop_on_sigterm(models_dir, tmp_path):
    """--workers 2: both workers bind the port and the gRPC port (SO_REUSEPORT; a worker that
    cannot would exit and stop the supervisor) and serve, a live stream among them; SIGTERM to
    the supervisor stops both, exit 0, and removes the stream folder it made."""
    port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", str(models_dir)]
    cmd += ["--port", str(port), "--grpc-port", str(grpc_port)]
    cmd += ["--workers", "2", "--log-level", "warning"]
    env = {**os.environ, "FRAMECAST_LOAD_MODE": "blocking", "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, ready = time.monotonic() + 240, set()
        while len(ready) < 2:  # both workers ready: each listens only once its models are warm
            assert proc.poll() is None, open(tmp_path / "server.log").read()
            assert time.monotonic() < deadline, open(tmp_path / "server.log").read()
            try:  # a new connection each time, spread over the listening workers by the kernel
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                if r.status_code == 200:
                    ready.add(r.headers["x-request-id"][:16])  # a per-process prefix
            except httpx.TransportError:
                time.sleep(0.5)
        workers = _children(proc.pid)
        assert len(workers) == 2 and proc.poll() is None, open(tmp_path / "server.log").read()
        # a live stream goes on whichever worker each new connection reaches (a shared table)
        url = f"http://127.0.0.1:{port}"
        sid = httpx.post(f"{url}/v1/models/{NF}/streams", timeout=30).json()["id"]
        answered_by = set()
        frames = clip(16)
        for i in range(16):  # a new connection each time
            r = httpx.post(
                f"{url}/v1/streams/{sid}/frames",
                params={"step": i},
                content=npy(frames[i : i + 1]),
                headers={"content-type": "application/x-npy", "connection": "close"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            assert r.json()["step"] == i + 1
            answered_by.add(r.headers["x-request-id"][:16])  # a per-process prefix
        assert len(answered_by) == 2, "16 new connections all reached one worker"
        grpcclient = require("tritonclient.grpc", "tritonclient[grpc]")
        for _ in range(6):  # new channels, spread over the workers by the kernel
            c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            assert c.is_server_ready() and c.is_model_ready("convlstm2d_classify")
            c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, open(tmp_path / "server.log").read()
        assert not [w for w in workers if os.path.exists(f"/proc/{w}")], "a worker lives on"
        assert not list(Path("/dev/shm").glob(f"framecast-streams-*/{_key(sid)}.json"))
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
