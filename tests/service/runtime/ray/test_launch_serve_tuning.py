"""FRAMECAST_RAY_SERVE_TUNING (service/runtime/ray/launch.py): Ray Serve's throughput settings
for a local Ray, the user's own RAY_SERVE_* values kept, nothing set for a joined cluster. No
Ray needed (the opt-in ``tests/ray`` checks serve with them)."""

from __future__ import annotations

import os

import pytest

from service.config import Settings
from service.runtime.ray import launch


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in launch.SERVE_TUNING:
        monkeypatch.delenv(k, raising=False)


def test_on_by_default_for_a_local_ray():
    assert Settings().ray_serve_tuning is True
    assert launch.serve_tuning(Settings()) == launch.SERVE_TUNING
    assert os.environ["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] == "0"
    assert os.environ["RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"] == "0"
    assert os.environ["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "1"
    # over gRPC a replica refused messages past 4 MiB (gRPC's default): calls sent together, a
    # stream's states in each item, answered 500 under load; lifted to gRPC's largest with it
    assert int(os.environ["RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"]) == 2**31 - 1


def test_a_users_own_value_is_kept(monkeypatch):
    monkeypatch.setenv("RAY_SERVE_USE_GRPC_BY_DEFAULT", "0")
    got = launch.serve_tuning(Settings())
    assert "RAY_SERVE_USE_GRPC_BY_DEFAULT" not in got
    assert os.environ["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "0"
    assert os.environ["RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"] == "0"


@pytest.mark.parametrize(
    "settings",
    [Settings(ray_serve_tuning=False), Settings(ray_address="ray://head:10001")],
    ids=["off", "joined-cluster"],
)
def test_off_or_a_joined_cluster_sets_nothing(settings):
    assert launch.serve_tuning(settings) == {}
    assert not any(k in os.environ for k in launch.SERVE_TUNING)
