"""Two ``framecast serve`` processes on different ports, each pointed at one real Redis and sharing
nothing else (each its own copy of the models, no common folder): every stream is served whichever
of them a frame reaches, frame by frame as one in-process stream; one killed with SIGKILL
mid-stream and the stream goes on at the right step on the other; a retried ``step=`` answered the
same; the whole server restarted and the stream goes on; a snapshot taken from one opened on an
unrelated server (its own memory store) continues it exactly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.redis_server import free_port, redis_server
from tests.service.conftest import CARRY, WINDOW
from tests.service.helpers import FRAMES
from tests.service.routes.v1.test_streams import NPY, _settings, frames_of, npy, values

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Server:
    """``framecast serve`` in a subprocess, on its own port, with its own models folder."""

    def __init__(self, models: Path, store: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("framecast")
        cmd = [exe] if exe else [sys.executable, "-m", "service.cli"]
        cmd += ["serve", "--models-dir", str(models), "--port", str(self.port)]
        env = {
            **os.environ,
            "FRAMECAST_STREAM_STORE": store,
            "FRAMECAST_LOAD_MODE": "blocking",
            "FRAMECAST_MAX_HORIZON": "5",
            "FRAMECAST_LOG_LEVEL": "warning",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        env.pop("FRAMECAST_STREAM_DIR", None)
        self.log = log
        self.proc = subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 240.0) -> Server:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _copy(models: Path, dest: Path) -> Path:
    """A server's own models folder: the same checkpoints, nothing shared."""
    shutil.copytree(models, dest)
    return dest


def _post(url: str, sid: str, frames: np.ndarray, step: int) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/streams/{sid}/frames",
        params={"raw": True, "step": step},
        content=npy(frames),
        headers=NPY,
        timeout=60,
    )


@pytest.fixture(scope="module")
def two(stream_models, tmp_path_factory):
    with redis_server() as redis:
        tmp = tmp_path_factory.mktemp("two_servers")
        a = Server(_copy(stream_models, tmp / "a"), redis.url(), tmp / "a.log")
        b = Server(_copy(stream_models, tmp / "b"), redis.url(), tmp / "b.log")
        try:
            yield a.wait_ready(), b.wait_ready(), redis, tmp
        finally:
            a.stop()
            b.stop()


@pytest.fixture(scope="module")
def ref(stream_models):
    with TestClient(create_app(_settings(stream_models))) as c:
        yield c


def _ref_stream(ref, name) -> str:
    return ref.post(f"/v1/models/{name}/streams").json()["id"]


def _ref_post(ref, rid, frames) -> dict:
    r = ref.post(
        f"/v1/streams/{rid}/frames", params={"raw": True}, content=npy(frames), headers=NPY
    )
    assert r.status_code == 200, r.text
    return r.json()


def _same(got: httpx.Response, want: dict) -> None:
    assert got.status_code == 200, got.text
    g = got.json()
    assert g["step"] == want["step"]
    if want["frames"]:
        np.testing.assert_allclose(values(g), values(want), atol=1e-6)
    assert (g["surprise"] is None) == (want["surprise"] is None)


@pytest.mark.parametrize("name", [CARRY, WINDOW])
def test_frames_alternating_between_two_servers_equal_one_stream(two, ref, name):
    a, b, _, _ = two
    frames = frames_of(FRAMES + 4, seed=51)
    sid = httpx.post(f"{a.url}/v1/models/{name}/streams", timeout=60).json()["id"]
    rid = _ref_stream(ref, name)
    for i in range(len(frames)):
        server = (a, b)[i % 2]
        _same(_post(server.url, sid, frames[i : i + 1], i), _ref_post(ref, rid, frames[i : i + 1]))
    assert httpx.get(f"{b.url}/v1/streams/{sid}").json()["step"] == len(frames)
    listed = {s["id"] for s in httpx.get(f"{a.url}/v1/streams").json()["streams"]}
    assert sid in listed


def test_a_server_killed_mid_stream_and_the_whole_server_restarted(
    two, ref, stream_models, tmp_path
):
    a, b, redis, tmp = two
    frames = frames_of(FRAMES + 6, seed=52)
    sid = httpx.post(f"{a.url}/v1/models/{CARRY}/streams", timeout=60).json()["id"]
    rid = _ref_stream(ref, CARRY)
    wants = [_ref_post(ref, rid, frames[i : i + 1]) for i in range(len(frames))]
    for i in range(FRAMES):
        _same(_post(a.url, sid, frames[i : i + 1], i), wants[i])
    # a frame in flight to `a` when it is killed: applied or not, the client cannot know
    import threading

    def doomed():
        try:
            _post(a.url, sid, frames[FRAMES : FRAMES + 1], FRAMES)
        except httpx.TransportError:
            pass

    t = threading.Thread(target=doomed)
    t.start()
    a.kill()
    t.join()
    # the client retries that frame on the other server with the same step=: answered once
    _same(_post(b.url, sid, frames[FRAMES : FRAMES + 1], FRAMES), wants[FRAMES])
    again = _post(b.url, sid, frames[FRAMES : FRAMES + 1], FRAMES)  # and once more: the same
    _same(again, wants[FRAMES])
    _same(_post(b.url, sid, frames[FRAMES + 1 : FRAMES + 2], FRAMES + 1), wants[FRAMES + 1])
    # the whole server goes: b stops too, a new process starts on the same Redis
    b.stop()
    c = Server(_copy(stream_models, tmp_path / "c"), redis.url(), tmp_path / "c.log")
    try:
        c.wait_ready()
        for i in range(FRAMES + 2, FRAMES + 4):
            _same(_post(c.url, sid, frames[i : i + 1], i), wants[i])
        # a snapshot from it, opened on an unrelated server (its own memory), goes on exactly
        snap = httpx.get(f"{c.url}/v1/streams/{sid}/snapshot", timeout=60)
        assert snap.status_code == 200
        with TestClient(create_app(_settings(stream_models))) as other:
            r = other.post(
                f"/v1/models/{CARRY}/streams",
                files={"snapshot": ("s.npz", snap.content, "application/octet-stream")},
            )
            assert r.status_code == 201, r.text
            moved = other.post(
                f"/v1/streams/{r.json()['id']}/frames",
                params={"raw": True, "step": FRAMES + 4},
                content=npy(frames[FRAMES + 4 : FRAMES + 5]),
                headers=NPY,
            )
            _same(moved, wants[FRAMES + 4])
    finally:
        c.stop()
