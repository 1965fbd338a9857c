"""The Open Inference Protocol (KServe V2) endpoints, spoken to by the real ``tritonclient[http]``
against a running server (uvicorn on 127.0.0.1), with results checked against ``/v1``."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest

from service.app import create_app
from tests.service.helpers import FRAMES, H, W, clip, files, require
from tests.service.live import live_server

triton = require("tritonclient.http", "tritonclient[http]")
InferenceServerException = require(
    "tritonclient.utils", "tritonclient[http]"
).InferenceServerException

NF, NF2, CL, CL2 = (
    "convlstm2d_next_frame",
    "conv2d_lstm_next_frame",
    "convlstm2d_classify",
    "conv2d_lstm_classify",
)
ALL = (NF, NF2, CL, CL2)


@pytest.fixture(scope="module")
def base_url(settings):
    with live_server(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def tc(base_url):
    c = triton.InferenceServerClient(url=base_url.removeprefix("http://"), network_timeout=120.0)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=120.0) as c:
        yield c


def v1_predict(http, name, frames_u8, horizon=1) -> np.ndarray:
    """/v1's (horizon, H, W, C) prediction for PNG frames."""
    r = http.post(
        f"/v1/models/{name}/predict",
        params={"horizon": horizon, "output": "npy"},
        files=files(frames_u8),
    )
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def v1_scores(http, name, frames_u8, class_names) -> np.ndarray:
    r = http.post(  # top_k: every class's score
        f"/v1/models/{name}/classify", params={"top_k": 1000}, files=files(frames_u8)
    )
    assert r.status_code == 200, r.text
    by_name = {s["class_name"]: s["score"] for s in r.json()["scores"]}
    return np.array([by_name[c] for c in class_names], np.float32)


