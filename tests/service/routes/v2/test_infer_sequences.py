"""The V2 sequence extension (service/streams/sequences.py): a Triton client's stateful code
(``sequence_id`` / ``sequence_start`` / ``sequence_end``) over HTTP and gRPC drives the same streams
as /v1, with the same predictions."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from models.repository import read_manifest, write_manifest
from service.app import create_app
from service.config import Settings
from tests.service.conftest import save_tiny
from tests.service.helpers import FRAMES, H, W, require
from tests.service.live import live_server
from tests.service.routes.v2.test_grpc_service import _free_port

grpcclient = require("tritonclient.grpc", "tritonclient[grpc]")
httpclient = require("tritonclient.http", "tritonclient[http]")
InferenceServerException = require("tritonclient.utils", "tritonclient").InferenceServerException

CARRY, WINDOW = "seq_carry", "seq_window"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq_models")
    for name, rollout in ((CARRY, "carried_state"), (WINDOW, "sliding_window")):
        folder = save_tiny(root, name, "convlstm2d", "next_frame")
        m = read_manifest(folder)
        m.rollout = rollout
        write_manifest(folder, m)
    port = _free_port()
    settings = Settings(models_dir=root, load_mode="blocking", max_horizon=5, grpc_port=port)
    app = create_app(settings)
    with live_server(app) as url:
        h = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=60.0)
        g = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        with httpx.Client(base_url=url, timeout=60.0) as v1:
            yield {"http": h, "grpc": g, "lib": {"http": httpclient, "grpc": grpcclient}, "v1": v1}
        h.close()
        g.close()


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, H, W, 1), dtype=np.float32)


def _step(served, proto, name, frames, seq, **flags):
    lib, client = served["lib"][proto], served[proto]
    t = lib.InferInput("frames", [1, *frames.shape], "FP32")
    t.set_data_from_numpy(frames[None])
    outs = [lib.InferRequestedOutput("next_frame")]
    res = client.infer(name, [t], outputs=outs, sequence_id=seq, **flags)
    return res


def _params(res, proto) -> dict:
    resp = res.get_response()
    if proto == "http":
        return resp.get("parameters", {})
    return {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in resp.parameters.items()}


def _predict(served, name, frames) -> np.ndarray:
    t = httpclient.InferInput("frames", [1, *frames.shape], "FP32")
    t.set_data_from_numpy(frames[None])
    return served["http"].infer(name, [t]).as_numpy("next_frame")[0]


@pytest.mark.parametrize("proto", ["http", "grpc"])
@pytest.mark.parametrize("name", [CARRY, WINDOW])
def test_a_sequence_frame_by_frame_equals_predict(served, proto, name):
    frames = _frames(FRAMES + 2, seed=3)
    seq = 7 if proto == "http" else "cam-8"
    for i in range(len(frames)):
        res = _step(
            served, proto, name, frames[i : i + 1], seq,
            sequence_start=i == 0, sequence_end=i == len(frames) - 1,
        )  # fmt: skip
        p = _params(res, proto)
        assert p["sequence_step"] == i + 1
        assert p["sequence_needs"] == max(0, FRAMES - i - 1)
        got = res.as_numpy("next_frame")[0]
        if i + 1 < FRAMES:
            assert not got.any()  # zeros, and sequence_needs says why
            continue
        if i + 1 == FRAMES or name == WINDOW:
            want = _predict(served, name, frames[i + 1 - FRAMES : i + 1])
            np.testing.assert_allclose(got, want, atol=2e-5)
        if i + 1 > FRAMES:
            assert p["surprise_mse_per_frame"] > 0
    # sequence_end closed it: the next request without a start is refused, saying why
    with pytest.raises(InferenceServerException) as e:
        _step(served, proto, name, frames[:1], seq)
    assert "sequence_end" in str(e.value) and "sequence_start" in str(e.value)


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_a_sequence_must_start(served, proto):
    with pytest.raises(InferenceServerException) as e:
        _step(served, proto, CARRY, _frames(1), 999)
    assert "sequence_start=true" in str(e.value)


def test_several_frames_per_request_and_restart(served):
    frames = _frames(FRAMES + 1, seed=4)
    a = _step(served, "http", CARRY, frames[:FRAMES], 11, sequence_start=True)
    want = _predict(served, CARRY, frames[:FRAMES])
    np.testing.assert_allclose(a.as_numpy("next_frame")[0], want, atol=2e-5)
    # start again on a live id: a fresh stream
    b = _step(served, "http", CARRY, frames[:FRAMES], 11, sequence_start=True)
    assert _params(b, "http")["sequence_step"] == FRAMES
    listed = served["v1"].get("/v1/streams").json()["streams"]
    assert any(s["id"] == f"v2:{CARRY}:11" for s in listed)
    served["v1"].delete(f"/v1/streams/v2:{CARRY}:11")


def test_the_extension_is_listed_and_flags_need_an_id(served):
    assert "sequence" in served["http"].get_server_metadata()["extensions"]
    r = served["v1"].post(
        f"/v2/models/{CARRY}/infer",
        json={
            "inputs": [
                {"name": "frames", "shape": [1, 1, H, W, 1], "datatype": "FP32",
                 "data": [0.0] * (H * W)}
            ],
            "parameters": {"sequence_start": True},
        },
    )  # fmt: skip
    assert r.status_code == 400 and "sequence_id" in r.json()["error"]
