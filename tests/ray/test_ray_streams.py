"""Live streams on a real two-node Ray cluster (``ray.cluster_utils.Cluster``: two raylets on this
machine) with one real Redis as the stream table: two ingress replicas, one per node
(FRAMECAST_RAY_INGRESS_PER_NODE=1), sharing no folder. A carried-state stream is one step a frame
on the model replicas, its state travelling with the step; its frames are answered by both ingress
replicas, each equal to the plain server's stream; the worker node is then removed (its ingress
replica dies with it) and the stream goes on through the other at the right step.

Opt in: ``pytest -m ray`` (fails when ray is missing), or FRAMECAST_RUN_RAY=1 with ``ray[serve]``
installed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.repository import read_manifest, write_manifest
from service.app import create_app
from service.config import Settings
from tests.ray.test_ray_serve import _free_port, _opt_in  # noqa: F401 - the opt-in fixture
from tests.redis_server import redis_server
from tests.service.conftest import save_tiny
from tests.service.helpers import FRAMES, clip, files

pytestmark = pytest.mark.ray

NF = "carry_next_frame"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Serve's proxy prefers replicas on its own node; off, so that the head's proxy sends frames
    # to both ingress replicas, as a load balancer over every node's proxy would
    os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = "0"
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from service.runtime.ray.app import build_apps, model_app_name
    from service.runtime.ray.launch import serve_tuning

    root = tmp_path_factory.mktemp("ray_stream_models")
    folder = save_tiny(root, NF, "convlstm2d", "next_frame")
    m = read_manifest(folder)
    m.rollout = "carried_state"
    write_manifest(folder, m)
    with redis_server() as redis:
        settings = Settings(
            models_dir=root,
            load_mode="blocking",
            device="cpu",
            max_horizon=5,
            ray_replicas=1,
            ray_ingress_replicas=2,
            ray_ingress_per_node=1,  # one on each node
            ray_gpus_per_replica=0,
            stream_store=redis.url(),
            log_level="info",
        )
        serve_tuning(settings)  # Ray Serve's throughput settings, as `serve --ray` sets them
        c = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 2, "num_gpus": 0, "include_dashboard": False},
        )
        worker = c.add_node(num_cpus=2, num_gpus=0)
        ray.init(address=c.address, log_to_driver=False)
        port = _free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
        ingress, models = build_apps(settings)
        try:
            serve.run(ingress, name="framecast", route_prefix="/")
            serve.run_many(
                [
                    serve.RunTarget(a, name=model_app_name(n), route_prefix=None)
                    for n, a in models.items()
                ]
            )
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "Ray Serve app not ready within 300 s"
                time.sleep(0.5)
            yield {"url": url, "cluster": c, "worker": worker, "settings": settings, "ray": ray}
        finally:
            serve.shutdown()
            ray.shutdown()
            c.shutdown()


def _ingress_pids(ray) -> dict[int, str]:
    """The live ingress replicas' process ids → their node ids (from Ray's actor table; the
    state API would need the dashboard)."""
    from ray._private import state

    return {
        a["Pid"]: a["Address"]["NodeID"]
        for a in state.actors().values()
        if a["State"] == "ALIVE" and a["ActorClassName"].endswith(":framecast:framecast")
    }


def _served_by(pids: list[int]) -> dict[int, int]:
    """Stream frames each ingress replica logged (its worker's stderr file)."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    counts = {}
    for pid in pids:
        n = 0
        for path in logs.glob(f"worker-*-{pid}.err"):
            n += path.read_text(errors="replace").count("POST /v1/streams/{stream_id}/frames")
        counts[pid] = n
    return counts


def test_a_carried_stream_through_ingress_replicas_on_two_nodes(cluster, tmp_path):
    url, ray = cluster["url"], cluster["ray"]
    pids = _ingress_pids(ray)
    assert len(pids) == 2 and len(set(pids.values())) == 2, pids  # one per node
    frames = clip(t=FRAMES + 40, seed=61)
    plain_settings = cluster["settings"].model_copy(update={"stream_store": None})
    with TestClient(create_app(plain_settings)) as plain:
        info = {m["name"]: m for m in httpx.get(f"{url}/v1/models").json()["models"]}
        assert info[NF]["stream"]["mode"] == "carry"
        sid = httpx.post(f"{url}/v1/models/{NF}/streams", timeout=60).json()["id"]
        ref = plain.post(f"/v1/models/{NF}/streams").json()["id"]

        def step(k: int) -> None:
            deadline = time.monotonic() + 120
            while True:  # a replica lost with its node: retried with the same step=, as a
                try:  # client does (never applied twice)
                    with httpx.Client(base_url=url, timeout=120) as fresh:  # a new connection
                        r = fresh.post(
                            f"/v1/streams/{sid}/frames",
                            params={"raw": True, "step": k},
                            files=files(frames[k : k + 1]),
                        )
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code < 500:
                    break
                assert time.monotonic() < deadline, r.text if r is not None else "no answer"
                time.sleep(0.5)
            assert r.status_code == 200, r.text
            got = r.json()
            want = plain.post(
                f"/v1/streams/{ref}/frames", params={"raw": True}, files=files(frames[k : k + 1])
            ).json()
            assert got["mode"] == "carry" and got["step"] == want["step"] == k + 1
            if want["frames"]:
                np.testing.assert_allclose(
                    [f["values"] for f in got["frames"]],
                    [f["values"] for f in want["frames"]],
                    atol=1e-5,
                )

        k = 0
        while k < 30 or min(_served_by(list(pids)).values()) == 0:
            assert k < FRAMES + 30, f"one ingress replica never served a frame: {pids}"
            step(k)
            k += 1
        # the worker node goes (its ingress replica with it): the stream goes on via the other
        cluster["cluster"].remove_node(cluster["worker"])
        deadline = time.monotonic() + 120
        while len(_ingress_pids(ray)) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        for j in range(k, k + 5):
            step(j)