def frames_input(batch: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    """(batch, T, H, W) uint8 clips as the ``frames`` tensor (batch, T, H, W, 1)."""
    x = batch[..., None]
    x = x.astype(np.uint8) if datatype == "UINT8" else (x.astype(np.float32) / 255.0)
    t = triton.InferInput("frames", list(x.shape), datatype)
    t.set_data_from_numpy(x, binary_data=binary)
    return t


# --------------------------------------------------------------------------- health, metadata


def test_server_live_and_ready(tc):
    assert tc.is_server_live()
    assert tc.is_server_ready()
    meta = tc.get_server_metadata()
    assert meta["name"] == "framecast" and "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize("name", ALL)
def test_model_metadata_and_ready(tc, name):
    assert tc.is_model_ready(name)
    assert tc.is_model_ready(name, model_version="1")
    meta = tc.get_model_metadata(name)
    assert meta["name"] == name and meta["versions"] == ["1"]
    assert meta["platform"].startswith("keras_")
    assert meta["inputs"] == [
        {
            "name": "frames",
            "datatype": "FP32",
            "shape": [-1, FRAMES, H, W, 1],
            "parameters": meta["inputs"][0]["parameters"],
        }
    ]
    outputs = {o["name"]: o for o in meta["outputs"]}
    if "classify" in name:
        assert outputs["scores"]["shape"] == [-1, 8]
        assert len(outputs["scores"]["parameters"]["class_names"]) == 8
    else:
        assert outputs["next_frame"]["shape"] == [-1, H, W, 1]
        assert outputs["rollout"]["shape"] == [-1, -1, H, W, 1]
    assert tc.get_model_metadata(name, model_version="1") == meta


def test_unknown_model_and_version(tc):
    assert not tc.is_model_ready("nope")
    assert not tc.is_model_ready(NF, model_version="7")
    with pytest.raises(InferenceServerException, match="no model named 'nope'"):
        tc.get_model_metadata("nope")


# --------------------------------------------------------------------------- infer = /v1


@pytest.mark.parametrize("name", (NF, NF2))
@pytest.mark.parametrize("datatype,binary", [("FP32", False), ("UINT8", False), ("FP32", True)])
def test_next_frame_equals_v1(tc, http, name, datatype, binary):
    c = clip(seed=3)  # (T, H, W) uint8
    want = v1_predict(http, name, c)  # (1, H, W, 1)
    out = triton.InferRequestedOutput("next_frame", binary_data=binary)
    res = tc.infer(name, [frames_input(c[None], datatype, binary)], outputs=[out])
    got = res.as_numpy("next_frame")
    assert got.shape == (1, H, W, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert res.get_response()["model_name"] == name


def test_next_frame_defaults_and_horizon(tc, http):
    """tritonclient's defaults (binary in and out, no outputs named: every output, as the
    protocol says); horizon rolls out."""
    c = clip(seed=5)
    res = tc.infer(NF, [frames_input(c[None], "UINT8", True)])
    assert [o["name"] for o in res.get_response()["outputs"]] == ["next_frame", "rollout"]
    np.testing.assert_allclose(
        res.as_numpy("next_frame"), v1_predict(http, NF, c), rtol=1e-5, atol=1e-6
    )
    assert res.as_numpy("rollout").shape == (1, 1, H, W, 1)  # horizon 1 by default
    np.testing.assert_allclose(res.as_numpy("rollout")[:, 0], res.as_numpy("next_frame"))
    res = tc.infer(NF, [frames_input(c[None], "FP32", False)], parameters={"horizon": 3})
    rollout = res.as_numpy("rollout")  # (1, 3, H, W, 1)
    assert rollout.shape == (1, 3, H, W, 1)
    np.testing.assert_allclose(rollout[0], v1_predict(http, NF, c, horizon=3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.as_numpy("next_frame"), rollout[:, 0])


def test_batch_and_longer_clips(tc, http):
    """A batch of two clips of 6 frames: each answer equals /v1's on that clip (last 4 frames)."""
    clips = np.stack([clip(t=FRAMES + 2, seed=s) for s in (1, 2)])  # (2, 6, H, W)
    res = tc.infer(
        NF2,
        [frames_input(clips, "FP32", False)],
        outputs=[triton.InferRequestedOutput("next_frame", binary_data=False)],
    )
    got = res.as_numpy("next_frame")
    assert got.shape == (2, H, W, 1)
    for i in range(2):
        np.testing.assert_allclose(got[i], v1_predict(http, NF2, clips[i])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", (CL, CL2))
def test_classify_equals_v1(tc, http, name):
    c = clip(seed=7)
    names = tc.get_model_metadata(name)["outputs"][0]["parameters"]["class_names"]
    res = tc.infer(
        name,
        [frames_input(c[None], "UINT8", False)],
        outputs=[triton.InferRequestedOutput("scores", binary_data=False)],
    )
    scores = res.as_numpy("scores")
    assert scores.shape == (1, 8)
    np.testing.assert_allclose(scores[0], v1_scores(http, name, c, names), rtol=1e-5, atol=1e-6)


def test_nested_json_data(http):
    """Plain JSON with nested data (what curl users send), and the request id echoed."""
    c = clip(seed=3)
    body = {
        "id": "r1",
        "inputs": [
            {
                "name": "frames",
                "shape": [1, FRAMES, H, W, 1],
                "datatype": "UINT8",
                "data": c[None, ..., None].tolist(),
            }
        ],
    }
    r = http.post(f"/v2/models/{NF}/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "r1" and out["model_version"] == "1"
    o, rollout = out["outputs"]  # no outputs named: every output
    assert rollout["name"] == "rollout" and rollout["shape"] == [1, 1, H, W, 1]
    assert o["name"] == "next_frame" and o["datatype"] == "FP32" and o["shape"] == [1, H, W, 1]
    got = np.array(o["data"], np.float32).reshape(o["shape"])
    np.testing.assert_allclose(got, v1_predict(http, NF, c), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- errors


def _infer(http, name, inputs, **extra):
    return http.post(f"/v2/models/{name}/infer", json={"inputs": inputs, **extra})


def _frames(shape, datatype="FP32", value=0.5):
    return [
        {
            "name": "frames",
            "shape": shape,
            "datatype": datatype,
            "data": [value] * int(np.prod(shape)),
        }
    ]


@pytest.mark.parametrize(
    "inputs,extra,status,needle",
    [
        (_frames([1, FRAMES, H, W, 1], "FP64"), {}, 400, "datatype 'FP64' is not supported"),
        (_frames([1, FRAMES - 1, H, W, 1]), {}, 400, "takes [batch, ≥4, 16, 16, 1]"),
        (_frames([1, FRAMES, H, W + 1, 1]), {}, 400, "not resized here"),
        (_frames([1, FRAMES, H, W, 1], value=2.0), {}, 400, "must lie in [0, 1]"),
        (_frames([1, FRAMES, H, W, 1], "UINT8", 300), {}, 400, "integers 0-255"),
        (
            [{"name": "frames", "shape": [1, 2], "datatype": "FP32", "data": [1.0]}],
            {},
            400,
            "holds 1 values but shape [1, 2] needs 2",
        ),
        (
            [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0.0]}],
            {},
            400,
            "one input, 'frames'",
        ),
        ([], {}, 400, '"inputs"'),
        (_frames([1, FRAMES, H, W, 1]), {"parameters": {"horizon": 99}}, 400, "from 1 to 5"),
        (
            _frames([1, FRAMES, H, W, 1]),
            {"outputs": [{"name": "scores"}]},
            400,
            "unknown output 'scores'",
        ),
    ],
)
def test_errors_use_the_v2_form(http, inputs, extra, status, needle):
    r = _infer(http, NF, inputs, **extra)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and needle in r.json()["error"]


def test_error_statuses(http, tc):
    r = _infer(http, "nope", _frames([1, FRAMES, H, W, 1]))
    assert r.status_code == 404 and "no model named 'nope'" in r.json()["error"]
    r = http.post(
        f"/v2/models/{NF}/infer", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = _infer(http, CL, _frames([1, FRAMES, H, W, 1]), parameters={"horizon": 2})
    assert r.status_code == 400 and "classifies" in r.json()["error"]
    with pytest.raises(InferenceServerException, match="datatype 'INT32' is not supported"):
        t = triton.InferInput("frames", [1, FRAMES, H, W, 1], "INT32")
        t.set_data_from_numpy(np.zeros((1, FRAMES, H, W, 1), np.int32), binary_data=False)
        tc.infer(NF, [t])


@pytest.mark.parametrize(
    "content_type", ("application/xml", "text/plain", "image/png", "multipart/form-data; b=x")
)
def test_a_body_declared_as_something_else_is_a_v2_415(http, content_type):
    body = json.dumps({"inputs": _frames([1, FRAMES, H, W, 1])}).encode()
    r = http.post(f"/v2/models/{CL}/infer", content=body, headers={"content-type": content_type})
    assert r.status_code == 415, r.text
    assert set(r.json()) == {"error"} and "application/json" in r.json()["error"]
    assert content_type.split(";")[0] in r.json()["error"]


@pytest.mark.parametrize(
    "content_type", ("application/json; charset=utf-8", "application/x-www-form-urlencoded", None)
)
def test_json_bodies_are_read_whatever_json_like_type_they_carry(http, content_type):
    body = json.dumps({"inputs": _frames([1, FRAMES, H, W, 1])}).encode()
    headers = {"content-type": content_type} if content_type else {}
    r = http.post(f"/v2/models/{CL}/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["name"] == "scores"


@pytest.mark.parametrize("binary", (True, False))
def test_classification_extension_answers_the_top_k_as_strings(tc, http, binary):
    """InferRequestedOutput(class_count=3): the 3 best classes as "score:index:label", best
    first, equal to /v1's top 3."""
    c = clip(seed=7)
    res = tc.infer(
        CL,
        [frames_input(c[None], "UINT8", True)],
        outputs=[triton.InferRequestedOutput("scores", binary_data=binary, class_count=3)],
    )
    (out,) = res.get_response()["outputs"]
    assert out["datatype"] == "BYTES" and out["shape"] == [1, 3]
    got = [s.decode() if isinstance(s, bytes) else s for s in res.as_numpy("scores")[0]]
    r = http.post(f"/v1/models/{CL}/classify", files=files(c))
    want = sorted(r.json()["scores"], key=lambda w: -w["score"])[:3]
    assert [g.split(":", 2)[2] for g in got] == [w["class_name"] for w in want]
    for g, w in zip(got, want, strict=True):
        score, index, label = g.split(":", 2)
        assert abs(float(score) - w["score"]) < 1e-5 and int(index) >= 0


def test_classification_on_a_next_frame_output_is_a_clear_400(http):
    c = clip(seed=7)
    body = {
        "inputs": [
            {"name": "frames", "shape": [1, FRAMES, H, W, 1], "datatype": "UINT8",
             "data": c[None, ..., None].reshape(-1).tolist()}
        ],
        "outputs": [{"name": "next_frame", "parameters": {"classification": 2}}],
    }  # fmt: skip
    r = http.post(f"/v2/models/{NF}/infer", json=body)
    assert r.status_code == 400 and "classification applies" in r.json()["error"]
    body["outputs"] = [{"name": "next_frame", "parameters": {"classification": 0}}]
    r = http.post(f"/v2/models/{NF}/infer", json=body)
    assert r.status_code == 400
