"""`framecast serve --workers 2` under load (service/cli/workers.py): a worker killed with SIGKILL
is started again while the other keeps answering, and only requests in flight on the killed one
fail; the restarted worker takes connections only once its models are ready (no 503 while it
loads), and one that cannot load is tried again while the other serves; SIGTERM drains (every
accepted request answered, new ones 503 or refused), exit 0."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.service.cli.test_serve import _children, free_port
from tests.service.helpers import clip, npy, require

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, SO_REUSEPORT")

NF = "convlstm2d_next_frame"
# requests failed by a SIGKILL (in flight on the worker, or sent to its socket as it closed) end
# within this of the kill
KILL_WINDOW_S = 2.0


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


def _kill(proc) -> None:
    """After a failure: the supervisor and its workers (a SIGKILLed supervisor leaves them)."""
    if proc.poll() is None:
        for pid in _children(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait()


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
        _kill(proc)
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
        _kill(proc)
        log.close()
    text = _log(tmp_path)
    assert text.count("draining after signal 15") == 2 and "Traceback" not in text


def _wait_for(what, cond, proc, tmp_path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, _log(tmp_path)
        assert time.monotonic() < deadline, f"{what}\n{_log(tmp_path)}"
        time.sleep(0.1)


class Probes(Load):
    """Load's threads, each request on a new connection (``Connection: close``), predict and
    ``/readyz`` in turn; every outcome with the worker that answered (the per-process prefix of
    the request id it made)."""

    def __init__(self, url: str, threads: int = 3):
        super().__init__(url, threads)
        self.answers: list[tuple[float, str, str]] = []  # (ended, outcome, worker)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            worker = ""
            try:
                if n % 2:
                    r = httpx.post(
                        self.url + f"/v1/models/{NF}/predict",
                        content=self.body,
                        headers={"content-type": "application/x-npy", "connection": "close"},
                        timeout=30,
                    )
                else:
                    r = httpx.get(self.url + "/readyz", headers={"connection": "close"}, timeout=30)
                what, worker = str(r.status_code), r.headers.get("x-request-id", "")[:16]
                if r.status_code == 503:  # an error's name; /readyz's: the state (loading)
                    body = r.json()
                    what += ":" + str(body.get("error") or body.get("state"))
            except httpx.ConnectError:
                what = "refused"
            except httpx.TransportError as e:
                what = "broken:" + type(e).__name__
            now = time.monotonic()
            self.outcomes.append((now, what))
            self.answers.append((now, what, worker))

    def workers_since(self, t0: float) -> set[str]:
        return {w for t, what, w in self.answers if t >= t0 and what == "200"}


def test_a_restarted_worker_takes_connections_only_once_its_models_are_ready(models_dir, tmp_path):
    """The first start answers at once (/readyz 503 while loading); a worker started again
    after SIGKILL listens only once its model is warm: while it loads, every request on a new
    connection reaches the other worker and none is answered 503 or refused; then it serves
    (requests answered by a new process), HTTP and gRPC."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / NF, root / NF)
    grpc_port = free_port()
    extra = {
        "FRAMECAST_LOAD_MODE": "background",
        "FRAMECAST_LOAD_DELAY_S": "5",  # a loading window as long as real checkpoints make it
        "FRAMECAST_GRPC_PORT": str(grpc_port),
    }
    proc, url, log = _start(root, tmp_path, extra)
    try:
        first: list[int] = []  # the first start's /readyz answers, until both workers are ready
        ready_by: set[str] = set()

        def both_ready() -> bool:
            try:
                r = httpx.get(url + "/readyz", headers={"connection": "close"}, timeout=10)
            except httpx.TransportError:
                return False
            first.append(r.status_code)
            if r.status_code == 200:
                ready_by.add(r.headers["x-request-id"][:16])
            return len(ready_by) == 2

        _wait_for("both workers ready", both_ready, proc, tmp_path)
        assert first[0] == 503, first  # the first start: the port answers while models load
        workers = _children(proc.pid)
        assert len(workers) == 2
        with Probes(url) as load:
            t0 = time.monotonic()
            _wait_for("both answer", lambda: load.workers_since(t0) == ready_by, proc, tmp_path)
            t_kill = time.monotonic()
            os.kill(workers[0], signal.SIGKILL)

            def back() -> bool:  # no 503 (not_ready, loading) at any moment; past the kill's
                late = t_kill + KILL_WINDOW_S  # moment, nothing refused or broken either
                bad = Counter(w for t, w in load.outcomes if t >= t_kill and w[0] == "5")
                bad.update(w for t, w in load.outcomes if t > late and w != "200")
                assert not bad, bad
                return "ready after" in _log(tmp_path)

            _wait_for("the restarted worker ready", back, proc, tmp_path)
            t_back = time.monotonic()
            # it serves: requests on new connections are answered by a third process
            _wait_for(
                "an answer from the restarted worker",
                lambda: load.workers_since(t_back) - ready_by,
                proc,
                tmp_path,
                timeout=60,
            )
        during = load.since(t_kill)
        # only requests in flight on (or sent to) the killed worker as it died failed, one per
        # thread at most
        assert sum(n for w, n in during.items() if w != "200") <= 3, during
        assert not load.since(t_kill + KILL_WINDOW_S).keys() - {"200"}, during
        (new,) = load.workers_since(t_back) - ready_by
        # while it loaded, the other worker alone answered; the restarted one from the moment
        # the supervisor heard it listen (its pipe polled every 0.2 s, this log every 0.1 s)
        loading = [w for t, what, w in load.answers if t_kill + 1 < t < t_back and what == "200"]
        assert loading and set(loading) - {new} < ready_by, Counter(loading)
        first_new = min(t for t, what, w in load.answers if w == new)
        assert first_new > t_back - 2.0, (first_new - t_kill, t_back - t_kill)
        text = _log(tmp_path)
        now = _children(proc.pid)
        assert len(now) == 2 and workers[0] not in now and workers[1] in now
        assert f"worker 0 (pid {now[0] if now[1] == workers[1] else now[1]}) ready after" in text
        assert "was killed by SIGKILL; started it again as pid" in text
        grpcclient = require("tritonclient.grpc", "tritonclient[grpc]")
        for _ in range(6):  # new channels over both workers: the restart serves gRPC too
            c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            assert c.is_server_ready() and c.is_model_ready(NF)
            c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, _log(tmp_path)
    finally:
        _kill(proc)
        log.close()
    assert "Traceback" not in _log(tmp_path)


