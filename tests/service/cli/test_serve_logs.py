"""Start-up logs are quiet by default: one line per model ready, no framework notices."""

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


def _serve_until_ready(models_dir, n_models: int, *extra_env: tuple[str, str]) -> str:
    env = {**os.environ, **dict(extra_env)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", str(models_dir)]
    proc = subprocess.Popen(
        cmd + ["--port", str(_free_port())],
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
            if sum(" ready: " in x for x in lines) == n_models:
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
