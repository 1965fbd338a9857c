"""Triton's model configuration and statistics extensions (service/routes/v2/model_config.py),
read by the real ``tritonclient[http]``: the config says the tensors and the batcher's settings,
and the statistics count what was sent."""

from __future__ import annotations

import numpy as np
import pytest

from service.app import create_app
from service.config import Settings
from tests.service.helpers import FRAMES, H, W, require
from tests.service.live import live_server

triton = require("tritonclient.http", "tritonclient[http]")
InferenceServerException = require(
    "tritonclient.utils", "tritonclient[http]"
).InferenceServerException

NF, CL = "convlstm2d_next_frame", "convlstm2d_classify"


@pytest.fixture(scope="module")
def url(models_dir):
    settings = Settings(
        models_dir=models_dir, load_mode="blocking", max_batch_size=6, max_batch_delay_ms=3.5
    )
    with live_server(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def tc(url):
    c = triton.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=120.0)
    yield c
    c.close()


def _infer(tc, name: str, batch: int) -> None:
    x = np.random.default_rng(0).random((batch, FRAMES, H, W, 1), dtype=np.float32)
    t = triton.InferInput("frames", list(x.shape), "FP32")
    t.set_data_from_numpy(x)
    tc.infer(name, [t])


def test_the_config_says_the_tensors_and_the_batchers_settings(tc):
    cfg = tc.get_model_config(NF)
    assert cfg["name"] == NF and cfg["max_batch_size"] == 6
    assert cfg["input"] == [
        {
            "name": "frames",
            "data_type": "TYPE_FP32",
            "format": "FORMAT_NONE",
            "dims": [FRAMES, H, W, 1],
            "allow_ragged_batch": False,
        }
    ]
    assert {o["name"]: o["dims"] for o in cfg["output"]} == {
        "next_frame": [H, W, 1],
        "rollout": [-1, H, W, 1],
    }
    # a next-frame model takes sequences (its streams): sequence_batching, the "oldest"
    # strategy carrying the batcher's settings (Triton's config holds one scheduler)
    assert "dynamic_batching" not in cfg
    sequences = cfg["sequence_batching"]
    idle = Settings().stream_idle_timeout_s
    assert sequences["max_sequence_idle_microseconds"] == int(idle * 1e6)
    batching = sequences["oldest"]
    assert batching["max_candidate_sequences"] == Settings().stream_max_per_model
    assert batching["max_queue_delay_microseconds"] == 3500
    assert batching["preferred_batch_size"][-1] == 6 and batching["preferred_batch_size"][0] == 1
    assert cfg["instance_group"][0]["kind"] == "KIND_CPU"
    classify = tc.get_model_config(CL, model_version="1")
    assert [o["name"] for o in classify["output"]] == ["scores"]
    assert "sequence_batching" not in classify  # a classifier: the dynamic batcher alone
    batching = classify["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == 3500
    assert batching["preferred_batch_size"][-1] == 6 and batching["preferred_batch_size"][0] == 1
    with pytest.raises(InferenceServerException, match="does not serve version 2; it serves 1"):
        tc.get_model_config(NF, model_version="2")
    with pytest.raises(InferenceServerException, match="no model named"):
        tc.get_model_config("nope")


def test_statistics_count_what_was_sent(tc):
    def stat(name):
        (s,) = tc.get_inference_statistics(name)["model_stats"]
        return s

    before = stat(CL)
    _infer(tc, CL, 3)
    _infer(tc, CL, 1)
    with pytest.raises(InferenceServerException):  # a bad tensor: a failed request
        t = triton.InferInput("frames", [1, FRAMES, H + 1, W, 1], "FP32")
        t.set_data_from_numpy(np.zeros((1, FRAMES, H + 1, W, 1), np.float32))
        tc.infer(CL, [t])
    after = stat(CL)
    inf, was = after["inference_stats"], before["inference_stats"]
    assert inf["success"]["count"] - was["success"]["count"] == 2
    assert inf["fail"]["count"] - was["fail"]["count"] == 1
    assert inf["success"]["ns"] > was["success"]["ns"]
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inf[phase]["count"] - was[phase]["count"] == 4, phase  # per clip: 3 + 1
    assert inf["compute_infer"]["ns"] > was["compute_infer"]["ns"]
    assert after["inference_count"] - before["inference_count"] == 4  # clips
    assert after["execution_count"] - before["execution_count"] >= 2  # model calls
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert sizes.get(3, 0) + sizes.get(4, 0) >= 1  # the batch of 3 (padded to a bucket or not)
    assert after["last_inference"] > 0 and after["version"] == "1"
    # every model at once, and a model nothing was sent to: zeros
    every = {s["name"]: s for s in tc.get_inference_statistics()["model_stats"]}
    assert set(every) >= {NF, CL} and every[CL]["inference_count"] == after["inference_count"]
    untouched = every["conv2d_lstm_classify"]["inference_stats"]["success"]
    assert untouched == {"count": 0, "ns": 0}


def test_statistics_count_every_request_that_reached_the_model(tc, url):
    """Two predicts and three compares of the model: five successes, each with its phases
    (compare counted once in each model it ran, the other model of the pair too)."""
    import httpx

    from tests.service.helpers import clip, files

    (before,) = tc.get_inference_statistics(NF)["model_stats"]
    (pair_before,) = tc.get_inference_statistics("conv2d_lstm_next_frame")["model_stats"]
    c = clip(t=FRAMES + 2, seed=40)
    with httpx.Client(base_url=url, timeout=120.0) as http:
        for _ in range(2):
            r = http.post(f"/v1/models/{NF}/predict", files=files(c[:FRAMES]))
            assert r.status_code == 200, r.text
        for output in ("json", "png", "json"):
            r = http.post(
                "/v1/compare/next-frame", params={"holdout": 2, "output": output}, files=files(c)
            )
            assert r.status_code == 200, r.text
    (after,) = tc.get_inference_statistics(NF)["model_stats"]
    (pair_after,) = tc.get_inference_statistics("conv2d_lstm_next_frame")["model_stats"]
    inf, was = after["inference_stats"], before["inference_stats"]
    assert inf["success"]["count"] - was["success"]["count"] == 5
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inf[phase]["count"] - was[phase]["count"] == 5, phase
    pair = pair_after["inference_stats"]["success"]["count"]
    assert pair - pair_before["inference_stats"]["success"]["count"] == 3


def test_the_server_metadata_lists_the_extensions(tc):
    extensions = tc.get_server_metadata()["extensions"]
    assert {"model_configuration", "statistics", "model_repository"} <= set(extensions)