def test_a_restarted_worker_that_cannot_load_is_tried_again_while_the_other_serves(
    models_dir, tmp_path
):
    """A restart that fails to load (exit 1) does not stop the server while the other worker
    serves: the supervisor says so, and starts it again later; once it can load, it is back."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / NF, root / NF)
    checkpoint = root / NF / "model.keras"
    good = checkpoint.read_bytes()
    proc, url, log = _start(root, tmp_path)  # blocking: both ready when this returns
    try:
        workers = _children(proc.pid)
        checkpoint.write_bytes(good + b"tampered")  # its sha256 no longer matches
        with Load(url) as load:
            t_kill = time.monotonic()
            os.kill(workers[0], signal.SIGKILL)
            _wait_for(
                "the failed restart",
                lambda: (
                    "before it took connections; the other 1 worker(s) go on serving"
                    in _log(tmp_path)
                ),
                proc,
                tmp_path,
            )
            t_failed = time.monotonic()
            checkpoint.write_bytes(good)
            _wait_for(
                "the second try ready", lambda: "ready after" in _log(tmp_path), proc, tmp_path
            )
            t_back = time.monotonic()
            _wait_for(
                "answers after it", lambda: load.since(t_back)["200"] >= 3, proc, tmp_path, 60
            )
        during = load.since(t_kill)
        assert not [w for w in during if w[0] == "5"], during  # no 503 while it tried
        assert sum(n for w, n in during.items() if w != "200") <= 3, during
        assert not load.since(t_kill + KILL_WINDOW_S).keys() - {"200"}, during
        assert [w for t, w in load.outcomes if t_failed < t < t_back and w == "200"]
        text = _log(tmp_path)
        assert "starting it again as pid" in text and "stopping the other workers" not in text
        assert len(_children(proc.pid)) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, _log(tmp_path)
    finally:
        _kill(proc)
        log.close()


def test_sighup_reloads_the_keys_file_in_every_worker_and_stops_none(models_dir, tmp_path):
    import hashlib

    def keys(*ids: str) -> str:
        out = ""
        for kid in ids:
            digest = hashlib.sha256(f"sekrit-{kid}".encode()).hexdigest()
            out += f'[[keys]]\nid = "{kid}"\nsha256 = "{digest}"\nscopes = ["infer"]\n\n'
        return out

    path = tmp_path / "keys.toml"
    path.write_text(keys("alice", "bob"))
    proc, url, log = _start(models_dir, tmp_path, {"FRAMECAST_API_KEYS_FILE": str(path)})
    try:
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while _log(tmp_path).count("keys file reloaded (SIGHUP)") < 2:  # each worker, once
            assert time.monotonic() < deadline, _log(tmp_path)
            time.sleep(0.1)
        assert proc.poll() is None and sorted(_children(proc.pid)) == sorted(workers)  # all on
        r = httpx.get(url + "/v1/models", headers={"authorization": "Bearer sekrit-bob"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(60) == 0
        finally:
            _kill(proc)
            log.close()
