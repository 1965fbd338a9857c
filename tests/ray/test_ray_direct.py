"""``framecast serve --ray`` as users start it, with Ray Serve's direct ingress
(FRAMECAST_RAY_DIRECT_INGRESS=true: each ingress replica answers HTTP itself behind Ray's HAProxy)
and two ingress replicas: several carried-state streams fed at once, frame by frame (their steps
go to the model replica together: ``coalesce.py``), each answer equal to the plain server's
stream; classify requests at once equal to the plain server's; and after SIGTERM no HAProxy of
this server is left holding its port.

Opt in: ``pytest -m ray`` (fails when ray is missing), or FRAMECAST_RUN_RAY=1 with ``ray[serve]``
installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.repository import read_manifest, write_manifest
from service.app import create_app
from service.config import Settings
from tests.ray.test_ray_serve import _free_port, _opt_in  # noqa: F401 - the opt-in fixture
from tests.service.conftest import save_tiny
from tests.service.helpers import FRAMES, clip, files

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
NF, CL = "carry_next_frame", "convlstm2d_classify"
STREAMS = 6


def _haproxies() -> set[int]:
    """HAProxy processes serving from a folder of framecast's (``/tmp/fc-*``)."""
    out = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[0].endswith(b"haproxy") and any(b"/tmp/fc-" in a for a in cmd):
            out.add(int(p))
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_direct_models")
    folder = save_tiny(root, NF, "convlstm2d", "next_frame")
    m = read_manifest(folder)
    m.rollout = "carried_state"
    write_manifest(folder, m)
    save_tiny(root, CL, "convlstm2d", "classify")
    return root


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    before = _haproxies()
    port = _free_port()
    env = {
        **os.environ,
        "FRAMECAST_MODELS_DIR": str(models),
        "FRAMECAST_DEVICE": "cpu",
        "FRAMECAST_MAX_HORIZON": "5",
        "FRAMECAST_RAY_INGRESS_REPLICAS": "2",
        "FRAMECAST_RAY_DIRECT_INGRESS": "true",
        "FRAMECAST_RAY_CPUS_PER_REPLICA": "0.2",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    log = tmp_path_factory.mktemp("ray_direct_log") / "serve.log"
    cmd = [sys.executable, "-m", "service.cli", "serve", "--ray", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, ok = time.monotonic() + 300, 0
        while ok < 10:  # both ingress replicas ready, not only the first asked
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "not ready in 300 s: " + log.read_text()[-3000:]
            try:
                ok = ok + 1 if httpx.get(f"{url}/readyz", timeout=5).status_code == 200 else 0
            except httpx.HTTPError:
                ok = 0
            if ok == 0:
                time.sleep(0.5)
        assert _haproxies() - before, "direct ingress on, and no HAProxy of framecast's runs"
        yield {"url": url, "proc": proc, "log": log, "before": before}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


@pytest.fixture(scope="module")
def plain(models):
    settings = Settings(models_dir=models, load_mode="blocking", device="cpu", max_horizon=5)
    with TestClient(create_app(settings)) as c:
        yield c


def test_streams_fed_at_once_each_equal_the_plain_servers(server, plain):
    frames = [clip(t=FRAMES + 2, seed=40 + s) for s in range(STREAMS)]
    with httpx.Client(base_url=server["url"], timeout=120) as http:
        ids = []
        for _ in range(STREAMS):
            r = http.post(f"/v1/models/{NF}/streams", params={"past_context": "carry"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    refs = [plain.post(f"/v1/models/{NF}/streams").json()["id"] for _ in range(STREAMS)]

    def feed(s: int, k: int) -> dict:
        with httpx.Client(base_url=server["url"], timeout=120) as fresh:  # a new connection
            r = fresh.post(
                f"/v1/streams/{ids[s]}/frames",
                params={"raw": True, "step": k},
                files=files(frames[s][k : k + 1]),
            )
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(STREAMS) as pool:
        for k in range(FRAMES + 2):  # every stream's frame k at once
            got = list(pool.map(lambda s, k=k: feed(s, k), range(STREAMS)))
            for s, body in enumerate(got):
                want = plain.post(
                    f"/v1/streams/{refs[s]}/frames",
                    params={"raw": True},
                    files=files(frames[s][k : k + 1]),
                ).json()
                assert body["step"] == want["step"] == k + 1
                assert body["mode"] == "carry"
                np.testing.assert_allclose(
                    np.array([f["values"] for f in body["frames"]], np.float32),
                    [f["values"] for f in want["frames"]],
                    atol=1e-5,
                )


def test_classify_requests_at_once_equal_the_plain_servers(server, plain):
    clips = [clip(seed=70 + i) for i in range(8)]

    def classify(c: np.ndarray) -> dict:
        with httpx.Client(base_url=server["url"], timeout=120) as fresh:
            r = fresh.post(f"/v1/models/{CL}/classify", files=files(c))
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(classify, clips))
    for body, c in zip(got, clips):
        want = plain.post(f"/v1/models/{CL}/classify", files=files(c)).json()
        np.testing.assert_allclose(
            [s["score"] for s in body["scores"]],
            [s["score"] for s in want["scores"]],
            rtol=1e-5,
            atol=1e-6,
        )


def test_sigterm_leaves_no_haproxy_behind(server):
    """Last in this module: the server stops, and with it every HAProxy it started (Ray's manager
    actor can be killed before it stops its HAProxy, which then holds the port)."""
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 0, server["log"].read_text()[-3000:]
    assert _haproxies() <= server["before"], _haproxies()
    assert "HAProxy process(es) ended" in server["log"].read_text()
