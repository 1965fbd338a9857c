"""The V2 protocol over gRPC (service/routes/v2/grpc_service.py), spoken to by the real
``tritonclient[grpc]`` against a running server: the same answers, errors, configuration and
statistics as over HTTP (checked against ``tritonclient[http]`` on the same server), keys as
metadata, the stream, the repository calls and the drain."""

from __future__ import annotations

import io
import queue
import socket

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.config import Settings
from tests.service.helpers import FRAMES, H, W, npy, require
from tests.service.live import live_server

grpcclient = require("tritonclient.grpc", "tritonclient[grpc]")
httpclient = require("tritonclient.http", "tritonclient[http]")
InferenceServerException = require("tritonclient.utils", "tritonclient").InferenceServerException

NF, CL = "convlstm2d_next_frame", "conv2d_lstm_classify"
KEY = "grpc-test-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, app, url: str, grpc_port: int):
        self.app, self.url = app, url
        self.grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        self.http = httpclient.InferenceServerClient(
            url.removeprefix("http://"), network_timeout=120.0
        )


@pytest.fixture(scope="module")
def served(models_dir):
    port = _free_port()
    settings = Settings(
        models_dir=models_dir,
        load_mode="blocking",
        max_horizon=5,
        max_upload_bytes=2 * 1024 * 1024,
        max_batch_size=6,
        grpc_port=port,
    )
    app = create_app(settings)
    with live_server(app) as url:
        s = Served(app, url, port)
        yield s
        s.grpc.close()
        s.http.close()


def _clips(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, FRAMES, H, W, 1), dtype=np.float32)


def _input(lib, x: np.ndarray, datatype: str = "FP32"):
    t = lib.InferInput("frames", list(x.shape), datatype)
    t.set_data_from_numpy(x)
    return t


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value


def test_next_frame_answers_as_over_http(served):
    x = _clips(3)
    outs = ["next_frame", "rollout"]
    g = served.grpc.infer(
        NF,
        [_input(grpcclient, x)],
        outputs=[grpcclient.InferRequestedOutput(n) for n in outs],
        parameters={"horizon": 3},
        request_id="abc",
    )
    h = served.http.infer(
        NF,
        [_input(httpclient, x)],
        outputs=[httpclient.InferRequestedOutput(n, binary_data=True) for n in outs],
        parameters={"horizon": 3},
    )
    assert g.get_response().id == "abc" and g.get_response().model_name == NF
    assert g.as_numpy("rollout").shape == (3, 3, H, W, 1)
    np.testing.assert_allclose(g.as_numpy("rollout"), h.as_numpy("rollout"), atol=1e-6)
    np.testing.assert_array_equal(g.as_numpy("next_frame"), g.as_numpy("rollout")[:, 0])


def _v1(served, path: str, clip: np.ndarray, **params) -> httpx.Response:
    """One clip to a ``/v1`` route as a raw ``.npy`` body (float32, as over gRPC)."""
    r = httpx.post(
        f"{served.url}/v1/models/{path}",
        params=params,
        content=npy(clip),
        headers={"content-type": "application/x-npy"},
        timeout=120.0,
    )
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize("name", [NF, "conv2d_lstm_next_frame"])
def test_next_frame_and_rollout_answer_as_the_v1_route(served, name):
    """gRPC's raw outputs against ``/v1``'s ``.npy`` answer (its own encoding, which names its
    byte order), clip by clip: a byte-order or layout slip shared by gRPC and the V2 HTTP binary
    extension shows here."""
    x, k = _clips(3, seed=7), 3
    g = served.grpc.infer(
        name,
        [_input(grpcclient, x)],
        outputs=[grpcclient.InferRequestedOutput(n) for n in ("next_frame", "rollout")],
        parameters={"horizon": k},
    )
    rollout, nxt = g.as_numpy("rollout"), g.as_numpy("next_frame")
    assert rollout.shape == (3, k, H, W, 1) and nxt.shape == (3, H, W, 1)
    for i, clip in enumerate(x):
        r = _v1(served, f"{name}/predict", clip, horizon=k, output="npy")
        assert r.headers["content-type"] == "application/x-npy"
        want = np.load(io.BytesIO(r.content), allow_pickle=False)
        assert want.shape == (k, H, W, 1)
        np.testing.assert_allclose(rollout[i], want, atol=1e-5, err_msg=f"clip {i}")
        np.testing.assert_allclose(nxt[i], want[0], atol=1e-5, err_msg=f"clip {i}")


