"""`framecast serve --workers 2` under load (service/cli/workers.py): a worker killed with SIGKILL
is started again while the other keeps answering, and only requests in flight on the killed one
fail; SIGTERM drains (every accepted request answered, new ones 503 or refused), exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.service.cli.test_serve import _children, free_port
from tests.service.helpers import clip, npy

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, SO_REUSEPORT")

NF = "convlstm2d_next_frame"


def _start(models_dir, tmp_path, extra_env=None):
    port = free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", str(models_dir)]
    cmd += ["--port", str(port), "--workers", "2", "--log-level", "info"]
    env = {**os.environ, "FRAMECAST_LOAD_MODE": "blocking", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.update(extra_env or {})
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_started(proc, tmp_path, 2)
    return proc, url, log


def _log(tmp_path) -> str:
    return (tmp_path / "server.log").read_text()


def _wait_started(proc, tmp_path, n: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while _log(tmp_path).count("Application startup complete") < n:
        assert proc.poll() is None, _log(tmp_path)
        assert time.monotonic() < deadline, _log(tmp_path)
        time.sleep(0.2)


class Load:
    """Threads sending predict requests one at a time, a new connection each; outcomes counted
    with the time they ended."""

    def __init__(self, url: str, threads: int = 3):
        self.url, self.body = url, npy(clip())
        self.stop = threading.Event()
        self.outcomes: list[tuple[float, str]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                r = httpx.post(
                    self.url + f"/v1/models/{NF}/predict",
                    content=self.body,
                    headers={"content-type": "application/x-npy"},
                    timeout=30,
                )
                what = str(r.status_code)
                if r.status_code == 503:
                    what += ":" + r.json()["error"]
            except httpx.ConnectError:
                what = "refused"
            except httpx.TransportError as e:
                what = "broken:" + type(e).__name__
            self.outcomes.append((time.monotonic(), what))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def since(self, t0: float) -> Counter:
        return Counter(w for t, w in self.outcomes if t >= t0)


def test_a_worker_killed_under_load_is_restarted_and_the_other_keeps_answering(
    models_dir, tmp_path
):
    proc, url, log = _start(models_dir, tmp_path)
    try:
        workers = _children(proc.pid)
        assert len(workers) == 2
        with Load(url) as load:
            time.sleep(2)
            assert load.since(0)["200"] > 0, load.since(0)
            t_kill = time.monotonic()
            os.kill(workers[0], signal.SIGKILL)
            _wait_started(proc, tmp_path, 3)  # its replacement is up
            t_back = time.monotonic()
            time.sleep(2)
        during, after = load.since(t_kill), load.since(t_back)
        assert proc.poll() is None, _log(tmp_path)
        # the other worker answered while the killed one was away
        answered_meanwhile = [w for t, w in load.outcomes if t_kill < t < t_back and w == "200"]
        assert answered_meanwhile, during
        # only requests in flight on the killed worker failed (one per load thread at most)
        failed = sum(n for w, n in during.items() if w != "200")
        assert failed <= 3, during
        assert set(after) == {"200"}, after
        now = _children(proc.pid)
        assert len(now) == 2 and workers[0] not in now and workers[1] in now
        text = _log(tmp_path)
        assert "was killed by SIGKILL; started it again as pid" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, _log(tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert "Traceback" not in _log(tmp_path)


def test_sigterm_under_load_drains_every_worker_and_exits_0(models_dir, tmp_path):
    proc, url, log = _start(models_dir, tmp_path, {"FRAMECAST_SHUTDOWN_GRACE_S": "20"})
    try:
        workers = _children(proc.pid)
        with Load(url, threads=4) as load:
            time.sleep(2)
            t_term = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, _log(tmp_path)
            stopped = time.monotonic() - t_term
        outcomes = load.since(t_term)
        # every request the server accepted was answered: 200, or 503 shutting_down while it
        # drained; after the sockets closed, connections are refused. Nothing broken, no 500.
        assert set(outcomes) <= {"200", "503:shutting_down", "refused"}, outcomes
        assert stopped < 20 + 10
        assert not [w for w in workers if os.path.exists(f"/proc/{w}")]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = _log(tmp_path)
    assert text.count("draining after signal 15") == 2 and "Traceback" not in text
