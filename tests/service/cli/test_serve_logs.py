"""Start-up logs are quiet by default: one line per model ready, no framework notices; and the
addresses the server answers at, once it does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_until_ready(
    models_dir, n_models: int, *extra_env: tuple[str, str], args: tuple[str, ...] = ()
) -> str:
    """The log of `framecast serve` from its start until its models are ready and it said
    where it serves (or it exited, or 240 s)."""
    env = {**os.environ, **dict(extra_env)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", str(models_dir), *args]
    if "--port" not in args:
        cmd += ["--port", str(_free_port())]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    end = time.monotonic() + 240
    try:
        while time.monotonic() < end and proc.poll() is None:
            line = proc.stdout.readline()
            lines.append(line)
            if sum(" ready: " in x for x in lines) == n_models and " serving at " in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    return "".join(lines) + out


def test_default_start_up_is_one_line_per_model(models_dir):
    log = _serve_until_ready(models_dir, 4)
    assert log.count(" ready: ") == 4, log
    for noise in ("oneDNN", "absl::InitializeLog", "retracing", "cpu_feature_guard"):
        assert noise not in log, f"{noise!r} in the start-up log:\n{log}"


def test_debug_shows_the_framework_notices(models_dir):
    log = _serve_until_ready(models_dir, 4, ("FRAMECAST_LOG_LEVEL", "debug"))
    assert log.count(" ready: ") == 4
    # TensorFlow's load-time notices (C++, via absl) and its retracing warnings, shown in debug
    assert "absl::InitializeLog" in log or "oneDNN" in log or "retracing" in log, log


def test_serve_says_where_it_serves_once_ready(models_dir):
    """The page, the API docs, the REST API and gRPC: each URL in one line once the models are
    ready (after a line saying it listens and loads); a wildcard host is reached at 127.0.0.1."""
    port, grpc = _free_port(), _free_port()
    log = _serve_until_ready(
        models_dir, 4, args=("--host", "0.0.0.0", "--port", str(port), "--grpc-port", str(grpc))
    )
    base = f"http://127.0.0.1:{port}"
    (listening,) = [x for x in log.splitlines() if " listening on " in x]
    assert base in listening and "loading the models" in listening
    (serving,) = [x for x in log.splitlines() if " serving at " in x]
    for url in (f"{base}/", f"{base}/docs", f"{base}/v1/models", f"127.0.0.1:{grpc}"):
        assert url in serving, serving
    assert "bound to every interface (0.0.0.0)" in serving
    lines = log.splitlines()
    last_ready = max(i for i, x in enumerate(lines) if " ready: " in x)
    assert lines.index(serving) > last_ready  # said once the models are ready
