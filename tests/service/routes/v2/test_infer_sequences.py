"""The V2 sequence extension (service/streams/sequences.py): a Triton client's stateful code
(``sequence_id`` / ``sequence_start`` / ``sequence_end``) over HTTP and gRPC drives the same streams
as /v1, with the same predictions."""

from __future__ import annotations

import time

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
            libs = {"http": httpclient, "grpc": grpcclient}
            yield {"http": h, "grpc": g, "lib": libs, "v1": v1, "app": app}
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


def _json_step(served, sid, frames, **flags) -> httpx.Response:
    """One sequence request as JSON (any sequence_id, even one tritonclient would not send)."""
    return served["v1"].post(
        f"/v2/models/{CARRY}/infer",
        json={
            "inputs": [
                {"name": "frames", "shape": [1, *frames.shape], "datatype": "FP32",
                 "data": frames.ravel().tolist()}
            ],
            "parameters": {"sequence_id": sid, **flags},
        },
    )  # fmt: skip


@pytest.mark.parametrize(
    "sid,words",
    [
        (2**64, "from 1 to 18446744073709551615"),
        (-3, "got -3"),
        ("0", 'not "0"'),
        ("../../x", "letters, digits and . _ ~ -"),
        ("x" * 129, "(129 characters)"),
        ("a b", "letters, digits"),
        (1.5, "got a float"),
    ],
)
def test_what_a_sequence_id_may_be(served, sid, words):
    r = _json_step(served, sid, _frames(1), sequence_start=True)
    assert r.status_code == 400 and words in r.json()["error"], r.text


def test_an_integer_id_and_its_string_are_two_sequences_both_reachable(served):
    a = _json_step(served, 77, _frames(2, seed=5), sequence_start=True)
    b = _json_step(served, "77", _frames(1, seed=6), sequence_start=True)
    assert a.status_code == b.status_code == 200
    assert a.json()["parameters"]["sequence_step"] == 2
    assert b.json()["parameters"]["sequence_step"] == 1
    for sid, step in ((f"v2:{CARRY}:77", 2), (f"v2:{CARRY}:s:77", 1)):
        assert served["v1"].get(f"/v1/streams/{sid}").json()["step"] == step
        assert served["v1"].delete(f"/v1/streams/{sid}").status_code == 200
    c = _json_step(served, "cam.A-1_~", _frames(1), sequence_start=True, sequence_end=True)
    assert c.status_code == 200
    r = served["v1"].get(f"/v1/streams/v2:{CARRY}:s:cam.A-1_~")
    assert r.status_code == 410 and "sequence_end" in r.json()["message"]


def _until(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_a_restart_while_a_request_is_in_flight_wins(served):
    """sequence_start on an id whose 32-frame request is being applied: that request finishes
    first, then the sequence starts again, and the next request continues the new one."""
    import threading

    from tests.service.runtime.test_batcher import Held

    big = _frames(32, seed=7)
    assert _json_step(served, 55, big[:1], sequence_start=True).status_code == 200
    app, sid, got = served["app"], f"v2:{CARRY}:55", {}
    store = app.state.streams
    with Held(app.state.runtime.get(CARRY)):  # the model's worker is busy: the request waits
        old = threading.Thread(target=lambda: got.update(old=_json_step(served, 55, big)))
        old.start()
        _until(lambda: store.busy(sid))  # it holds the stream
        again = threading.Thread(
            target=lambda: got.update(new=_json_step(served, 55, big[:1], sequence_start=True))
        )
        again.start()
        _until(lambda: store._local[sid][1][0] == 2)  # the restart waits for it
    old.join()
    again.join()
    assert got["old"].json()["parameters"]["sequence_step"] == 33
    assert got["new"].json()["parameters"]["sequence_step"] == 1
    nxt = _json_step(served, 55, big[1:2])
    assert nxt.json()["parameters"]["sequence_step"] == 2  # the restart's, not 34
    served["v1"].delete(f"/v1/streams/{sid}")
