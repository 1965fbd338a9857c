"""Cost facts of every served model in /v1/models and compare answers, the peak memory measured
in the background and kept by checkpoint, and the process's resident memory in /metrics."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.runtime.costs import OFF, MemoryProbe
from tests.service import own_models as om
from tests.service.helpers import clip as frames
from tests.service.helpers import encode

DEADLINE_S = 240.0


@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    """A user's checkpoints alone (no manifest): the textbook pair and a Conv3D-headed model."""
    root = tmp_path_factory.mktemp("cost_models")
    om.write_folder(root, "pair_conv2d_lstm", om.conv2d_lstm_binary(channels=1))
    om.write_folder(root, "pair_convlstm2d", om.convlstm2d_binary(channels=1))
    om.write_folder(root, "conv3d_head", om.keras_example_next_frame())
    return root


@pytest.fixture(scope="module")
def client(user_models, tmp_path_factory):
    settings = Settings(
        models_dir=user_models,
        load_mode="blocking",
        measure_memory="off",
        cost_cache_dir=tmp_path_factory.mktemp("costs"),
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _models(client) -> dict:
    return {m["name"]: m for m in client.get("/v1/models").json()["models"]}


def test_a_users_models_have_counted_flops_and_bytes_never_zero(client, user_models):
    models = _models(client)
    a, b = models["pair_conv2d_lstm"], models["pair_convlstm2d"]
    for m in (a, b):
        cost = m["cost"]
        assert m["flops_per_clip"] == cost["flops_per_clip"] > 0
        assert cost["params"] == m["params"] > 0
        assert cost["weight_bytes"] == 4 * cost["params"]
        size = (user_models / m["name"] / "model.keras").stat().st_size
        assert cost["checkpoint_bytes"] == size
        assert cost["peak_memory_bytes"] is None and cost["memory_note"] == OFF
    assert b["flops_per_clip"] > a["flops_per_clip"]  # the ConvLSTM2D is the heavier one


def test_a_model_whose_flops_cannot_be_counted_says_null_and_why(client):
    cost = _models(client)["conv3d_head"]["cost"]
    assert cost["flops_per_clip"] is None
    assert "Conv3D" in cost["flops_note"]


def test_compare_answers_carry_each_models_cost(client):
    clip = encode(frames(t=om.T, h=om.S, w=om.S), "GIF")
    r = client.post(
        "/v1/compare/classify?models=pair_conv2d_lstm,pair_convlstm2d",
        files={"files": ("c.gif", clip, "image/gif")},
    )
    assert r.status_code == 200, r.text
    for res in r.json()["results"].values():
        assert res["cost"]["flops_per_clip"] > 0 and res["cost"]["params"] == res["params"]


def test_metrics_has_the_processs_resident_memory(client):
    text = client.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("process_resident_memory_bytes "))
    assert int(line.split()[1]) > 50 * 1024 * 1024  # TensorFlow and the models are in it


def test_peak_memory_is_measured_once_then_read_from_the_cache(user_models, tmp_path):
    settings = Settings(
        models_dir=user_models,
        load_mode="blocking",
        measure_memory="background",
        cost_cache_dir=tmp_path,
    )
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            cost = _models(c)["pair_convlstm2d"]["cost"]
            if cost["peak_memory_bytes"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert cost["peak_memory_bytes"] > 0, cost
        assert "BFC" in cost["memory_method"]
    cached = list(tmp_path.glob("*.json"))
    assert cached
    runner = type("R", (), {})()  # another server: the figure comes from the cache, no process
    probe = MemoryProbe(tmp_path)
    seen = {}
    for path in cached:
        sha, frames, _ = path.stem.rsplit("-", 2)
        runner.manifest = type("M", (), {"sha256": sha, "name": "x", "frames": int(frames)})()
        runner.costs = {"flops_per_clip_frames": int(frames)}
        probe._todo.put = lambda r: pytest.fail("it measured again")  # noqa: B023
        probe.watch(runner)
        seen[sha] = runner.costs["peak_memory_bytes"]
    assert cost["peak_memory_bytes"] in seen.values()