@pytest.mark.parametrize("name", [CL, "convlstm2d_classify"])
def test_classifier_scores_answer_as_the_v1_route(served, name):
    """gRPC's score vector (class order) against ``/v1``'s JSON scores (by class name)."""
    x = _clips(3, seed=8)
    scores = served.grpc.infer(name, [_input(grpcclient, x)]).as_numpy("scores")
    names = served.app.state.runtime.runners[name].manifest.class_names
    assert names and scores.shape == (3, len(names))
    for i, clip in enumerate(x):
        body = _v1(served, f"{name}/classify", clip, top_k=1000).json()  # every class
        by_name = {s["class_name"]: s["score"] for s in body["scores"]}
        assert set(by_name) == set(names)
        want = np.array([by_name[n] for n in names], np.float32)
        np.testing.assert_allclose(scores[i], want, atol=1e-5, err_msg=f"clip {i}")


def test_every_output_when_none_is_asked_for(served):
    r = served.grpc.infer(NF, [_input(grpcclient, _clips(1))])
    assert {o.name for o in r.get_response().outputs} == {"next_frame", "rollout"}


def test_uint8_frames_are_read_as_bytes_over_255(served):
    u8 = (np.random.default_rng(1).random((2, FRAMES, H, W, 1)) * 255).astype(np.uint8)
    a = served.grpc.infer(CL, [_input(grpcclient, u8, "UINT8")]).as_numpy("scores")
    f = u8.astype(np.float32) / 255.0
    b = served.grpc.infer(CL, [_input(grpcclient, f)]).as_numpy("scores")
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.shape[0] == 2


