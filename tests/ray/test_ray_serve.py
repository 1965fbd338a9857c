"""Ray Serve: the same app with one deployment per model, two replicas, on loopback, answers as the
plain server does. Opt in: ``pytest -m ray`` (fails when ray is missing), or FRAMECAST_RUN_RAY=1
with ``ray[serve]`` installed. Takes a minute or two: every replica is a process that loads TF."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import socket
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.repository import read_manifest, write_manifest
from service.app import create_app
from service.config import Settings
from tests.service.conftest import save_tiny
from tests.service.helpers import FRAMES, H, W, clip, files

pytestmark = pytest.mark.ray

NF, CL = "convlstm2d_next_frame", "convlstm2d_classify"


def _wanted(config) -> bool:
    return "ray" in (config.getoption("-m") or "")


@pytest.fixture(scope="module", autouse=True)
def _opt_in(request):
    have_ray = importlib.util.find_spec("ray") is not None
    if _wanted(request.config):
        if not have_ray:
            pytest.fail("-m ray needs Ray Serve: pip install -e '.[ray]'", pytrace=False)
    elif not (have_ray and os.environ.get("FRAMECAST_RUN_RAY") == "1"):
        pytest.skip("opt-in: pytest -m ray, or FRAMECAST_RUN_RAY=1 with ray[serve] installed")


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_models")
    folder = save_tiny(root, NF, "convlstm2d", "next_frame")
    m = read_manifest(folder)
    m.rollout = "carried_state"  # the encoder-forecaster: its streams carry their state
    write_manifest(folder, m)
    save_tiny(root, CL, "convlstm2d", "classify")
    return Settings(
        models_dir=root,
        load_mode="blocking",
        device="cpu",
        max_horizon=5,
        ray_replicas=2,
        ray_ingress_replicas=2,  # the live streams must work through either
        ray_gpus_per_replica=0,
        log_level="warning",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


READYZ_LOG: list[tuple[float, int | None, float]] = []  # (since deploy, status, seconds taken)


@pytest.fixture(scope="module")
def ray_url(settings):
    """Deploy as ``framecast serve --ray`` does (the ingress first, then one application per
    model) on a new local Ray instance, or on the cluster at FRAMECAST_RAY_TEST_ADDRESS (its Serve
    proxy at FRAMECAST_RAY_TEST_URL, default http://127.0.0.1:8000; only this test's applications
    are deleted afterwards). /readyz is polled from the deploy on; every answer is logged."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing leaves this machine
    import ray
    from ray import serve

    from service.runtime.ray.app import build_apps, model_app_name
    from service.runtime.ray.launch import serve_tuning

    address = os.environ.get("FRAMECAST_RAY_TEST_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        url = os.environ.get("FRAMECAST_RAY_TEST_URL", "http://127.0.0.1:8000")
    else:
        serve_tuning(settings)  # Ray Serve's throughput settings, as `serve --ray` sets them
        # Logical CPUs (scheduling slots, not cores); never joins a running cluster.
        ray.init(
            address="local",
            num_cpus=2,
            num_gpus=0,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
    from service.runtime.ray.launch import share_streams

    settings, made_dir = share_streams(settings)  # as serve --ray: one stream table for both
    assert made_dir is not None
    ingress, models = build_apps(settings)
    try:
        serve.run(ingress, name="framecast", route_prefix="/")
        t0 = time.monotonic()
        serve.run_many(
            [
                serve.RunTarget(a, name=model_app_name(n), route_prefix=None)
                for n, a in models.items()
            ],
            wait_for_applications_running=False,
        )
        while True:  # 503 while any replica starts, then 200
            t = time.monotonic()
            try:
                code = httpx.get(f"{url}/readyz", timeout=10).status_code
            except httpx.HTTPError:
                code = None
            READYZ_LOG.append((t - t0, code, time.monotonic() - t))
            if code == 200:
                break
            assert t - t0 < 300, "Ray Serve app not ready within 300 s"
            time.sleep(0.5)
        yield url
    finally:
        if address:
            for name in ["framecast", *map(model_app_name, models)]:
                serve.delete(name)
        else:
            serve.shutdown()
        ray.shutdown()
        shutil.rmtree(made_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def plain(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def _predict(client, name, c, horizon):
    r = client.post(
        f"/v1/models/{name}/predict", params={"horizon": horizon, "output": "npy"}, files=files(c)
    )
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def test_two_replicas_per_model(ray_url):
    from ray import serve

    from service.runtime.ray.app import model_app_name

    apps = serve.status().applications
    for name in (NF, CL):
        dep = apps[model_app_name(name)].deployments[f"model-{name}"]
        assert dep.status == "HEALTHY"
        assert dep.replica_states.get("RUNNING") == 2


def test_readyz_answered_503_at_once_until_every_replica_ran(ray_url):
    codes = [code for _, code, _ in READYZ_LOG]
    assert codes[-1] == 200 and set(codes[:-1]) <= {503}, READYZ_LOG
    assert max(took for _, _, took in READYZ_LOG) < 5, READYZ_LOG
    assert len(codes) > 1, "the models were running before the first /readyz: nothing seen"


def test_predictions_match_the_plain_server(ray_url, plain):
    with httpx.Client(base_url=ray_url, timeout=120) as ray_http:
        models = ray_http.get("/v1/models").json()["models"]
        assert sorted(m["name"] for m in models) == [CL, NF]
        for seed in range(4):  # several requests: both replicas get some
            c = clip(seed=seed)
            np.testing.assert_allclose(
                _predict(ray_http, NF, c, 2), _predict(plain, NF, c, 2), rtol=1e-5, atol=1e-6
            )
            got = ray_http.post(f"/v1/models/{CL}/classify", files=files(c)).json()
            want = plain.post(f"/v1/models/{CL}/classify", files=files(c)).json()
            assert got["label"] == want["label"]
            np.testing.assert_allclose(
                [s["score"] for s in got["scores"]],
                [s["score"] for s in want["scores"]],
                rtol=1e-5,
                atol=1e-6,
            )
        # the V2 protocol too, and errors keep their form across the deployment boundary
        body = {
            "inputs": [
                {
                    "name": "frames",
                    "shape": [1, FRAMES, H, W, 1],
                    "datatype": "UINT8",
                    "data": clip(seed=9)[None, ..., None].ravel().tolist(),
                }
            ]
        }
        r = ray_http.post(f"/v2/models/{NF}/infer", json=body)
        assert r.status_code == 200, r.text
        want = plain.post(f"/v2/models/{NF}/infer", json=body).json()
        np.testing.assert_allclose(
            r.json()["outputs"][0]["data"], want["outputs"][0]["data"], rtol=1e-5, atol=1e-6
        )
        r = ray_http.post(f"/v1/models/{CL}/predict", files=files(clip()))
        assert r.status_code == 422 and r.json()["error"] == "wrong_task"
        assert ray_http.get("/v1/models/nope").status_code == 404


@pytest.mark.parametrize("mode", ["carry", "window"])
def test_a_stream_through_two_ingress_replicas_equals_the_plain_server(ray_url, plain, mode):
    """A live stream on Ray: its state lives in the stream table both ingress replicas share,
    and a carried-state model's stream takes one step per frame on a model replica, the state
    travelling with the step (no replica keeps it); fed frame by frame on new connections, each
    answer equals the plain server's stream, within the context and past it; /v1/models says
    the modes."""
    frames = clip(t=FRAMES + 3, seed=31)
    with httpx.Client(base_url=ray_url, timeout=120) as ray_http:
        info = {m["name"]: m for m in ray_http.get("/v1/models").json()["models"]}
        how = info[NF]["stream"]
        assert how["mode"] == "carry" and how["modes"] == ["carry", "window"]
        context = how["context"]
        r = ray_http.post(f"/v1/models/{NF}/streams", params={"past_context": mode})
        assert r.status_code == 201, r.text
        assert r.json()["mode"] == mode
        sid = r.json()["id"]
        ref = plain.post(f"/v1/models/{NF}/streams", params={"past_context": mode}).json()["id"]
        for k in range(1, len(frames) + 1):
            with httpx.Client(base_url=ray_url, timeout=120) as fresh:  # a new connection
                r = fresh.post(
                    f"/v1/streams/{sid}/frames",
                    params={"raw": True, "step": k - 1},
                    files=files(frames[k - 1 : k]),
                )
            assert r.status_code == 200, r.text
            body = r.json()
            want = plain.post(
                f"/v1/streams/{ref}/frames", params={"raw": True}, files=files(frames[k - 1 : k])
            ).json()
            assert body["step"] == want["step"] == k and body["mode"] == mode
            if k < context:
                assert body["frames"] == [] and body["needs"] == context - k, body
                continue
            got = np.array([f["values"] for f in body["frames"]], np.float32)
            np.testing.assert_allclose(got, [f["values"] for f in want["frames"]], atol=1e-5)
        assert ray_http.get(f"/v1/streams/{sid}").json()["step"] == len(frames)
        assert ray_http.delete(f"/v1/streams/{sid}").status_code in (200, 204)
        assert ray_http.get(f"/v1/streams/{sid}").status_code in (404, 410)