def test_typed_contents_answer_as_raw_ones(served):
    """A request with ``contents.fp32_contents`` (no raw bytes), sent with the generated stub."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pbg

    x = _clips(1, seed=4)
    req = pb.ModelInferRequest(model_name=CL)
    t = req.inputs.add(name="frames", datatype="FP32", shape=list(x.shape))
    t.contents.fp32_contents.extend(x.reshape(-1).tolist())
    port = served.app.state.settings.grpc_port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        resp = pbg.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=60)
    typed = np.frombuffer(resp.raw_output_contents[0], dtype="<f4").reshape(resp.outputs[0].shape)
    raw = served.grpc.infer(CL, [_input(grpcclient, x)]).as_numpy("scores")
    np.testing.assert_allclose(typed, raw, atol=1e-6)


def test_classification_extension_as_over_http(served):
    x = _clips(2, seed=2)
    k = 3
    g = served.grpc.infer(
        CL,
        [_input(grpcclient, x)],
        outputs=[grpcclient.InferRequestedOutput("scores", class_count=k)],
    ).as_numpy("scores")
    h = served.http.infer(
        CL,
        [_input(httpclient, x)],
        outputs=[httpclient.InferRequestedOutput("scores", class_count=k)],
    ).as_numpy("scores")
    assert g.shape == (2, k)
    assert [[e.decode() for e in row] for row in g] == [
        [e.decode() if isinstance(e, bytes) else e for e in row] for row in h
    ]
    scores = [float(e.decode().split(":")[0]) for e in g[0]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "case",
    ["unknown model", "wrong shape", "wrong datatype", "horizon on a classifier", "bad version"],
)
def test_errors_carry_the_http_message_with_the_matching_status(served, case):
    x = _clips(1)
    model, args, kwargs = CL, None, {}
    if case == "unknown model":
        model = "nope"
    elif case == "wrong shape":
        x = np.zeros((1, FRAMES, H + 1, W, 1), np.float32)
    elif case == "horizon on a classifier":
        kwargs = {"parameters": {"horizon": 2}}
    elif case == "bad version":
        kwargs = {"model_version": "7"}
    if case == "wrong datatype":
        args = (
            [_input(grpcclient, x.astype(np.float64), "FP64")],
            [_input(httpclient, x.astype(np.float64), "FP64")],
        )
    else:
        args = ([_input(grpcclient, x)], [_input(httpclient, x)])
    g = _error(lambda: served.grpc.infer(model, args[0], **kwargs))
    h = _error(lambda: served.http.infer(model, args[1], **kwargs))
    want = (
        "StatusCode.NOT_FOUND"
        if case in ("unknown model", "bad version")
        else "StatusCode.INVALID_ARGUMENT"
    )
    assert g.status() == want, g
    assert g.message() == h.message() and g.message()


def test_a_message_over_the_upload_limit_is_refused(served):
    x = _clips(40)  # 40 x 4 x 16 x 16 floats = 164 KiB: under the limit
    served.grpc.infer(CL, [_input(grpcclient, x[:1])])
    big = np.zeros((1, 2100, H, W, 1), np.float32)  # 2.1 MB > FRAMECAST_MAX_UPLOAD_BYTES=2 MiB
    e = _error(lambda: served.grpc.infer(CL, [_input(grpcclient, big)]))
    assert e.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_config_is_the_http_config(served):
    g = served.grpc.get_model_config(NF, as_json=True)["config"]
    h = served.http.get_model_config(NF)
    assert g["name"] == h["name"] == NF
    assert int(g["max_batch_size"]) == h["max_batch_size"] == 6
    assert [int(d) for d in g["input"][0]["dims"]] == h["input"][0]["dims"]
    assert {o["name"]: [int(d) for d in o["dims"]] for o in g["output"]} == {
        o["name"]: o["dims"] for o in h["output"]
    }
    g_oldest, h_oldest = g["sequence_batching"]["oldest"], h["sequence_batching"]["oldest"]
    assert [int(b) for b in g_oldest["preferred_batch_size"]] == h_oldest["preferred_batch_size"]
    assert (
        int(g["sequence_batching"]["max_sequence_idle_microseconds"])
        == (h["sequence_batching"]["max_sequence_idle_microseconds"])
    )
    g = served.grpc.get_model_config(CL, as_json=True)["config"]
    h = served.http.get_model_config(CL)
    assert [int(b) for b in g["dynamic_batching"]["preferred_batch_size"]] == h["dynamic_batching"][
        "preferred_batch_size"
    ]


def test_statistics_count_grpc_inference_on_both_protocols(served):
    def success(client):
        stats = client.get_inference_statistics(CL, as_json=True)["model_stats"][0]
        return int(stats["inference_stats"]["success"].get("count", 0))

    before_g, before_h = success(served.grpc), served.http.get_inference_statistics(CL)
    served.grpc.infer(CL, [_input(grpcclient, _clips(1))])
    served.grpc.infer(CL, [_input(grpcclient, _clips(1))])
    after_h = served.http.get_inference_statistics(CL)["model_stats"][0]
    assert success(served.grpc) == before_g + 2
    was = before_h["model_stats"][0]["inference_stats"]["success"]["count"]
    assert after_h["inference_stats"]["success"]["count"] == was + 2
    everyone = served.grpc.get_inference_statistics(as_json=True)["model_stats"]
    assert CL in {m["name"] for m in everyone} and len(everyone) == 4


def test_health_metadata_and_metrics(served):
    assert served.grpc.is_server_live() and served.grpc.is_server_ready()
    assert served.grpc.is_model_ready(CL)
    meta = served.grpc.get_server_metadata(as_json=True)
    assert meta["name"] == "framecast" and "statistics" in meta["extensions"]
    m = served.grpc.get_model_metadata(NF, as_json=True)
    assert m["inputs"][0]["name"] == "frames"
    assert [int(d) for d in m["inputs"][0]["shape"]] == [-1, FRAMES, H, W, 1]
    e = _error(lambda: served.grpc.is_model_ready("nope"))
    assert e.status() == "StatusCode.NOT_FOUND" and "no model named 'nope'" in e.message()
    _error(lambda: served.grpc.infer("nope", [_input(grpcclient, _clips(1))]))
    text = httpx.get(served.url + "/metrics").text
    lines = [line for line in text.splitlines() if 'route="grpc:ModelInfer"' in line]
    assert any('status="200"' in line for line in lines), lines
    assert any('status="404"' in line and 'model="unknown"' in line for line in lines), lines


def test_the_stream_answers_in_order_and_goes_on_after_an_error(served):
    answers: queue.Queue = queue.Queue()
    served.grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        served.grpc.async_stream_infer(CL, [_input(grpcclient, _clips(1))], request_id="1")
        bad = np.zeros((1, FRAMES, H + 2, W, 1), np.float32)
        served.grpc.async_stream_infer(CL, [_input(grpcclient, bad)], request_id="2")
        served.grpc.async_stream_infer(NF, [_input(grpcclient, _clips(2))], request_id="3")
        got = [answers.get(timeout=60) for _ in range(3)]
    finally:
        served.grpc.stop_stream()
    (r1, e1), (r2, e2), (r3, e3) = got
    assert e1 is None and r1.get_response().id == "1" and r1.as_numpy("scores").shape[0] == 1
    assert r2 is None and e2 is not None and "has shape" in e2.message()
    assert e3 is None and r3.get_response().id == "3" and r3.as_numpy("next_frame").shape[0] == 2


def test_repository_calls(served):
    index = {
        m["name"]: m["state"]
        for m in served.grpc.get_model_repository_index(as_json=True)["models"]
    }
    assert index[CL] == "READY" and len(index) == 4
    name = "convlstm2d_classify"
    served.grpc.unload_model(name)
    try:
        assert not served.grpc.is_model_ready(name)
        e = _error(lambda: served.grpc.infer(name, [_input(grpcclient, _clips(1))]))
        assert e.status() in ("StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE")
    finally:
        served.grpc.load_model(name)
    assert served.grpc.is_model_ready(name)
    e = _error(lambda: served.grpc.load_model(name, config='{"max_batch_size": 2}'))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "not supported" in e.message()


def test_shared_memory_says_it_is_not_served(served):
    e = _error(lambda: served.grpc.get_system_shared_memory_status())
    assert e.status() == "StatusCode.UNIMPLEMENTED" and "shared memory" in e.message()


def test_new_calls_while_draining_are_unavailable(models_dir):
    port = _free_port()
    app = create_app(Settings(models_dir=models_dir, load_mode="blocking", grpc_port=port))
    with live_server(app):
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert c.is_server_live()
        app.state.drain.start()
        e = _error(lambda: c.infer(CL, [_input(grpcclient, _clips(1))]))
        assert e.status() == "StatusCode.UNAVAILABLE" and "shutting down" in e.message()
        c.close()


def test_api_keys_travel_as_metadata(models_dir):
    port = _free_port()
    app = create_app(
        Settings(models_dir=models_dir, load_mode="blocking", grpc_port=port, api_keys=KEY)
    )
    with live_server(app):
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        e = _error(lambda: c.is_server_live())
        assert e.status() == "StatusCode.UNAUTHENTICATED" and "Bearer" in e.message()
        e = _error(lambda: c.is_server_live(headers={"authorization": "Bearer wrong"}))
        assert e.status() == "StatusCode.PERMISSION_DENIED"
        ok = {"authorization": f"Bearer {KEY}"}
        assert c.is_server_live(headers=ok)
        r = c.infer(CL, [_input(grpcclient, _clips(1))], headers=ok)
        assert r.as_numpy("scores").shape[0] == 1
        c.close()
